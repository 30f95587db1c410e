"""Interop and reliability of runoff reading (issues 7 and 8): river-route 2.x qlateral, xarray / numpy / torch /
Runoff in, hints in the user's terms, one aligner for files and the service's bodies, range and time checks,
non-regular files, messages that say what a file is."""
from __future__ import annotations

import base64
import datetime as dt
import os
import re
import warnings

import numpy as np
import pytest

from thalweg.errors import (MissingValueError, RunoffError, RunoffMismatchError, SchemaError, ThalwegWarning,
                            UnitError, option_names)
from thalweg.runoff import Runoff, read_runoff
from thalweg.runoff._time import encode_cf_times
from thalweg.testing.checks import finishes

H1 = 3600
CLI = {"read_runoff.units": "--runoff-units", "read_runoff.variable": "--variable", "read_runoff.nan": "--nan",
       "read_runoff.dt": "--dt"}


def volumes(t=4):
    """[T, 3] volumes per step for ids 30, 10, 20 (m3)."""
    return np.arange(1, 3 * t + 1, dtype=np.float64).reshape(t, 3) * 360.0


# ---- river-route 2.x -----------------------------------------------------------------------------------
def test_river_route_2_qlateral_is_detected(tmp_path, net3):
    import xarray as xr

    q = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])  # [time, river_id] m3/s, ids 20, 30, 10
    hours = np.array([1, 2])
    xr.Dataset({"qlateral": (("time", "river_id"), q)},
               coords={"river_id": [20, 30, 10], "time": ("time", hours, {"units": "hours since 2020-01-01"})}
               ).to_netcdf(tmp_path / "qlateral.nc")
    r = read_runoff(tmp_path / "qlateral.nc", net3)
    np.testing.assert_allclose(r.values, q[:, [2, 0, 1]].T, rtol=1e-7)  # m3/s as given
    assert r.attrs["format"] == "river_route_qlateral" and r.attrs["units"] == "m3 s-1"
    # river-route stamps a step at its end: 01:00 closes the step that started at midnight
    assert r.time[0] == np.datetime64("2020-01-01T00:00") and r.dt == 3600.0


def test_variable_and_units_hints_render_as_cli_flags(tmp_path, net3, reach_nc):
    path = reach_nc(tmp_path / "x.nc", volumes(), [30, 10, 20], np.arange(4) * H1, var="flow", units=None)
    with pytest.raises(SchemaError) as err:
        read_runoff(path, net3)
    assert "variable='flow'" in str(err.value)
    with option_names(CLI):
        assert "--variable flow" in str(err.value) and "variable=" not in str(err.value)
    with pytest.raises(UnitError) as err:
        read_runoff(path, net3, variable="flow")
    with option_names(CLI):
        assert "--runoff-units mm" in str(err.value) and "units=" not in str(err.value)
    r = read_runoff(path, net3, variable="flow", units="m3")
    np.testing.assert_allclose(r.values, volumes()[:, [1, 2, 0]].T / H1, rtol=1e-6)


# ---- in-memory inputs ----------------------------------------------------------------------------------
def test_xarray_dataset_dataarray_and_lazy_files(tmp_path, net3, reach_nc):
    import xarray as xr

    path = reach_nc(tmp_path / "m3_riv.nc", volumes(), [30, 10, 20], np.arange(4) * H1)
    from_file = read_runoff(path, net3)
    with xr.open_dataset(path, decode_times=False) as ds:
        from_ds = read_runoff(ds, net3)
        assert not ds["m3_riv"].variable._in_memory  # read block by block from the file, never loaded whole
        from_da = read_runoff(ds["m3_riv"].assign_coords(time=ds["time"]), net3)
    with xr.open_dataset(path) as decoded:  # times decoded by xarray
        from_decoded = read_runoff(decoded, net3)
    for r in (from_ds, from_da, from_decoded):
        np.testing.assert_array_equal(r.values, from_file.values)
        np.testing.assert_array_equal(r.time, from_file.time)
        assert r.dt == from_file.dt and r.source is None


def test_dask_backed_dataarray_is_read_in_blocks(tmp_path, net3, reach_nc, monkeypatch):
    dask = pytest.importorskip("dask")
    import xarray as xr

    from thalweg.runoff import readers

    path = reach_nc(tmp_path / "m3_riv.nc", volumes(6), [30, 10, 20], np.arange(6) * H1)
    monkeypatch.setattr(readers, "BLOCK_VALUES", 6)  # two steps of three reaches per block
    computes = []

    def counting_scheduler(dsk, keys, **kwargs):  # every dask compute passes here
        computes.append(keys)
        return dask.get(dsk, keys, **kwargs)

    with xr.open_dataset(path, decode_times=False, chunks={"time": 2}) as ds:
        assert isinstance(ds["m3_riv"].data, dask.array.Array)
        with dask.config.set(scheduler=counting_scheduler):
            r = read_runoff(ds, net3)
    np.testing.assert_allclose(r.values, volumes(6)[:, [1, 2, 0]].T / H1, rtol=1e-6)
    assert len(computes) == 3  # one compute per block of two steps, never the whole array at once


def test_numpy_and_torch_arrays_with_dt(net3):
    torch = pytest.importorskip("torch")
    q = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])  # network order: 10, 20, 30
    r = read_runoff(q, net3, dt=900, time="2021-05-01T06:00")
    np.testing.assert_array_equal(r.values, q.astype(np.float32))
    np.testing.assert_array_equal(r.time, np.array(["2021-05-01T06:00", "2021-05-01T06:15"], "datetime64[ms]"))
    t = read_runoff(torch.tensor(q, requires_grad=True), net3, dt=900, time="2021-05-01T06:00")
    np.testing.assert_array_equal(t.values, r.values)
    ordered = read_runoff(q[[2, 0, 1]], net3, dt=900, ids=[30, 10, 20])
    np.testing.assert_array_equal(ordered.values, r.values)
    volumes_per_step = read_runoff(q * 900, net3, dt=900, units="m3")
    np.testing.assert_allclose(volumes_per_step.values, r.values, rtol=1e-7)
    with pytest.raises(RunoffError, match="needs its step length"):
        read_runoff(q, net3)
    with pytest.raises(RunoffMismatchError, match="runoff has 2 rows but the network has 3 reaches"):
        read_runoff(q[:2], net3, dt=900)


def test_runoff_objects_pass_through_or_are_aligned(net3):
    base = Runoff(np.ones((3, 2), np.float32), net3.ids, np.array(["2020-01-01", "2020-01-02"], "datetime64[ms]"),
                  86400.0)
    assert read_runoff(base, net3) is base
    shuffled = Runoff(np.array([[3.0, 3.0], [1.0, 1.0], [2.0, 2.0]], np.float32), [30, 10, 20], base.time, 86400.0)
    np.testing.assert_array_equal(read_runoff(shuffled, net3).values, [[1, 1], [2, 2], [3, 3]])


# ---- one aligner: files, inline and packed bodies alike ---------------------------------------------------
def _inline(values, **kw):
    from thalweg.server.bodies import InlineRunoff

    return InlineRunoff(values=values, dt=3600.0, start=dt.datetime(2020, 1, 1), **kw)


def _packed(values):
    from thalweg.server.bodies import PackedArray

    arr = np.ascontiguousarray(values, dtype="<f8")
    return PackedArray(dtype="float64", shape=list(arr.shape), data=base64.b64encode(arr.tobytes()).decode())


def test_values_beyond_float32_are_refused_before_the_cast(tmp_path, net3):
    """Finding 8.3: 1e300 everywhere or 1e45 on one reach passed the NaN/inf check and became inf after the
    float32 cast (Q all inf, exit 0), from files, inline JSON and packed bodies alike."""
    from thalweg.server.tasks import runoff_from_inline

    import xarray as xr

    m3 = volumes()
    m3[2, 1] = 1e45 * H1  # reach 10 (column order 30, 10, 20), third step; finite in the file's float64
    xr.Dataset({"m3_riv": (("time", "rivid"), m3, {"units": "m3"})},
               coords={"rivid": [30, 10, 20], "time": ("time", np.arange(4) * H1,
                                                       {"units": "seconds since 2000-01-01"})}
               ).to_netcdf(tmp_path / "big64.nc")
    with pytest.raises(RunoffError, match=r"1 runoff values are too large to route \(up to 1e\+45 m3/s.*in 1 reaches "
                                          r"\(10\) at 1 times \(2000-01-01T02:00\)") as err:
        read_runoff(tmp_path / "big64.nc", net3)
    assert err.value.ids == [10]
    everywhere = np.full((3, 4), 1e300)
    for values in (everywhere.tolist(), _packed(everywhere)):
        with pytest.raises(RunoffError, match="12 runoff values are too large to route") as err:
            runoff_from_inline(_inline(values), net3)
        assert err.value.field == "runoff.values" and sorted(err.value.ids) == [10, 20, 30]


def test_negative_inline_runoff_is_warned_as_in_files(net3):
    """Finding 8.14: inline runoff went through a copy of the aligner without the negative-value warning."""
    from thalweg.server.tasks import runoff_from_inline

    values = np.ones((3, 4))
    values[1, 2] = -0.5
    with pytest.warns(ThalwegWarning, match=r"1 runoff values are negative \(down to -0.5 m3/s\) in 1 reaches \(20\)"):
        r = runoff_from_inline(_inline(values.tolist()), net3)
    assert r.attrs["negative_values"] == 1 and r.values[1, 2] == -0.5
    with pytest.warns(ThalwegWarning, match="runoff values are negative"):
        runoff_from_inline(_inline(_packed(values), ids=[10, 20, 30]), net3)


def test_inf_is_not_called_missing(tmp_path, net3):
    path = tmp_path / "inf.csv"
    path.write_text("time,10,20,30\n2020-01-01,1,inf,3\n2020-01-02,1,2,3\n")
    with pytest.raises(RunoffError, match=r"1 runoff values are infinite in 1 reaches \(20\) at 1 times "
                                          r"\(2020-01-01T00:00\)") as err:
        read_runoff(path, net3, units="m3 s-1", nan="zero")
    assert "NaN" not in str(err.value).split(". ")[0] and not isinstance(err.value, MissingValueError)


# ---- time ------------------------------------------------------------------------------------------------
def test_dates_after_2262_are_read_exactly(tmp_path, net3, reach_nc):
    """Finding 8.4: runoff dated in the year 3000 came out stamped 1840 .. 1719 (nanosecond overflow)."""
    path = reach_nc(tmp_path / "m3_riv.nc", volumes(), [30, 10, 20], np.arange(4) * 24,
                    time_units="hours since 3000-01-01 00:00:00")
    r = read_runoff(path, net3)
    # compared as text: numpy compares datetime64 of different units through nanoseconds, which overflow here
    assert _text(r.time) == ["3000-01-01T00:00:00", "3000-01-02T00:00:00", "3000-01-03T00:00:00",
                             "3000-01-04T00:00:00"]
    assert r.dt == 86400.0 and _text(r.end_time[-1:]) == ["3000-01-05T00:00:00"]
    values, units = encode_cf_times(r.end_time)  # what the writers store
    assert units == "seconds since 1970-01-01 00:00:00" and values[0] == 32503766400  # 3000-01-02, by hand
    table = tmp_path / "far.csv"
    table.write_text("time,10,20,30\n3000-06-01,1,2,3\n3000-06-02,1,2,3\n")
    assert _text(read_runoff(table, net3, units="m3 s-1").time) == ["3000-06-01T00:00:00", "3000-06-02T00:00:00"]
    noleap = reach_nc(tmp_path / "noleap.nc", volumes(2), [30, 10, 20], [0, 1], time_units="days since 2500-02-28",
                      calendar="noleap")
    with pytest.warns(ThalwegWarning, match="'noleap' calendar"):
        assert _text(read_runoff(noleap, net3).time) == ["2500-02-28T00:00:00", "2500-03-01T00:00:00"]


def _text(times) -> list[str]:
    return [str(t) for t in np.datetime_as_string(np.asarray(times), unit="s")]


@pytest.mark.parametrize("bad", [1e-12, 1e-300, 0.0, -5.0, float("inf"), 400 * 86400.0])
def test_dt_is_bounded(net3, bad):
    from thalweg.server.tasks import runoff_from_inline

    with pytest.raises(RunoffError, match="the step length .* is outside 0.001 s .. 31,622,400 s"):
        read_runoff(np.ones((3, 2)), net3, dt=bad)
    if bad > 0 and np.isfinite(bad) and bad < 366 * 86400:  # the service's body takes any positive dt up to a year
        body = _inline(np.ones((3, 2)).tolist()).model_copy(update={"dt": bad})
        with pytest.raises(RunoffError, match="the step length"):
            runoff_from_inline(body, net3)


# ---- ids ---------------------------------------------------------------------------------------------------
def test_uint64_runoff_ids_above_int64_are_refused(tmp_path, net3):
    import xarray as xr

    big = np.array([10, 2**63 + 1, 30], dtype=np.uint64)
    xr.Dataset({"m3_riv": (("time", "rivid"), volumes(2), {"units": "m3"})},
               coords={"rivid": big, "time": ("time", [0, 3600], {"units": "seconds since 2000-01-01"})}
               ).to_netcdf(tmp_path / "big.nc")
    with pytest.raises(SchemaError, match="1 reach ids are larger than the largest 64-bit signed integer") as err:
        read_runoff(tmp_path / "big.nc", net3)
    assert err.value.ids == [2**63 + 1] and err.value.field == "rivid"
    wide = tmp_path / "wide.csv"
    wide.write_text("time,10,20,30,18446744073709551615\n2020-01-01,1,2,3,4\n2020-01-02,1,2,3,4\n")
    with pytest.raises(SchemaError, match="not integers within 64 bits: '18446744073709551615'"):
        read_runoff(wide, net3, units="m3 s-1")


def test_id_and_time_names_are_the_same_for_runoff_and_discharge(tmp_path):
    """names.py: a reach dimension 'hyriv_id' and a time dimension 'date' read as runoff and as discharge."""
    import xarray as xr

    from thalweg.network import from_arrays
    from thalweg.results.reader import read_discharge

    net = from_arrays([10, 20], [20, -1], [1.0, 1.0])
    q = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    coords = {"hyriv_id": [10, 20], "date": ("date", [0, 1, 2], {"units": "hours since 2020-01-01"})}
    xr.Dataset({"Q": (("hyriv_id", "date"), q, {"units": "m3 s-1"})}, coords=coords).to_netcdf(tmp_path / "q.nc")
    runoff = read_runoff(tmp_path / "q.nc", net, variable="Q")
    discharge = read_discharge(tmp_path / "q.nc")
    np.testing.assert_array_equal(runoff.values, q)
    np.testing.assert_array_equal(discharge.values, q.astype(np.float32))
    assert discharge.ids.tolist() == [10, 20]


# ---- files that are not what they say ----------------------------------------------------------------------
@pytest.mark.parametrize("content,what", [
    (b"", "it is empty (0 bytes)"),
    (b"time,10,20\n2020-01-01,1,2\n", "it is a text file starting 'time,10,20'"),
    (b"SQLite format 3\x00" + bytes(100), "it is an SQLite database (a GeoPackage?)")])
def test_a_file_named_nc_that_is_not_netcdf(tmp_path, net3, content, what):
    path = tmp_path / "runoff.nc"
    path.write_bytes(content)
    with pytest.raises(RunoffError, match=r"runoff\.nc: the file is not NetCDF: " + re.escape(what)) as err:
        read_runoff(path, net3)
    assert "\n" not in str(err.value) and "IO backends" not in str(err.value)


def test_a_text_cell_in_a_runoff_table_names_its_column_and_row(tmp_path, net3):
    path = tmp_path / "text.csv"
    path.write_text("time,10,20,30\n2020-01-01,1,2,3\n2020-01-02,1,two,3\n2020-01-03,1,,3\n")
    with pytest.raises(SchemaError, match=r"text\.csv, field 20: column 20 holds text where numbers are expected: "
                                          r"'two' in row 2 \(1 such cells"):
        read_runoff(path, net3, units="m3 s-1")
    long = tmp_path / "long.csv"
    long.write_text("time,rivid,value\n2020-01-01,10,1\n2020-01-01,20,x\n2020-01-01,30,3\n")
    with pytest.raises(SchemaError, match="column value holds text where numbers are expected: 'x' in row 2"):
        read_runoff(long, net3, units="m3 s-1", dt=3600)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
@pytest.mark.parametrize("name", ["runoff.nc", "runoff.csv", "runoff.tif"])
def test_a_fifo_is_refused_not_read(tmp_path, net3, name):
    """Finding 8.10: a route job on a FIFO stayed 'running' forever."""
    fifo = tmp_path / name
    os.mkfifo(fifo)
    done, exc = finishes(lambda: read_runoff(fifo, net3))
    assert done, "read_runoff blocked on a FIFO"
    assert isinstance(exc, RunoffError) and "is a named pipe (FIFO), not a regular file" in str(exc)


def test_a_symlink_to_dev_zero_is_refused(tmp_path, net3):
    """Finding 8.15: a runoff .csv linked to /dev/zero grew memory without limit."""
    link = tmp_path / "runoff.csv"
    link.symlink_to("/dev/zero")
    done, exc = finishes(lambda: read_runoff(link, net3))
    assert done and isinstance(exc, RunoffError)
    assert "is a character device (it points to /dev/zero), not a regular file" in str(exc)


def test_gridded_catchment_layer_is_a_keyword(tmp_path, net3):
    import geopandas as gpd
    import shapely

    boxes = [shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1), shapely.box(2, 0, 3, 1)]
    path = tmp_path / "cats.gpkg"
    gpd.GeoDataFrame({"LINKNO": [10, 20, 30]}, geometry=boxes, crs="EPSG:32631").to_file(path, layer="a")
    gpd.GeoDataFrame({"LINKNO": [10, 20, 30]}, geometry=boxes, crs="EPSG:32631").to_file(path, layer="b")
    from thalweg.runoff import weights

    with pytest.raises(SchemaError, match="several polygon layers"):
        weights.load_catchments(path, None, net3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cats = weights.load_catchments(path, None, net3, layer="b")
    assert cats.layer == "b" and cats.id_field == "LINKNO"


def test_gridded_xarray_dataset_in_memory(tmp_path, net3, monkeypatch):
    """A (time, y, x) Dataset built in memory is aggregated like the same file, and caches nothing in the
    working folder (it has no folder of its own)."""
    import geopandas as gpd
    import shapely
    import xarray as xr

    monkeypatch.chdir(tmp_path)
    crs = "EPSG:32631"
    x0 = 500000.0
    cells = [shapely.box(x0, 0, x0 + 1000, 1000), shapely.box(x0 + 1000, 0, x0 + 2000, 1000),
             shapely.box(x0, 1000, x0 + 2000, 2000)]  # reach 30: the whole top row
    gpd.GeoDataFrame({"LINKNO": [10, 20, 30]}, geometry=cells, crs=crs).to_file(tmp_path / "c.gpkg")
    depth = np.array([[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]])  # [time, y (top first), x] mm
    ds = xr.Dataset({"ro": (("time", "y", "x"), depth, {"units": "mm"})},
                    coords={"x": [x0 + 500, x0 + 1500], "y": [1500.0, 500.0],
                            "time": ("time", [0, 1], {"units": "days since 2001-01-01"})})
    r = read_runoff(ds, net3, catchments=tmp_path / "c.gpkg", grid_crs=crs)
    from thalweg.hydrography.catchments import polygon_areas

    cell = polygon_areas(np.array(cells[:1], dtype=object), crs)[0]  # about 1.0008e6 m2 on the ellipsoid
    expected = np.array([depth[:, 1, 0], depth[:, 1, 1], depth[:, 0, 0] + depth[:, 0, 1]]) * 1e-3 * cell / 86400
    np.testing.assert_allclose(r.values, expected, rtol=1e-5)
    ds.to_netcdf(tmp_path / "grid.nc")
    np.testing.assert_allclose(read_runoff(tmp_path / "grid.nc", net3, catchments=tmp_path / "c.gpkg",
                                           grid_crs=crs, weights_cache=False).values, r.values, rtol=1e-7)
    assert not list(tmp_path.glob("thalweg_weights_*.csv"))


def test_catchments_are_checked_and_unused_ones_warned(tmp_path, net3, reach_nc):
    """Finding 8.13: catchments naming a missing file were ignored silently when the runoff is per reach."""
    path = reach_nc(tmp_path / "m3_riv.nc", volumes(), [30, 10, 20], np.arange(4) * H1)
    with pytest.raises(RunoffError, match=r"nope\.gpkg, field catchments: the catchment file does not exist"):
        read_runoff(path, net3, catchments=tmp_path / "nope.gpkg")
    (tmp_path / "c.gpkg").write_bytes(b"")
    with pytest.warns(ThalwegWarning, match=r"m3_riv\.nc: the runoff is given per reach, so the catchments are not "
                                            r"used \(catchments= is for gridded runoff\)"):
        read_runoff(path, net3, catchments=tmp_path / "c.gpkg")


def test_arrays_are_judged_block_by_block(net3, monkeypatch):
    """Arrays (and the service's bodies) go through the aligner a block of steps at a time, as files do: float64
    temporaries stay one block, and the times named in messages are the right ones."""
    from thalweg.runoff import _align

    monkeypatch.setattr(_align, "BLOCK_VALUES", 6)  # two steps of three reaches
    q = np.arange(30, dtype=np.float32).reshape(3, 10)
    np.testing.assert_array_equal(read_runoff(q, net3, dt=3600).values, q)
    q[1, 7] = np.nan
    with pytest.raises(MissingValueError, match=r"in 1 reaches \(20\) at 1 times \(1970-01-01T07:00\)"):
        read_runoff(q, net3, dt=3600)


@pytest.mark.parametrize("nan", ["error", "zero"])
def test_findings_of_pieces_judged_apart_are_worded_as_one_read(nan):
    """Aligners of pieces of the network (Dask workers) hand on their findings; one aligner of the whole network
    that absorbs them says exactly what an aligner that judged every value itself says (class, text, ids)."""
    from thalweg.network import scheidegger_network
    from thalweg.runoff._align import Aligner

    net = scheidegger_network(120, seed=4)
    n, steps = net.n_reaches, 9
    time = np.datetime64("2001-01-01T00:00", "ms") + np.arange(steps) * np.timedelta64(3600, "s")
    q = np.random.default_rng(2).gamma(2.0, 1.0, size=(n, steps))
    q[[3, 70], [2, 5]] = np.nan  # NaN in both pieces
    q[[10, 11, 80], [1, 1, 8]] = [-0.25, -2.5, -0.5]  # negative in both, the lowest in the first
    file_ids = net.ids[::-1]  # a file in another order than the network's

    def said(aligner):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ThalwegWarning)
            try:
                aligner.finish(time)
                raised = None
            except RunoffError as exc:
                raised = (type(exc), str(exc), exc.ids)
        return raised, [str(w.message) for w in caught]

    one = Aligner(file_ids, net, steps, field="qlateral", nan=nan)
    one.put(0, q[::-1])
    whole = Aligner(file_ids, net, steps, field="qlateral", nan=nan)
    cut = np.random.default_rng(3).permutation(n)
    for part in (cut[: n // 2], cut[n // 2:]):  # each piece judged alone, in its own reach order, then absorbed
        piece = net.take(np.sort(part))
        alone = Aligner(piece.ids, piece, steps, field="qlateral", nan=nan)
        alone.limit = one.limit
        alone.put(0, q[net.index_of(piece.ids)])
        whole.absorb(net.index_of(piece.ids), alone.findings)
        assert alone.fails() == (nan == "error")  # each piece holds a NaN
    assert whole.fails() == one.fails() == (nan == "error")
    assert whole.findings["neg"].count == 3 and whole.findings["neg"].extreme == -2.5
    got, want = said(whole), said(one)
    assert got == want
    if nan == "error":
        assert want[0][0] is MissingValueError and sorted(want[0][2]) == sorted(net.ids[[3, 70]].tolist())
    else:
        assert any("2 missing (NaN) runoff values in 2 reaches" in w for w in want[1])
        assert any("3 runoff values are negative (down to -2.5 m3/s) in 3 reaches" in w for w in want[1])
