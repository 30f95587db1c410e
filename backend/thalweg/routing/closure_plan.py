"""Structure of the closure engine: clusters, stages and the block-sparse layout (numpy, vectorised).

Clusters. Walking the tree from the headwaters, a reach joins its upstream reaches' cluster unless a
path kernel from some source of that cluster would outgrow the cluster kernel length L_c: the mass
of a path kernel beyond L_c is bounded (Chernoff) by exp(sum over the path of log M_k(theta) -
theta L_c), M_k(theta) = sum_m |h_k[m]| e^(theta m), for every theta > 0, and |K_ij| <= the
convolution of the |h_k|, so the bound also holds for kernels with negative taps (Muskingum C0 < 0).
An upstream reach whose sources would exceed ``tol`` is cut: it becomes its cluster's outlet. A cluster
also closes when its closure (pairs of reach and upstream reach) exceeds ``max_pairs``.

Stages. A cluster's stage is one more than the largest stage of the clusters draining into it; the
clusters of a stage are routed together. A cut reach u feeding reach e of a later stage enters that
stage as a *virtual source* with kernel delta, placed at u's post-order position (inside e's block),
carrying u's discharge from its own stage: its path kernels are h_e * ... * h_j, as the cut requires.

Layout. A stage's elements (its reaches and virtual sources) in global subtree post-order: the
upstream of each element is the contiguous run of ``size`` elements ending at it. Targets come in
blocks of ``block`` elements; target block J needs source blocks I_lo(J)..J, dense blocks
[block (source), block (target), L_c] stored J-major (``bp_ptr``).
"""
from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import torch

from .topology import Topology

__all__ = ["THETAS", "ClosurePlan", "Stage", "build_plan", "plan_clusters"]

THETAS = np.array([0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0])  # times 1 / L_c


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage: elements, their path structure and the block layout."""

    elements: np.ndarray  # int64 [n]: reach position, or -(u + 1) for the virtual source of cut reach u
    is_virtual: np.ndarray  # bool [n]
    reach: np.ndarray  # int64 [n]: the reach (u for a virtual source)
    size: np.ndarray  # int64 [n]: elements upstream of each element (itself included) in its cluster
    n_pad: int  # n rounded up to the block size
    bp_ptr: np.ndarray  # int64 [n_blocks + 1]
    bp_src: np.ndarray  # int64 [n_bp]: source block of each block pair
    diag_rows: np.ndarray  # int64 [n]: row (in the [n_bp * block * block, L_c] view) of each (j, j)
    level_edges: list  # per local level >= 1: (src_rows, dst_rows, kernel reach) of each (i, c) -> (i, d(c))
    targets: np.ndarray  # int64: element indices that are reaches (their Q is this stage's output)
    cache: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def on(self, name: str, device, level: int | None = None) -> torch.Tensor:
        """An index array as a tensor on ``device``, copied once (plans are reused across calls)."""
        key = (name, level, str(device))
        if key not in self.cache:
            if level is None:
                value = getattr(self, name)
            else:
                value = self.level_edges[level][("src", "dst", "kern").index(name)]
            self.cache[key] = torch.as_tensor(value, device=device)
        return self.cache[key]

    @property
    def n(self) -> int:
        return int(self.elements.size)

    @property
    def n_bp(self) -> int:
        return int(self.bp_src.size)


@dataclasses.dataclass(frozen=True)
class ClosurePlan:
    stages: list
    length: int  # L_c
    block: int
    cluster_root: np.ndarray  # int64 [N]
    n_clusters: int

    @property
    def pairs(self) -> int:
        return int(sum(int(s.size.sum()) for s in self.stages))

    @property
    def block_elements(self) -> int:
        return int(sum(s.n_bp for s in self.stages)) * self.block * self.block * self.length


def plan_clusters(topo: Topology, log_h: np.ndarray, log_g: np.ndarray, length: int, *, tol: float = 1e-9,
                  max_pairs: int = 1 << 21) -> np.ndarray:
    """Cluster root (outlet) of every reach. ``log_h``, ``log_g``: [N, n_theta] log-MGFs of |h|, |g|."""
    n = topo.n
    theta_l = THETAS[None, :]  # theta * L_c, per theta
    log_tol = np.log(tol)
    open_mgf = np.empty_like(log_h)  # worst source of the open cluster to each reach's outflow
    n_open = np.ones(n, dtype=np.int64)  # reaches and virtual sources of the open cluster upstream (itself incl.)
    pairs = np.ones(n, dtype=np.int64)  # closure pairs of the open cluster upstream of each reach
    is_root = topo.downstream < 0
    lp, lo = topo.level_ptr, topo.level_order
    cp, ci = topo.child_ptr, topo.child_idx
    for lv in range(topo.n_levels):
        group = lo[lp[lv]:lp[lv + 1]]
        if lv == 0:
            open_mgf[group] = log_g[group]
            continue
        counts = cp[group + 1] - cp[group]
        kids = ci[_ranges(cp[group], cp[group + 1])]
        at = np.repeat(np.arange(group.size), counts)  # each child's parent, as an index into group
        parent = group[at]
        through = open_mgf[kids] + log_h[parent]
        cut = np.min(through - theta_l, axis=1) > log_tol
        for _ in range(2):  # second pass only when a cluster outgrows max_pairs: close all its inflows
            kid_open = np.where(cut, 1, n_open[kids])
            kid_pairs = np.where(cut, 1, pairs[kids])
            tot_open = np.bincount(at, weights=kid_open, minlength=group.size).astype(np.int64)
            new_pairs = np.bincount(at, weights=kid_pairs, minlength=group.size).astype(np.int64) + tot_open + 1
            too_big = new_pairs > max_pairs
            if not too_big.any():
                break
            cut = cut | too_big[at]
        # the virtual source of a cut child reaches the parent through h alone
        through = np.where(cut[:, None], log_h[parent], through)
        is_root[kids[cut]] = True
        worst = np.full((group.size, log_h.shape[1]), -np.inf)
        np.maximum.at(worst, at, through)
        open_mgf[group] = np.maximum(worst, log_g[group])
        n_open[group] = tot_open + 1
        pairs[group] = new_pairs
    # root of each reach: the first cluster outlet on its way down (itself included)
    root = np.where(is_root, np.arange(n), topo.downstream)
    live = np.flatnonzero(~is_root[np.arange(n)])
    while live.size:
        root[live] = root[root[live]]
        live = live[~is_root[root[live]]]
    return root


def _ranges(starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Concatenation of arange(starts[k], stops[k])."""
    lens = stops - starts
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offs = np.repeat(stops - lens.cumsum(), lens)
    return np.arange(total, dtype=np.int64) + offs


def build_plan(topo: Topology, root: np.ndarray, length: int, block: int) -> ClosurePlan:
    """Stages and block layouts for the clusters given by ``root`` (see the module docstring)."""
    n = topo.n
    down = topo.downstream
    is_root = root == np.arange(n)
    roots = np.flatnonzero(is_root)
    # stage of each cluster: levels of the cluster tree
    feeds_into = np.where(down[roots] >= 0, root[np.maximum(down[roots], 0)], -1)
    cluster_of_root = np.full(n, -1, dtype=np.int64)
    cluster_of_root[roots] = np.arange(roots.size)
    c_down = np.where(feeds_into >= 0, cluster_of_root[np.maximum(feeds_into, 0)], -1)
    from ..network.order import kahn_levels

    c_stage, stuck = kahn_levels(c_down)
    assert not stuck.size, "cluster graph has a cycle"
    stage_of_reach = c_stage[cluster_of_root[root]]
    stages = []
    for s in range(int(c_stage.max(initial=-1)) + 1):
        reaches = np.flatnonzero(stage_of_reach == s)
        # virtual sources: cut reaches draining into this stage
        cut_in = roots[(down[roots] >= 0)]
        cut_in = cut_in[stage_of_reach[np.maximum(down[cut_in], 0)] == s]
        elem_reach = np.concatenate([reaches, cut_in])
        virtual = np.concatenate([np.zeros(reaches.size, bool), np.ones(cut_in.size, bool)])
        order = np.argsort(topo.position[elem_reach], kind="stable")
        elem_reach, virtual = elem_reach[order], virtual[order]
        stages.append(_stage_layout(topo, root, elem_reach, virtual, length, block))
    return ClosurePlan(stages=stages, length=length, block=block, cluster_root=root, n_clusters=int(roots.size))


def _stage_layout(topo: Topology, root, elem_reach, virtual, length, block) -> Stage:
    n_e = elem_reach.size
    down = topo.downstream
    local = np.full(topo.n, -1, dtype=np.int64)
    local[elem_reach[~virtual]] = np.flatnonzero(~virtual)
    # local downstream: virtual sources drain into their reach; reaches into theirs unless cluster outlets
    ds = down[elem_reach]
    is_outlet = ~virtual & (root[elem_reach] == elem_reach)
    l_down = np.where((ds >= 0) & ~is_outlet, local[np.maximum(ds, 0)], -1)
    assert (l_down[(ds >= 0) & ~is_outlet] >= 0).all()
    from ..network.order import accumulate, kahn_levels

    l_level, _ = kahn_levels(l_down)
    size = accumulate(l_down, np.ones(n_e, dtype=np.int64), l_level)
    idx = np.arange(n_e)
    seg_start = idx - size + 1
    n_blocks = -(-n_e // block)
    n_pad = n_blocks * block
    tgt_block = idx // block
    lo = np.full(n_blocks, np.iinfo(np.int64).max)
    np.minimum.at(lo, tgt_block, seg_start // block)
    counts = np.arange(n_blocks) - lo + 1
    bp_ptr = np.r_[0, np.cumsum(counts)].astype(np.int64)
    bp_src = _ranges(lo, np.arange(n_blocks) + 1)

    def rows(i, j):
        """Row of pair (source element i, target element j) in the [n_bp * block * block, L] view."""
        jb = j // block
        bp = bp_ptr[jb] + (i // block - lo[jb])
        return (bp * block + i % block) * block + j % block

    diag_rows = rows(idx, idx)
    # edges (i, c) -> (i, d(c)) for every element c with a local downstream, every i in c's segment
    has = np.flatnonzero(l_down >= 0)
    c_rep = np.repeat(has, size[has])
    i_all = _ranges(seg_start[has], has + 1)
    j_all = l_down[c_rep]
    lev = l_level[j_all]
    order = np.argsort(lev, kind="stable")
    src_rows, dst_rows, kern = rows(i_all, c_rep)[order], rows(i_all, j_all)[order], elem_reach[j_all][order]
    lev = lev[order]
    bounds = np.searchsorted(lev, np.arange(1, int(l_level.max(initial=0)) + 2))
    level_edges = [(src_rows[a:b], dst_rows[a:b], kern[a:b]) for a, b in itertools.pairwise(bounds)]
    return Stage(elements=np.where(virtual, -(elem_reach + 1), elem_reach), is_virtual=virtual, reach=elem_reach,
                 size=size, n_pad=n_pad, bp_ptr=bp_ptr, bp_src=bp_src, diag_rows=diag_rows, level_edges=level_edges,
                 targets=np.flatnonzero(~virtual))
