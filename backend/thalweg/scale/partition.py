"""The river forest in pieces: independent basins, huge basins cut into clusters, pieces balanced by work.

A *piece* is a set of reaches routed as one sub-network. Independent basins need nothing from each other. A
basin larger than ``max_reaches`` is cut into *clusters*: walking upstream to downstream, a reach whose uncut
upstream has reached ``max_reaches`` reaches becomes a cluster outlet; its outflow then *enters* the cluster
downstream of it (the closure engine's staging, generalised to any engine). Clusters are grouped in *stages*: a
piece's upstream pieces are all in earlier stages, so the pieces of one stage run in parallel.

The outflow X of a cut reach enters the reach d below it as upstream inflow, which the engines take only from
reaches inside the network they route. Routing is linear, so X is given to d as the *lateral* runoff q' whose
response equals the response to X as inflow, exactly:

- schemes whose two kernels are one (``g = h``: pure lag, Nash cascade, Hayami, linear storage): q' = X;
- schemes with a recursion Q[t] = r Q[t-1] + b0 U[t] + b1 U[t-1] + c0 q[t] + c1 q[t-1] (the Muskingum family):
  c0 q'[t] + c1 q'[t-1] = b0 X[t] + b1 X[t-1], a two-tap filter (c1 = 0 for every built-in scheme) whose last
  values carry across time chunks in :class:`PieceState`.

So a partitioned run equals the whole run to float rounding (tests/scale/test_partition.py). The transfer is
refused (:class:`InputError`) where it would not be exact: the closure engine, or a recursive scheme routed with
truncated kernels (``kernel_length``), on pieces that receive inflow; basins alone are always exact.

Work of a piece = reaches x steps; :func:`balance` packs pieces into bins greedily, longest first (LPT: at most
4/3 of the optimal largest bin), or, given the row of each reach in a file that each bin's reader reads its rows
of (Dask workers reading their own runoff), into runs of consecutive pieces in the file's order, within
``CONTIGUOUS_TOLERANCE`` of LPT's largest bin. A bin of pieces of one stage is routed as one piece
(:func:`merge`): thousands of small coastal basins cost one call, not thousands.

The API (stable; the multi-GPU and Dask drivers build on it)::

    pieces = clusters(network, max_reaches=200_000)        # or basins(network)
    for stage in stages(pieces):
        for group in balance(stage, n_bins, steps):          # lists of pieces
            piece = merge(group)
            sub = piece.subnetwork(network)                  # ship these to a worker ...
            q, st = route_piece(piece, sub, piece.rows(runoff), piece_params(params, piece), scheme,
                                inflow=inflow_of(piece, q_so_far), dt=dt, state=st_before)
            q_so_far[..., piece.reaches, :] = q              # ... and assemble

or simply ``route_partitioned(network, pieces, runoff, params, scheme, dt=dt)``.
"""
from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..irf import get_scheme
from ..network import RiverNetwork, _native
from ..network.order import level_sort, stable_argsort
from ._warnings import muted

__all__ = ["CONTIGUOUS_TOLERANCE", "Piece", "PieceState", "balance", "basins", "clusters", "history_length",
           "inflow_of", "merge", "piece_params", "route_partitioned", "route_piece", "stages", "transfer_kind"]


# how much more work the largest of a file-ordered balance's bins may hold than LPT's largest (balance(rows=...))
CONTIGUOUS_TOLERANCE = 0.10


@dataclasses.dataclass(frozen=True, eq=False)
class Piece:
    """Reaches routed together.

    Attributes
    ----------
    index : the piece's number in the list it came from (-1 for a :func:`merge` of several).
    reaches : int64 [n], positions in the whole network, in subtree post-order (each after its upstream).
    inflow_from : int64 [E], positions (whole network) of the reaches outside the piece whose outflow enters it.
    inflow_into : int64 [E], local positions (into ``reaches``) of the reaches receiving them.
    upstream : indices of the pieces that route ``inflow_from`` (they must be routed first).
    stage : 0 without inflow, else 1 + the largest stage upstream.
    members : the indices of the pieces a merged piece holds (``(index,)`` for one piece).
    """

    index: int
    reaches: np.ndarray
    inflow_from: np.ndarray
    inflow_into: np.ndarray
    upstream: tuple[int, ...]
    stage: int
    members: tuple[int, ...] = ()

    @property
    def n_reaches(self) -> int:
        return int(self.reaches.size)

    def work(self, steps: int = 1) -> int:
        """Reaches x steps: what routing the piece costs, to first order."""
        return self.n_reaches * int(steps)

    def subnetwork(self, network: RiverNetwork) -> RiverNetwork:
        """The piece as a network (its rows of ``network``; links leaving it become outlets)."""
        return network.take(self.reaches)

    def rows(self, values: Any) -> Any:
        """The piece's rows of a per-reach array [..., N, T] (numpy, torch, xarray-like with ``[..., rows, :]``)."""
        index = self.reaches if not isinstance(values, torch.Tensor) else torch.as_tensor(self.reaches)
        return values[..., index, :]


@dataclasses.dataclass(frozen=True)
class PieceState:
    """The warm state of a piece after a time chunk: the engine's :class:`~thalweg.routing.RoutingState` of the
    piece's sub-network, and the transfer filter's last inflow and lateral equivalent ([B, E'] float64 each,
    one column per receiving reach) so that the next chunk continues exactly."""

    routing: Any
    last_inflow: np.ndarray | None
    last_lateral: np.ndarray | None
    n_reaches: int


def _piece(index: int, reaches: np.ndarray, src: np.ndarray, into_global: np.ndarray, upstream, stage: int) -> Piece:
    local = np.empty(0, np.int64)
    if into_global.size:
        order = np.argsort(reaches, kind="stable")
        local = order[np.searchsorted(reaches[order], into_global)].astype(np.int64)
    return Piece(index=index, reaches=reaches.astype(np.int64), inflow_from=src.astype(np.int64), inflow_into=local,
                 upstream=tuple(int(u) for u in upstream), stage=int(stage), members=(index,))


def basins(network: RiverNetwork) -> list[Piece]:
    """One piece per independent basin (outlet), largest first; none receives inflow. Where rivers split
    (``network.splits``), basins joined by a branch (a delta's distributaries) are one piece."""
    empty = np.empty(0, np.int64)
    if network.splits is not None:  # the network's own rule for basins joined by splits
        parts = [np.asarray(network.index_of(part.ids), dtype=np.int64) for part in network.split()]
        return [_piece(i, p, empty, empty, (), 0) for i, p in enumerate(parts)]
    order = np.asarray(network.postorder, dtype=np.int64)
    basin_of = np.asarray(network.basin)[order]
    bounds = np.flatnonzero(np.r_[True, basin_of[1:] != basin_of[:-1], True])
    sizes = np.diff(bounds)
    rank = np.argsort(-sizes, kind="stable")
    return [_piece(i, order[bounds[j]:bounds[j + 1]], empty, empty, (), 0) for i, j in enumerate(rank)]


def clusters(network: RiverNetwork, max_reaches: int) -> list[Piece]:
    """Basins of at most ``max_reaches`` reaches whole; larger ones cut into clusters (module docstring).

    A cluster holds fewer than ``max_reaches`` reaches per branch entering its outlet (at most about
    ``max_reaches`` times the outlet's upstream branches). Pieces come by stage, then largest first; a piece's
    ``upstream`` are indices in the returned list.
    """
    max_reaches = int(max_reaches)
    if max_reaches < 1:
        raise InputError(f"a cluster holds at least one reach (max_reaches = {max_reaches}).", field="max_reaches")
    if network.splits is not None:
        whole = basins(network)
        if whole and whole[0].n_reaches > max_reaches:
            raise InputError(f"basins of a network whose rivers split are not cut into clusters yet (the largest "
                             f"holds {whole[0].n_reaches:,} reaches, more than {max_reaches:,}).",
                             hint="Route its basins whole (thalweg.scale.basins), or raise max_reaches.")
        return whole
    n = network.n_reaches
    ds = np.asarray(network.downstream, dtype=np.int64)
    cut, root = _cut(network, ds, max_reaches)

    order = np.asarray(network.postorder, dtype=np.int64)
    by_root = stable_argsort(root[order])  # post-order kept within each cluster
    members = order[by_root]
    root_of = root[members]
    starts = np.flatnonzero(np.r_[True, root_of[1:] != root_of[:-1]])
    roots = root_of[starts]
    bounds = np.r_[starts, n]
    cuts = np.flatnonzero(cut)
    target_root = root[ds[cuts]]  # the cluster each cut outlet's outflow enters
    # stage: clusters in ascending level of their outlet (upstream clusters' outlets lie at lower levels)
    levels = np.asarray(network.levels)
    stage_of_root = np.zeros(n, dtype=np.int64)
    by_target = np.argsort(target_root, kind="stable")
    tr_sorted, src_sorted = target_root[by_target], cuts[by_target]
    for r in roots[np.argsort(levels[roots], kind="stable")]:
        a, b = np.searchsorted(tr_sorted, [r, r + 1])
        if b > a:
            stage_of_root[r] = 1 + int(stage_of_root[src_sorted[a:b]].max())
    sizes = np.diff(bounds)
    rank = np.lexsort((-sizes, stage_of_root[roots]))
    number = np.empty(roots.size, dtype=np.int64)
    number[rank] = np.arange(roots.size)
    piece_of_root = np.full(n, -1, dtype=np.int64)
    piece_of_root[roots] = number
    pieces = []
    for j in rank:
        r = roots[j]
        a, b = np.searchsorted(tr_sorted, [r, r + 1])
        src = src_sorted[a:b]
        pieces.append(_piece(int(number[j]), members[bounds[j]:bounds[j + 1]], src, ds[src],
                             sorted(set(piece_of_root[src].tolist())), int(stage_of_root[r])))
    return pieces


def _cut(network: RiverNetwork, ds: np.ndarray, max_reaches: int) -> tuple[np.ndarray, np.ndarray]:
    """(cut [n] bool, root [n]): the reaches whose uncut upstream reaches ``max_reaches`` (not outlets), and the
    first cut reach or outlet at or below each reach. One C walk each way where the network kernels load."""
    lib = _native.load()
    if lib is not None:
        return _native.cut_clusters(lib, ds, level_sort(network.levels)[0], max_reaches)
    n = ds.size
    groups = network.level_groups
    open_size = np.ones(n, dtype=np.int64)
    cut = np.zeros(n, dtype=bool)
    for group in groups:  # headwaters first: a reach's upstream is final when its level comes
        d = ds[group]
        inner = d >= 0
        cut[group] = (open_size[group] >= max_reaches) & inner
        carry = np.where(cut[group], 0, open_size[group])
        np.add.at(open_size, d[inner], carry[inner])
    root = np.where(cut | (ds < 0), np.arange(n), -1)
    for group in reversed(groups):  # a reach belongs to the first cluster outlet at or below it
        free = group[root[group] < 0]
        root[free] = root[ds[free]]
    return cut, root


def stages(pieces: Sequence[Piece]) -> list[list[Piece]]:
    """The pieces grouped by stage, stage 0 first (within a stage, as given)."""
    out: dict[int, list[Piece]] = {}
    for p in pieces:
        out.setdefault(p.stage, []).append(p)
    return [out[s] for s in sorted(out)]


def balance(pieces: Sequence[Piece], n_bins: int, steps: int = 1, *, rows: np.ndarray | None = None,
            tolerance: float = CONTIGUOUS_TOLERANCE) -> list[list[Piece]]:
    """``n_bins`` lists of pieces of about equal work (reaches x ``steps``): greedy, longest first, each piece
    into the least-loaded bin (LPT; ties to the lower bin). Empty bins are dropped; the order is deterministic.

    rows : int64 [N], the row of each reach of the network in a file read by rows (-1: none), e.g. the runoff
        file that Dask workers read their own rows of (``ReachRows.column``). The pieces are then taken in the
        order of their first row and cut into at most ``n_bins`` consecutive runs, the largest run's work the
        least possible (:func:`_consecutive`), so that each bin's rows lie together in the file (a bin's reader
        reads its rows' span, not the whole file, where the file keeps each basin's rows together). The runs are
        kept where their largest work is within ``tolerance`` (a fraction) of LPT's largest bin; else (a piece
        too large to sit evenly among the others) LPT's bins are returned. Bins come in file order.

    Pieces of different stages may share a bin only when the caller routes the bin stage by stage; to route a
    bin as one call (:func:`merge`), balance one stage at a time (:func:`stages`)."""
    n_bins = int(n_bins)
    if n_bins < 1:
        raise InputError(f"pieces go into at least one bin (n_bins = {n_bins}).", field="n_bins")
    work = [p.work(steps) for p in pieces]
    ranked = sorted(range(len(pieces)), key=lambda i: (-work[i], i))
    heap = [(0, b) for b in range(n_bins)]
    bins: list[list[Piece]] = [[] for _ in range(n_bins)]
    for i in ranked:
        load, b = heapq.heappop(heap)
        bins[b].append(pieces[i])
        heapq.heappush(heap, (load + work[i], b))
    lpt = [b for b in bins if b]
    if rows is None or len(pieces) <= 1:
        return lpt
    order = np.lexsort((np.arange(len(pieces)), _first_rows(pieces, rows)))
    in_order = np.asarray(work, dtype=np.int64)[order]
    cuts = _consecutive(in_order, n_bins)
    largest_run = int(np.add.reduceat(in_order, cuts[:-1]).max())
    if largest_run > (1.0 + float(tolerance)) * max(load for load, _ in heap):
        return lpt
    order = order.tolist()
    return [[pieces[i] for i in order[a:b]] for a, b in zip(cuts[:-1].tolist(), cuts[1:].tolist())]


def _first_rows(pieces: Sequence[Piece], rows: np.ndarray) -> np.ndarray:
    """int64 [P]: the first of each piece's ``rows`` (-1 for a piece with none)."""
    none = np.iinfo(np.int64).max
    sizes = np.asarray([p.n_reaches for p in pieces], dtype=np.int64)
    mine = np.asarray(rows, dtype=np.int64)[np.concatenate([p.reaches for p in pieces])]
    first = np.full(sizes.size, none)
    if mine.size:
        held = sizes > 0  # reduceat over each piece's rows: the pieces that hold reaches
        first[held] = np.minimum.reduceat(np.where(mine >= 0, mine, none), (np.cumsum(sizes) - sizes)[held])
    return np.where(first == none, -1, first)


def _consecutive(work: np.ndarray, n_bins: int) -> np.ndarray:
    """Bounds [k + 1] (k <= n_bins) of consecutive runs of ``work`` (int64 >= 0, in order) whose largest sum is
    the least possible: the least capacity that ``n_bins`` runs filled greedily reach (binary search on it), then
    filled greedily to it."""
    total = np.concatenate([[0], np.cumsum(work)])

    def fill(cap: int) -> list[int] | None:
        """The greedy runs of at most ``cap`` each; None once more than ``n_bins`` are needed."""
        bounds, a = [0], 0
        while a < work.size:
            if len(bounds) > n_bins:
                return None
            b = int(np.searchsorted(total, total[a] + cap, side="right")) - 1  # the most pieces that fit
            bounds.append(b)
            a = b
        return bounds

    lo, hi = int(work.max()), int(total[-1])
    while lo < hi:
        mid = (lo + hi) // 2
        if fill(mid) is not None:
            hi = mid
        else:
            lo = mid + 1
    return np.asarray(fill(lo), dtype=np.int64)


def merge(pieces: Sequence[Piece]) -> Piece:
    """Pieces of one stage as one piece (their reaches one after the other; inflows kept). Routing the merged
    piece equals routing each: they share no reach and no link."""
    pieces = list(pieces)
    if not pieces:
        raise InputError("merge needs at least one piece.")
    if len(pieces) == 1:
        return pieces[0]
    stage = {p.stage for p in pieces}
    if len(stage) != 1:
        raise InputError(f"merge takes pieces of one stage (got stages {sorted(stage)}).",
                         hint="Merge the pieces of each stage apart (thalweg.scale.stages).")
    offsets = np.cumsum([0] + [p.n_reaches for p in pieces[:-1]])
    members = tuple(m for p in pieces for m in p.members)
    inside = set(members)
    return Piece(index=-1, reaches=np.concatenate([p.reaches for p in pieces]),
                 inflow_from=np.concatenate([p.inflow_from for p in pieces]),
                 inflow_into=np.concatenate([p.inflow_into + o for p, o in zip(pieces, offsets)]),
                 upstream=tuple(sorted({u for p in pieces for u in p.upstream} - inside)), stage=stage.pop(),
                 members=members)


def piece_params(params: Mapping[str, Any], piece: Piece) -> dict[str, Any]:
    """The piece's values of per-reach parameters (arrays [N]); scalars as they are."""
    out = {}
    for name, value in params.items():
        if isinstance(value, torch.Tensor):
            out[name] = value if value.ndim == 0 else value[torch.as_tensor(piece.reaches, device=value.device)]
        else:
            arr = np.asarray(value)
            out[name] = value if arr.ndim == 0 else arr[piece.reaches]
    return out


def inflow_of(piece: Piece, discharge: Any) -> np.ndarray | None:
    """The outflow entering ``piece`` [..., E, T], gathered from a whole network's discharge [..., N, T] (rows of
    the upstream pieces filled); None when nothing enters it."""
    if not piece.inflow_from.size:
        return None
    return np.asarray(discharge[..., piece.inflow_from, :])


def transfer_kind(scheme: Any, engine: str = "auto", kernel_length: int | None = None,
                  history: bool = False) -> str | None:
    """How outflow entering a piece becomes lateral runoff exactly: 'identity' (one kernel), 'recursion' (the
    scheme's recursion, on the engines that run it exactly), or None (no exact transfer: route basins whole)."""
    from ..routing.engines import resolve

    sch = get_scheme(scheme)
    if sch.recursion is not None:
        if resolve(engine) in ("exact", "fft") and kernel_length is None and not history:
            return "recursion"
        return None
    probe = {p.name: torch.full((1,), p.default, dtype=torch.float64) for p in sch.parameters}
    if sch.uses_length:
        probe["length"] = torch.full((1,), 1000.0, dtype=torch.float64)
    with muted():
        _h, g = sch.kernel(probe, 3600.0, 2)
    return "identity" if g is None else None


def history_length(network: RiverNetwork, params: Mapping[str, Any], scheme: Any, dt: float, *,
                   engine: str = "auto", kernel_length: int | None = None) -> int | None:
    """The kernel length every piece must share when routed with a warm state on a convolving path (the whole
    network's automatic length, which a piece alone would compute from its own reaches); None where the
    engine keeps a recursive state (no kernel length) or ``kernel_length`` is given."""
    from ..routing.engines import resolve
    from ..routing.params import scheme_params

    sch = get_scheme(scheme)
    if kernel_length is not None:
        return int(kernel_length)
    if sch.recursion is not None and resolve(engine) in ("exact", "fft"):
        return None
    p = scheme_params(network, sch, params, dtype=torch.float64, device="cpu")
    return sch.auto_length(p, float(dt))


def _lateral_equivalent(piece: Piece, subnet: RiverNetwork, params: Mapping[str, Any], sch, dt: float,
                        inflow: np.ndarray, kind: str, state: PieceState | None):
    """(receiving local positions [E'], q' [B, E', T] float64, last X, last q') for the inflow [B, E, T]."""
    from ..routing.params import scheme_params

    into, where = np.unique(piece.inflow_into, return_inverse=True)
    b, _, t_len = inflow.shape
    x = np.zeros((b, into.size, t_len))
    np.add.at(x, (slice(None), where), np.asarray(inflow, dtype=np.float64))
    if kind == "identity":
        return into, x, None, None
    receivers = subnet.take(into)
    p = scheme_params(receivers, sch, piece_params(params, _local(into)), dtype=torch.float64, device="cpu")
    with muted():  # the routing of the piece says it
        rec = sch.recursion(p, float(dt))
    b0, b1, c0, c1 = (np.asarray(v.detach().cpu(), dtype=np.float64)[None, :] for v in (rec.b0, rec.b1, rec.c0,
                                                                                           rec.c1))
    if np.any(c0 == 0) or np.any(np.abs(c1) >= np.abs(c0)):
        raise InputError(f"the scheme '{sch.name}' has no stable lateral equivalent of an inflow (c0 = 0 or "
                         f"|c1| >= |c0|) at a cut reach.", hint="Route whole basins (thalweg.scale.basins).")
    x_prev = np.zeros((b, into.size)) if state is None or state.last_inflow is None else state.last_inflow
    y_prev = np.zeros((b, into.size)) if state is None or state.last_lateral is None else state.last_lateral
    shifted = np.concatenate([x_prev[..., None], x[..., :-1]], axis=-1)
    drive = b0[..., None] * x + b1[..., None] * shifted
    if not np.any(c1):
        y = drive / c0[..., None]
    else:
        y = np.empty_like(drive)
        prev = y_prev
        for t in range(t_len):
            prev = (drive[..., t] - c1 * prev) / c0
            y[..., t] = prev
    return into, y, x[..., -1].copy(), y[..., -1].copy()


def _local(positions: np.ndarray) -> Piece:
    empty = np.empty(0, np.int64)
    return Piece(index=-1, reaches=positions, inflow_from=empty, inflow_into=empty, upstream=(), stage=0)


def route_piece(piece: Piece, subnet: RiverNetwork, runoff: Any, params: Mapping[str, Any],
                scheme: Any = "muskingum_nonneg", *, dt: float, inflow: Any = None,
                state: PieceState | None = None, return_state: bool = False,
                engine: str = "auto", dtype: torch.dtype = torch.float32, device: Any = None,
                kernel_length: int | None = None, **engine_options) -> tuple[np.ndarray, PieceState | None]:
    """Route one piece: ``runoff`` its rows [B, n, T] or [n, T] (``piece.rows``), ``params`` its values
    (:func:`piece_params`), ``inflow`` the outflow of ``piece.inflow_from`` over the same steps [B, E, T] or
    [E, T] (:func:`inflow_of`); ``state`` the piece's state after the previous time chunk. With a warm state on
    a convolving path, give every piece the same ``kernel_length`` (:func:`history_length`).

    Returns (Q [B, n, T] or [n, T] as numpy, the piece's state when ``return_state`` else None).
    """
    from ..routing import route

    if subnet.n_reaches != piece.n_reaches:
        raise InputError(f"the sub-network has {subnet.n_reaches:,} reaches; the piece has {piece.n_reaches:,}.",
                         hint="Pass piece.subnetwork(network).")
    sch = get_scheme(scheme)
    values = runoff.detach().cpu().numpy() if isinstance(runoff, torch.Tensor) else np.asarray(runoff)
    squeeze = values.ndim == 2
    values = values[None] if squeeze else values
    if state is not None and state.n_reaches != piece.n_reaches:
        raise InputError(f"the piece state is of a piece of {state.n_reaches:,} reaches, not {piece.n_reaches:,}.",
                         hint="Continue each piece with its own state (the same pieces every chunk).")
    last_x = last_y = None
    if piece.inflow_from.size:
        if inflow is None:
            raise InputError(f"{piece.inflow_from.size:,} cut reaches flow into this piece, and no inflow was given.",
                             hint="Route its upstream pieces first and pass inflow_of(piece, discharge).")
        x = inflow.detach().cpu().numpy() if isinstance(inflow, torch.Tensor) else np.asarray(inflow)
        x = x[None] if x.ndim == 2 else x
        if x.shape != (values.shape[0], piece.inflow_from.size, values.shape[-1]):
            raise InputError(f"the inflow has shape {x.shape}; the piece needs "
                             f"{(values.shape[0], piece.inflow_from.size, values.shape[-1])}.")
        routing_state = None if state is None else state.routing
        kind = transfer_kind(sch, engine, kernel_length,
                             history=routing_state is not None and routing_state.kind == "history")
        if kind is None:
            raise InputError(f"outflow cannot enter a piece exactly with the scheme '{sch.name}' on the "
                             f"'{engine}' engine{' with a fixed kernel length' if kernel_length else ''}.",
                             hint="Route whole basins (thalweg.scale.basins), or the exact engine without a "
                                  "kernel length.")
        into, lateral, last_x, last_y = _lateral_equivalent(piece, subnet, params, sch, dt, x, kind, state)
        values = values.astype(np.float64, copy=True)
        values[:, into] += lateral
    routed = route(subnet, values, params, sch, dt=dt, engine=engine, dtype=dtype, device=device,
                   kernel_length=kernel_length, state=None if state is None else state.routing,
                   return_state=return_state, **engine_options)
    q, new_routing = routed if return_state else (routed, None)
    q = q.detach().cpu().numpy()
    new_state = PieceState(new_routing, last_x, last_y, piece.n_reaches) if return_state else None
    return (q[0] if squeeze else q), new_state


def _whole_checks(network: RiverNetwork, params: Mapping[str, Any], sch, dt: float) -> None:
    """Validate the parameters and give the scheme's warnings once, for the whole network (pieces stay quiet)."""
    from ..routing import report_adjusted
    from ..routing.params import scheme_params

    p = scheme_params(network, sch, params, dtype=torch.float64, device="cpu")
    report_adjusted(network, sch, p, dt)
    if sch.recursion is not None:
        sch.recursion(p, dt)  # Muskingum's negative-coefficient warning
    else:
        sch.kernels(p, dt, 2)


def route_partitioned(network: RiverNetwork, pieces: Sequence[Piece], runoff: Any, params: Mapping[str, Any],
                      scheme: Any = "muskingum_nonneg", *, dt: float, n_bins: int = 1,
                      states: Mapping[tuple[int, ...], PieceState] | None = None, return_state: bool = False,
                      map: Callable[..., Iterable] | None = None, rows: np.ndarray | None = None,
                      engine: str = "auto", dtype: torch.dtype = torch.float32, device: Any = None,
                      kernel_length: int | None = None, **engine_options):
    """Route ``runoff`` [B, N, T] or [N, T] (network order) piece by piece, stage by stage, and assemble Q.

    Each stage's pieces are balanced into ``n_bins`` merged pieces (:func:`balance`, with ``rows`` when given:
    the bins of a Dask run whose workers read a runoff file), routed through ``map`` (default: one after the
    other; an executor's ``map`` runs them in parallel). ``states`` / ``return_state``: the pieces' states keyed
    by the members of each merged piece, to continue in the next time chunk with the same ``pieces``, ``n_bins``
    and ``rows``. Returns Q as numpy (``(Q, states)`` with ``return_state``); equal to :func:`thalweg.route` of the
    whole network to float rounding.
    """
    sch = get_scheme(scheme)
    values = runoff.detach().cpu().numpy() if isinstance(runoff, torch.Tensor) else np.asarray(runoff)
    squeeze = values.ndim == 2
    values = values[None] if squeeze else values
    if values.ndim != 3 or values.shape[1] != network.n_reaches:
        raise InputError(f"runoff has shape {values.shape}; expected [batch, {network.n_reaches:,} reaches, time].")
    covered = np.zeros(network.n_reaches, dtype=np.int64)
    for p in pieces:
        np.add.at(covered, p.reaches, 1)
    if not np.all(covered == 1):
        raise InputError(f"the pieces cover {int((covered > 0).sum()):,} of {network.n_reaches:,} reaches "
                         f"({int((covered > 1).sum()):,} twice).", hint="Pass every piece of one partition.")
    _whole_checks(network, params, sch, float(dt))
    warm = bool(states) or return_state
    length = history_length(network, params, sch, dt, engine=engine, kernel_length=kernel_length) if warm \
        else kernel_length
    dt_dtype = np.float64 if dtype == torch.float64 else np.float32
    out = np.zeros(values.shape, dtype=dt_dtype)
    new_states: dict[tuple[int, ...], PieceState] = {}
    apply = map or (lambda fn, items: [fn(i) for i in items])
    for stage in stages(pieces):
        groups = [merge(g) for g in balance(stage, n_bins, rows=rows)]  # by reaches: the same bins every chunk

        def one(piece: Piece):
            with muted():  # thread-safe: the pieces run in threads
                return route_piece(piece, piece.subnetwork(network), piece.rows(values), piece_params(params, piece),
                                   sch, dt=dt, inflow=inflow_of(piece, out), state=(states or {}).get(piece.members),
                                   return_state=return_state, engine=engine, dtype=dtype, device=device,
                                   kernel_length=length, **engine_options)

        for piece, (q, st) in zip(groups, apply(one, groups)):
            out[:, piece.reaches] = q
            if return_state:
                new_states[piece.members] = st
    out = out[0] if squeeze else out
    return (out, new_states) if return_state else out
