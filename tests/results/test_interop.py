"""Thalweg's outputs read by the tools hydrologists use, not only by Thalweg's own reader (issue 7, item 2).

CF-1.8 checked by the IOOS compliance checker; RAPIDpy-style access by ``rivid`` with netCDF4; GEOGloWS-style
``ds.sel(river_id=...)``; river-route 3's zarr layout; GDAL/OGR (pyogrio and QGIS's own GDAL) for the
GeoPackage, and QGIS 3.22 loading its embedded default style. Plus dates beyond datetime64[ns] (issue 8,
finding 4) and the format chosen by the file name.
"""
from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from thalweg.errors import InputError
from thalweg.network import scheidegger_network
from thalweg.results import (Discharge, read_discharge, write_hydrographs_long_csv, write_q, write_qout,
                             write_summary_gpkg, write_zarr)
from thalweg.results.outputs import output_format, output_paths
from thalweg.testing.checks import cf_problems

QGIS_PYTHON = "/usr/bin/python3"


def _qgis_available() -> bool:
    if not Path(QGIS_PYTHON).exists():
        return False
    return subprocess.run([QGIS_PYTHON, "-c", "import qgis.core, osgeo.ogr"], capture_output=True).returncode == 0


needs_qgis = pytest.mark.skipif(not _qgis_available(), reason="QGIS's Python (python3-qgis) is not installed")



@pytest.fixture
def mapped():
    """A 30-reach network with line geometry (EPSG:3857) and 6 hourly steps of discharge."""
    net = scheidegger_network(30, seed=4, with_geometry=True)
    rng = np.random.default_rng(0)
    values = rng.uniform(0.1, 50.0, (net.n_reaches, 6)).astype(np.float32)
    d = Discharge(values, net.ids, np.datetime64("2021-03-01T01", "ns") + np.arange(6) * np.timedelta64(1, "h"),
                  3600.0, {"scheme": "muskingum"})
    return net, d


def lonlat(net, d):
    from thalweg.results.writers import reach_lonlat

    return reach_lonlat(net, d.ids)


@pytest.mark.parametrize("kind", ["qout-mean-located", "qout-end", "q-riverId", "q-river_id-located"])
def test_netcdf_outputs_pass_the_cf_checker(tmp_path, mapped, kind):
    net, d = mapped
    lat, lon = lonlat(net, d)
    path = tmp_path / f"{kind}.nc"
    if kind == "qout-mean-located":
        write_qout(path, d, "mean", lat=lat, lon=lon)
    elif kind == "qout-end":
        write_qout(path, d, "end")
    elif kind == "q-riverId":
        write_q(path, d)
    else:
        write_q(path, d, id_name="river_id", lat=lat, lon=lon)
    assert cf_problems(path) == []


def test_cf_rules_in_the_file_itself(tmp_path, discharge):
    """CF-valid time type (float64, not int64), units on every coordinate, _FillValue, unlimited chunked time,
    compression: read with plain netCDF4."""
    import netCDF4

    for path in (write_qout(tmp_path / "Qout.nc", discharge, "mean"), write_q(tmp_path / "Q.nc", discharge)):
        with netCDF4.Dataset(path) as nc:
            assert nc.Conventions == "CF-1.8"
            assert nc.dimensions["time"].isunlimited()
            for name in ("time", "time_bnds"):
                assert nc.variables[name].dtype == np.float64
            assert nc.variables["time"].calendar == "standard" and " since " in nc.variables["time"].units
            for name, var in nc.variables.items():
                if name in nc.dimensions:  # every coordinate variable, the reach ids too
                    assert "units" in var.ncattrs(), name
                    assert "_FillValue" not in var.ncattrs(), name
            data = nc.variables["Qout" if "Qout" in nc.variables else "Q"]
            assert np.isnan(data._FillValue) and data.dtype == np.float32
            assert data.filters()["zlib"] and data.filters()["shuffle"] and data.chunking() != "contiguous"


def test_compression_can_be_turned_off_and_steps_must_be_resolvable(tmp_path, discharge):
    import netCDF4

    path = write_q(tmp_path / "plain.nc", discharge, compression=0)
    with netCDF4.Dataset(path) as nc:
        assert not nc.variables["Q"].filters()["zlib"] and nc.dimensions["time"].isunlimited()
    assert_same_read(read_discharge(path), discharge)
    # HDF5 stores edge chunks whole: chunks must split the axes evenly or a file grows to twice its data
    big = Discharge(np.ones((600, 2100), np.float32), np.arange(600), np.datetime64("2020-01-01", "ns")
                    + np.arange(2100) * np.timedelta64(1, "h"), 3600.0)
    for path in (write_q(tmp_path / "big.nc", big, compression=0), write_qout(tmp_path / "bigout.nc", big, "end",
                                                                             compression=0)):
        assert path.stat().st_size < 1.05 * big.values.nbytes + 200_000, path.name
    with pytest.raises(InputError, match="shorter than the time stamps' resolution"):
        Discharge(discharge.values, discharge.ids, discharge.time, 1e-12)


def test_qout_read_rapidpy_style(tmp_path, mapped):
    """RAPIDpy finds the river-id dimension 'rivid', indexes Qout(time, rivid) by the position of an id, reads
    lat/lon and the time with netCDF4.num2date."""
    import netCDF4

    net, d = mapped
    lat, lon = lonlat(net, d)
    path = write_qout(tmp_path / "Qout_cance.nc", d, "end", lat=lat, lon=lon)
    with netCDF4.Dataset(path) as nc:
        assert "rivid" in nc.dimensions and nc.variables["Qout"].dimensions == ("time", "rivid")
        rivid = nc.variables["rivid"][:]
        reach = int(d.ids[7])
        index = int(np.where(rivid == reach)[0][0])
        np.testing.assert_array_equal(nc.variables["Qout"][:, index], d.series(reach))
        np.testing.assert_allclose(nc.variables["lat"][index], lat[7])
        assert -90 <= nc.variables["lat"][:].min() and nc.variables["lon"][:].max() <= 180
        assert nc.variables["crs"].epsg_code == "EPSG:4326" and nc.variables["Qout"].grid_mapping == "crs"
        t = nc.variables["time"]
        stamps = netCDF4.num2date(t[:], t.units, t.calendar, only_use_cftime_datetimes=False)
        assert [s.isoformat() for s in stamps] == [str(x)[:19] for x in d.time.astype("datetime64[s]")]


def test_lat_lon_are_the_reach_outlets_in_wgs84(mapped):
    from pyproj import Transformer

    import shapely

    net, d = mapped
    lat, lon = lonlat(net, d)
    end = shapely.get_coordinates(shapely.get_point(np.asarray(net.geometry)[net.index_of(d.ids[:3])], -1))
    x, y = Transformer.from_crs("EPSG:4326", net.crs, always_xy=True).transform(lon[:3], lat[:3])
    np.testing.assert_allclose(np.c_[x, y], end, atol=1e-3)


def test_geoglows_style_selection_by_river_id(tmp_path, discharge):
    import xarray as xr

    with xr.open_dataset(write_q(tmp_path / "Q.nc", discharge, id_name="river_id")) as ds:
        assert ds["Q"].dims == ("river_id", "time")
        series = ds.sel(river_id=30)["Q"]
        np.testing.assert_array_equal(series.values, discharge.series(30))
        assert ds.sel(river_id=[10, 20]).sel(time="2021-03-01T03:00")["Q"].values.tolist() == [2.0, 0.125]
    with xr.open_dataset(write_qout(tmp_path / "Qout.nc", discharge, "end")) as ds:
        np.testing.assert_array_equal(ds.sel(rivid=20)["Qout"].values, discharge.series(20))
    assert_same_read(read_discharge(tmp_path / "Q.nc"), discharge)


def assert_same_read(a: Discharge, b: Discharge) -> None:
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.time, b.time)


def test_zarr_has_river_route_3_layout(tmp_path, discharge):
    """river-route 3's zarr writer: group with Q(river_id, time) float32, river_id int64, numeric time with
    units and calendar, consolidated metadata; opened by xarray.open_zarr."""
    import xarray as xr
    import zarr

    path = write_zarr(tmp_path / "Q.zarr", discharge)
    group = zarr.open_consolidated(str(path))
    assert set(group.array_keys()) >= {"Q", "river_id", "time"}
    q = group["Q"]
    assert q.dtype == np.float32 and q.shape == (3, 5)
    dims = q.metadata.dimension_names if hasattr(q.metadata, "dimension_names") else q.attrs["_ARRAY_DIMENSIONS"]
    assert tuple(dims) == ("river_id", "time")
    assert group["river_id"].dtype == np.int64 and group["time"].attrs["calendar"] == "standard"
    np.testing.assert_array_equal(q[:], discharge.values)
    with xr.open_zarr(path) as ds:
        np.testing.assert_array_equal(ds.sel(river_id=20)["Q"].values, discharge.series(20))
        np.testing.assert_array_equal(ds["time"].values, discharge.time)
    assert_same_read(read_discharge(path), discharge)
    # replaced as a whole, atomically
    write_zarr(path, Discharge(discharge.values * 2, discharge.ids, discharge.time, discharge.dt))
    np.testing.assert_array_equal(zarr.open_consolidated(str(path))["Q"][:], discharge.values * 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Q.zarr"]


def test_dates_beyond_datetime64_ns_are_written_right(tmp_path):
    """Issue 8 finding 4: a run dated in the year 3000 keeps its stamps (nanosecond datetimes overflowed to 1840
    .. 1719 before)."""
    import netCDF4
    import xarray as xr

    start = np.datetime64("3000-01-01T00", "s")
    d = Discharge(np.ones((2, 4), np.float32), [1, 2], start + np.arange(1, 5) * np.timedelta64(3600, "s"), 3600.0)
    assert str(d.time[0]).startswith("3000-01-01T01")
    assert str(d.start_time[0]).startswith("3000-01-01T00")
    for path in (write_q(tmp_path / "Q.nc", d), write_qout(tmp_path / "Qout.nc", d, "mean")):
        with netCDF4.Dataset(path) as nc:
            t = nc.variables["time"]
            stamps = netCDF4.num2date(t[:], t.units, t.calendar)
            first = "3000-01-01T01:00:00" if "Q" in nc.variables else "3000-01-01T00:00:00"
            assert stamps[0].isoformat() == first and stamps[-1].year == 3000
        assert cf_problems(path) == []
        back = read_discharge(path)
        np.testing.assert_array_equal(back.time, d.time)
        np.testing.assert_array_equal(back.values, d.values)
    with xr.open_zarr(write_zarr(tmp_path / "Q.zarr", d),
                      decode_times=xr.coders.CFDatetimeCoder(use_cftime=True)) as ds:
        assert ds["time"].values[0].year == 3000
    long = pd.read_csv(write_hydrographs_long_csv(tmp_path / "h.csv", d, [2]))
    assert long["time_utc"].iloc[0] == "3000-01-01T01:00:00Z"
    # before the Gregorian reform: written in the proleptic Gregorian calendar numpy uses
    old = Discharge(np.ones((1, 2), np.float32), [1], np.array(["1500-03-01T01", "1500-03-01T02"], "datetime64[s]"),
                    3600.0)
    with netCDF4.Dataset(write_q(tmp_path / "old.nc", old)) as nc:
        t = nc.variables["time"]
        assert t.calendar == "proleptic_gregorian"
        assert netCDF4.num2date(t[:], t.units, t.calendar)[0].isoformat() == "1500-03-01T01:00:00"


def test_format_follows_the_name_and_the_flag(tmp_path):
    assert output_format("out/Qout.nc") == "rapid"
    assert output_format("out/Qout_cance.nc") == "rapid"
    assert output_format("out/Q.nc") == "river-route"
    assert output_format("out/Q.nc", convention="mean") == "rapid"
    assert output_format("out/Q.zarr") == "zarr"
    assert output_format("out/Q.nc", "rapid") == "rapid"
    with pytest.raises(InputError, match="does not match the format 'zarr'"):
        output_format("out/Q.nc", "zarr")
    with pytest.raises(InputError, match="end-of-step discharge, not step means.*convention='end'"):
        output_format("out/Q.zarr", convention="mean")
    with pytest.raises(InputError, match="must be a NetCDF file"):
        output_format("out/Q.csv")
    paths = output_paths(tmp_path, "Qout", "rapid", "both")
    assert {k: (v[0].name, v[2]) for k, v in paths.items()} == {"qout": ("Qout.nc", "mean"), "q": ("Qout_Q.nc", "end")}
    paths = output_paths(tmp_path, "run", "zarr", "both")
    assert {k: v[0].name for k, v in paths.items()} == {"q": "run.zarr", "qout": "run_Qout.nc"}


def _gauges(net):
    from thalweg.learning.gauges import Gauges

    pos = np.array([int(np.argmax(net.area)), 3])
    return Gauges(np.array(["G1", "G2"]), net.ids[pos], pos, ["Outlet gauge", "G2"])


def test_gpkg_version_datetimes_aliases_style_and_gauges(tmp_path, mapped):
    import pyogrio

    net, d = mapped
    path = write_summary_gpkg(tmp_path / "Q.gpkg", net, d, gauges=_gauges(net))
    con = sqlite3.connect(path)
    try:
        assert con.execute("PRAGMA application_id").fetchone()[0] == 0x47504B47  # 'GPKG'
        assert con.execute("PRAGMA user_version").fetchone()[0] == 10300  # GeoPackage 1.3, not 1.4
        stamps = [r[0] for r in con.execute("SELECT time_of_max FROM discharge")]
        assert all(s.endswith("Z") for s in stamps)
        aliases = dict(con.execute("SELECT column_name, title FROM gpkg_data_columns WHERE table_name='discharge'"))
        assert aliases["mean"] == "Mean discharge [m3/s]" and aliases["q95"] == "Q95, low flow [m3/s]"
        assert con.execute("SELECT count(*) FROM gpkg_extensions WHERE extension_name='gpkg_schema'").fetchone()[0]
        style = con.execute("SELECT f_table_name, useAsDefault, styleQML FROM layer_styles").fetchall()
        assert len(style) == 1 and style[0][:2] == ("discharge", 1) and 'attr="mean"' in style[0][2]
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()
    layers = {name for name, _ in pyogrio.list_layers(path)}
    assert {"discharge", "gauges"} <= layers
    gauges = pyogrio.read_dataframe(path, layer="gauges")
    assert gauges["gauge_id"].tolist() == ["G1", "G2"] and gauges.geometry.geom_type.eq("Point").all()
    outlet = int(net.ids[np.argmax(net.area)])
    assert gauges["mean"].iloc[0] == pytest.approx(float(d.series(outlet).mean()), rel=1e-6)
    # the summary layer keeps the field names the plugin reads
    info = pyogrio.read_info(path, layer="discharge")
    assert list(info["fields"]) == ["reach_id", "downstream_id", "length_m", "area_km2", "mean", "max",
                                    "time_of_max", "q05", "q50", "q95"]


@needs_qgis
def test_gpkg_opens_in_qgis_gdal_and_qgis_loads_its_style(tmp_path, mapped):
    """QGIS 3.22's own GDAL opens the file without the 'partially supported' warning and with the aliases; QGIS
    loads the embedded default style (graduated by mean discharge, width by expression, legend in m3/s)."""
    net, d = mapped
    path = write_summary_gpkg(tmp_path / "Q.gpkg", net, d, gauges=_gauges(net))
    script = textwrap.dedent(f"""
        import json, os
        from osgeo import gdal, ogr
        messages = []
        gdal.PushErrorHandler(lambda cls, no, msg: messages.append(msg))
        ds = ogr.Open({str(path)!r})
        layer = ds.GetLayerByName("discharge")
        defn = layer.GetLayerDefn()
        aliases = {{defn.GetFieldDefn(i).GetName(): defn.GetFieldDefn(i).GetAlternativeName()
                   for i in range(defn.GetFieldCount())}}
        out = {{"gdal": gdal.__version__, "messages": messages, "count": layer.GetFeatureCount(),
               "layers": [ds.GetLayer(i).GetName() for i in range(ds.GetLayerCount())], "aliases": aliases}}
        from qgis.core import QgsApplication, QgsVectorLayer
        QgsApplication.setPrefixPath("/usr", True)
        app = QgsApplication([], False)
        app.initQgis()
        vl = QgsVectorLayer({str(path)!r} + "|layername=discharge", "discharge", "ogr")
        msg, ok = vl.loadDefaultStyle()
        from qgis.core import QgsSymbolLayer
        r = vl.renderer()
        ranges = r.ranges()
        symbol = ranges[0].symbol()  # each object kept by name: PyQGIS frees temporaries under our feet
        line = symbol.symbolLayer(0)
        width = line.dataDefinedProperties().property(QgsSymbolLayer.PropertyStrokeWidth).expressionString()
        out.update(valid=vl.isValid(), style_ok=ok, renderer=r.type(), attr=r.classAttribute(),
                   labels=[x.label() for x in ranges], width=width,
                   alias=vl.attributeAlias(vl.fields().indexOf("mean")))
        print("RESULT" + json.dumps(out), flush=True)
        os._exit(0)
        """)
    env = {"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "XDG_RUNTIME_DIR": str(tmp_path)}
    run = subprocess.run([QGIS_PYTHON, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    line = next((x for x in run.stdout.splitlines() if x.startswith("RESULT")), None)
    assert line, run.stderr[-2000:]
    out = json.loads(line[len("RESULT"):])
    assert not [m for m in out["messages"] if "partially supported" in m or "onformant" in m], out["messages"]
    assert out["count"] == net.n_reaches and {"discharge", "gauges"} <= set(out["layers"])
    if tuple(int(v) for v in out["gdal"].split(".")[:2]) >= (3, 7):  # GDAL reads gpkg_data_columns from 3.7 on
        assert out["aliases"]["mean"] == "Mean discharge [m3/s]"
    assert out["valid"] and out["style_ok"] and out["renderer"] == "graduatedSymbol" and out["attr"] == "mean"
    assert all(label.endswith("m³/s") for label in out["labels"]) and "log10" in out["width"]
    assert out["alias"] == "Mean discharge [m3/s]"


def test_style_aliases_are_the_writer_aliases():
    """One list of fields: the QML's aliases (shown by QGIS 3.22, whose GDAL 3.6 does not read gpkg_data_columns)
    are the writer's."""
    import re

    from thalweg.results.writers import SUMMARY_FIELDS, summary_style

    qml = summary_style()
    aliases = dict(re.findall(r'<alias index="\d+" field="([^"]+)" name="([^"]*)"/>', qml))
    assert aliases == {k: v[0] for k, v in SUMMARY_FIELDS.items()}
    assert 'styleCategories="Symbology|Fields"' in qml and 'attr="mean"' in qml


def test_long_hydrograph_csv(tmp_path, discharge):
    from thalweg.learning.gauges import Gauges

    gauges = Gauges(np.array(["A", "B"]), np.array([30, 30]), np.array([2, 2]), ["A", "B"])
    path = write_hydrographs_long_csv(tmp_path / "long.csv", discharge, [10, 30], gauges=gauges)
    frame = pd.read_csv(path, dtype={"gauge_id": str}, keep_default_na=False)
    assert list(frame.columns) == ["reach_id", "gauge_id", "time_utc", "q", "units"]
    assert len(frame) == 3 * discharge.n_steps  # A and B on reach 30, reach 10 without a gauge
    a = frame[frame.gauge_id == "A"]
    np.testing.assert_array_equal(a["q"].to_numpy(np.float32), discharge.series(30))
    assert (a["reach_id"] == 30).all() and a["time_utc"].iloc[0] == "2021-03-01T01:00:00Z"
    assert (frame[frame.reach_id == 10]["gauge_id"] == "").all() and (frame["units"] == "m3/s").all()
    shutil.rmtree(tmp_path)
