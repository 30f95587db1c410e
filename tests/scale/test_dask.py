"""Dask: basin partitions and time chunks on a LocalCluster of 2 workers give the one-process results (to float32
rounding); workers reading their own rows of a runoff file give the numbers, messages and checkpoints of rows sent
by the client."""
from __future__ import annotations

import json
import logging
import pickle
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from thalweg.errors import InputError, MissingValueError, RunoffError, ThalwegWarning
from thalweg.network import scheidegger_network
from thalweg.params import resolve_params
from thalweg.results.outputs import output_paths
from thalweg.results.reader import read_discharge
from thalweg.routing import route
from thalweg.runoff.readers import RunoffChunks
from thalweg.scale import balance, basins, clusters, route_partitioned, route_piece
from thalweg.scale.stream import LocalRouter, stream_route

distributed = pytest.importorskip("distributed")

from thalweg.scale.distributed import DaskRouter  # noqa: E402

DT = 3600.0


@pytest.fixture(scope="module")
def cluster():
    """Two workers in this process (starting worker processes costs seconds on 2 cores; pickling is tested
    apart, below), reached through the scheduler's TCP address like a remote cluster."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as c:
        yield c


@pytest.fixture(scope="module")
def client(cluster):
    with distributed.Client(cluster.scheduler_address) as c:
        c.wait_for_workers(2, timeout="60s")
        yield c


@pytest.fixture(scope="module")
def net():
    return scheidegger_network(1500, seed=21)


def _params(net):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        return resolve_params(net, "muskingum_nonneg")[0]


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        return fn(*args, **kwargs)


@pytest.mark.parametrize("cut", [None, 120])
def test_dask_equals_one_process(client, net, cut):
    params = _params(net)
    q = np.random.default_rng(5).gamma(2.0, 1.0, size=(net.n_reaches, 160)).astype(np.float32)
    pieces = basins(net) if cut is None else clusters(net, cut)
    router = _quiet(DaskRouter, net, params, "muskingum_nonneg", dt=DT, client=client, pieces=pieces)
    assert len(router.stages) == (1 if cut is None else len({p.stage for p in pieces}))
    first = _quiet(router, q[:, :70])
    saved = router.get_state()  # fetched from the workers, as a checkpoint does
    second = _quiet(router, q[:, 70:])  # the second time chunk continues from the state left on the workers
    ref1, states = _quiet(route_partitioned, net, pieces, q[:, :70], params, dt=DT, n_bins=2, return_state=True)
    ref2 = _quiet(route_partitioned, net, pieces, q[:, 70:], params, dt=DT, n_bins=2, states=states)
    # the numbers of one process with the same partition: equal but for torch's last bits (its vectorised
    # elementwise math rounds by where a thread's share of the reaches starts, and workers run other thread counts)
    for got, ref in ((first, ref1), (second, ref2)):
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-7 * ref.max())
    whole = _quiet(route, net, q, params, dt=DT).numpy()
    np.testing.assert_allclose(np.concatenate([first, second], 1), whole, rtol=2e-6, atol=1e-6 * whole.max())
    assert set(saved) == set(states)
    router.set_state(saved)  # a resumed run puts it back
    again = _quiet(router, q[:, 70:])
    np.testing.assert_allclose(again, second, rtol=1e-6, atol=1e-7 * second.max())
    with pytest.raises(InputError, match="another number"):
        router.set_state({(999,): None})


def test_what_goes_to_workers_pickles(net):
    """Workers in other processes get pieces, sub-networks, parameters and states by pickle."""
    params = _params(net)
    piece = clusters(net, 100)[-1]
    static = pickle.loads(pickle.dumps((piece, piece.subnetwork(net), {k: np.asarray(v)[piece.reaches]
                                                                       for k, v in params.items()})))
    q = np.ones((piece.n_reaches, 5))
    inflow = np.ones((piece.inflow_from.size, 5))
    a, state = _quiet(route_piece, static[0], static[1], q, static[2], dt=DT, inflow=inflow, return_state=True)
    b, _ = _quiet(route_piece, piece, piece.subnetwork(net), q, static[2], dt=DT, inflow=inflow,
                  state=pickle.loads(pickle.dumps(state)), return_state=True)
    c, _ = _quiet(route_piece, piece, piece.subnetwork(net), q, static[2], dt=DT, inflow=inflow, state=state,
                  return_state=True)
    assert np.array_equal(b, c) and np.isfinite(a).all()


def test_thalweg_route_on_a_scheduler_equals_one_process(cluster, tmp_path):
    from thalweg.cli import main
    from thalweg.results.reader import read_discharge

    sample = Path(__file__).resolve().parents[2] / "resources" / "sample"
    args = [str(sample / "cance_rivers.gpkg"), str(sample / "cance_runoff.nc"), "--quiet", "--chunk-steps", "1000"]
    assert main(["route", *args, "-o", str(tmp_path / "local.nc"), "--stream", "always"]) == 0
    assert main(["route", *args, "-o", str(tmp_path / "dask.nc"), "--scheduler", cluster.scheduler_address]) == 0
    local, dask = read_discharge(tmp_path / "local.nc"), read_discharge(tmp_path / "dask.nc")
    np.testing.assert_allclose(dask.values, local.values, rtol=2e-6, atol=1e-6 * local.values.max())
    assert json.loads((tmp_path / "dask.settings.json").read_text())["scheduler"] == cluster.scheduler_address
    # the outlets and a hydrograph reach only: the rows of the whole file, from the workers' pieces
    assert main(["route", *args, "-o", str(tmp_path / "outlets.nc"), "--scheduler", cluster.scheduler_address,
                 "--discharge-at", "outlets", "--hydrograph", "5"]) == 0
    outlets = read_discharge(tmp_path / "outlets.nc")
    assert outlets.ids.tolist() == [5, 101]  # the sample's one outlet, 101
    np.testing.assert_array_equal(outlets.values, dask.select([5, 101]).values)


# ---- workers reading their own rows of the runoff file ------------------------------------------------------
STEPS, CHUNK = 210, 70


@pytest.fixture(scope="module")
def workers():
    """Two worker PROCESSES: each opens the runoff file itself, and the file's description (ReachRows), the
    checks' findings and the errors travel by pickle, as on a real cluster."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=logging.ERROR) as c, distributed.Client(c) as client:
        client.wait_for_workers(2, timeout="120s")
        yield client


def _runoff(net, seed=3):
    """[time, reach] in the network's order."""
    return np.random.default_rng(seed).gamma(1.5, 2.0, size=(STEPS, net.n_reaches)).astype(np.float32)


def _write(path, net, values, fmt="nc", order=None):
    """A qlateral(time, river_id) file of ``values`` [time, reach] (m3/s), its reaches in another order than the
    network's (``order``: the network position of each file row; default a seeded permutation, which scatters
    every basin over the file); zarr: depths in mm per step with catchment_area (the unit conversion and areas
    per row)."""
    order = np.random.default_rng(0).permutation(net.n_reaches) if order is None else np.asarray(order)
    time = np.datetime64("2020-01-01T01:00", "ns") + np.arange(STEPS) * np.timedelta64(3600, "s")
    area = np.random.default_rng(1).uniform(1e6, 5e7, net.n_reaches)
    if fmt == "zarr":  # mm per step of the catchment area: m3/s = mm / 1000 * area / dt
        data = (values[:, order] * DT / area[order] * 1000.0).astype(np.float64)
        ds = xr.Dataset({"qlateral": (("time", "river_id"), data, {"units": "mm"}),
                         "catchment_area": (("river_id",), area[order], {"units": "m2"})},
                        coords={"time": time, "river_id": net.ids[order]})
        ds.to_zarr(path, mode="w")
    else:  # chunked on disk 35 steps x all reaches (the stream's chunks are whole on-disk chunks)
        ds = xr.Dataset({"qlateral": (("time", "river_id"), values[:, order], {"units": "m3 s-1"})},
                        coords={"time": time, "river_id": net.ids[order]})
        ds.to_netcdf(path, encoding={"qlateral": {"chunksizes": (35, net.n_reaches)}})
    return path


def _dask(net, params, client, **kw):
    return _quiet(DaskRouter, net, params, "muskingum_nonneg", dt=DT, client=client, **kw)


def _local(net, params):
    router = LocalRouter(net, params, "muskingum_nonneg", dt=DT)
    _quiet(router.prepare)  # the scheme's warnings now, so that a run says only the runoff's
    return router


def _stream(net, path, params, folder, router, **kw):
    """The streamed discharge [N, T] and the ThalwegWarnings the run said."""
    outs = output_paths(folder, "q", "river-route", "end")
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always", ThalwegWarning)
        res = stream_route(net, path, params, outputs=outs, checkpoint=folder / ".q.stream", chunk_steps=CHUNK,
                           router=router, key={"case": "dask"}, reading=kw.pop("reading", None), **kw)
    return read_discharge(res.files["q"]).values, [str(w.message) for w in said if w.category is ThalwegWarning]


def _client_reads(monkeypatch) -> list:
    """The (first, last) step ranges the client's RunoffChunks.read is asked for from now on (a spy)."""
    reads = []
    real = RunoffChunks.read

    def spy(self, a, b, **kw):
        reads.append((a, b))
        return real(self, a, b, **kw)

    monkeypatch.setattr(RunoffChunks, "read", spy)
    return reads


@pytest.mark.parametrize("fmt", ["nc", "zarr"])
def test_workers_read_their_rows_as_the_client_would(workers, net, tmp_path, monkeypatch, fmt):
    params = _params(net)
    path = _write(tmp_path / f"runoff.{fmt}", net, _runoff(net), fmt)
    one, _ = _stream(net, path, params, tmp_path / "one", _local(net, params))
    sent, _ = _stream(net, path, params, tmp_path / "sent", _dask(net, params, workers, read_on_workers=False))
    reads = _client_reads(monkeypatch)
    router = _dask(net, params, workers)
    read, _ = _stream(net, path, params, tmp_path / "read", router)
    assert reads == [(0, 2)]  # the client read the first two steps (the time axis and the checks), no chunk
    assert router.rows is not None and len(router.stages[0]) == 2
    assert np.array_equal(read, sent)  # bit for bit the rows the client sent
    # one process: equal but for torch's last bits with another thread count (module docstring)
    np.testing.assert_allclose(read, one, rtol=1e-6, atol=1e-7 * one.max())


def _by_basin(net, seed=4):
    """A file order that keeps each basin's rows together (as files sorted by basin do): the basins in a shuffled
    order, each basin's reaches shuffled inside it."""
    rng = np.random.default_rng(seed)
    parts = [p.reaches for p in basins(net)]
    return np.concatenate([rng.permutation(parts[i]) for i in rng.permutation(len(parts))])


def test_each_worker_reads_its_own_part_of_a_file_kept_by_basin(client, net, tmp_path, monkeypatch):
    """A file that keeps each basin's rows together: each worker's basins are consecutive in it, so a worker reads
    about 1/W of the rows (the spans xarray is asked for, counted on each worker, against the rows of its reaches
    found from the file's ids here), not the whole file as LPT's interleaved bins would; the discharge is bit for
    bit that of one process routing the same pieces (one thread, as each worker runs)."""
    import torch
    from thalweg.runoff.readers import open_runoff_chunks, read_runoff

    params = _params(net)
    values = _runoff(net, seed=6)
    path = _write(tmp_path / "basins.nc", net, values, order=_by_basin(net))
    with xr.open_dataset(path) as ds:
        file_row = {int(r): i for i, r in enumerate(ds["river_id"].values)}  # the file's own ids, read here
    read: dict[str, set] = {}
    real = xr.DataArray.isel

    def counted(self, indexers=None, **kw):  # every span of rows a worker asks the file for
        try:
            where = distributed.get_worker().address
        except ValueError:  # the client (its time stamps and first steps: no rows of its own)
            where = None
        rows = (indexers or {}).get("river_id")
        if where is not None and self.name == "qlateral" and isinstance(rows, slice):
            read.setdefault(where, set()).update(range(rows.start, rows.stop))
        return real(self, indexers, **kw)

    monkeypatch.setattr(xr.DataArray, "isel", counted)
    router = _dask(net, params, client)
    source = open_runoff_chunks(path, net)
    threads = torch.get_num_threads()
    try:
        chunks = router.chunk_source(source)
        got = [_quiet(router, chunks.read(a, a + CHUNK).values) for a in range(0, STEPS, CHUNK)]
        torch.set_num_threads(1)
        column = source.rows().column
        whole = _quiet(read_runoff, path, net).values
        ref, states = [], None
        for a in range(0, STEPS, CHUNK):
            q, states = _quiet(route_partitioned, net, basins(net), whole[:, a:a + CHUNK], params, dt=DT, n_bins=2,
                               rows=column, states=states, return_state=True)
            ref.append(q)
    finally:
        torch.set_num_threads(threads)
        source.close()
        router.close()
    n = net.n_reaches
    need = {}
    for g in router.stages[0]:  # the rows of each worker's reaches, from the file's ids
        need.setdefault(g.worker, set()).update(file_row[int(i)] for i in net.ids[g.piece.reaches])
    assert set(read) == set(need) and len(read) == 2
    for w in read:
        assert read[w] == need[w]  # nothing but its own rows: one span of the file
    assert sum(len(r) for r in read.values()) == n  # every row read once, by one worker
    largest = basins(net)[0].n_reaches
    assert all(abs(len(r) - n / 2) <= largest / 2 for r in read.values())  # about half each, to one basin
    lpt_spans = []
    for b in balance(basins(net), 2):  # what the interleaved bins of work alone would have read
        rows = [file_row[int(i)] for p in b for i in net.ids[p.reaches]]
        lpt_spans.append(max(rows) + 1 - min(rows))
    assert min(lpt_spans) > 0.9 * n
    for q, r in zip(got, ref):
        assert q.dtype == r.dtype and np.array_equal(q, r)  # bit for bit


def _bad(net, router, case):
    """Runoff with bad values in a reach of each worker's piece (chunk 1), a negative one in chunk 2; the ids."""
    values = _runoff(net)
    (first, second) = router.stages[0]
    assert first.worker != second.worker
    r1, r2 = int(first.piece.reaches[3]), int(second.piece.reaches[5])
    values[10, r1] = np.nan
    values[12:14, r2] = np.inf if case == "nan and inf" else np.nan
    values[100, r2] = -0.5
    return values, int(net.ids[r1]), int(net.ids[r2])


@pytest.mark.parametrize("case, nan", [("nan", "error"), ("nan and inf", "error"), ("nan", "zero")])
def test_bad_values_read_on_workers_are_said_as_one_process_says_them(workers, net, tmp_path, case, nan):
    """The workers' findings are worded once, for the whole network, by the client: one message naming the
    reaches of both workers, the same text, class and attributes as a run in one process (an infinite value on
    one worker fails the chunk before a NaN on the other, as one read does)."""
    params = _params(net)
    router = _dask(net, params, workers)
    values, id1, id2 = _bad(net, router, case)
    ids = sorted([id1, id2]) if case == "nan" else [id2]  # what the message names: every NaN, or the inf
    path = _write(tmp_path / "bad.nc", net, values)
    reading = {"nan": nan}
    if nan == "error":
        errors = []
        for name, r in (("one", _local(net, params)), ("dask", router)):
            with pytest.raises(RunoffError) as err:
                _stream(net, path, params, tmp_path / name, r, reading=reading)
            errors.append(err.value)
        one, dask = errors
        assert type(dask) is type(one) is (MissingValueError if case == "nan" else RunoffError)
        assert str(dask) == str(one) and dask.ids == one.ids == ids and dask.path == one.path == str(path)
        assert ("3 runoff values are missing" if case == "nan" else "2 runoff values are infinite") in str(dask)
        return
    q_one, said_one = _stream(net, path, params, tmp_path / "one", _local(net, params), reading=reading)
    q_dask, said_dask = _stream(net, path, params, tmp_path / "dask", router, reading=reading)
    assert said_dask == said_one and max(Counter(said_dask).values()) == 1
    nan_said = [w for w in said_dask if "missing (NaN)" in w]
    assert len(nan_said) == 1 and "3 missing (NaN) runoff values in 2 reaches" in nan_said[0]
    assert f"({ids[0]}, {ids[1]})" in nan_said[0]
    assert sum("negative" in w for w in said_dask) == 1
    np.testing.assert_allclose(q_dask, q_one, rtol=1e-6, atol=1e-7 * q_one.max())


def test_a_run_read_on_workers_resumes_bit_for_bit(workers, net, tmp_path):
    params = _params(net)
    path = _write(tmp_path / "runoff.nc", net, _runoff(net, seed=8))
    full, _ = _stream(net, path, params, tmp_path / "full", _dask(net, params, workers))
    calls = []

    def progress(fraction, message):
        calls.append(fraction)
        if len(calls) == 2:  # after the second chunk was routed
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _stream(net, path, params, tmp_path / "cut", _dask(net, params, workers), progress=progress)
    done = json.loads((tmp_path / "cut" / ".q.stream" / "journal.json").read_text())["done"]
    assert 0 < done < STEPS
    again, said = _stream(net, path, params, tmp_path / "cut", _dask(net, params, workers), resume=True)
    assert any(f"resuming at step {done:,}" in w for w in said)
    assert np.array_equal(again, full)


def test_workers_that_cannot_open_the_file_get_its_rows(client, net, tmp_path, monkeypatch):
    """A cluster without the file at the client's path (no shared file system): warned, the rows are sent."""
    from thalweg.scale import distributed as dist

    params = _params(net)
    path = _write(tmp_path / "runoff.nc", net, _runoff(net))
    monkeypatch.setattr(dist, "_can_read", lambda p, v: "runoff file not found")
    router = _dask(net, params, client)
    q, said = _stream(net, path, params, tmp_path / "q", router)
    assert router.rows is None
    assert any("2 of the 2 Dask workers cannot read the runoff" in w and "runoff file not found" in w for w in said)
    one, _ = _stream(net, path, params, tmp_path / "one", _local(net, params))
    np.testing.assert_allclose(q, one, rtol=1e-6, atol=1e-7 * one.max())


def test_a_worker_that_finds_another_file_says_so(workers, net, tmp_path):
    """An error raised on a worker is worded by the client, naming the file, with what the workers need."""
    import dataclasses

    from thalweg.runoff.readers import open_runoff_chunks

    params = _params(net)
    path = _write(tmp_path / "runoff.nc", net, _runoff(net))
    router = _dask(net, params, workers)
    source = open_runoff_chunks(path, net)
    try:
        chunks = router.chunk_source(source)
        router.rows = workers.scatter(dataclasses.replace(source.rows(), shape=(5, 7)), broadcast=True)
        described = "not the one described: variable qlateral is 1,514 reaches x 210 steps here, 5 x 7 there"
        with pytest.raises(RunoffError, match=described) as err:
            router(chunks.read(0, CHUNK).values)
    finally:
        source.close()
    assert err.value.path == str(path) and err.value.field == "qlateral" and "same path" in err.value.hint


@pytest.mark.parametrize("nan", ["error", "zero"])
def test_thalweg_route_on_a_scheduler_says_a_bad_value_as_one_process(cluster, tmp_path, capsys, nan):
    """The CLI's words (its flags, its warning format) for a NaN the workers found, once: as in one process (whose
    reader thread once said nan='zero' in the CLI: the threads now run in the caller's context)."""
    from thalweg.cli import main

    sample = Path(__file__).resolve().parents[2] / "resources" / "sample"
    with xr.open_dataset(sample / "cance_runoff.nc", decode_times=False) as ds:
        ds = ds.load()
    ds["catchment_runoff"][[4, 90], 1500] = np.nan  # (riverId, time): two reaches, a reach-first layout
    ds.to_netcdf(tmp_path / "bad.nc")
    args = [str(sample / "cance_rivers.gpkg"), str(tmp_path / "bad.nc"), "--quiet", "--chunk-steps", "1000",
            "--no-gpkg", "--nan", nan]
    lines = {}
    for name, how in (("one", ["--stream", "always"]), ("dask", ["--scheduler", cluster.scheduler_address])):
        capsys.readouterr()
        rc = main(["route", *args, "-o", str(tmp_path / f"{name}.nc"), *how])
        lines[name] = ([x for x in capsys.readouterr().err.splitlines() if "NaN" in x], rc)
    assert lines["dask"] == lines["one"]
    said, rc = lines["dask"]
    assert len(said) == 1 and "2 reaches (5, 91)" in said[0] and "--nan zero" in said[0]  # the CLI's flag
    assert (rc == 0) == (nan == "zero")


def test_thalweg_route_on_a_scheduler_resumes_bit_for_bit(cluster, tmp_path, monkeypatch):
    """``--scheduler ... --resume`` after an interruption (the second chunk's checkpoint never written) writes the
    file of an uninterrupted run on the same cluster."""
    from thalweg.cli import main
    from thalweg.scale import stream as stream_mod

    sample = Path(__file__).resolve().parents[2] / "resources" / "sample"
    args = ["route", str(sample / "cance_rivers.gpkg"), str(sample / "cance_runoff.nc"), "--quiet", "--no-gpkg",
            "--chunk-steps", "1000", "--scheduler", cluster.scheduler_address]
    assert main([*args, "-o", str(tmp_path / "full" / "q.nc")]) == 0
    real, calls = stream_mod._Checkpoint.commit, []

    def interrupted(self, done, state, last):
        calls.append(done)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(self, done, state, last)

    monkeypatch.setattr(stream_mod._Checkpoint, "commit", interrupted)
    assert main([*args, "-o", str(tmp_path / "cut" / "q.nc")]) != 0
    monkeypatch.setattr(stream_mod._Checkpoint, "commit", real)
    assert json.loads((tmp_path / "cut" / ".q.stream" / "journal.json").read_text())["done"] == 1000
    assert main([*args, "-o", str(tmp_path / "cut" / "q.nc"), "--resume"]) == 0
    full, cut = read_discharge(tmp_path / "full" / "q.nc"), read_discharge(tmp_path / "cut" / "q.nc")
    assert np.array_equal(cut.values, full.values) and np.array_equal(cut.time, full.time)


def test_thalweg_route_no_worker_read_sends_the_rows_and_writes_the_same_file(cluster, tmp_path, monkeypatch):
    """``--no-worker-read``: the client reads every chunk and sends each worker its rows (its reads counted), the
    file bit for bit that of the workers reading; the setting is saved, and ``--worker-read`` turns it back on
    over a settings file that says false."""
    from thalweg.cli import main

    sample = Path(__file__).resolve().parents[2] / "resources" / "sample"
    args = ["route", str(sample / "cance_rivers.gpkg"), str(sample / "cance_runoff.nc"), "--quiet", "--no-gpkg",
            "--chunk-steps", "1000", "--scheduler", cluster.scheduler_address]
    reads = _client_reads(monkeypatch)
    assert main([*args, "-o", str(tmp_path / "sent.nc"), "--no-worker-read"]) == 0
    sent_reads, reads[:] = list(reads), []
    n_steps = read_discharge(tmp_path / "sent.nc").values.shape[1]
    assert sent_reads == [(0, 2)] + [(a, min(a + 1000, n_steps)) for a in range(0, n_steps, 1000)]
    saved = json.loads((tmp_path / "sent.settings.json").read_text())
    assert saved["worker_read"] is False
    assert main(["route", "--settings", str(tmp_path / "sent.settings.json"), "-o", str(tmp_path / "read.nc"),
                 "--worker-read", "--quiet"]) == 0
    assert reads == [(0, 2)]  # the workers read every chunk
    assert json.loads((tmp_path / "read.settings.json").read_text())["worker_read"] is True
    sent, read = read_discharge(tmp_path / "sent.nc"), read_discharge(tmp_path / "read.nc")
    assert np.array_equal(sent.values, read.values)


def test_thalweg_route_names_its_flag_when_workers_cannot_read(cluster, tmp_path, monkeypatch, capsys):
    """The warning of workers that cannot open the runoff names the CLI's flag that silences it."""
    from thalweg.cli import main
    from thalweg.scale import distributed as dist

    monkeypatch.setattr(dist, "_can_read", lambda p, v: "runoff file not found")
    sample = Path(__file__).resolve().parents[2] / "resources" / "sample"
    assert main(["route", str(sample / "cance_rivers.gpkg"), str(sample / "cance_runoff.nc"), "--quiet",
                 "--no-gpkg", "--scheduler", cluster.scheduler_address, "-o", str(tmp_path / "q.nc")]) == 0
    said = [x for x in capsys.readouterr().err.splitlines() if "cannot read the runoff" in x]
    assert len(said) == 1 and "runoff file not found" in said[0]
    assert "or let the client read it (--no-worker-read), to silence this" in said[0], said
