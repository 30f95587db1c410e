"""The workflow's guards (issue 8): every option checked before anything is written, outputs that never clobber
inputs, one-line errors with the path and the fix for bad output paths, a memory estimate before routing."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from thalweg.cli import main
from thalweg.config import RouteSettings
from thalweg.network import scheidegger_network
from thalweg.testing.layers import write_layer
from thalweg.workflow import estimate_memory

DT = 3600.0


@pytest.fixture(scope="module")
def net():
    return scheidegger_network(80, seed=5, with_geometry=True)


def _ds_ids(n):
    return np.where(n.downstream >= 0, n.ids[np.maximum(n.downstream, 0)], -1)


@pytest.fixture
def files(tmp_path, net):
    network = write_layer(tmp_path / "rivers.gpkg", "geoglows", net.ids, _ds_ids(net), lengths=net.length,
                          areas=net.area, geometry=net.geometry, crs=net.crs)
    rng = np.random.default_rng(2)
    volumes = rng.gamma(1.5, 500.0, size=(net.n_reaches, 30)).astype("float32")
    runoff = tmp_path / "runoff.nc"
    xr.Dataset({"m3_riv": (("time", "rivid"), volumes.T, {"units": "m3"})},
               coords={"rivid": net.ids.astype("int32"),
                       "time": np.datetime64("2020-01-01") + np.arange(30) * np.timedelta64(3600, "s")}
               ).to_netcdf(runoff)
    return network, runoff


def _route(network, runoff, out, *extra):
    return main(["route", str(network), str(runoff), "-o", str(out), "-q", *extra])


def _one_line(capsys) -> str:
    lines = [x for x in capsys.readouterr().err.strip().split("\n") if not x.startswith("warning: ")]
    assert len(lines) == 1, lines
    err = lines[0]
    assert "Traceback" not in err and "internal error" not in err, err
    return err


# finding 2: outputs overwrite inputs, exit 0
@pytest.mark.parametrize("name", ["rivers.nc", "runoff.nc"])
def test_an_output_that_is_an_input_is_refused_even_with_overwrite(tmp_path, files, capsys, name):
    network, runoff = files
    before = {p: p.read_bytes() for p in (network, runoff)}
    assert _route(network, runoff, tmp_path / name, "--overwrite") == 3
    err = _one_line(capsys)
    kind = "gpkg" if name == "rivers.nc" else "q"
    assert f"{name.replace('.nc', '.gpkg') if kind == 'gpkg' else name}: the {kind} output would replace the " \
           f"{'network' if kind == 'gpkg' else 'runoff'} input" in err and "Give -o OUT.nc another name" in err
    assert {p: p.read_bytes() for p in before} == before


def test_a_gauge_table_named_like_the_hydrograph_csv_is_not_replaced(tmp_path, files, net, capsys):
    network, runoff = files
    gauges = tmp_path / "Q_hydrographs.csv"
    gauges.write_text(f"gauge_id,reach_id\nG1,{int(net.ids[0])}\n")
    assert _route(network, runoff, tmp_path / "Q.nc", "--gauges", str(gauges), "--overwrite") == 3
    assert "the hydrographs output would replace the gauges input" in _one_line(capsys)
    assert gauges.read_text().startswith("gauge_id,reach_id")
    assert not (tmp_path / "Q.nc").exists()


# finding 7: a failing run leaves outputs behind
def test_an_unknown_hydrograph_reach_fails_before_anything_is_written(tmp_path, files, capsys):
    network, runoff = files
    out = tmp_path / "Q.nc"
    assert _route(network, runoff, out, "--hydrograph", "424242") == 3
    err = _one_line(capsys)
    assert "424242" in err and "--hydrograph" in err
    assert not list(tmp_path.glob("Q*")) and not list(tmp_path.glob(".Q*"))


def test_a_bad_gauge_table_fails_before_anything_is_written(tmp_path, files, capsys):
    network, runoff = files
    gauges = tmp_path / "gauges.csv"
    gauges.write_text("gauge_id,reach_id\nG1,999999\n")
    assert _route(network, runoff, tmp_path / "Q.nc", "--gauges", str(gauges)) == 3
    assert "999999" in _one_line(capsys)
    assert not list(tmp_path.glob("Q*"))


# finding 8: no memory guard
def test_a_run_over_the_memory_budget_is_refused_with_the_estimate_and_the_fix(tmp_path, files, net, capsys):
    network, runoff = files
    assert _route(network, runoff, tmp_path / "Q.nc", "--memory", "1e-5") == 3
    err = _one_line(capsys)
    need = estimate_memory(RouteSettings(network="a", runoff="b"), net.n_reaches, 30)
    assert f"routing {net.n_reaches:,} reaches x 30 steps needs about {need / 2**30:,.1f} GiB" in err
    assert "more than the budget --memory 1e-05 (0.0 GiB)" in err and "Route a shorter period" in err
    assert "--memory 1 to go ahead" in err
    assert "--no-gpkg" in err and not list(tmp_path.glob("Q*"))


def test_the_memory_estimate_grows_with_the_shapes_and_the_outputs():
    s = RouteSettings(network="a", runoff="b", convention="end", write_gpkg=False)
    from thalweg import workflow as wf

    base = estimate_memory(s, 1000, 100, reading=False)
    assert base == 4 * 1000 * 100 * (20 + wf._MEMORY_BASE + wf._MEMORY_Q)
    assert estimate_memory(s, 2000, 100, reading=False) == 2 * base
    # the fixed part stops growing: at most _MEMORY_FIXED
    assert estimate_memory(s, 10**6, 1000, reading=False) == wf._MEMORY_FIXED + 4 * 10**9 * (wf._MEMORY_BASE
                                                                                            + wf._MEMORY_Q)
    both = RouteSettings(network="a", runoff="b", convention="both", write_gpkg=False)
    mapped = RouteSettings(network="a", runoff="b", convention="both")
    assert base < estimate_memory(both, 1000, 100, reading=False)
    assert estimate_memory(both, 1000, 100, reading=False) <= estimate_memory(mapped, 1000, 100, reading=False)
    assert estimate_memory(s, 1000, 100) >= estimate_memory(s, 1000, 100, reading=False)  # reading adds, never less


def test_the_memory_estimate_covers_the_measured_peak(tmp_path, files):
    """A real run in a child process: its peak resident memory above the interpreter's start-up stays under
    the estimate (the estimate never surprises), on a run large enough for the arrays to dominate."""
    n, t = 20000, 1000
    big = scheidegger_network(n, seed=1)
    network = write_layer(tmp_path / "big.parquet", "geoglows", big.ids, _ds_ids(big), lengths=big.length,
                          areas=big.area)
    runoff = tmp_path / "big.nc"
    xr.Dataset({"m3_riv": (("time", "rivid"), np.full((t, big.n_reaches), 10.0, np.float32), {"units": "m3"})},
               coords={"rivid": big.ids, "time": np.datetime64("2020-01-01") + np.arange(t) * np.timedelta64(3600, "s")}
               ).to_netcdf(runoff)
    code = ("import resource, sys\nfrom thalweg.cli import main\nimport thalweg.routing, thalweg.results, "
            "thalweg.hydrography, thalweg.runoff, xarray, geopandas\n"
            # the peak of the run alone: reset the process's peak resident size (Linux: clear_refs 5) after the
            # imports, whose passing peak (torch, GDAL) would otherwise hide or inflate the run's
            "kb = lambda key: next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith(key))\n"
            "open('/proc/self/clear_refs', 'w').write('5')\n"
            "start = kb('VmRSS:')\n"
            "rc = main(sys.argv[1:])\n"
            "print(rc, start * 1024, kb('VmHWM:') * 1024)\n")
    proc = subprocess.run([sys.executable, "-c", code, "route", str(network), str(runoff), "-o",
                           str(tmp_path / "Q.nc"), "-q", "--convention", "both", "--engine", "exact"],
                          capture_output=True, text=True)
    rc, start, peak = proc.stdout.split()
    assert rc == "0", proc.stderr
    used = int(peak) - int(start)
    need = estimate_memory(RouteSettings(network="a", runoff="b", convention="both", write_gpkg=False),
                           big.n_reaches, t)
    assert used < need < 3 * used, (used / 2**20, need / 2**20)  # never surprised, not needlessly cautious


# finding 9: unhandled exceptions for bad output paths and options
def test_an_output_path_that_is_a_folder(tmp_path, files, capsys):
    network, runoff = files
    (tmp_path / "Q.nc").mkdir()
    assert _route(network, runoff, tmp_path / "Q.nc", "--overwrite") == 3
    err = _one_line(capsys)
    assert "Q.nc: the q output is a folder" in err and "remove the folder" in err


def test_an_output_below_a_file(tmp_path, files, capsys):
    network, runoff = files
    (tmp_path / "file.txt").write_text("x")
    assert _route(network, runoff, tmp_path / "file.txt" / "Q.nc") == 3
    err = _one_line(capsys)
    assert "is a file, not a folder" in err and "file.txt" in err and "Give -o a folder" in err


def test_an_output_name_too_long(tmp_path, files, capsys):
    network, runoff = files
    assert _route(network, runoff, tmp_path / ("q" * 250 + ".nc")) == 3
    err = _one_line(capsys)
    assert "bytes long; this file system takes at most" in err and "a shorter name" in err


@contextlib.contextmanager
def _tmpfs(path, options):
    path.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                                           capture_output=True).returncode:
        pytest.skip("needs root to mount a tmpfs")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_read_only_output_folder(tmp_path, files, capsys):
    network, runoff = files
    with _tmpfs(tmp_path / "ro", "size=1m,ro") as ro:
        assert _route(network, runoff, ro / "Q.nc") == 3
        err = _one_line(capsys)
    assert "is read-only for you" in err and "Give -o a folder you can write" in err


def test_a_write_failure_is_one_line_and_leaves_no_part_file(tmp_path, capsys):
    """A disk that fills up while the discharge is written (a 1 MB tmpfs; the outputs need more)."""
    big = scheidegger_network(2000, seed=3)
    network = write_layer(tmp_path / "big.parquet", "geoglows", big.ids, _ds_ids(big), lengths=big.length,
                          areas=big.area)
    runoff = tmp_path / "big.nc"
    xr.Dataset({"m3_riv": (("time", "rivid"), np.random.default_rng(0).random((400, big.n_reaches), np.float32),
                           {"units": "m3"})},
               coords={"rivid": big.ids, "time": np.datetime64("2020-01-01") + np.arange(400) * np.timedelta64(3600,
                                                                                                             "s")}
               ).to_netcdf(runoff)
    with _tmpfs(tmp_path / "small", "size=1m") as small:
        assert _route(network, runoff, small / "Q.nc") == 3
        err = _one_line(capsys)
        left = os.listdir(small)
    assert "OutputError" in err and "cannot write the discharge output" in err and "Q.nc" in err
    assert "Free space or fix permissions" in err and left == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every folder")
def test_a_network_in_an_unreadable_folder(tmp_path, files, capsys):
    network, runoff = files
    locked = tmp_path / "locked"
    locked.mkdir()
    moved = locked / network.name
    network.rename(moved)
    locked.chmod(0)
    try:
        assert _route(moved, runoff, tmp_path / "Q.nc") == 3
        assert "permission denied" in _one_line(capsys)
    finally:
        locked.chmod(0o755)


def test_an_unknown_device_is_a_usage_error(tmp_path, files, capsys):
    network, runoff = files
    with pytest.raises(SystemExit) as exit_:
        _route(network, runoff, tmp_path / "Q.nc", "--device", "tpu")
    assert exit_.value.code == 2
    assert "argument --device: 'tpu' is not cpu, cuda, cuda:N or auto" in capsys.readouterr().err


def test_demo_into_an_existing_file(tmp_path, capsys):
    target = tmp_path / "demo.txt"
    target.write_text("mine")
    assert main(["demo", "--out", str(target)]) == 3
    err = _one_line(capsys)
    assert "demo.txt: the output folder is a file, not a folder" in err and "--out" in err
    assert target.read_text() == "mine"


# finding 12 (CLI part): info says "problems none found" on a network with NaN areas
def test_info_reports_reaches_without_area(tmp_path, capsys):
    network = write_layer(tmp_path / "rivers.parquet", "geoglows", [1, 2, 3], [3, 3, -1],
                          lengths=[1000.0, 1000.0, 1000.0], areas=[np.nan, 2e6, np.nan])
    assert main(["info", str(network), "--check-area", "ignore"]) == 0
    out = capsys.readouterr().out
    assert "problems       1\n" in out
    assert "2 of 3 reaches have no drainage area (NaN or <= 0): 1, 3" in out


# finding 13: options silently ignored
def test_observed_without_gauges_is_a_usage_error(tmp_path, files, capsys):
    network, runoff = files
    obs = tmp_path / "qobs.csv"
    obs.write_text("time,G1\n2020-01-01T01:00:00,1.0\n")
    with pytest.raises(SystemExit) as exit_:
        _route(network, runoff, tmp_path / "Q.nc", "--observed", str(obs))
    assert exit_.value.code == 2 and "--observed needs --gauges" in capsys.readouterr().err
    with pytest.raises(Exception, match="observed discharge was given without a gauge table"):
        RouteSettings(network="a", runoff="b", observed="qobs.csv")


def test_catchments_that_do_not_exist_are_refused_even_for_runoff_per_reach(tmp_path, files, capsys):
    network, runoff = files
    assert _route(network, runoff, tmp_path / "Q.nc", "--catchments", str(tmp_path / "nope.gpkg")) == 3
    err = _one_line(capsys)
    assert "nope.gpkg: --catchments does not exist" in err
    assert not list(tmp_path.glob("Q*"))
