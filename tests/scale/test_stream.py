"""Streaming in time: chunked runs equal one pass, every output format, and an interrupted run resumes bit for bit."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
import xarray as xr
from thalweg.config import RouteSettings
from thalweg.errors import InputError, ThalwegWarning
from thalweg.network import scheidegger_network
from thalweg.params import resolve_params
from thalweg.results.outputs import output_paths
from thalweg.results.reader import read_discharge
from thalweg.routing import route
from thalweg.runoff import read_runoff
from thalweg.scale import stream as stream_mod
from thalweg.scale.run import wants_stream
from thalweg.scale.stream import PartitionRouter, chunk_steps_for, stream_route

STEPS = 240


@pytest.fixture(scope="module")
def net():
    return scheidegger_network(400, seed=3)


@pytest.fixture(scope="module")
def runoff_file(net, tmp_path_factory):
    """A river-route 2.x qlateral(time, river_id) NetCDF, m3/s, hourly."""
    rng = np.random.default_rng(1)
    values = rng.gamma(1.5, 2.0, size=(STEPS, net.n_reaches)).astype(np.float32)
    order = rng.permutation(net.n_reaches)  # the file's reach order is not the network's
    time = np.datetime64("2020-01-01T01:00", "ns") + np.arange(STEPS) * np.timedelta64(3600, "s")
    ds = xr.Dataset({"qlateral": (("time", "river_id"), values[:, order], {"units": "m3 s-1"})},
                    coords={"time": time, "river_id": net.ids[order]})
    path = tmp_path_factory.mktemp("runoff") / "qlat.nc"
    ds.to_netcdf(path)
    return path


def _params(net):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        return resolve_params(net, "muskingum_nonneg")[0]


def _whole(net, path, params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        runoff = read_runoff(path, net)
        return route(net, runoff, params), runoff


def _stream(net, path, params, folder, fmt="river-route", convention="end", **kw):
    outs = output_paths(folder, "q", fmt, convention)
    ids = {k: {"river-route": "riverId", "rapid": "rivid", "zarr": "river_id"}[f] for k, (_, f, _) in outs.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        return stream_route(net, path, params, outputs=outs, checkpoint=folder / ".q.stream", id_names=ids,
                            key={"case": "test"}, **kw)


@pytest.mark.parametrize("fmt, convention", [("river-route", "both"), ("zarr", "end"), ("rapid", "mean")])
def test_streamed_equals_one_pass(net, runoff_file, tmp_path, fmt, convention):
    params = _params(net)
    whole, runoff = _whole(net, runoff_file, params)
    res = _stream(net, runoff_file, params, tmp_path, fmt, convention, chunk_steps=37)  # uneven last chunk
    assert res.n_steps == STEPS and res.chunk_steps == 37 and res.simulated_per_second > 0
    # each chunk once, in order, when written: within the call, in time order
    assert [(a, b) for a, b, _ in res.finished] == [(a, min(a + 37, STEPS)) for a in range(0, STEPS, 37)]
    done = [t for _, _, t in res.finished]
    assert done == sorted(done) and 0 < done[0] and done[-1] <= res.timings["wall"]
    for kind, path in res.files.items():
        got = read_discharge(path)
        assert np.array_equal(got.ids, whole.ids) and np.array_equal(got.time, whole.time), kind
        np.testing.assert_allclose(got.values, whole.values, rtol=2e-6, atol=1e-5 * whole.values.max())
    # the chunks' files hold what the one-shot writers write: same variables, attributes and time encoding
    if fmt != "zarr":
        from thalweg.results.outputs import write_route_outputs

        ref = write_route_outputs(tmp_path / "ref", "q", whole, convention=convention, fmt=fmt, gpkg=False)
        for kind, path in res.files.items():
            with xr.open_dataset(path, decode_times=False) as a, xr.open_dataset(ref[kind], decode_times=False) as b:
                assert set(a.variables) == set(b.variables)
                np.testing.assert_array_equal(a["time"].values, b["time"].values)
                np.testing.assert_array_equal(a["time_bnds"].values, b["time_bnds"].values)
                assert a["time"].attrs == b["time"].attrs
                assert {k for k in a.attrs if k != "history"} == {k for k in b.attrs if k != "history"}


def test_stream_without_outputs_routes_every_chunk(net, runoff_file, tmp_path):
    """Nothing to write (the bench's routing alone): every chunk routed, none written, no file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        res = stream_route(net, runoff_file, _params(net), outputs={}, checkpoint=tmp_path / ".q.stream",
                           chunk_steps=100)
    assert res.files == {} and res.timings["write"] == 0.0
    assert [(a, b) for a, b, _ in res.finished] == [(0, 100), (100, 200), (200, STEPS)]


def test_partition_router_equals_local(net, runoff_file, tmp_path):
    params = _params(net)
    local = _stream(net, runoff_file, params, tmp_path / "a", chunk_steps=50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        router = PartitionRouter(net, params, "muskingum_nonneg", dt=3600.0, n_bins=3)
    parts = _stream(net, runoff_file, params, tmp_path / "b", chunk_steps=50, router=router)
    a, b = read_discharge(local.files["q"]).values, read_discharge(parts.files["q"]).values
    np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6 * a.max())


class _Stop(Exception):
    pass


@pytest.mark.parametrize("fmt", ["river-route", "zarr", "rapid"])
@pytest.mark.parametrize("where", ["between chunks", "after writing, before the journal"])
def test_interrupted_run_resumes_bit_for_bit(net, runoff_file, tmp_path, monkeypatch, fmt, where):
    params = _params(net)
    convention = "mean" if fmt == "rapid" else "end"
    full = _stream(net, runoff_file, params, tmp_path / "full", fmt, convention, chunk_steps=30)
    expect = {k: read_discharge(p) for k, p in full.files.items()}
    folder = tmp_path / "cut"
    if where == "between chunks":
        calls = []

        def progress(fraction, message):
            calls.append(fraction)
            if len(calls) == 3:
                raise _Stop

        with pytest.raises(_Stop):
            _stream(net, runoff_file, params, folder, fmt, convention, chunk_steps=30, progress=progress)
    else:
        real = stream_mod._Checkpoint.commit
        count = {"n": 0}

        def failing(self, done, state, last):
            count["n"] += 1
            if count["n"] == 4:  # the 4th chunk's discharge is in the file; its state and journal are not
                raise _Stop
            real(self, done, state, last)

        monkeypatch.setattr(stream_mod._Checkpoint, "commit", failing)
        with pytest.raises(_Stop):
            _stream(net, runoff_file, params, folder, fmt, convention, chunk_steps=30)
        monkeypatch.setattr(stream_mod._Checkpoint, "commit", real)
    done = json.loads((folder / ".q.stream" / "journal.json").read_text())["done"]
    assert 0 < done < STEPS
    res = _stream(net, runoff_file, params, folder, fmt, convention, chunk_steps=30, resume=True)
    assert res.resumed_at == done
    for kind, path in res.files.items():
        got = read_discharge(path)
        assert np.array_equal(got.values, expect[kind].values), kind  # bit for bit
        assert np.array_equal(got.time, expect[kind].time)


def test_checkpoints_are_taken_at_the_interval_and_a_resume_redoes_the_chunks_after_the_last(
        net, runoff_file, tmp_path, monkeypatch):
    """checkpoint_every: a chunk is checkpointed once that many wall seconds have passed since the last (and the
    last chunk always); a run interrupted between two checkpoints resumes from the earlier one, writing the chunks
    after it again, bit for bit the uninterrupted run."""
    params = _params(net)
    full = _stream(net, runoff_file, params, tmp_path / "full", chunk_steps=30)
    expect = read_discharge(full.files["q"])
    real, clock, chunk_s = stream_mod._Checkpoint.commit, stream_mod.time.perf_counter, [0.0]
    commits: list[int] = []

    from thalweg.results.writers import DischargeAppender

    write = DischargeAppender.write

    def slow_clock():
        return clock() + chunk_s[0]

    def slow_write(self, start, chunk, initial=None):  # each chunk written "takes" 10 s of wall time
        write(self, start, chunk, initial)
        chunk_s[0] += 10.0

    def counted(self, done, state, last):
        commits.append(done)
        if len(commits) == 2:
            raise _Stop  # interrupted at the second checkpoint: its chunks' discharge is written, its state not
        real(self, done, state, last)

    monkeypatch.setattr(stream_mod.time, "perf_counter", slow_clock)
    monkeypatch.setattr(DischargeAppender, "write", slow_write)
    monkeypatch.setattr(stream_mod._Checkpoint, "commit", counted)
    with pytest.raises(_Stop):
        _stream(net, runoff_file, params, tmp_path / "cut", chunk_steps=30, checkpoint_every=25.0)
    monkeypatch.undo()
    assert commits == [90, 180]  # 30 s after the start, 30 s after that: not after every chunk
    res = _stream(net, runoff_file, params, tmp_path / "cut", chunk_steps=30, resume=True)
    assert res.resumed_at == commits[0]
    got = read_discharge(res.files["q"])
    assert np.array_equal(got.values, expect.values) and np.array_equal(got.time, expect.time)


def test_resume_refuses_another_runs_checkpoint(net, runoff_file, tmp_path):
    params = _params(net)
    calls = []

    def progress(fraction, message):
        calls.append(message)
        if len(calls) == 2:
            raise _Stop

    with pytest.raises(_Stop):
        _stream(net, runoff_file, params, tmp_path, chunk_steps=30, progress=progress)
    assert "simulated" in calls[0]  # progress in simulated time per second
    with pytest.raises(InputError, match="another run"):
        _stream(net, runoff_file, params, tmp_path, chunk_steps=40, resume=True)


def test_chunks_follow_the_memory_budget(net, runoff_file, tmp_path):
    steps = chunk_steps_for(1_000_000, 8784, 4 * 10**9)
    assert 1 <= steps < 8784
    assert 4.0 * 1_000_000 * steps * 10 <= 4 * 10**9
    assert chunk_steps_for(100, 50, None) == 50
    with pytest.raises(InputError, match="cannot hold"):
        chunk_steps_for(10**9, 10, 10**9)
    base = dict(network="n.gpkg", runoff=str(runoff_file), out_dir=str(tmp_path), name="q")
    assert not wants_stream(RouteSettings(**base))  # fits: routed whole
    assert wants_stream(RouteSettings(**base, memory=0.001))  # the budget is too small: streamed
    assert not wants_stream(RouteSettings(**base, memory=0.001, stream="never"))
    assert wants_stream(RouteSettings(**base, stream="always"))
    with pytest.raises(InputError, match="cannot be given"):
        wants_stream(RouteSettings(**base, resume=True, stream="never"))
    with pytest.raises(InputError, match="NetCDF"):
        wants_stream(RouteSettings(**{**base, "runoff": "r.csv"}, stream="always"))


def test_options_a_streamed_run_would_ignore_are_refused(runoff_file, tmp_path):
    from thalweg.cli import build_parser, option_table
    from thalweg.errors import option_names

    base = dict(network="n.gpkg", runoff=str(runoff_file), out_dir=str(tmp_path), name="q")

    def refused(match, **kw):
        with option_names(option_table(build_parser())):  # the hints rendered as the CLI does
            with pytest.raises(InputError) as err:
                wants_stream(RouteSettings(**base, **kw))
            text = str(err.value)
        assert all(m in text for m in match), text

    # --gpus routes in memory: never silently dropped by a streamed run
    for kw, flag in ((dict(stream="always"), "--stream always"), (dict(resume=True), "--resume"),
                     (dict(chunk_steps=20), "--chunk-steps 20")):
        refused(["--gpus 2", flag, "cannot stream yet", "Leave out --gpus"], gpus=2, **kw)
    refused(["--gpus 2", "--dask", "cannot be given together"], gpus=2, dask=True)
    refused(["--gpus 2", "--scheduler"], gpus=2, scheduler="tcp://h:8786")
    refused(["does not fit the memory budget", "--stream auto", "--gpus 2", "--stream never"], gpus=2, memory=0.001)
    assert not wants_stream(RouteSettings(**base, gpus=2))  # fits: routed whole over the GPUs
    # --chunk-steps asks for streaming: with --stream never it would be ignored
    refused(["--chunk-steps 20", "--stream never"], chunk_steps=20, stream="never")
    assert wants_stream(RouteSettings(**base, chunk_steps=20))
    # rivers that split cannot stream yet: refused before anything starts, in the CLI's terms
    refused(["--stream always", "split", "--stream never", "--bifurcations main"], stream="always", links="l.csv")
    refused(["--dask", "--bifurcations main"], dask=True, bifurcations="split")
    refused(["does not fit", "--bifurcations main"], memory=0.001, links="l.csv")
    assert not wants_stream(RouteSettings(**base, links="l.csv"))  # fits: routed whole, splits and all


def test_float64_stream_equals_one_pass_closely(net, runoff_file, tmp_path):
    params = _params(net)
    whole, runoff = _whole(net, runoff_file, params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        exact = route(net, runoff.values.astype(np.float64), params, dt=runoff.dt, dtype=torch.float64).cpu().numpy()
    res = _stream(net, runoff_file, params, tmp_path, chunk_steps=64, dtype=torch.float64)
    got = read_discharge(res.files["q"]).values  # float32 in the file: the float64 run rounded once
    np.testing.assert_allclose(got, exact.astype(np.float32), rtol=1e-6, atol=1e-7 * exact.max())


def test_thalweg_route_streams_over_the_budget_and_resumes(tmp_path):
    """The CLI: --memory below the whole run's estimate streams (no refusal); --resume without a checkpoint
    routes from the start; the files equal the whole run."""
    from pathlib import Path

    from thalweg.cli import main
    from thalweg.hydrography import read_network

    sample = Path(__file__).resolve().parents[2] / "resources" / "sample"
    args = [str(sample / "cance_rivers.gpkg"), str(sample / "cance_runoff.nc"), "--quiet"]
    assert main(["route", *args, "-o", str(tmp_path / "s.nc"), "--memory", "0.01"]) == 0
    assert not (tmp_path / "s.gpkg").exists() and not (tmp_path / ".s.stream").exists()
    saved = json.loads((tmp_path / "s.settings.json").read_text())
    assert saved["stream"] == "auto" and saved["memory"] == 0.01
    net = read_network(sample / "cance_rivers.gpkg")
    whole, _ = _whole(net, sample / "cance_runoff.nc", _params(net))
    streamed = read_discharge(tmp_path / "s.nc")
    np.testing.assert_allclose(streamed.values, whole.values, rtol=2e-6, atol=1e-5 * whole.values.max())
    # --resume without a checkpoint starts over; the existing s.settings.json is replaced only with --overwrite
    assert main(["route", *args, "-o", str(tmp_path / "s.zarr"), "--chunk-steps", "1000", "--resume"]) == 3
    assert main(["route", *args, "-o", str(tmp_path / "s.zarr"), "--chunk-steps", "1000", "--resume",
                 "--overwrite"]) == 0
    np.testing.assert_allclose(read_discharge(tmp_path / "s.zarr").values, whole.values, rtol=2e-6,
                               atol=1e-5 * whole.values.max())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_stream_with_pinned_copies_equals_cpu(net, runoff_file, tmp_path):
    """The GPU path (pinned host memory, copy and copy-back streams) gives the CPU path's discharge."""
    params = _params(net)
    cpu = _stream(net, runoff_file, params, tmp_path / "cpu", chunk_steps=50, device="cpu")
    gpu = _stream(net, runoff_file, params, tmp_path / "gpu", chunk_steps=50, device="cuda")
    a, b = read_discharge(cpu.files["q"]).values, read_discharge(gpu.files["q"]).values
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * a.max())


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU")])])
def test_stream_at_some_reaches_writes_their_rows_of_the_whole_stream(net, runoff_file, tmp_path, device):
    """stream_route(at=ids): the file holds those reaches in the given order, with the rows of a stream writing
    every reach (on the GPU only those rows come back); a checkpoint of other reaches is not resumed."""
    params = _params(net)
    rng = np.random.default_rng(4)
    inner = np.setdiff1d(net.ids, net.ids[net.outlets])
    ids = np.r_[net.ids[net.outlets], rng.choice(inner, 5, replace=False)]
    full = read_discharge(_stream(net, runoff_file, params, tmp_path / "all", chunk_steps=50, device=device)
                          .files["q"])
    some = _stream(net, runoff_file, params, tmp_path / "some", chunk_steps=50, device=device, at=ids)
    got = read_discharge(some.files["q"])
    np.testing.assert_array_equal(got.ids, ids)
    np.testing.assert_array_equal(got.values, full.select(ids).values)
    with pytest.raises(InputError, match="written_reaches"):
        _stream(net, runoff_file, params, tmp_path / "some", chunk_steps=50, device=device, at=ids[:3], resume=True)
    with pytest.raises(InputError, match=rf"repeat 1 ids: {ids[1]}"):
        _stream(net, runoff_file, params, tmp_path / "twice", chunk_steps=50, device=device, at=ids[[0, 1, 1]])


def test_streamed_hydrographs_at_gauges_equal_the_whole_runs(tmp_path):
    """--gauges and --hydrograph while streaming: the series are read back from the written file."""
    from pathlib import Path

    import pandas as pd
    from thalweg.cli import main

    sample = Path(__file__).resolve().parents[2] / "resources" / "sample"
    args = [str(sample / "cance_rivers.gpkg"), str(sample / "cance_runoff.nc"), "--quiet", "--no-gpkg",
            "--gauges", str(sample / "cance_gauges.csv"), "--hydrograph", "7"]
    assert main(["route", *args, "-o", str(tmp_path / "whole_Qout.nc"), "--convention", "mean"]) == 0
    assert main(["route", *args, "-o", str(tmp_path / "s_Qout.nc"), "--convention", "mean", "--stream", "always",
                 "--chunk-steps", "1000"]) == 0
    for suffix in ("_hydrographs.csv", "_hydrographs_long.csv"):
        whole = pd.read_csv(tmp_path / f"whole_Qout{suffix}")
        streamed = pd.read_csv(tmp_path / f"s_Qout{suffix}")
        assert list(whole.columns) == list(streamed.columns) and len(whole) == len(streamed)
        numbers = whole.select_dtypes("number").columns
        np.testing.assert_allclose(streamed[numbers].to_numpy(), whole[numbers].to_numpy(), rtol=2e-6, atol=1e-4)
        assert (whole.select_dtypes(exclude="number").fillna("") == streamed.select_dtypes(exclude="number")
                .fillna("")).all().all()


def test_streaming_with_nothing_to_write_routes_every_chunk(net, runoff_file, tmp_path):
    """No outputs (a benchmark's --write none): every chunk routed, the final warm state that of one pass over all
    steps (the oracle: route() of the whole series with return_state), no discharge copied or checkpointed."""
    from thalweg.scale.stream import LocalRouter

    params = _params(net)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        _, last = route(net, read_runoff(runoff_file, net), params, return_state=True, device="cpu")
        router = LocalRouter(net, params, "muskingum_nonneg", dt=3600.0, device="cpu")
        res = stream_route(net, runoff_file, params, outputs={}, checkpoint=tmp_path / ".q.stream", chunk_steps=37,
                           router=router)
    assert res.files == {} and res.timings["write"] == 0.0
    assert not any((tmp_path / ".q.stream").iterdir())  # nothing to resume: no state, no journal
    state = router.get_state()
    assert state.steps == STEPS and state.kind == last.kind
    np.testing.assert_allclose(state.tensors["filter"].numpy(), last.tensors["filter"].numpy(), rtol=1e-5,
                               atol=1e-6 * float(last.tensors["filter"].abs().max()))
