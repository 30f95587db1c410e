"""Service additions for the QGIS plugin: /detect (the backend's schema detection for a file or a layer's
fields) and inline networks carrying their lines as WKB (route and extract jobs), through the real service."""
from __future__ import annotations

import base64

import numpy as np
import pytest
import shapely

from thalweg.client import ClientError

from .conftest import expect_error, inline_network, inline_runoff, synthetic_runoff

SAMPLE = __import__("pathlib").Path(__file__).resolve().parents[2] / "resources" / "sample" / "cance_rivers.gpkg"


def test_detect_a_file(client):
    got = client.detect(str(SAMPLE), layer="rivers")
    # resources/sample/README.md: LINKNO, DSLINKNO, LengthGeodesicMeters [m], DSContArea [m2] (GEOGloWS names)
    assert got["schema"] == "geoglows" and got["layer"] == "rivers"
    assert got["fields"]["id"] == "LINKNO" and got["fields"]["downstream"] == "DSLINKNO"
    assert got["fields"]["length"] == "LengthGeodesicMeters" and got["fields"]["area"] == "DSContArea"
    assert got["units"] == {"length": "m", "area": "m2"}
    assert got["features"] == 123 and "line" in got["geometry_type"].lower() and "2154" in got["crs"]
    assert got["error"] is None and got["topology_from_geometry"] is False
    assert {"LINKNO", "DSLINKNO", "strmOrder"} <= set(got["columns"])
    assert got["candidates"][0]["schema"] == "geoglows"


def test_detect_fields_of_a_memory_layer(client):
    got = client.detect(columns=["HYRIV_ID", "NEXT_DOWN", "LENGTH_KM", "UPLAND_SKM", "ORD_STRA"])
    assert got["schema"] == "hydrorivers"
    assert got["fields"]["id"] == "HYRIV_ID" and got["fields"]["downstream"] == "NEXT_DOWN"
    assert got["units"] == {"length": "km", "area": "km2"}
    assert got["problems"] == []


def test_detect_guesses_units_of_chosen_fields_from_sample_values_only_when_given(client):
    columns = ["LINKNO", "DSLINKNO", "len", "DSContArea"]
    fields = {"length": "len"}  # the user's choice in the panel: 'len' names no unit
    blind = client.detect(columns=columns, fields=fields)
    assert blind["schema"] == "geoglows" and blind["fields"]["length"] == "len"
    assert blind["units"]["length"] is None and any("len has no unit" in p for p in blind["problems"])
    metres = client.detect(columns=columns, fields=fields, values={"len": [1500.0, 2300.0, None, 980.0]})
    assert metres["units"] == {"length": "m", "area": "m2"}
    km = client.detect(columns=columns, fields=fields, values={"len": [1.5, 2.3, 0.98]})
    assert km["units"]["length"] == "km" and any("look like km" in p for p in km["problems"])
    dropped = client.detect(columns=columns, fields={"area": None, "length": "nope"})
    assert "area" not in dropped["fields"] and any("no field nope" in p for p in dropped["problems"])


def test_detect_reports_no_match_as_a_problem_and_refuses_bad_bodies(client):
    none = client.detect(columns=["fid", "name"])
    assert none["schema"] is None and none["fields"] == {} and "no known hydrography schema" in none["problems"][0]
    both = {"columns": ["a"], "path": str(SAMPLE)}
    expect_error(lambda: client.request("POST", "/detect", body=both), 422, "not both")
    expect_error(lambda: client.detect("/no/such/file.gpkg"), 422, "does not exist")


def _wkb_geometry(lines):
    blobs = [shapely.to_wkb(g) for g in lines]
    return {"wkb": base64.b64encode(b"".join(blobs)).decode("ascii"), "sizes": [len(b) for b in blobs],
            "crs": "EPSG:2154"}


def _lines(net):
    rng = np.random.default_rng(5)
    xy = rng.uniform(0, 1e5, (net.n_reaches, 2))
    return [shapely.LineString([xy[i], xy[i] + [100.0, 50.0 + i]]) for i in range(net.n_reaches)]


def test_inline_network_with_geometry_is_mapped(client, network):
    import geopandas as gpd

    lines = _lines(network)
    body = inline_network(network) | {"geometry": _wkb_geometry(lines)}
    values = synthetic_runoff(network, 6)
    job = client.route(body, inline_runoff(values), write_gpkg=True)
    done = client.wait(job["id"], timeout=120, check=True)
    frame = gpd.read_file(done["outputs"]["gpkg"])
    assert len(frame) == network.n_reaches and frame.crs.to_epsg() == 2154
    by_id = dict(zip(network.ids.tolist(), lines))
    for reach_id, geom in zip(frame["reach_id"], frame.geometry):
        assert geom.equals_exact(by_id[int(reach_id)], 1e-9)


def test_inline_geometry_sizes_must_match(client, network):
    lines = _lines(network)
    geometry = _wkb_geometry(lines)
    short = inline_network(network) | {"geometry": _wkb_geometry(lines[:-1])}
    expect_error(lambda: client.route(short, inline_runoff(synthetic_runoff(network, 2))), 422, "geometry.sizes",
                 f"{network.n_reaches - 1:,} values but 'ids' has {network.n_reaches:,}")
    bad = inline_network(network) | {"geometry": geometry | {"sizes": [s + 1 for s in geometry["sizes"]]}}
    expect_error(lambda: client.route(bad, inline_runoff(synthetic_runoff(network, 2))), 422, "add up to")


def test_extract_an_inline_network(client, network):
    import geopandas as gpd

    body = inline_network(network) | {"geometry": _wkb_geometry(_lines(network))}
    done = client.wait(client.extract(body)["id"], timeout=120, check=True)
    assert done["result"]["summary"]["reaches"] == network.n_reaches
    frame = gpd.read_file(done["outputs"]["gpkg"])
    assert sorted(frame["reach_id"]) == sorted(network.ids.tolist())


def test_extract_an_inline_cycle_names_its_reaches(client):
    body = {"ids": [1, 2, 3, 4], "downstream_ids": [2, 3, 1, -1], "length": [1.0, 1.0, 1.0, 1.0]}
    job = client.extract(body)
    with pytest.raises(ClientError) as info:
        client.wait(job["id"], timeout=60, check=True)
    error = info.value.record["error"]
    assert error["error"] == "CycleError" and sorted(error["ids"]) == [1, 2, 3]


def test_summarize_a_discharge_file_on_the_network(client, tmp_path):
    import geopandas as gpd

    from thalweg.results import read_discharge

    runoff = SAMPLE.parent / "cance_runoff.nc"
    routed = client.wait(client.route(str(SAMPLE), str(runoff), write_gpkg=False)["id"], timeout=120, check=True)
    job = client.submit({"kind": "summarize", "network": str(SAMPLE), "layer": "rivers",
                         "discharge": routed["outputs"]["q"]})
    done = client.wait(job["id"], timeout=120, check=True)
    frame = gpd.read_file(done["outputs"]["gpkg"]).set_index("reach_id")
    d = read_discharge(routed["outputs"]["q"])
    assert len(frame) == d.n_reaches == done["result"]["reaches"] == 123
    values = d.values.astype(np.float64)
    np.testing.assert_allclose(frame.loc[d.ids, "mean"].to_numpy(), values.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(frame.loc[d.ids, "max"].to_numpy(), values.max(axis=1), rtol=1e-6)
    assert frame.crs.to_epsg() == 2154 and frame.geometry.notna().all()
    expect_error(lambda: client.submit({"kind": "summarize", "network": str(SAMPLE), "discharge": "/no/q.nc"}), 422,
                 "does not exist")
