"""The CPU case of streaming (issue 14: NetCDF in -> NetCDF out): the float32 reading path gives the bits of the
float64 one, the streamed pipeline gives the bits of routing the same chunks in one thread, chunks follow the
file's on-disk time chunks, and the default memory budget streams a run that would not fit it."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import xarray as xr
from thalweg.errors import ThalwegWarning
from thalweg.network import scheidegger_network
from thalweg.params import resolve_params
from thalweg.results.outputs import output_paths
from thalweg.results.reader import read_discharge
from thalweg.routing import PreparedRoute
from thalweg.runoff import read_runoff
from thalweg.runoff.readers import open_runoff_chunks
from thalweg.scale import stream as stream_mod
from thalweg.scale.stream import stream_route

STEPS = 200
DISK_CHUNK = 16  # steps per on-disk chunk of the runoff file


@pytest.fixture(scope="module")
def net():
    return scheidegger_network(300, seed=5)


def _values(net, odd: bool = False) -> np.ndarray:
    rng = np.random.default_rng(7)
    v = rng.gamma(1.5, 2.0, size=(STEPS, net.n_reaches)).astype(np.float32)
    if odd:  # a few missing and negative values: judged, counted and warned about as ever
        v[3, 5] = np.nan
        v[150, 17] = np.nan
        v[10, 2] = -0.25
    return v


def _file(net, folder, dtype, *, odd: bool = False, name: str = "qlat.nc"):
    """qlateral(time, river_id), m3/s, hourly, in the file's own reach order, chunked in time on disk."""
    rng = np.random.default_rng(1)
    order = rng.permutation(net.n_reaches)
    time = np.datetime64("2020-01-01T01:00", "ns") + np.arange(STEPS) * np.timedelta64(3600, "s")
    ds = xr.Dataset({"qlateral": (("time", "river_id"), _values(net, odd)[:, order].astype(dtype),
                                  {"units": "m3 s-1"})}, coords={"time": time, "river_id": net.ids[order]})
    path = folder / name
    ds.to_netcdf(path, encoding={"qlateral": {"chunksizes": (DISK_CHUNK, net.n_reaches)}})
    return path


def _read(path, net, **kw):
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        runoff = read_runoff(path, net, **kw)
    return runoff, sorted(str(w.message).replace(path.name, "FILE") for w in said)


@pytest.mark.parametrize("odd", [False, True])
def test_float32_runoff_reads_the_bits_of_the_float64_path(net, tmp_path, odd):
    """float32 m3/s numbers skip the float64 round trip: the same values, checks, counts and warnings as the same
    numbers stored in float64 (which go through it)."""
    kw = {"nan": "zero"} if odd else {}
    r32, said32 = _read(_file(net, tmp_path, np.float32, odd=odd, name="f4.nc"), net, **kw)
    r64, said64 = _read(_file(net, tmp_path, np.float64, odd=odd, name="f8.nc"), net, **kw)
    assert r32.values.dtype == np.float32 and np.array_equal(r32.values, r64.values)
    assert {k: v for k, v in r32.attrs.items()} == {k: v for k, v in r64.attrs.items()}
    assert said32 == said64
    if odd:
        assert r32.attrs["nan_replaced"] == 2 and r32.attrs["negative_values"] == 1
        assert r32.values[net.index_of([net.ids[5]])[0], 3] == 0.0  # NaN -> 0 in the network's reach order


def test_chunk_reads_equal_one_read_and_follow_the_disk_chunks(net, tmp_path):
    path = _file(net, tmp_path, np.float32)
    whole = read_runoff(path, net)
    chunks = open_runoff_chunks(path, net)
    try:
        assert chunks.time_chunk == DISK_CHUNK
        for a, b in ((0, 48), (48, 67), (67, STEPS)):  # aligned, and cutting on-disk chunks
            assert np.array_equal(chunks.read(a, b).values, whole.values[:, a:b])
    finally:
        chunks.close()


def _params(net):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        return resolve_params(net, "muskingum_nonneg")[0]


def test_streamed_output_has_the_bits_of_the_same_chunks_routed_in_one_thread(net, tmp_path, monkeypatch):
    """The reader and writer threads, the queues and the writer's labels change no bit: the streamed file equals
    routing the one-read runoff chunk by chunk with the warm state (the oracle: a plain loop, no threads); the
    budget's chunk length is cut to whole on-disk chunks."""
    path = _file(net, tmp_path, np.float32)
    params = _params(net)
    n = net.n_reaches  # chunk_steps_for: fixed part 80 n, state 48 n, then the steps (room for 50: 48 kept)
    monkeypatch.setattr(stream_mod, "budget_bytes",
                        lambda memory, gpu=False: int(80 * n + 48 * n + 4 * n * stream_mod._PER_STEP_FACTOR * 50.5))
    outs = output_paths(tmp_path / "out", "q", "river-route", "end")
    (tmp_path / "out").mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        res = stream_route(net, path, params, outputs=outs, checkpoint=tmp_path / "out" / ".q.stream",
                           key={"case": "cpu"}, compression=0)
        assert res.chunk_steps == 48  # 50 fit the budget; whole on-disk chunks of 16
        runoff = torch.from_numpy(read_runoff(path, net).values)
        prepared = PreparedRoute(net, params, "muskingum_nonneg", dt=3600.0)
        state, parts = None, []
        for a in range(0, STEPS, res.chunk_steps):
            q, state = prepared(runoff[:, a:a + res.chunk_steps], state, return_state=True)
            parts.append(q)
    expected = torch.cat(parts, dim=-1).numpy()
    got = read_discharge(res.files["q"])
    assert np.array_equal(got.ids, net.ids)
    assert np.array_equal(got.values, expected)


def test_default_budget_is_a_quarter_of_the_memory_and_streams_the_cpu_case(monkeypatch):
    """Without --memory: a quarter of the physical memory (or what is available, when less). On a 23 GiB machine
    the issue's CPU case (100,663 reaches x 8,784 steps, about 10 GiB whole) streams, in chunks whose arrays in
    flight stay well under 5 GiB."""
    from thalweg import workflow
    from thalweg.config import RouteSettings
    from thalweg.scale import run

    gib = 2**30
    monkeypatch.setattr(stream_mod, "_physical_memory", lambda: 23 * gib)
    monkeypatch.setattr(workflow, "_available_memory", lambda: 12 * gib)
    assert stream_mod.budget_bytes(None) == int(0.25 * 23 * gib)
    assert stream_mod.budget_bytes(2.0) == 2 * 10**9  # --memory decides when given
    assert stream_mod.budget_bytes(None, gpu=True) == 12 * gib  # a GPU run keeps the memory available
    monkeypatch.setattr(workflow, "_available_memory", lambda: 3 * gib)
    assert stream_mod.budget_bytes(None) == 3 * gib  # less available than the quarter
    monkeypatch.setattr(workflow, "_available_memory", lambda: 12 * gib)
    monkeypatch.setattr(run, "_header_shape", lambda path: (100_663, 8_784))
    settings = RouteSettings(network="net.parquet", runoff="runoff.nc", write_gpkg=False, device="cpu")
    assert run.wants_stream(settings)
    steps = stream_mod.chunk_steps_for(100_663, 8_784, stream_mod.budget_bytes(None))
    assert 256 <= steps < 8_784
    in_flight = 6 * 4 * 100_663 * steps  # read, queued, routed in and out, queued to write, written
    assert in_flight < 4 * gib
