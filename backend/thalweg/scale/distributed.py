"""Basin partitions and time chunks on a Dask cluster (``dask.distributed``): ``thalweg route --dask`` (a
``LocalCluster``) or ``--scheduler tcp://HOST:8786`` (any cluster: dask-jobqueue on HPC, Kubernetes, cloud).

Each merged piece of the partition (:mod:`.partition`: basins, or clusters of huge basins, balanced into one
group per worker and stage; where the runoff is a file, each worker's basins consecutive in the file's rows)
lives on one worker for the whole run: its sub-network and parameters are sent once, and its warm state stays
there between time chunks (a future). A chunk of a runoff file is read by
the workers: each is sent the chunk's step range, reads its piece's rows from the file itself
(:meth:`thalweg.runoff.readers.RunoffChunks.rows`: the client's reader, its unit conversion and checks) and
sends back the discharge and what the checks found, which the client words once for the whole network
(``RunoffChunks.judge``: the messages of a read on the client). Other runoff (arrays, chunks made on the fly, or
a file the workers cannot open: warned) goes as each piece's rows from the client; the numbers are the same
either way. Stages run in order (a stage's inflow is gathered from the earlier stages' discharge); the pieces of
a stage run at once. Results equal :func:`.partition.route_partitioned` in one process with the same pieces, and
:func:`thalweg.route` of the whole network, to float rounding (torch's vectorised elementwise math can differ in
the last bit with the number of threads a worker runs).
See docs/scale.md for why Dask.
"""
from __future__ import annotations

import dataclasses
import logging
import operator
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..errors import InputError, ThalwegError, ThalwegWarning, opt, render_options

__all__ = ["DaskRouter", "dask_client"]


def dask_client(address: str | None = None, n_workers: int = 2, **cluster_options: Any):
    """A ``distributed.Client`` of the scheduler at ``address``, else of a new ``LocalCluster`` of ``n_workers``
    single-threaded worker processes (no dashboard). Returns (client, cluster or None)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise InputError("routing on Dask needs the package 'distributed' (dask.distributed).",
                         hint="Install it (pip install 'thalweg[scale]', or pip install distributed), or route "
                              f"without {opt('route.dask')} / {opt('route.scheduler')}.") from None
    if address:
        try:
            return Client(address, timeout="30s"), None
        except (OSError, TimeoutError) as exc:
            raise InputError(f"cannot reach the Dask scheduler at {address} ({exc}).",
                             hint="Check the address (tcp://HOST:8786) and that the scheduler runs.") from None
    # the cluster's own INFO lines (scheduler, nanny, "still alive, killing" at close) are not the user's: kept
    # for --debug (the root logger at DEBUG), else only errors
    quiet = logging.getLogger().getEffectiveLevel() > logging.DEBUG
    if quiet:
        for name in ("distributed", "distributed.scheduler", "distributed.nanny", "distributed.worker",
                     "distributed.core", "distributed.http.proxy"):
            logging.getLogger(name).setLevel(logging.ERROR)
    options = {"n_workers": int(n_workers), "threads_per_worker": 1, "processes": True, "dashboard_address": None,
               **({"silence_logs": logging.ERROR} if quiet else {}), **cluster_options}
    cluster = LocalCluster(**options)
    client = Client(cluster)
    client.wait_for_workers(int(n_workers), timeout="120s")  # the partition is made for the workers there
    return client, cluster


def _route_group(static: tuple, runoff: np.ndarray, inflow: Any, state: Any, options: Mapping[str, Any]):
    """On a worker: route one merged piece for one time chunk; returns (Q rows, the piece's new state)."""
    from ._warnings import muted
    from .partition import route_piece

    piece, subnet, params = static
    threads = options.get("threads")
    if threads:
        torch.set_num_threads(int(threads))
    with muted():  # the client said the scheme's warnings for the whole network (DaskRouter), in its own format
        return route_piece(piece, subnet, runoff, params, options["scheme"], dt=options["dt"], inflow=inflow,
                           state=state, return_state=True, engine=options["engine"], dtype=options["dtype"],
                           device=options["device"], kernel_length=options["kernel_length"])


def _read_route_group(static: tuple, rows: Any, steps: tuple[int, int, float], inflow: Any, state: Any,
                      options: Mapping[str, Any]):
    """On a worker: read the piece's runoff rows of steps a..b-1 from the file (``rows``: a ``ReachRows``) and
    route them; returns (Q rows or None, the new state, the checks' findings, a ThalwegError to raise or None).
    Nothing is routed where the checks will fail the chunk (the client raises their error)."""
    piece, subnet, _ = static
    try:
        runoff, aligner = rows.read(piece.reaches, subnet, *steps)
    except ThalwegError as exc:  # raised again by the client, worded there (its option names)
        return None, state, None, _Raised.of(exc)
    if aligner.fails():
        return None, state, aligner.findings, None
    q, new = _route_group(static, runoff, inflow, state, options)
    return q, new, aligner.findings, None


def _reported(result: tuple):
    """(Q rows, findings, error) of :func:`_read_route_group`'s result: what comes back to the client."""
    return result[0], result[2], result[3]


@dataclasses.dataclass(frozen=True)
class _Raised:
    """A ThalwegError of a worker, kept unworded: the client words it (``opt`` placeholders in its own names)."""

    kind: type
    message: str
    facts: dict

    @classmethod
    def of(cls, exc: ThalwegError) -> _Raised:
        return cls(type(exc), exc.message, {"path": exc.path, "field": exc.field, "ids": exc.ids, "hint": exc.hint,
                                             "layer": exc.layer})

    def error(self) -> ThalwegError:
        return self.kind(self.message, **self.facts)


def _can_read(path: str, variable: str) -> tuple[int, ...] | str:
    """On each worker: the (reach, time) sizes of ``variable`` in the runoff at ``path``, or why it cannot open it."""
    from ..runoff.readers import open_lazy

    try:
        with open_lazy(path) as ds:
            return tuple(int(n) for n in ds[variable].shape) if variable in ds.data_vars else f"no variable {variable}"
    except Exception as exc:  # any failure means: this worker reads no rows itself
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


@dataclasses.dataclass(frozen=True, eq=False)
class _Steps:
    """The values of a chunk read on the workers: its step range, step length (s) and step starts."""

    a: int
    b: int
    step: float
    time: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class _Chunk:
    """What the stream's reader hands on for a chunk read on the workers: its labels, and ``values`` saying which."""

    ids: np.ndarray
    time: np.ndarray
    dt: float
    source: str
    values: _Steps


class _WorkerReads:
    """A ``RunoffChunks`` whose chunks the stream takes without their values: the router's workers read them."""

    def __init__(self, source, network) -> None:
        self.source, self.network = source, network

    n_steps = property(lambda self: self.source.n_steps)
    dt = property(lambda self: self.source.dt)
    time = property(lambda self: self.source.time)
    time_chunk = property(lambda self: self.source.time_chunk)
    shape = property(lambda self: self.source.shape)

    def read(self, a: int, b: int) -> _Chunk:
        time, step = self.source.steps(a, b)
        return _Chunk(self.network.ids, time, step, str(self.source.path), _Steps(int(a), int(b), step, time))

    def close(self) -> None:
        self.source.close()


@dataclasses.dataclass
class _Group:
    piece: Any
    worker: str
    static: Any  # future of (piece, sub-network, parameters) on the worker
    state: Any = None  # future of the piece's state on the worker


class DaskRouter:
    """Routes each time chunk's pieces on Dask workers (module docstring); a router of
    :func:`.stream.stream_route`, or called directly on a runoff array [N, T] (network order).

    Parameters
    ----------
    network, params, scheme, dt : as :func:`thalweg.route` (``params`` per reach [N] or constants).
    client : a ``distributed.Client``; default: one for ``address``, else a LocalCluster of ``n_workers``.
    pieces : a partition (:func:`.partition.basins` by default; :func:`.partition.clusters` cuts huge basins).
    groups_per_worker : merged pieces per worker and stage (more: finer balance, more tasks).
    read_on_workers : let the workers read a runoff file's chunks themselves (:meth:`chunk_source`); False: the
        client reads them and sends each piece its rows (``thalweg route --no-worker-read``).

    The pieces are placed on the workers at the first use: by the runoff file's rows when :meth:`chunk_source`
    is given a file first (each worker's basins consecutive in the file, balanced by work within
    ``partition.CONTIGUOUS_TOLERANCE``), else balanced by work alone (``partition.balance``).
    """

    def __init__(self, network, params, scheme, *, dt: float, client=None, address: str | None = None,
                 n_workers: int = 2, pieces=None, groups_per_worker: int = 1, engine: str = "auto",
                 device: Any = "cpu", dtype: torch.dtype = torch.float32, kernel_length: int | None = None,
                 read_on_workers: bool = True) -> None:
        from ..irf import get_scheme
        from .partition import _whole_checks, basins, history_length

        self.network, self.params, self.dt, self.engine, self.dtype = network, params, float(dt), engine, dtype
        self.read_on_workers, self.source, self.rows = bool(read_on_workers), None, None
        self.device = "cpu" if device in (None, "auto") else device
        sch = get_scheme(scheme)
        _whole_checks(network, params, sch, self.dt)  # parameter errors and scheme warnings name the whole network
        self._own = client is None
        self.client, self.cluster = (client, None) if client is not None else dask_client(address, n_workers)
        self.workers = sorted(self.client.scheduler_info()["workers"])
        if not self.workers:
            raise InputError("the Dask cluster has no workers.", hint="Start workers, or wait for them to join.")
        threads = self.client.nthreads()
        self.options = {"scheme": sch.name, "dt": self.dt, "engine": engine, "dtype": dtype, "device": self.device,
                        "kernel_length": history_length(network, params, sch, dt, engine=engine,
                                                        kernel_length=kernel_length)}
        self.pieces = basins(network) if pieces is None else pieces
        self.groups_per_worker = max(1, int(groups_per_worker))
        self.threads = {w: threads.get(w, 1) for w in self.workers}
        self._stages: list[list[_Group]] | None = None

    @property
    def stages(self) -> list[list[_Group]]:
        """Each stage's merged pieces on their workers, placed at the first use (:meth:`_place`)."""
        if self._stages is None:
            self._place(None)
        return self._stages

    def _place(self, rows: np.ndarray | None) -> None:
        """Balance each stage's pieces into ``groups_per_worker`` groups per worker (``partition.balance``; by the
        file row of each reach, ``rows``, where the runoff is a file: a worker's groups are then consecutive in the
        file, so that it reads its own part of the rows, not the whole span), and send each group's sub-network
        and parameters to its worker once. A worker takes consecutive groups."""
        from .partition import balance, merge, piece_params, stages

        workers, placed_stages = self.workers, []
        for stage in stages(self.pieces):
            groups = [merge(g) for g in balance(stage, len(workers) * self.groups_per_worker, rows=rows)]
            placed = []
            for i, piece in enumerate(groups):
                worker = workers[i * len(workers) // len(groups)]
                static = (piece, piece.subnetwork(self.network), piece_params(self.params, piece))
                future = self.client.scatter([static], workers=[worker], broadcast=False, hash=False)[0]
                placed.append(_Group(piece, worker, future))
            placed_stages.append(placed)
        self._stages = placed_stages

    def chunk_source(self, source):
        """The chunk source a stream reads through (:func:`.stream.stream_route` asks): for a runoff file that every
        worker opens, one whose chunks carry only their times and step range (the workers read the values); any
        other source as it is (each piece's rows then go from the client). Given a file before the pieces were
        placed, they are placed by its rows (:meth:`_place`), whether the workers read it or not, so a run
        resumes with the same pieces either way."""
        from ..runoff.readers import RunoffChunks

        if not isinstance(source, RunoffChunks):
            return source
        rows = source.rows()
        if self._stages is None:
            self._place(rows.column)
        if not self.read_on_workers:
            return source
        found = self.client.run(_can_read, rows.path, rows.variable)
        want = tuple(source.ds[rows.variable].shape)
        cannot = {w: got for w, got in sorted(found.items()) if got != want}
        if cannot:
            worker, why = next(iter(cannot.items()))
            why = why if isinstance(why, str) else f"variable {rows.variable} there has the shape {why}, not {want}"
            warnings.warn(render_options(
                f"{len(cannot):,} of the {len(found):,} Dask workers cannot read the runoff {source.path} ({worker}: "
                f"{why}); the client reads it and sends each worker its rows (slower). Give the workers the file at "
                f"the same path (a shared file system), or let the client read it "
                f"({opt('DaskRouter.read_on_workers')}), to silence this."), ThalwegWarning, stacklevel=2)
            return source
        self.source = source
        self.rows = self.client.scatter(rows, broadcast=True, hash=False)
        return _WorkerReads(source, self.network)

    def __call__(self, values: Any) -> np.ndarray:
        if isinstance(values, _Steps):
            return self._read_and_route(values)
        arr = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
        if arr.ndim != 2 or arr.shape[0] != self.network.n_reaches:
            raise InputError(f"runoff has shape {arr.shape}; expected [{self.network.n_reaches:,} reaches, time].")
        out = np.zeros(arr.shape, dtype=np.float64 if self.dtype == torch.float64 else np.float32)
        from .partition import inflow_of

        for stage in self.stages:
            futures = []
            for g in stage:
                opts = {**self.options, "threads": self.threads[g.worker]}
                both = self.client.submit(_route_group, g.static, g.piece.rows(arr), inflow_of(g.piece, out),
                                          g.state, opts, workers=[g.worker], allow_other_workers=False, pure=False)
                g.state = self.client.submit(operator.itemgetter(1), both, workers=[g.worker], pure=False)
                futures.append(self.client.submit(operator.itemgetter(0), both, workers=[g.worker], pure=False))
            for g, q in zip(stage, self.client.gather(futures)):
                out[g.piece.reaches] = q
        return out

    def _read_and_route(self, steps: _Steps) -> np.ndarray:
        """Route a chunk whose runoff the workers read (:meth:`chunk_source`); the client words their checks."""
        from .partition import inflow_of

        n = steps.b - steps.a
        out = np.zeros((self.network.n_reaches, n), dtype=np.float64 if self.dtype == torch.float64 else np.float32)
        span = (steps.a, steps.b, steps.step)
        found, skipped = [], 0
        for stage in self.stages:
            futures = []
            for g in stage:
                opts = {**self.options, "threads": self.threads[g.worker]}
                both = self.client.submit(_read_route_group, g.static, self.rows, span, inflow_of(g.piece, out),
                                          g.state, opts, workers=[g.worker], allow_other_workers=False, pure=False)
                g.state = self.client.submit(operator.itemgetter(1), both, workers=[g.worker], pure=False)
                futures.append(self.client.submit(_reported, both, workers=[g.worker], pure=False))
            for g, (q, findings, raised) in zip(stage, self.client.gather(futures)):
                if raised is not None:
                    raise raised.error()
                if q is None:
                    skipped += 1
                else:
                    out[g.piece.reaches] = q
                found.append((g.piece.reaches, findings))
        self.source.judge(steps.a, steps.b, steps.time, found)  # the warnings, or the error, of a whole read
        if skipped:
            raise AssertionError(f"{skipped} pieces were not routed for failing checks that judge() did not fail")
        return out

    def get_state(self) -> dict | None:
        """Every piece's state, fetched from the workers (for a checkpoint), keyed by its members."""
        groups = [g for stage in self.stages for g in stage if g.state is not None]
        if not groups:
            return None
        states = self.client.gather([g.state for g in groups])
        return {g.piece.members: s for g, s in zip(groups, states)}

    def set_state(self, state: Mapping | None) -> None:
        """Put states (from :meth:`get_state` of a run with the same pieces and workers) back on the workers."""
        groups = [g for stage in self.stages for g in stage]
        if state is not None and set(state) != {g.piece.members for g in groups}:
            raise InputError("the checkpoint's pieces are not this cluster's: it was made with another number of "
                             "Dask workers or another partition.",
                             hint=f"Resume with the same {opt('route.dask_workers')} (or cluster size), or start "
                                  f"again without {opt('route.resume')}.")
        for g in groups:
            value = None if state is None else state[g.piece.members]
            g.state = None if value is None else self.client.scatter([value], workers=[g.worker], hash=False)[0]

    def close(self) -> None:
        self.rows = self.source = None  # released: each worker's copy closes its file
        if self._own:
            self.client.close()
            if self.cluster is not None:
                self.cluster.close()
