"""``thalweg route`` streamed, on Dask or over GPUs from the command line: the user trial's findings (replacing a
zarr store, --resume and --overwrite, combinations of flags that were ignored, warnings that were lost or printed
twice, refusals that name the CLI's flags)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from thalweg.cli import EXIT_INPUT, main

SAMPLE = Path(__file__).resolve().parents[2] / "resources" / "sample"
N, R = SAMPLE / "cance_rivers.gpkg", SAMPLE / "cance_runoff.nc"

pytestmark = pytest.mark.skipif(not N.exists(), reason="the Cance sample is not there")


def _route(out, *extra, network=N, runoff=R):
    return main(["route", str(network), str(runoff), "-o", str(out), "-q", *extra])


def _errors(capsys) -> list[str]:
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err, err
    return [x for x in err.strip().split("\n") if x]


def _q(path):
    with (xr.open_zarr(path, decode_times=False) if str(path).endswith(".zarr") else xr.open_dataset(path)) as ds:
        return np.asarray(ds["Q"].values)


@pytest.mark.parametrize("stream", ["never", "always"])
def test_overwrite_replaces_a_zarr_store(tmp_path, capsys, stream):
    out = tmp_path / "z1" / "Q.zarr"
    assert _route(out, "--stream", stream) == 0
    first = _q(out)
    assert (out / "zarr.json").exists() or (out / ".zgroup").exists()
    capsys.readouterr()
    assert _route(out, "--stream", stream) == EXIT_INPUT  # exists: not replaced without --overwrite
    err = _errors(capsys)[-1]
    assert "exists" in err and "--overwrite" in err and "OUT.zarr" in err, err
    (out / "stale").write_text("from the first run")
    assert _route(out, "--stream", stream, "--overwrite", "--k", "7200") == 0, capsys.readouterr().err
    assert not (out / "stale").exists()  # the store was replaced as a whole
    second = _q(out)
    assert second.shape == first.shape and not np.allclose(second, first)
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".Q.")]  # no side names left


def test_a_folder_that_is_not_a_zarr_store_is_still_refused(tmp_path, capsys):
    out = tmp_path / "Q.zarr"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert _route(out, "--overwrite") == EXIT_INPUT
    err = _errors(capsys)[-1]
    assert "not a zarr store" in err and "OUT.zarr" in err, err
    assert (out / "notes.txt").exists()


def test_a_chunked_streamed_run_says_the_schemes_warning_once(tmp_path, capsys):
    """The reader thread no longer changes the process's warning filters while the main thread routes."""
    for k in range(3):  # the race lost it on some runs: a few runs, each must say it once
        assert _route(tmp_path / f"q{k}.nc", "--stream", "always", "--chunk-steps", "20", "--no-gpkg") == 0
        lines = _errors(capsys)
        lowered = [x for x in lines if x.startswith("warning: ") and "x lowered" in x]
        assert len(lowered) == 1, lines
        assert "46 of 123 reaches" in lowered[0]


def test_resume_continues_says_where_and_never_replaces_finished_outputs_silently(tmp_path, capsys, monkeypatch):
    from thalweg.scale import stream as stream_mod

    out = tmp_path / "a" / "Q.nc"
    whole = tmp_path / "w" / "Q.nc"
    assert _route(whole, "--stream", "never", "--no-gpkg") == 0
    # an interrupted run: the writer fails after the second chunk's checkpoint
    real = stream_mod._Checkpoint.commit
    calls = []

    def failing(self, done, state, last):
        real(self, done, state, last)
        calls.append(done)
        if len(calls) == 2:
            raise OSError("disk full (the test)")

    monkeypatch.setattr(stream_mod._Checkpoint, "commit", failing)
    assert _route(out, "--chunk-steps", "20", "--no-gpkg") != 0
    monkeypatch.setattr(stream_mod._Checkpoint, "commit", real)
    capsys.readouterr()
    # another chunking: refused, naming what differs and where the checkpoint is
    assert _route(out, "--chunk-steps", "40", "--no-gpkg", "--resume") == EXIT_INPUT
    err = _errors(capsys)[-1]
    assert "chunk_steps 20 != 40" in err and str((out.parent / ".Q.stream").resolve()) in err, err
    assert "n_steps" not in err  # only what differs
    # the same run: continues after step 40 and says so; equals the uninterrupted whole run
    assert _route(out, "--chunk-steps", "20", "--no-gpkg", "--resume") == 0
    lines = _errors(capsys)
    assert any("resuming at step 40 of" in x and x.startswith("warning: ") for x in lines), lines
    np.testing.assert_allclose(_q(out), _q(whole), rtol=2e-6, atol=1e-5 * _q(whole).max())
    # finished: --resume finds no checkpoint; it says so and does not replace the outputs without --overwrite
    before = out.stat().st_mtime_ns
    assert _route(out, "--chunk-steps", "20", "--no-gpkg", "--resume") == EXIT_INPUT
    lines = _errors(capsys)
    assert any("--resume found no checkpoint" in x for x in lines), lines
    assert "--overwrite" in lines[-1] and out.stat().st_mtime_ns == before
    assert _route(out, "--chunk-steps", "20", "--no-gpkg", "--resume", "--overwrite") == 0
    assert out.stat().st_mtime_ns != before


def test_a_network_that_splits_is_refused_before_dask_starts(tmp_path, monkeypatch):
    """Splits found when the network is read (fractions in the data): refused in the CLI's terms before a
    cluster or a checkpoint is started."""
    from thalweg.cli import build_parser, option_table
    from thalweg.config import RouteSettings
    from thalweg.errors import InputError, option_names
    from thalweg.network import Links, from_arrays
    from thalweg.scale import distributed
    from thalweg.scale.run import run_streaming

    net = from_arrays([1, 2, 3, 4, 5], [2, 3, 5, 5, -1], [1e3] * 5, [1e6, 2e6, 3e6, 1e6, 5e6],
                      links=Links(np.array([2, 2]), np.array([3, 4]), np.array([0.7, 0.3])))
    assert net.splits is not None

    def no_cluster(*a, **k):
        raise AssertionError("a Dask cluster was started")

    monkeypatch.setattr(distributed, "dask_client", no_cluster)
    settings = RouteSettings(network="n.gpkg", runoff=str(R), out_dir=str(tmp_path), name="q", dask=True)
    with option_names(option_table(build_parser())):
        with pytest.raises(InputError) as err:
            run_streaming(settings, network=net, overwrite=False)
        text = str(err.value)
    assert "1 reach of the network splits" in text and "--stream never" in text and "--bifurcations main" in text
    assert "dask array" not in text and "bifurcations='main'" not in text
    assert not list(tmp_path.iterdir())  # no checkpoint, nothing written


def test_dask_is_quiet_and_says_each_warning_once_in_the_cli_format(tmp_path, capfd):
    """--dask -q: no scheduler/nanny log lines, and the workers' scheme warnings are not printed raw (file:line:
    ThalwegWarning) besides the client's one line in the CLI's format."""
    pytest.importorskip("distributed")
    assert _route(tmp_path / "Q.nc", "--dask", "--dask-workers", "1", "--no-gpkg") == 0
    err = capfd.readouterr().err
    lines = [x for x in err.split("\n") if x.strip()]
    assert not [x for x in lines if "distributed." in x or x.startswith(("INFO", "WARNING"))], lines
    assert "ThalwegWarning" not in err, err
    assert len([x for x in lines if "x lowered" in x]) == 1 and lines[0].startswith("warning: "), lines


@pytest.mark.parametrize(("flags", "said"), [(["--chunk-steps", "-5"], "--chunk-steps is -5; it must be at least 0"),
                                             (["--gpus", "-1"], "--gpus is -1; it must be at least 0"),
                                             (["--dask-workers", "0"], "--dask-workers is 0; it must be at least 1")])
def test_a_bad_flag_value_names_the_flag(tmp_path, capsys, flags, said):
    assert _route(tmp_path / "Q.nc", *flags) == EXIT_INPUT
    err = _errors(capsys)[-1]
    assert said in err and "field " not in err and "setting '" not in err, err
    assert not list(tmp_path.iterdir())


def test_a_bad_value_from_a_settings_file_names_the_file_and_its_key(tmp_path, capsys):
    import json

    path = tmp_path / "s.json"
    path.write_text(json.dumps({"network": str(N), "runoff": str(R), "out_dir": str(tmp_path), "name": "Q",
                                "chunk_steps": -5}))
    assert main(["route", "--settings", str(path), "-q"]) == EXIT_INPUT
    err = _errors(capsys)[-1]
    assert "s.json" in err and "setting 'chunk_steps' is -5" in err, err


@pytest.mark.parametrize(("flags", "said"), [
    (["--gpus", "2", "--stream", "always"], ["--gpus 2", "--stream always", "Leave out --gpus"]),
    (["--gpus", "2", "--resume"], ["--gpus 2", "--resume"]),
    (["--gpus", "2", "--dask"], ["--gpus 2", "--dask", "cannot be given together"]),
    (["--gpus", "2", "--memory", "0.001"], ["--stream auto streams it", "--gpus 2", "--stream never"]),
    (["--chunk-steps", "20", "--stream", "never"], ["--chunk-steps 20", "--stream never"]),
    (["--no-worker-read"], ["--no-worker-read says how the workers of a Dask run", "not on Dask", "Leave out "
                            "--no-worker-read, or route on Dask (--dask or --scheduler ADDRESS)"])])
def test_options_a_run_would_ignore_are_refused_before_anything_is_written(tmp_path, capsys, flags, said):
    assert _route(tmp_path / "Q.nc", *flags) == EXIT_INPUT
    err = _errors(capsys)[-1]
    assert all(s in err for s in said), err
    assert not list(tmp_path.iterdir())


def _ids_q(path):
    """(reach ids, the discharge variable's dims, its values) of a river-route, RAPID or zarr discharge file."""
    with (xr.open_zarr(path, decode_times=False) if str(path).endswith(".zarr") else xr.open_dataset(path)) as ds:
        var = ds["Qout" if "Qout" in ds else "Q"]
        name = next(d for d in var.dims if d != "time")
        return np.asarray(ds[name].values).astype(np.int64), list(var.dims), np.asarray(var.values)


@pytest.mark.parametrize(("stream", "name"), [("never", "Q.nc"), ("always", "Q.nc"), ("always", "Q.zarr"),
                                              ("never", "Qout.nc")])
def test_discharge_at_outlets_writes_the_outlets_and_hydrograph_reaches_only(tmp_path, capsys, stream, name):
    """--discharge-at outlets: the file holds each basin's last reach and the --hydrograph reaches, in network
    order, with the values the whole-network file has at those reaches (the oracle: a run writing every reach);
    the hydrograph CSV is the same as the whole run's."""
    import thalweg

    net = thalweg.read_network(N)
    wanted = np.sort(np.r_[net.ids[net.outlets], [5, 1]])  # the sample's ids are in network order
    full, part = tmp_path / "all" / name, tmp_path / "outlets" / name
    chunked = ["--chunk-steps", "20"] if stream == "always" else []
    assert _route(full, "--stream", stream, *chunked, "--hydrograph", "5", "--hydrograph", "1", "--no-gpkg") == 0
    assert _route(part, "--stream", stream, *chunked, "--hydrograph", "5", "--hydrograph", "1", "--no-gpkg",
                  "--discharge-at", "outlets") == 0, capsys.readouterr().err
    all_ids, dims, all_q = _ids_q(full)
    ids, part_dims, q = _ids_q(part)
    assert part_dims == dims and all_ids.size == net.n_reaches
    np.testing.assert_array_equal(ids, wanted)
    rows = np.array([int(np.flatnonzero(all_ids == i)[0]) for i in wanted])
    axis = dims.index(next(d for d in dims if d != "time"))
    np.testing.assert_array_equal(q, np.take(all_q, rows, axis=axis))
    stem = Path(name).stem
    assert (part.parent / f"{stem}_hydrographs.csv").read_text() == \
        (full.parent / f"{stem}_hydrographs.csv").read_text()


def test_discharge_at_gauges_without_gauges_names_the_flags(tmp_path, capsys):
    assert _route(tmp_path / "Q.nc", "--discharge-at", "gauges") == EXIT_INPUT
    err = _errors(capsys)[-1]
    assert "--discharge-at gauges" in err and "--gauges" in err and "--hydrograph" in err, err
    assert not list(tmp_path.iterdir())
    with pytest.raises(SystemExit) as exited:  # argparse's choices: usage and exit status 2
        _route(tmp_path / "Q.nc", "--discharge-at", "everything")
    assert exited.value.code == 2 and "--discharge-at: invalid choice: 'everything'" in capsys.readouterr().err
