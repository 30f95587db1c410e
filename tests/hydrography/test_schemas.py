"""Every schema of DATA.md section 1 read back from fixtures written by write_layer, in several formats."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from thalweg.errors import ThalwegWarning
from thalweg.hydrography import SCHEMAS, detect_schema, read_network
from thalweg.hydrography.vector import read_table
from thalweg.testing.layers import write_layer

# (schema, suffix, variant, writes geometry): geometry where the format needs or usually carries it
CASES = [
    ("geoglows", "gpkg", None, True),
    ("geoglows", "parquet", None, True),
    ("geoglows", "fgb", None, True),
    ("hydrorivers", "shp", None, True),
    ("hydrorivers", "geojson", None, True),
    ("hydrorivers", "csv", None, True),
    ("merit", "parquet", None, False),
    ("merit", "csv", None, False),
    ("merit", "gpkg", None, True),
    ("nhdplus", "gpkg", "tocomid", True),
    ("nhdplus", "parquet", "lower", False),
    ("nhdplus", "gpkg", "plusflow", True),
    ("nhdplus", "csv", "plusflow", False),
    ("nhdplus", "parquet", "hydroseq", False),
    ("nwm", "nc", None, False),
    ("nwm", "csv", None, False),
    ("hydrofabric", "gpkg", "nexus", True),
    ("hydrofabric", "parquet", "network", False),
    ("hydrofabric", "csv", "direct", False),
    ("mizuroute", "nc", None, False),
    ("riverroute", "parquet", None, False),
    ("riverroute2", "parquet", None, False),
    ("thalweg", "gpkg", None, True),
    ("rapid", "csv", None, False),
    ("lines", "gpkg", None, True),
    ("lines", "fgb", None, True),
]


def test_every_registered_schema_has_cases():
    assert {case[0] for case in CASES} == set(SCHEMAS)


def _write(tmp_path, net, ds_ids, schema, suffix, variant, with_geometry):
    spec = SCHEMAS[schema]
    n = net.n_reaches
    kw = {}
    if "muskingum_k" in spec.fields:
        kw["muskingum_k"] = net.length / 0.8  # s, at 0.8 m/s
        kw["muskingum_x"] = np.linspace(0.1, 0.4, n)
    lengths = net.length if "length" in spec.fields else None
    areas = net.area if ("area" in spec.fields or "catchment_area" in spec.fields) else None
    if schema == "lines":
        lengths = areas = None
    name = "rapid_connect.csv" if schema == "rapid" else f"{schema}.{suffix}"
    return write_layer(tmp_path / name, schema, net.ids, ds_ids, lengths=lengths, areas=areas,
                       geometry=net.geometry if with_geometry else None, crs="EPSG:3857", variant=variant,
                       extra={"rid": net.ids} if schema == "lines" else None, **kw), kw


@pytest.mark.parametrize("schema,suffix,variant,with_geometry", CASES,
                         ids=[f"{c[0]}-{c[2] or ''}-{c[1]}".replace("--", "-") for c in CASES])
def test_schema_round_trip(tmp_path, net, ds_ids, same_topology, schema, suffix, variant, with_geometry):
    path, kw = _write(tmp_path, net, ds_ids, schema, suffix, variant, with_geometry)
    assert detect_schema(path).name == schema if schema != "lines" else True
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read = read_network(path, fields={"id": "rid"} if schema == "lines" else None)
    messages = [str(w.message) for w in caught if issubclass(w.category, ThalwegWarning)]
    assert read.source.schema == schema and read.source.path == str(path)
    order = same_topology(read, net.ids, ds_ids)
    spec = SCHEMAS[schema]
    if "length" in spec.fields or with_geometry:
        np.testing.assert_allclose(read.length[order], net.length, rtol=1e-9)
    else:  # RAPID and river-route carry no lengths: unknown, said in a warning
        assert np.isnan(read.length).all()
        assert any("no reach lengths" in m for m in messages), messages
    if "area" in spec.fields or "catchment_area" in spec.fields:
        np.testing.assert_allclose(read.area[order], net.area, rtol=1e-9)
    else:
        assert np.isnan(read.area).all()
    if kw:
        np.testing.assert_allclose(read.attrs["muskingum_k"][order], kw["muskingum_k"], rtol=1e-9)
        np.testing.assert_allclose(read.attrs["muskingum_x"][order], kw["muskingum_x"], rtol=1e-9)
    if with_geometry:
        assert read.geometry is not None and read.crs == (None if suffix == "csv" else "EPSG:3857")
    if "length" in spec.fields or "muskingum_k" in spec.fields:
        assert not any("geodesic" in m or "look like" in m for m in messages), messages


# the raw values each schema stores, checked on the written file, so that writer and reader cannot share a unit slip
RAW_UNITS = [
    ("geoglows", {"LengthGeodesicMeters": ("length", 1.0), "DSContArea": ("area", 1.0), "musk_k": ("k", 1.0)}),
    ("hydrorivers", {"LENGTH_KM": ("length", 1e-3), "UPLAND_SKM": ("area", 1e-6), "CATCH_SKM": ("catch", 1e-6)}),
    ("merit", {"lengthkm": ("length", 1e-3), "uparea": ("area", 1e-6), "unitarea": ("catch", 1e-6)}),
    ("nhdplus", {"LENGTHKM": ("length", 1e-3), "TotDASqKM": ("area", 1e-6)}),
    ("hydrofabric", {"lengthkm": ("length", 1e-3), "tot_drainage_areasqkm": ("area", 1e-6)}),
    ("nwm", {"Length": ("length", 1.0), "MusK": ("k", 1.0)}),
    ("riverroute", {"muskingumK": ("k", 1.0)}),
    ("riverroute2", {"k": ("k", 1.0), "river_id": ("id", 1.0)}),
]


@pytest.mark.parametrize("schema,expected", RAW_UNITS, ids=[r[0] for r in RAW_UNITS])
def test_written_units_are_the_datasets_units(tmp_path, net, ds_ids, schema, expected):
    spec = SCHEMAS[schema]
    k = net.length / 0.8
    path = write_layer(tmp_path / f"{schema}.parquet", schema, net.ids, ds_ids,
                       lengths=net.length if "length" in spec.fields else None,
                       areas=net.area if "area" in spec.fields else None,
                       muskingum_k=k if "muskingum_k" in spec.fields else None, variant="direct"
                       if schema == "hydrofabric" else None)
    table = read_table(path)
    catch = net.catchment_area
    truth = {"length": net.length, "area": net.area, "k": k, "catch": catch, "id": net.ids}
    for field, (what, factor) in expected.items():
        np.testing.assert_allclose(table.columns[field], truth[what] * factor, rtol=1e-12, err_msg=field)


def test_attributes_are_kept_with_standard_names(tmp_path, net, ds_ids):
    gauges = np.array([f"0{i:07d}" if i % 5 == 0 else "" for i in range(net.n_reaches)], dtype=object)
    path = write_layer(tmp_path / "Route_Link.nc", "nwm", net.ids, ds_ids, lengths=net.length,
                       muskingum_k=net.length / 2.0, muskingum_x=np.full(net.n_reaches, 0.2),
                       slope=np.full(net.n_reaches, 0.001), stream_order=np.arange(net.n_reaches) % 4 + 1,
                       gauge_id=gauges,
                       extra={"n": np.full(net.n_reaches, 0.035), "BtmWdth": np.arange(net.n_reaches) * 1.0})
    read = read_network(path)
    order = read.index_of(net.ids)
    assert list(read.attrs["gauge_id"][order]) == list(gauges)
    np.testing.assert_array_equal(read.attrs["stream_order"][order], np.arange(net.n_reaches) % 4 + 1)
    np.testing.assert_allclose(read.slope, 0.001)
    np.testing.assert_allclose(read.attrs["n"], 0.035)
    np.testing.assert_allclose(read.attrs["BtmWdth"][order], np.arange(net.n_reaches))
    assert "Length" not in read.attrs and "link" not in read.attrs and "MusK" not in read.attrs


def test_string_attributes_and_catchment_area(tmp_path, net, ds_ids):
    names = np.array([f"river {i}" for i in net.ids], dtype=object)
    path = write_layer(tmp_path / "rivers.gpkg", "hydrorivers", net.ids, ds_ids, lengths=net.length,
                       areas=net.area, geometry=net.geometry, crs="EPSG:3857", extra={"NAME": names})
    read = read_network(path)
    order = read.index_of(net.ids)
    assert list(read.attrs["NAME"][order]) == list(names)
    np.testing.assert_allclose(read.catchment_area[order], net.catchment_area, rtol=1e-9)
