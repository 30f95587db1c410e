"""Basin partitions and time chunks on a Dask cluster (``dask.distributed``): ``thalweg route --dask`` (a
``LocalCluster``) or ``--scheduler tcp://HOST:8786`` (any cluster: dask-jobqueue on HPC, Kubernetes, cloud).

Each merged piece of the partition (:mod:`.partition`: basins, or clusters of huge basins, balanced into one
group per worker thread and stage) lives on one worker for the whole run: its sub-network and parameters are
sent once, and its warm state stays there between time chunks (a future), so a chunk sends only the piece's
runoff rows and brings back its discharge. Stages run in order (a stage's inflow is gathered from the earlier
stages' discharge); the pieces of a stage run at once. Results equal :func:`.partition.route_partitioned` in
one process with the same pieces, and :func:`thalweg.route` of the whole network, to float rounding (torch's
vectorised elementwise math can differ in the last bit with the number of threads a worker runs).
See docs/scale.md for why Dask.
"""
from __future__ import annotations

import dataclasses
import logging
import operator
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..errors import InputError, opt

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
    """

    def __init__(self, network, params, scheme, *, dt: float, client=None, address: str | None = None,
                 n_workers: int = 2, pieces=None, groups_per_worker: int = 1, engine: str = "auto",
                 device: Any = "cpu", dtype: torch.dtype = torch.float32, kernel_length: int | None = None) -> None:
        from ..irf import get_scheme
        from .partition import _whole_checks, balance, basins, history_length, merge, piece_params, stages

        self.network, self.dt, self.engine, self.dtype = network, float(dt), engine, dtype
        self.device = "cpu" if device in (None, "auto") else device
        sch = get_scheme(scheme)
        _whole_checks(network, params, sch, self.dt)  # parameter errors and scheme warnings name the whole network
        self._own = client is None
        self.client, self.cluster = (client, None) if client is not None else dask_client(address, n_workers)
        workers = sorted(self.client.scheduler_info()["workers"])
        if not workers:
            raise InputError("the Dask cluster has no workers.", hint="Start workers, or wait for them to join.")
        threads = self.client.nthreads()
        self.options = {"scheme": sch.name, "dt": self.dt, "engine": engine, "dtype": dtype, "device": self.device,
                        "kernel_length": history_length(network, params, sch, dt, engine=engine,
                                                        kernel_length=kernel_length)}
        self.pieces = basins(network) if pieces is None else pieces
        self.stages: list[list[_Group]] = []
        for stage in stages(self.pieces):
            groups = [merge(g) for g in balance(stage, len(workers) * max(1, int(groups_per_worker)))]
            placed = []
            for i, piece in enumerate(groups):
                worker = workers[i % len(workers)]
                static = (piece, piece.subnetwork(network), piece_params(params, piece))
                future = self.client.scatter([static], workers=[worker], broadcast=False, hash=False)[0]
                placed.append(_Group(piece, worker, future))
            self.stages.append(placed)
        self.threads = {w: threads.get(w, 1) for w in workers}

    def __call__(self, values: Any) -> np.ndarray:
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
        if self._own:
            self.client.close()
            if self.cluster is not None:
                self.cluster.close()
