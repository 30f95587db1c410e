"""Routing on a network whose rivers split (a DAG): every engine, exactly and differentiably.

On a DAG the inflow of reach i is U_i = sum over links u -> i of f_ui Q_u (``network.dag``). The tree engines
(``exact``, ``closure``, ``fft``) route forests, so the DAG is cut into **stages**: the stage of a reach is
the largest number of split reaches on any path from a headwater down to it (itself excluded), so

- a link from a reach that does not split stays inside its stage unless its receiver lies in a later stage;
- every link out of a split reach crosses into a later stage.

Each stage is a forest routed by the chosen tree engine in one call. A link u -> i that crosses stages enters
i's stage as a *virtual source*: an extra headwater reach with the identity kernel (h = g = delta; the
recursion Q = q) whose runoff is f_ui Q_u, Q_u being known from u's earlier stage, draining into i. Virtual
sources add one row per crossing link and nothing else, so every stage is an ordinary tree routing and the
result is the DAG's exactly (the recursion is linear): for the closure engine the path kernels summed over
every path, weighted by the products of the fractions along it, are the stage closures chained through the
virtual sources. Mass is conserved exactly at every split: a split reach's outflow leaves it only through its
links, whose fractions sum to 1.

Gradients: autograd through the glue (index_select, the multiplication by f), each stage's engine giving its
own backward (the compiled and Triton recursions' adjoints run on the reversed forest), so gradients reach
runoff, parameters and the fractions (learned fractions: ``network.dag.softmax_fractions`` of logits).

Which path runs when:

- **native** (the exact engine on the CPU with the compiled kernels, for a scheme with a recursion: Muskingum,
  linear storage, sub-stepped Muskingum): the whole DAG in one compiled pass (``native_plan``). The main tree
  keeps each split reach's main link; its other (minor) links are routed in a post-order of the main tree in
  which every minor link's source comes before its receiver (``network.dag.minor_link_order``), the receiver
  taking their water from a small side buffer (``_native/routing.c``); the adjoint runs on the same links in
  reverse, with the fractions' gradients. Where the main tree admits no such order (two anabranches that
  exchange water both ways), the split reaches that close the cycle leave the tree (all their links go
  through side rows; a debug log says how many), which always gives an order.
- **triton** (the exact engine on a GPU, same schemes): the Triton recursions take weighted links
  (``_gpu.iir_route_dag``: U_i = sum f_ui Q_u in the forward over the DAG's topological levels, the adjoint
  spread over the same links in the backward, dL/df_ui = sum_t adjU_i[t] Q_u[t]): one launch each way.
- **stages** (everything else: the closure and fft engines, convolution schemes): the stage cut below.

This is a separate path from the tree engines (``engines.run`` dispatches here when the network has
splits); a tree never comes here, so trees route exactly as before. Warm states (time chunks) are not
supported on DAGs yet.
"""
from __future__ import annotations

import dataclasses
import heapq
import logging
import re
import warnings
import weakref

import numpy as np
import torch

from ..errors import InputError, ThalwegWarning
from ..irf import Recursion, Scheme
from ..irf.base import Compact
from ..network import RiverNetwork
from ..network.dag import dag_levels, edges, minor_link_order
from .topology import Topology, _children, topology

__all__ = ["DagPlan", "NativePlan", "dag_plan", "native_plan", "route_dag", "check_fractions"]

log = logging.getLogger(__name__)

_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
SINKS = 16  # work items per stage at most (basins gathered under sink rows)


@dataclasses.dataclass(frozen=True, eq=False)
class Stage:
    """One stage: a forest of real reaches and virtual sources.

    real : int64 [n_real], global positions of the stage's reaches (local rows 0..n_real-1).
    net, topo : the local forest (rows: real reaches, then virtual sources) and its topology.
    v_link : int64 [n_virtual], the crossing link (index into ``network.dag.edges``) each virtual source carries.
    v_src : int64 [n_virtual], global position of the reach whose outflow it carries.
    feeds : per earlier stage s, (s, local rows of the sources in s, rows among this stage's virtual sources).
    """

    real: np.ndarray
    net: RiverNetwork
    topo: Topology
    v_link: np.ndarray
    v_src: np.ndarray
    feeds: list
    cache: dict = dataclasses.field(default_factory=dict, repr=False)

    @property
    def n_real(self) -> int:
        return int(self.real.size)

    @property
    def n_virtual(self) -> int:
        return int(self.v_link.size)

    def on(self, name: str, device, value=None) -> torch.Tensor:
        key = (name, str(device))
        if key not in self.cache:
            self.cache[key] = torch.as_tensor(getattr(self, name) if value is None else value, device=device)
        return self.cache[key]


@dataclasses.dataclass(frozen=True, eq=False)
class DagPlan:
    stages: list
    inverse: np.ndarray  # int64 [N]: column of each reach in the stages' outputs concatenated
    n_links: int
    cache: dict = dataclasses.field(default_factory=dict, repr=False)

    @property
    def n_virtual(self) -> int:
        return sum(s.n_virtual for s in self.stages)


def _forest(n: int, downstream: np.ndarray) -> RiverNetwork:
    ids = np.arange(n, dtype=np.int64)
    return RiverNetwork(ids=ids, downstream=downstream, length=np.full(n, np.nan), area=np.full(n, np.nan))


def _with_sinks(down: np.ndarray, groups: int = SINKS) -> np.ndarray:
    """``down`` with up to ``groups`` sink rows appended, each receiving the outlets of a share of the forest's
    basins (balanced by size): a stage with thousands of small basins becomes a few work items for the
    engines (a sink's own output is never used)."""
    outlets = np.flatnonzero(down < 0)
    if outlets.size <= groups:
        return down
    from ..network.order import accumulate, kahn_levels

    levels, _ = kahn_levels(down)
    size = accumulate(down, np.ones(down.size, dtype=np.int64), levels)[outlets]
    order = np.argsort(-size, kind="stable")
    load = np.zeros(groups, dtype=np.int64)
    group = np.empty(outlets.size, dtype=np.int64)
    for k in order.tolist():  # greedy: the biggest basin to the lightest sink
        g = int(np.argmin(load))
        group[k] = g
        load[g] += size[k]
    out = np.r_[down, np.full(groups, -1, dtype=np.int64)]
    out[outlets] = down.size + group
    return out


def build_plan(network: RiverNetwork, *, sinks: bool = False) -> DagPlan:
    """The stages of ``network`` (see the module docstring); numpy, one vectorised pass per DAG level.
    ``sinks``: gather each stage's basins under a few sink rows (for the exact engine on the CPU, whose work
    items are basins; never for the closure engine, whose blocks would span each sink's whole upstream, nor on
    a GPU, where a sink's thousands of inflows would be summed by one thread)."""
    n = network.n_reaches
    src, dst, _ = edges(network)
    levels, stuck = dag_levels(n, src, dst)
    if stuck.size:
        raise AssertionError("the network's DAG has a cycle; build it with from_arrays, which validates")
    is_split = np.zeros(n, dtype=bool)
    is_split[network.splits.reach] = True
    weight = is_split[src].astype(np.int64)
    # as late as possible: a reach's stage is the largest number of splits on any path below it, counted
    # back from the last stage, so a link from a reach that does not split never crosses stages
    below = np.zeros(n, dtype=np.int64)
    by_level = np.argsort(levels[src], kind="stable")
    bounds = np.searchsorted(levels[src][by_level], np.arange(int(levels.max(initial=0)) + 2))
    for lv in range(bounds.size - 2, -1, -1):
        e = by_level[bounds[lv]:bounds[lv + 1]]
        np.maximum.at(below, src[e], below[dst[e]] + weight[e])
    stage = int(below.max(initial=0)) - below
    inside = (stage[src] == stage[dst]) & ~is_split[src]
    crossing = np.flatnonzero(~inside)
    local_down = np.full(n, -1, dtype=np.int64)
    n_stages = int(stage.max(initial=0)) + 1
    where_stage = np.empty(n, dtype=np.int64)  # local row of each reach within its stage
    stages_real = [np.flatnonzero(stage == s) for s in range(n_stages)]
    for real in stages_real:
        where_stage[real] = np.arange(real.size)
    local_down[src[inside]] = where_stage[dst[inside]]
    stages, offset = [], 0
    inverse = np.empty(n, dtype=np.int64)
    for s, real in enumerate(stages_real):
        inverse[real] = offset + np.arange(real.size)
        offset += real.size
        v_link = crossing[stage[dst[crossing]] == s]
        down = np.r_[local_down[real], where_stage[dst[v_link]]]
        if sinks:
            down = _with_sinks(down)
        net = _forest(down.size, down)
        feeds = []
        src_stage = stage[src[v_link]]
        for s0 in np.unique(src_stage).tolist():
            rows = np.flatnonzero(src_stage == s0)
            feeds.append((int(s0), where_stage[src[v_link[rows]]], rows))
        stages.append(Stage(real=real, net=net, topo=topology(net), v_link=v_link, v_src=src[v_link], feeds=feeds))
    return DagPlan(stages=stages, inverse=inverse, n_links=int(src.size))


def dag_plan(network: RiverNetwork, *, sinks: bool = False) -> DagPlan:
    """The cached stage plan of ``network``."""
    plans = _PLANS.setdefault(network, {})
    if sinks not in plans:
        plans[sinks] = build_plan(network, sinks=sinks)
    return plans[sinks]


@dataclasses.dataclass(frozen=True, eq=False)
class NativePlan:
    """The DAG for the compiled recursions: the main tree in an order that meets every minor link's source
    before its receiver (``topo``: that order, the groups of basins joined by minor links as its basins, the
    upstream CSR of reaches that do not split) and the links of the split reaches (``links``)."""

    topo: Topology
    links: object  # _cpu.SplitLinks


def _side_rows(start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, int]:
    """A row for each [start, end] span, spans that overlap on different rows, as few rows as the largest
    overlap (greedy in order of start)."""
    rows = np.empty(start.size, dtype=np.int64)
    free: list[int] = []
    busy: list[tuple[int, int]] = []
    n_rows = 0
    for k in np.argsort(start, kind="stable").tolist():
        while busy and busy[0][0] < start[k]:
            free.append(heapq.heappop(busy)[1])
        if free:
            rows[k] = free.pop()
        else:
            rows[k] = n_rows
            n_rows += 1
        heapq.heappush(busy, (int(end[k]), int(rows[k])))
    return rows, n_rows


def build_native(network: RiverNetwork) -> NativePlan:
    """The :class:`NativePlan` of ``network`` (see the module docstring)."""
    from ._cpu import SplitLinks
    from .topology import build

    order, group_ptr, forest = minor_link_order(network)
    n = network.n_reaches
    cut = int(np.count_nonzero(forest != network.downstream))
    if cut:
        log.debug("thalweg: %d split reaches routed with all their links outside the main tree (their sibling "
                  "subtrees send water into each other)", cut)
    base = build(_forest(n, forest)) if cut else topology(network)
    down = base.downstream
    pos = np.empty(n, dtype=np.int64)
    pos[order] = np.arange(n)
    splits = network.splits
    src, to = splits.source, splits.to
    if not np.array_equal(to[splits.is_main], network.downstream[splits.reach]):
        raise AssertionError("a split's first outlet is not the reach's downstream reach")
    counts = np.zeros(n, dtype=np.int64)
    counts[splits.reach] = np.diff(splits.ptr)
    link_ptr = np.r_[0, np.cumsum(counts)].astype(np.int64)
    # a receiver downstream on the source's path in the forest (its main receiver among them) has its inflow
    # open in the stack when the source is routed; the others take the water through a side row
    ancestor = (pos[to] - base.size[to] < pos[src]) & (pos[src] <= pos[to])
    if np.any(pos[src] >= pos[to]):
        raise AssertionError("minor_link_order left a link whose source comes after its receiver")
    side = ~ancestor
    receivers, inverse = np.unique(to[side], return_inverse=True)
    first = np.full(receivers.size, n, dtype=np.int64)
    np.minimum.at(first, inverse, pos[src[side]])
    rows, n_side = _side_rows(first, pos[receivers])
    side_of = np.full(n, -1, dtype=np.int64)
    side_of[receivers] = rows
    link_row = np.where(ancestor, -base.depth[to] - 1, side_of[to]).astype(np.int64)
    in_link = np.argsort(to, kind="stable").astype(np.int64)
    in_ptr = np.searchsorted(to[in_link], np.arange(n + 1)).astype(np.int64)
    tree_down = down.copy()
    tree_down[splits.reach] = -1  # the links of split reaches come through in_*
    child_ptr, child_idx = _children(tree_down)
    topo = dataclasses.replace(base, order=order, position=pos, basin_ptr=group_ptr, child_ptr=child_ptr,
                               child_idx=child_idx, _device_cache={})
    links = SplitLinks(link_ptr=link_ptr, link_row=link_row, side_of=side_of, in_ptr=in_ptr,
                       in_src=np.ascontiguousarray(src[in_link]), in_link=in_link, n_side=int(n_side))
    return NativePlan(topo=topo, links=links)


def native_plan(network: RiverNetwork) -> NativePlan:
    """The cached :class:`NativePlan` of ``network``."""
    plans = _PLANS.setdefault(network, {})
    if "native" not in plans:
        plans["native"] = build_native(network)
    return plans["native"]


def _route_native(job, frac: torch.Tensor):
    """(Q, None) from the compiled one-pass DAG recursion, or None where it does not apply (a scheme without a
    recursion, no compiled kernels: see the module docstring)."""
    from . import _cpu
    from .exact import plan_exact

    if plan_exact(job.scheme, job.runoff.device, kernel_length=job.kernel_length, history=False) != "iir-native":
        return None
    plan = native_plan(job.network)
    coef = job.scheme.recursion(job.params, job.dt).stacked()
    out, _ = _cpu.iir_route(job.runoff, coef, plan.topo, None, plan.links, frac)
    if job.progress is not None:
        job.progress(1, 1)
    return out, None


def with_virtual(scheme: Scheme, n_virtual: int) -> Scheme:
    """``scheme`` whose kernels and recursion gain ``n_virtual`` identity rows (h = g = delta; Q = q) after the
    rows of the parameters given."""
    if n_virtual == 0:
        return scheme

    def kernel(p, dt, n_steps):
        h, g = scheme.kernel(p, dt, n_steps)
        delta = torch.zeros(n_virtual, h.shape[-1], dtype=h.dtype, device=h.device)
        delta[:, 0] = 1.0
        return torch.cat([h, delta]), (None if g is None else torch.cat([g, delta]))

    def recursion(p, dt):
        rec = scheme.recursion(p, dt)
        zero = torch.zeros(n_virtual, dtype=rec.r.dtype, device=rec.r.device)
        one = torch.ones_like(zero)
        return Recursion(r=torch.cat([rec.r, zero]), b0=torch.cat([rec.b0, one]), b1=torch.cat([rec.b1, zero]),
                         c0=torch.cat([rec.c0, one]), c1=torch.cat([rec.c1, zero]))

    def travel_time(p, dt):
        tt = scheme.travel_time(p, dt)
        return torch.cat([tt, torch.zeros(n_virtual, dtype=tt.dtype, device=tt.device)])

    def compact(p, dt, n_steps, tol):  # the identity rows: one tap, 1 at lag 0
        c = scheme.compact(p, dt, n_steps, tol)
        zero = torch.zeros(n_virtual, dtype=c.first.dtype, device=c.first.device)
        delta = torch.zeros(n_virtual, c.taps.shape[-1], dtype=c.taps.dtype, device=c.taps.device)
        delta[:, 0] = 1.0
        return Compact(torch.cat([c.first, zero]), torch.cat([c.count, zero + 1]), torch.cat([c.taps, delta]))

    return dataclasses.replace(scheme, kernel=kernel, travel_time=travel_time, adjusted=None,
                               recursion=None if scheme.recursion is None else recursion,
                               compact=None if scheme.compact is None else compact)


def check_fractions(network: RiverNetwork, fractions, device) -> torch.Tensor:
    """Split fractions [E] as a float64 tensor on ``device`` (the network's when None); InputError for a wrong
    shape, negative or non-finite values, or a split whose fractions do not sum to 1."""
    splits = network.splits
    if splits is None:
        raise InputError("split fractions were given, but the network has no splits.",
                         hint="Leave fractions out, or read the network with its bifurcations (bifurcations='split').")
    if fractions is None:
        return torch.as_tensor(np.array(splits.fraction), dtype=torch.float64, device=device)
    f = torch.as_tensor(fractions, device=device).to(torch.float64)
    if f.shape != (splits.n_links,):
        raise InputError(f"fractions have shape {tuple(f.shape)}; the network's splits have {splits.n_links:,} links "
                         f"(network.splits.to).", hint="Give one fraction per link, e.g. softmax_fractions(network, "
                                                       "logits).")
    with torch.no_grad():
        ff = f.detach().cpu().numpy()
        total = np.add.reduceat(ff, splits.ptr[:-1])
        low = np.minimum.reduceat(np.nan_to_num(ff, nan=-1.0), splits.ptr[:-1])
        bad = ~np.isfinite(total) | (np.abs(total - 1.0) > 1e-6) | (low < 0)
    if bad.any():
        ids = network.ids[splits.reach[bad]]
        raise InputError(f"the split fractions of {int(bad.sum()):,} reaches are negative, not finite or do not sum "
                         f"to 1 (reach {', '.join(str(i) for i in ids[:3])}).", ids=ids.tolist(),
                         hint="Give fractions >= 0 summing to 1 over each split reach's links, e.g. "
                              "thalweg.network.softmax_fractions(network, logits).")
    return f


def _report_once(job, caught: list) -> None:
    """Re-issue the stages' warnings once each: what the scheme says about its parameters (negative Muskingum
    coefficients, ...) is said once for the whole network, as for a tree; others once per distinct text."""
    if not caught:
        return
    with warnings.catch_warnings(record=True) as whole:
        warnings.simplefilter("always", ThalwegWarning)
        with torch.no_grad():
            job.scheme.kernel(job.params, job.dt, 2)  # the scheme's own checks, on every reach at once
    def shape(w) -> str:
        return re.sub(r"[0-9][0-9,.e+-]*", "#", str(w.message))

    said = {shape(w) for w in caught}
    whole = [w for w in whole if shape(w) in said]
    shapes = {shape(w) for w in whole}
    seen = set()
    for w in whole + [w for w in caught if shape(w) not in shapes]:
        text = str(w.message)
        if text not in seen:
            seen.add(text)
            warnings.warn(text, w.category, stacklevel=5)


def _empty(shape, dtype, device) -> torch.Tensor:
    """An uninitialised buffer; on the CPU the engines' allocator (huge pages: first-touch page faults of a
    fresh buffer of 10^8 values cost as much as routing it)."""
    if torch.device(device).type == "cpu":
        from ._cpu import empty

        return empty(shape, dtype)
    return torch.empty(shape, dtype=dtype, device=device)


def route_dag(engine: str, job, run_one):
    """Route ``job`` (``engines.Job``, a network with splits) with ``engine``: in one compiled pass where the
    module docstring's native path applies, else with the tree engine stage by stage; returns (Q [B, N, T],
    None). ``run_one(engine, job)`` routes one forest."""
    if job.state is not None or job.want_state:
        raise InputError("routing in time chunks (a warm state) is not supported yet on a network whose rivers "
                         "split.", hint="Route the whole series in one pass (compute the runoff, not a dask array), "
                                        "or read the network with bifurcations='main'.")
    network = job.network
    runoff = job.runoff
    dev, dtype = runoff.device, runoff.dtype
    frac = check_fractions(network, job.fractions, dev)
    if engine == "exact" and dev.type == "cpu":
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ThalwegWarning)
            done = _route_native(job, frac)
        for text, category in dict.fromkeys((str(w.message), w.category) for w in caught):
            warnings.warn(text, category, stacklevel=4)  # once each, where the user called (as the stages' are)
        if done is not None:
            return done
    if engine == "exact" and job.scheme.recursion is not None and job.kernel_length is None and dev.type == "cuda":
        from . import _gpu

        if _gpu.available(dev):  # the weighted Triton recursions: the whole DAG in one launch, no stages
            coef = job.scheme.recursion(job.params, job.dt).stacked().to(dev)
            out = _gpu.iir_route_dag(runoff, coef, network, frac)
            if job.progress is not None:
                job.progress(1, 1)
            return out, None
    _, _, link_frac = edges(network, frac)  # [M] tensor: 1 on tree links
    plan = dag_plan(network, sinks=engine == "exact" and dev.type == "cpu")
    grad = torch.is_grad_enabled() and (runoff.requires_grad or frac.requires_grad
                                        or any(v.requires_grad for v in job.params.values()))
    b, _, t_len = runoff.shape
    said: list = []
    outs: list[torch.Tensor] = []
    out = None if grad else _empty((b, network.n_reaches, t_len), dtype, dev)
    for k, st in enumerate(plan.stages):
        real = st.on("real", dev)
        n_rows = st.net.n_reaches
        carried = None
        if st.n_virtual:
            pieces, rows = [], []
            if grad:
                for s0, local, vrows in st.feeds:
                    pieces.append(outs[s0].index_select(1, torch.as_tensor(local, device=dev)))
                    rows.append(vrows)
                order = np.concatenate(rows)
                carried = pieces[0] if len(pieces) == 1 else torch.cat(pieces, 1)
                if not np.array_equal(order, np.arange(order.size)):
                    perm = np.empty_like(order)
                    perm[order] = np.arange(order.size)
                    carried = carried.index_select(1, st.on("perm", dev, perm))
            else:  # every source's outflow is already in place in ``out``
                carried = out.index_select(1, st.on("v_src", dev))
            carried = carried * link_frac.index_select(0, st.on("v_link", dev)).to(dtype)[None, :, None]
        if grad:
            parts = [runoff.index_select(1, real)]
            if carried is not None:
                parts.append(carried)
            if n_rows > st.n_real + st.n_virtual:
                parts.append(runoff.new_zeros(b, n_rows - st.n_real - st.n_virtual, t_len))
            x = parts[0] if len(parts) == 1 else torch.cat(parts, 1)
        else:
            x = _empty((b, n_rows, t_len), dtype, dev)
            if n_rows > st.n_real + st.n_virtual:
                x[:, st.n_real + st.n_virtual:] = 0.0  # the sinks take no runoff
            for i in range(b):  # straight into the stage's buffer: one copy of the runoff over all stages
                torch.index_select(runoff[i], 0, real, out=x[i, :st.n_real])
            if carried is not None:
                x[:, st.n_real:st.n_real + st.n_virtual] = carried
        params = {name: v.index_select(0, real) for name, v in job.params.items()}
        sub = dataclasses.replace(job, network=st.net, topo=st.topo, runoff=x,
                                  scheme=with_virtual(job.scheme, n_rows - st.n_real), params=params, state=None,
                                  want_state=False, at=None, progress=None, fractions=None)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ThalwegWarning)
            y, _ = run_one(engine, sub)
        said.extend(caught)
        y = y[:, :st.n_real] if n_rows > st.n_real else y
        if grad:
            outs.append(y)
        else:
            for i in range(b):
                out[i].index_copy_(0, real, y[i])
        if job.progress is not None:
            job.progress(k + 1, len(plan.stages))
    _report_once(job, said)
    if not grad:
        return out, None
    stacked = outs[0] if len(outs) == 1 else torch.cat(outs, 1)
    if str(dev) not in plan.cache:
        plan.cache[str(dev)] = torch.as_tensor(plan.inverse, device=dev)
    inverse = plan.cache[str(dev)]
    return stacked.index_select(1, inverse), None
