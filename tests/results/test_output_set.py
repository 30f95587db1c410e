"""A run's outputs are published as a set, and stale parts are swept (issue 8, findings 6 and 7)."""
from __future__ import annotations

import numpy as np
import pytest

from thalweg import _files
from thalweg._files import OutputSet
from thalweg.config import RouteSettings
from thalweg.errors import InputError, NetworkError, OutputError
from thalweg.network import scheidegger_network
from thalweg.runoff.model import Runoff
from thalweg.workflow import run_route


@pytest.fixture
def case(tmp_path):
    net = scheidegger_network(25, seed=2, with_geometry=True)
    values = np.random.default_rng(1).uniform(0, 2, (net.n_reaches, 12)).astype(np.float32)
    runoff = Runoff(values, net.ids, np.datetime64("2020-01-01", "ns") + np.arange(12) * np.timedelta64(1, "h"),
                    3600.0)
    out = tmp_path / "out"

    def run(**kw):
        settings = RouteSettings(network="net.gpkg", runoff="runoff.nc", out_dir=str(out), name="Q",
                                 params={"k": 3600.0, "x": 0.2}, convention="both", **kw)
        return run_route(settings, network=net, runoff=runoff)

    return net, runoff, out, run


def test_stale_parts_of_the_same_outputs_are_swept(case):
    net, runoff, out, run = case
    out.mkdir()
    stale = [".Q.k2j3h4.part.nc", ".Q_Qout.a1b2c3.part.nc", ".Q.zz9.part.gpkg", ".Q.zz9.part.gpkg-journal",
             "..Q.aa.part.bb11.part.nc", ".Q_hydrographs.q1.part.csv", ".Q.settings.w1.part.json"]
    keep = [".other.k2j3h4.part.nc", "notes.txt", ".Qx.abc.part.nc"]
    for name in stale + keep:
        (out / name).write_bytes(b"left by a killed run")
    result = run(hydrograph_reaches=[int(net.ids[0])])
    names = sorted(p.name for p in out.iterdir())
    assert not set(stale) & set(names)
    assert set(keep) <= set(names)
    assert sorted(p.name for p in result.outputs.values()) == sorted(set(names) - set(keep))


def test_a_failing_write_leaves_the_previous_set_untouched(case, monkeypatch):
    net, runoff, out, run = case
    first = run()
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert {"Q.nc", "Q_Qout.nc", "Q.gpkg", "Q.settings.json"} <= set(before)

    from thalweg.results import writers

    def fails(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(writers, "write_summary_gpkg", fails)
    runoff2 = Runoff(runoff.values * 3, runoff.ids, runoff.time, runoff.dt)
    with pytest.raises(OutputError, match="cannot write the discharge output: disk full"):
        run_route(RouteSettings(network="net.gpkg", runoff="r2.nc", out_dir=str(out), name="Q",
                                params={"k": 3600.0, "x": 0.2}, convention="both"), network=net, runoff=runoff2)
    # the new Q.nc (written before the GeoPackage failed) was not published beside the old Q.gpkg
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    del first


def test_options_are_checked_before_anything_is_written(case):
    net, runoff, out, run = case
    with pytest.raises(NetworkError, match="424242"):
        run(hydrograph_reaches=[424242])
    assert not out.exists() or not [p for p in out.iterdir() if not p.name.endswith(".lock")]
    with pytest.raises(InputError, match="not step means"):
        run_route(RouteSettings(network="n", runoff="r", out_dir=str(out), name="Q", format="zarr",
                                convention="mean"), network=net, runoff=runoff)


def test_a_publication_cut_short_is_completed_by_the_next_run(tmp_path, monkeypatch):
    a, b = tmp_path / "Q.nc", tmp_path / "Q.gpkg"
    a.write_text("old a")
    b.write_text("old b")
    real = _files._replace
    calls = []

    def dies_on_second(tmp, final):
        if not final.name.endswith(".publish.json"):
            calls.append(final)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed between the two renames
        real(tmp, final)

    monkeypatch.setattr(_files, "_replace", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        with OutputSet(tmp_path, "Q", [a, b]) as out:
            out.path(a).write_text("new a")
            out.path(b).write_text("new b")
    assert a.read_text() == "new a" and b.read_text() == "old b"  # half published: the journal knows
    monkeypatch.setattr(_files, "_replace", real)
    with OutputSet(tmp_path, "Q", [a, b]):
        pass
    assert a.read_text() == "new a" and b.read_text() == "new b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Q.gpkg", "Q.nc"]


def test_two_runs_on_one_set_are_refused(tmp_path):
    with OutputSet(tmp_path, "Q", [tmp_path / "Q.nc"]):
        with pytest.raises(InputError, match="another Thalweg run is writing the outputs 'Q'"):
            with OutputSet(tmp_path, "Q", [tmp_path / "Q.nc"]):
                pass
    with OutputSet(tmp_path, "Q", [tmp_path / "Q.nc"]):
        pass  # free again once the first has finished


def test_formats_and_names_through_the_workflow(case):
    import xarray as xr

    net, runoff, out, run = case
    result = run(format="zarr", id_name=None, gauges=None)
    assert result.outputs["q"].name == "Q.zarr" and result.outputs["qout"].name == "Q_Qout.nc"
    with xr.open_zarr(result.outputs["q"]) as ds:
        assert ds["Q"].dims == ("river_id", "time") and "lat" in ds.coords
    with xr.open_dataset(result.outputs["qout"]) as ds:  # the workflow passes lat/lon/crs now
        assert ds["Qout"].dims == ("time", "rivid") and {"lat", "lon"} <= set(ds.coords) and "crs" in ds
        assert ds.attrs["featureType"] == "timeSeries"
    result = run(id_name="river_id")
    with xr.open_dataset(result.outputs["q"]) as ds:
        assert ds["Q"].dims == ("river_id", "time")
