"""Routing over several processes: the river forest's pieces spread over ranks by work, outflow of cut basins
handed between ranks stage by stage, discharge written by each rank into one shared array.

The plan (:func:`plan`) is :mod:`thalweg.scale`'s: pieces (whole basins by default; ``max_reaches`` cuts huge
basins into clusters), grouped in stages, each stage balanced over the ranks by work (reaches x steps, greedy
longest first: :func:`thalweg.scale.balance`), the bin of each rank merged into one routing call
(:func:`thalweg.scale.merge`). Every rank builds nothing of the plan itself: the parent computes it once.

Each rank routes its piece of each stage; after a stage, the outflow of the cut reaches it routed (the reaches
whose outflow enters a piece of a later stage) goes to every rank (``torch.distributed.all_gather``, on the GPU
with NCCL), so the next stage's pieces find their inflow. The ranks write their reaches' rows into one array
mapped by all of them (``q.npy`` in the job folder, in ``/dev/shm`` when it fits): the parts are merged in place,
with no copy through rank 0.

Results: with whole basins, every reach is routed by the same kernels on the same data as in one process, so the
discharge is bit-identical to :func:`thalweg.route` of the whole network (tests/distributed). With clusters, it is
bit-identical to :func:`thalweg.scale.route_partitioned` with the same pieces, and equal to the whole run to float
rounding (the transfer's float64 lateral equivalent).
"""
from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..errors import InputError, ThalwegWarning
from ..irf import get_scheme
from ..network import RiverNetwork
from ..scale import Piece, balance, basins, clusters, history_length, merge, piece_params, route_piece, stages
from .launch import RankInfo, job_folder, launch

__all__ = ["plan", "route", "route_stages", "RankTimes"]


@dataclasses.dataclass(frozen=True)
class RankTimes:
    """What one rank did: ``reaches`` routed, seconds spent routing (``route_s``), handing outflow between
    ranks (``transfer_s``) and writing its rows to the shared array (``write_s``)."""

    rank: int
    reaches: int
    route_s: float
    transfer_s: float
    write_s: float


def plan(network: RiverNetwork, world_size: int, *, max_reaches: int | None = None,
         pieces: Sequence[Piece] | None = None) -> list[list[Piece | None]]:
    """Stage by stage, the merged piece each rank routes (None: nothing for that rank in that stage).

    ``pieces``: a partition of ``network`` (default :func:`thalweg.scale.basins`, or :func:`thalweg.scale.clusters`
    with ``max_reaches``). Each stage's pieces are balanced over ``world_size`` bins (LPT on reaches x steps: the
    steps are the same for every piece, so reaches decide).
    """
    if pieces is None:
        pieces = basins(network) if max_reaches is None else clusters(network, max_reaches)
    out = []
    for stage in stages(pieces):
        bins: list[Piece | None] = [merge(group) for group in balance(stage, world_size)]
        out.append(bins + [None] * (world_size - len(bins)))
    return out


def _cut_reaches(stages_plan: Sequence[Sequence[Piece | None]]) -> np.ndarray:
    """Positions of every reach whose outflow enters a piece of a later stage, sorted."""
    found = [p.inflow_from for bins in stages_plan for p in bins if p is not None and p.inflow_from.size]
    return np.unique(np.concatenate(found)) if found else np.empty(0, np.int64)


def _sends(stages_plan, cut: np.ndarray) -> list[list[np.ndarray]]:
    """[stage][rank]: the cut reaches (positions) each rank routes in each stage."""
    return [[np.empty(0, np.int64) if p is None else np.intersect1d(p.reaches, cut) for p in bins]
            for bins in stages_plan]


def route_stages(info: RankInfo, network: RiverNetwork, stages_plan: Sequence[Sequence[Piece | None]],
                 rows_of: Callable[[Piece], Any], params: Mapping[str, Any], scheme: Any, *, dt: float,
                 engine: str = "auto", dtype: torch.dtype = torch.float32, kernel_length: int | None = None,
                 sink: Callable[[Piece, torch.Tensor], None] | None = None,
                 cache: dict[int, Any] | None = None, states: dict[int, Any] | None = None) -> RankTimes:
    """Route this rank's piece of every stage (inside a process of :func:`launch`), handing the cut reaches'
    outflow to every rank after each stage.

    ``rows_of(piece)``: the piece's runoff rows [B, n, T] (numpy, or a tensor on the rank's device: generated
    there, nothing crosses the host). ``sink(piece, q)``: takes each routed piece's discharge (a tensor [B, n, T]
    on the rank's device). ``cache``: a dict kept between calls over the same plan (repeated passes, time chunks)
    holds each piece's sub-network and parameters, so that they are built once. ``states``: a dict kept from one
    time chunk to the next (empty at the first), updated in place with each piece's warm state, so that chunks
    continue exactly (convolving schemes: give ``kernel_length``, :func:`thalweg.scale.history_length`). A piece
    without inflow is routed
    by :func:`thalweg.routing.route` as :func:`thalweg.scale.route_piece` routes it (the same call), one with
    inflow by ``route_piece``.
    """
    import torch.distributed as dist

    from ..routing import route as route_one

    sch = get_scheme(scheme)
    cut = _cut_reaches(stages_plan)
    sends = _sends(stages_plan, cut)
    device = torch.device(info.device)
    comm = device if info.backend == "nccl" else torch.device("cpu")
    received: torch.Tensor | None = None  # [B, cut, T]: the cut reaches' outflow, as routed
    reaches = 0
    t_route = t_transfer = t_write = 0.0
    for s, bins in enumerate(stages_plan):
        piece = bins[info.rank]
        q = None
        if piece is not None:
            t0 = time.perf_counter()
            rows = rows_of(piece)
            if cache is not None and s in cache:
                sub, pp = cache[s]
            else:
                sub, pp = piece.subnetwork(network), piece_params(params, piece)
                if cache is not None:
                    cache[s] = (sub, pp)
            if piece.inflow_from.size:
                inflow = received[:, torch.as_tensor(np.searchsorted(cut, piece.inflow_from))]
                q, state = route_piece(piece, sub, rows, pp, sch, dt=dt, inflow=inflow.cpu().numpy(), engine=engine,
                                       dtype=dtype, device=device, kernel_length=kernel_length,
                                       state=None if states is None else states.get(s),
                                       return_state=states is not None)
                q = torch.as_tensor(q, device=device)
            else:
                routed = route_one(sub, rows[None] if rows.ndim == 2 else rows, pp, sch, dt=dt, engine=engine,
                                   dtype=dtype, device=device, kernel_length=kernel_length,
                                   state=None if states is None else states.get(s), return_state=states is not None)
                q, state = routed if states is not None else (routed, None)
            if states is not None:
                states[s] = state
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t1 = time.perf_counter()
            if sink is not None:
                sink(piece, q)
            t_route += t1 - t0
            t_write += time.perf_counter() - t1
            reaches += piece.n_reaches
        if s + 1 < len(stages_plan) and max(r.size for r in sends[s]):
            t0 = time.perf_counter()
            width = max(r.size for r in sends[s])
            batch, steps = (q.shape[0], q.shape[-1]) if q is not None else (None, None)
            shape = torch.tensor([batch or 0, steps or 0], device=comm)
            dist.all_reduce(shape, op=dist.ReduceOp.MAX)  # a rank idle in this stage still knows B and T
            batch, steps = int(shape[0]), int(shape[1])
            mine = torch.zeros((batch, width, steps), dtype=dtype, device=comm)
            own = sends[s][info.rank]
            if own.size:
                order = np.argsort(piece.reaches)
                local = order[np.searchsorted(piece.reaches, own, sorter=order)]
                mine[:, :own.size] = q[:, torch.as_tensor(local, device=q.device)].to(comm)
            gathered = [torch.empty_like(mine) for _ in range(info.world_size)]
            dist.all_gather(gathered, mine)
            if received is None:
                received = torch.zeros((batch, cut.size, steps), dtype=dtype, device=comm)
            for r, rows_sent in enumerate(sends[s]):
                if rows_sent.size:
                    received[:, torch.as_tensor(np.searchsorted(cut, rows_sent))] = gathered[r][:, :rows_sent.size]
            t_transfer += time.perf_counter() - t0
    return RankTimes(rank=info.rank, reaches=reaches, route_s=t_route, transfer_s=t_transfer, write_s=t_write)


def _rank_route(info: RankInfo, job: dict[str, Any]) -> RankTimes:
    """One rank's share of :func:`route` (runs in a child process): rows from the mapped runoff, discharge into
    the mapped output, time chunk by time chunk when ``chunk_steps`` is set."""
    values = np.load(info.folder / "runoff.npy", mmap_mode="r")  # [B, N, T], the rank reads only its rows
    out = np.load(info.folder / "q.npy", mmap_mode="r+")
    steps = values.shape[-1]
    chunk = job["chunk_steps"] or steps
    cache: dict[int, Any] = {}
    states: dict[int, Any] | None = {} if job["chunk_steps"] else None
    total = RankTimes(info.rank, 0, 0.0, 0.0, 0.0)
    for a in range(0, steps, chunk):
        b = min(a + chunk, steps)

        def sink(piece: Piece, q: torch.Tensor, a=a, b=b) -> None:
            out[:, piece.reaches, a:b] = q.cpu().numpy()

        times = route_stages(info, job["network"], job["plan"], lambda piece, a=a, b=b: values[:, piece.reaches, a:b],
                             job["params"], job["scheme"], dt=job["dt"], engine=job["engine"], dtype=job["dtype"],
                             kernel_length=job["kernel_length"], sink=sink, cache=cache, states=states)
        total = RankTimes(info.rank, times.reaches, total.route_s + times.route_s,
                          total.transfer_s + times.transfer_s, total.write_s + times.write_s)
    out.flush()
    return total


def route(network: RiverNetwork, runoff: Any, params: Mapping[str, Any], scheme: Any = "muskingum_nonneg", *,
          dt: float, world_size: int, device: Any = "auto", engine: str = "auto",
          dtype: torch.dtype = torch.float32, max_reaches: int | None = None, pieces: Sequence[Piece] | None = None,
          kernel_length: int | None = None, chunk_steps: int | None = None, return_times: bool = False):
    """Route ``runoff`` over ``world_size`` processes, one per GPU (CPU processes with gloo without a GPU).

    Parameters
    ----------
    network : the river network (N reaches).
    runoff : m3/s, [B, N, T] or [N, T] (numpy or torch), reaches in network order, or a :class:`thalweg.Runoff`.
    params : the scheme's parameters, each an array [N] or a scalar, SI (:func:`thalweg.resolve_params`).
    scheme, engine, dtype, kernel_length : as :func:`thalweg.route`.
    dt : step length, s.
    world_size : processes (GPUs).
    device : 'auto' (the GPUs when torch sees them, else CPU processes: a ThalwegWarning says so), 'cuda', 'cpu'.
    max_reaches : cut basins larger than this into clusters (:func:`thalweg.scale.clusters`) so that no rank waits
        on one huge basin; None (default): whole basins, bit-identical to one process.
    pieces : a partition of your own (overrides ``max_reaches``).
    chunk_steps : route each rank's share this many steps at a time, the exact warm state carried across chunks
        (bounds each GPU's memory for long runs); None: the whole period at once.
    return_times : also return one :class:`RankTimes` per rank.

    Returns
    -------
    Q : numpy [B, N, T] or [N, T] (as the runoff), m3/s at the end of each step (``(Q, times)`` with
    ``return_times``).

    Raises
    ------
    InputError : more GPUs than torch sees, a partition that does not cover the network, inflow that cannot enter a
        piece exactly (:func:`thalweg.scale.route_piece`), or a process's own InputError.
    """
    from ..scale.partition import _whole_checks  # one check of the parameters, warnings once (not per rank)

    sch = get_scheme(scheme)
    if hasattr(runoff, "values") and hasattr(runoff, "dt") and not isinstance(runoff, (np.ndarray, torch.Tensor)):
        if not np.isclose(float(runoff.dt), float(dt)):
            raise InputError(f"dt is {dt:g} s; the runoff's step is {runoff.dt:g} s.", field="dt")
        runoff = runoff.values
    values = runoff.detach().cpu().numpy() if isinstance(runoff, torch.Tensor) else np.asarray(runoff)
    squeeze = values.ndim == 2
    values = values[None] if squeeze else values
    if values.ndim != 3 or values.shape[1] != network.n_reaches:
        raise InputError(f"runoff has shape {values.shape}; expected [batch, {network.n_reaches:,} reaches, time].",
                         hint="Read it with thalweg.read_runoff(path, network), which aligns reaches.")
    stages_plan = plan(network, world_size, max_reaches=max_reaches, pieces=pieces)
    covered = np.zeros(network.n_reaches, dtype=np.int64)
    for bins in stages_plan:
        for p in bins:
            if p is not None:
                np.add.at(covered, p.reaches, 1)
    if not np.all(covered == 1):
        raise InputError(f"the pieces cover {int((covered > 0).sum()):,} of {network.n_reaches:,} reaches "
                         f"({int((covered > 1).sum()):,} twice).", hint="Pass every piece of one partition.")
    _whole_checks(network, params, sch, float(dt))
    if chunk_steps is not None:
        if isinstance(chunk_steps, bool) or not isinstance(chunk_steps, int) or chunk_steps < 1:
            raise InputError(f"chunk_steps must be a whole number >= 1 (got {chunk_steps!r}).", field="chunk_steps")
        # every chunk and piece shares the whole network's kernel length on convolving paths
        kernel_length = history_length(network, params, sch, dt, engine=engine, kernel_length=kernel_length)
    plain = {name: (value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value)
             for name, value in params.items()}
    out_dtype = np.float64 if dtype == torch.float64 else np.float32
    nbytes = values.nbytes + values.size * np.dtype(out_dtype).itemsize
    job = {"network": dataclasses.replace(network, geometry=None), "scheme": sch.name,
           "params": plain, "dt": float(dt), "engine": engine, "dtype": dtype, "plan": stages_plan,
           "kernel_length": kernel_length, "chunk_steps": chunk_steps}
    with job_folder(nbytes) as folder:
        np.save(folder / "runoff.npy", values, allow_pickle=False)
        q = np.lib.format.open_memmap(folder / "q.npy", mode="w+", dtype=out_dtype, shape=values.shape)
        del q
        with warnings.catch_warnings():
            warnings.simplefilter("always", ThalwegWarning)
            times = launch(_rank_route, job, world_size, device=device, folder=folder)
        # the mapping outlives the folder's removal (the file's memory is freed with the last reference)
        result = np.asarray(np.load(folder / "q.npy", mmap_mode="r"))
    result = result[0] if squeeze else result
    return (result, times) if return_times else result
