"""Jobs on files: route a GeoPackage network with an m3_riv runoff file and gauges; extract a network."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from thalweg.errors import ThalwegWarning
from thalweg.network import scheidegger_network
from thalweg.results import read_discharge
from thalweg.testing.layers import write_layer

from .conftest import DT, START, assert_flows_close, synthetic_runoff, write_m3_riv
from .test_jobs import direct

STEPS = 72


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("files")
    net = scheidegger_network(300, seed=11, with_geometry=True)
    ds = net.downstream
    ds_ids = np.where(ds >= 0, net.ids[np.clip(ds, 0, None)], -1)
    rivers = write_layer(folder / "rivers.gpkg", "geoglows", net.ids, ds_ids, lengths=net.length, areas=net.area,
                         geometry=net.geometry, crs=net.crs)
    runoff = synthetic_runoff(net, STEPS, seed=21)
    m3_riv = write_m3_riv(folder / "m3_riv.nc", net, runoff)
    outlet = int(net.ids[net.outlets[0]])
    (folder / "gauges.csv").write_text(f"gauge_id,reach_id,name\nG7,{outlet},Outlet at the sea\n")
    ends = (START + np.timedelta64(int(DT), "s") * np.arange(1, STEPS + 1)).astype("datetime64[s]").astype(str)
    observed = np.linspace(1.0, 40.0, STEPS)
    observed[5] = -999.0  # a missing-data code
    (folder / "observed.csv").write_text("time,G7\n" + "".join(f"{t},{v}\n" for t, v in zip(ends, observed)))
    return {"net": net, "rivers": str(rivers), "m3_riv": str(m3_riv), "runoff": runoff, "outlet": outlet,
            "gauges": str(folder / "gauges.csv"), "observed": str(folder / "observed.csv"), "obs": observed}


def test_route_files_with_gauges(client, files):
    from thalweg import read_network

    job = client.route(files["rivers"], files["m3_riv"], convention="both", gauges=files["gauges"],
                       observed=files["observed"], name="basin")
    final = client.wait(job["id"], interval=0.05, timeout=180, check=True)
    assert set(final["outputs"]) >= {"q", "qout", "gpkg", "hydrographs", "gauges", "settings"}
    assert Path(final["outputs"]["q"]).name == "basin.nc"
    assert final["inputs"]["network"] == files["rivers"] and final["inputs"]["runoff"] == files["m3_riv"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        net = read_network(files["rivers"])
        expected = direct(net, files["runoff"][files["net"].index_of(net.ids)])
    # the file written and the hydrograph served agree with routing called directly
    on_disk = read_discharge(final["outputs"]["q"])
    assert_flows_close(on_disk.values, expected[net.index_of(on_disk.ids)])
    h = client.hydrograph(job["id"], files["outlet"])
    assert_flows_close(h["simulated"], expected[net.index_of([files["outlet"]])[0]], scale=np.abs(expected).max())
    assert h["gauge_id"] == "G7" and h["observed"][5] is None
    np.testing.assert_allclose([v for v in h["observed"] if v is not None], np.delete(files["obs"], 5))
    assert h["metrics"] is not None and set(h["metrics"]) >= {"nse", "kge", "pbias"}


def test_extract_network(client, files):
    import geopandas as gpd

    job = client.extract(files["rivers"], label="rivers")
    final = client.wait(job["id"], interval=0.05, timeout=180, check=True)
    net = files["net"]
    summary = final["result"]["summary"]
    assert summary["reaches"] == net.n_reaches and summary["outlets"] == net.outlets.size
    assert summary["schema"] == "geoglows" and summary["fields"]["id"] == "LINKNO"
    frame = gpd.read_file(final["outputs"]["gpkg"], layer="reaches")
    assert sorted(frame["reach_id"]) == sorted(net.ids.tolist())
    order = net.index_of(frame["reach_id"].to_numpy())
    ds = net.downstream[order]
    np.testing.assert_array_equal(frame["downstream_id"], np.where(ds >= 0, net.ids[np.clip(ds, 0, None)], -1))
    np.testing.assert_allclose(frame["length_m"], net.length[order], rtol=1e-9)
    np.testing.assert_allclose(frame["area_km2"], net.area[order] / 1e6, rtol=1e-9)
    assert frame.crs is not None and len(frame.geometry) == net.n_reaches
    from .conftest import expect_error

    expect_error(lambda: client.hydrograph(job["id"], 1), 409, "'extract' job")


def test_extract_reports_a_broken_file(client, tmp_path):
    path = write_layer(tmp_path / "loop.gpkg", "hydrorivers", [1, 2, 3], [2, 3, 1], lengths=[1000.0] * 3,
                       areas=[1e6, 2e6, 3e6])
    final = client.wait(client.extract(str(path))["id"], interval=0.05, timeout=120)
    assert final["state"] == "failed" and final["error"]["error"] == "CycleError"
    assert sorted(final["error"]["ids"]) == [1, 2, 3] and final["error"]["path"] == str(path)
