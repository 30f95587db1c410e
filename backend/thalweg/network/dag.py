"""Rivers that split: the directed acyclic part of a network (bifurcations, distributaries, canals).

A tree network is ``downstream`` alone. A network with splits also carries :class:`Splits`: for each reach
whose outflow divides between several downstream reaches, all its outlets (the main one, ``downstream``,
first) and the fraction of its outflow each receives (fractions sum to 1). Everything that only knows trees
sees the main path; the DAG-aware code (``routing.dag``, ``routing.reference``, ``thalweg info``) reads the
splits. Routing on the DAG (ROUTING.md section 2, generalised):

    U_i = sum over links u -> i of f_ui Q_u,     Q_i = h_i * U_i + g_i * q_i

so mass is kept exactly at every split. Pure numpy (and torch for learned fractions); no files.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

__all__ = ["Splits", "ORIGINS", "edges", "dag_levels", "softmax_fractions", "fraction_logits", "multipath_regions",
           "split_summary", "minor_link_order"]

# where a network's fractions came from: a field of the data, a --links table, drainage areas, equal shares,
# or given in code
ORIGINS = ("field", "links", "area", "equal", "given", "mixed")


@dataclasses.dataclass(frozen=True, eq=False)
class Splits:
    """The reaches whose outflow splits, as CSR over their outlets.

    Attributes
    ----------
    reach : int64 [S], positions of the split reaches, ascending.
    ptr : int64 [S + 1], outlets of split k are ``to[ptr[k]:ptr[k + 1]]`` (at least two).
    to : int64 [E], positions of the receiving reaches; the first of each split is its main path
        (``network.downstream`` of that reach).
    fraction : float64 [E], share of the split reach's outflow each outlet receives; each split's sum is 1.
    origin : where the fractions came from (one of ``ORIGINS``).
    """

    reach: np.ndarray
    ptr: np.ndarray
    to: np.ndarray
    fraction: np.ndarray
    origin: str = "given"

    def __post_init__(self) -> None:
        for name in ("reach", "ptr", "to", "fraction"):
            arr = np.array(getattr(self, name), dtype=np.float64 if name == "fraction" else np.int64)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    @property
    def n_splits(self) -> int:
        return int(self.reach.size)

    @property
    def n_links(self) -> int:
        """Number of links out of split reaches (main ones included)."""
        return int(self.to.size)

    @property
    def source(self) -> np.ndarray:
        """int64 [E], the split reach of each link."""
        return np.repeat(self.reach, np.diff(self.ptr))

    @property
    def is_main(self) -> np.ndarray:
        """bool [E], True for the first (main) outlet of each split."""
        main = np.zeros(self.to.size, dtype=bool)
        main[self.ptr[:-1]] = True
        return main

    def take(self, new_index: np.ndarray, new_downstream: np.ndarray) -> tuple[Splits | None, np.ndarray]:
        """The splits of a sub-network and its corrected downstream index.

        ``new_index`` maps old positions to new ones (-1: dropped); ``new_downstream`` is the sub-network's
        downstream index from the main paths. Links to dropped reaches are dropped and the remaining fractions
        renormalised; a split reach whose main outlet was dropped takes its largest remaining link as its main
        path, and one left with a single outlet is no split any more (that outlet is its downstream reach).
        """
        new_downstream = np.array(new_downstream, copy=True)
        src_new = new_index[self.source]
        to_new = new_index[self.to]
        keep = (src_new >= 0) & (to_new >= 0)
        if not keep.any():
            return None, new_downstream
        s, t, f = src_new[keep], to_new[keep], self.fraction[keep]
        order = np.lexsort((-f, t != new_downstream[s], s))  # main path first, else the largest share
        s, t, f = s[order], t[order], f[order]
        reaches, first, counts = np.unique(s, return_index=True, return_counts=True)
        new_downstream[reaches] = t[first]
        multi = counts > 1
        if not multi.any():
            return None, new_downstream
        rows = np.isin(s, reaches[multi])
        s, t, f = s[rows], t[rows], f[rows]
        reaches, first, counts = np.unique(s, return_index=True, return_counts=True)
        total = np.repeat(np.add.reduceat(f, first), counts)
        # only links of fraction 0 left: nothing said how to share, so equally
        f = np.where(total > 0, f / np.where(total > 0, total, 1.0), 1.0 / np.repeat(counts, counts))
        return Splits(reach=reaches, ptr=np.r_[0, np.cumsum(counts)], to=t, fraction=f, origin=self.origin), \
            new_downstream


def edges(network: Any, fractions: Any = None) -> tuple[np.ndarray, np.ndarray, Any]:
    """Every link of the network: ``(src [M], dst [M], fraction [M])``.

    Tree links (reaches that do not split) carry fraction 1; the links of split reaches carry their
    fractions (``fractions`` [E], a numpy array or torch tensor, replaces the network's). The fraction array
    is a torch tensor when ``fractions`` is one (gradients flow to it).
    """
    down = np.asarray(network.downstream)
    splits = network.splits
    n = down.size
    if splits is None:
        src = np.flatnonzero(down >= 0)
        return src, down[src], np.ones(src.size)
    is_split = np.zeros(n, dtype=bool)
    is_split[splits.reach] = True
    tree_src = np.flatnonzero((down >= 0) & ~is_split)
    src = np.r_[tree_src, splits.source]
    dst = np.r_[down[tree_src], splits.to]
    if fractions is None:
        frac = np.r_[np.ones(tree_src.size), splits.fraction]
    elif type(fractions).__module__.startswith("torch"):
        import torch

        ones = torch.ones(tree_src.size, dtype=fractions.dtype, device=fractions.device)
        frac = torch.cat([ones, fractions])
    else:
        frac = np.r_[np.ones(tree_src.size), np.asarray(fractions, dtype=np.float64)]
    return src, dst, frac


def dag_levels(n: int, src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Topological level over all links (0 at headwaters, 1 + the largest upstream level elsewhere).

    Returns ``(levels, stuck)``: ``stuck`` holds reaches on or below a cycle (level -1); empty for a DAG.
    Kahn's algorithm, one vectorised pass per level.
    """
    remaining = np.bincount(dst, minlength=n).astype(np.int64)
    order = np.argsort(src, kind="stable")
    s_sorted, d_sorted = src[order], dst[order]
    out_ptr = np.searchsorted(s_sorted, np.arange(n + 1))
    levels = np.full(n, -1, dtype=np.int64)
    frontier = np.flatnonzero(remaining == 0)
    level = 0
    while frontier.size:
        levels[frontier] = level
        lens = out_ptr[frontier + 1] - out_ptr[frontier]
        if not lens.sum():
            break
        idx = np.repeat(out_ptr[frontier] - np.cumsum(lens) + lens, lens) + np.arange(lens.sum())
        targets, counts = np.unique(d_sorted[idx], return_counts=True)
        remaining[targets] -= counts
        frontier = targets[remaining[targets] == 0]
        level += 1
    return levels, np.flatnonzero(levels < 0)


def softmax_fractions(network: Any, logits: Any):
    """Split fractions [E] as a softmax over each split reach's outlets: a calibratable parameter.

    ``logits`` : torch tensor [E] (the order of ``network.splits.to``), e.g. ``torch.zeros(E,
    requires_grad=True)`` for equal shares; gradients flow back to it. Each split's fractions sum to 1
    exactly, so routing keeps mass whatever the logits.
    """
    import torch

    splits = network.splits
    if splits is None:
        raise ValueError("the network has no splits; it needs no fractions")
    logits = torch.as_tensor(logits)
    if logits.shape != (splits.n_links,):
        raise ValueError(f"logits have shape {tuple(logits.shape)}; the network's splits have {splits.n_links} "
                         f"links (network.splits.to)")
    seg = torch.as_tensor(np.repeat(np.arange(splits.n_splits), np.diff(splits.ptr)), device=logits.device)
    peak = torch.full((splits.n_splits,), -torch.inf, dtype=logits.dtype, device=logits.device)
    peak = peak.scatter_reduce(0, seg, logits.detach(), reduce="amax")
    w = torch.exp(logits - peak[seg])
    total = torch.zeros(splits.n_splits, dtype=logits.dtype, device=logits.device).index_add(0, seg, w)
    return w / total[seg]


def fraction_logits(network: Any):
    """Logits [E] whose softmax gives the network's fractions (a starting point for calibration)."""
    import torch

    return torch.log(torch.as_tensor(np.clip(network.splits.fraction, 1e-12, None)))


def multipath_regions(network: Any) -> list[np.ndarray]:
    """Regions where water has more than one path: each split reach with every reach its flow passes
    before all its branches meet again (or reach the outlets), regions sharing reaches merged; largest first.

    A unit of water released at the split reach is followed down the DAG with the split fractions; the
    region ends at the first reach that receives all of it (where the braid closes). For ``thalweg info``.
    """
    splits = network.splits
    if splits is None:
        return []
    n = network.n_reaches
    src, dst, frac = edges(network)
    order = np.argsort(src, kind="stable")
    s_sorted, d_sorted, f_sorted = src[order], dst[order], frac[order]
    out_ptr = np.searchsorted(s_sorted, np.arange(n + 1))
    levels, _ = dag_levels(n, src, dst)
    parent = np.arange(n)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    in_region = np.zeros(n, dtype=bool)
    for r in splits.reach.tolist():
        mass = {r: 1.0}
        members = [r]
        pending = {r}
        while pending:
            node = min(pending, key=lambda i: levels[i])  # every inflow of a node is final before it moves on
            pending.discard(node)
            m = mass.pop(node)
            if node != r and m >= 1.0 - 1e-9:
                break  # all the water is back in one reach: the braid closes here
            if node != r:
                members.append(node)
            a, b = out_ptr[node], out_ptr[node + 1]
            for t, f in zip(d_sorted[a:b].tolist(), f_sorted[a:b].tolist()):
                mass[t] = mass.get(t, 0.0) + m * f
                pending.add(t)
        in_region[members] = True
        root = find(r)
        for i in members:
            parent[find(i)] = root
    where = np.flatnonzero(in_region)
    roots = np.array([find(i) for i in where.tolist()], dtype=np.int64)
    groups = [where[roots == k] for k in np.unique(roots)]
    groups.sort(key=len, reverse=True)
    return groups


def split_summary(network: Any) -> dict[str, Any]:
    """Counts for ``thalweg info`` and ``RiverNetwork.summary``: splits, links, the largest multi-path region."""
    splits = network.splits
    if splits is None:
        return {"splits": 0, "split_links": 0, "largest_multipath_region": 0, "split_fractions": None}
    regions = multipath_regions(network)
    return {"splits": splits.n_splits, "split_links": splits.n_links,
            "largest_multipath_region": int(regions[0].size) if regions else 0,
            "split_fractions": splits.origin}


def _lift(up: list[np.ndarray], x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """The reach ``k`` forest links below each reach of ``x`` (binary lifting tables ``up``)."""
    x = x.copy()
    for j, table in enumerate(up):
        bit = ((k >> j) & 1).astype(bool)
        x[bit] = table[x[bit]]
    return x


def _kahn(nodes: list[int], pairs: list[tuple[int, int]], rank: np.ndarray) -> tuple[list[int], set[int]]:
    """``nodes`` sorted so that a comes before b for every pair (a, b), ties by ``rank``; and the nodes left
    unsorted, on or below a cycle of the pairs (empty when there is none)."""
    import heapq

    succ: dict[int, list[int]] = {x: [] for x in nodes}
    need = dict.fromkeys(nodes, 0)
    for a, b in pairs:
        succ[a].append(b)
        need[b] += 1
    ready = [(int(rank[x]), x) for x in nodes if need[x] == 0]
    heapq.heapify(ready)
    out = []
    while ready:
        _, x = heapq.heappop(ready)
        out.append(x)
        for y in succ[x]:
            need[y] -= 1
            if need[y] == 0:
                heapq.heappush(ready, (int(rank[y]), y))
    return out, {x for x in nodes if need[x] > 0}


def _forest_order(down: np.ndarray, u: np.ndarray, v: np.ndarray, cached: tuple | None):
    """``minor_link_order`` for the forest ``down`` and the links u -> v outside it: (order, group_ptr, None),
    or (None, None, per cyclic group of siblings the indices of the links among its children on or below a
    cycle)."""
    from .order import kahn_levels, path_sum, subtree_postorder

    n = down.size
    if cached is not None:
        levels, order0, size, depth = cached
    else:
        levels, _ = kahn_levels(down)
        order0, _, size = subtree_postorder(down, levels)
        depth, _ = path_sum(down, (down >= 0).astype(np.int64))
    pos0 = np.empty(n, dtype=np.int64)
    pos0[order0] = np.arange(n)
    links = np.arange(u.size)
    # v an ancestor of u (its upstream block holds u): always met in order
    keep = ~((pos0[v] - size[v] < pos0[u]) & (pos0[u] <= pos0[v]))
    u, v, links = u[keep], v[keep], links[keep]
    up = [np.where(down >= 0, down, np.arange(n))]  # an outlet's "ancestor" is itself
    while (1 << len(up)) <= int(depth.max(initial=0)):
        up.append(up[-1][up[-1]])
    # the children of the lowest common ancestor on the paths to u and v (the basins' outlets across basins)
    d = np.minimum(depth[u], depth[v])
    cu, cv = _lift(up, u, depth[u] - d), _lift(up, v, depth[v] - d)
    if np.any(cu == cv):  # u upstream of v along the forest and u -> v: a cycle, refused by the network checks
        raise AssertionError("a link closes a cycle; build the network with from_arrays, which validates")
    for table in reversed(up):
        differ = table[cu] != table[cv]
        cu[differ], cv[differ] = table[cu[differ]], table[cv[differ]]
    parent = down[cu]
    rank = np.arange(n, dtype=np.int64)
    by_parent: dict[int, list[tuple[int, int, int]]] = {}
    for a, x, y, e in zip(parent.tolist(), cu.tolist(), cv.tolist(), links.tolist()):
        by_parent.setdefault(a, []).append((x, y, e))
    on_cycle: list[list[int]] = []  # per cyclic group of siblings, the links among its stuck children

    def sort(nodes: list[int], triples: list[tuple[int, int, int]]) -> list[int]:
        seq, stuck = _kahn(nodes, [(x, y) for x, y, _ in triples], rank)
        if stuck:
            on_cycle.append([e for x, y, e in triples if x in stuck and y in stuck])
        return seq

    for a, triples in by_parent.items():
        if a >= 0:
            nodes = sorted({x for t in triples for x in t[:2]})
            seq = sort(nodes, triples)
            rank[seq] = np.sort(rank[seq])
    # basins: each group of basins joined by links in one run, in topological order
    outlets = np.flatnonzero(down < 0)
    triples = by_parent.get(-1, [])
    group = {int(o): int(o) for o in outlets.tolist()}

    def find(x: int) -> int:
        while group[x] != x:
            group[x] = group[group[x]]
            x = group[x]
        return x

    for x, y, _ in triples:
        group[find(x)] = find(y)
    members: dict[int, list[int]] = {}
    for o in outlets.tolist():
        members.setdefault(find(o), []).append(o)
    triples_of: dict[int, list[tuple[int, int, int]]] = {}
    for t in triples:
        triples_of.setdefault(find(t[0]), []).append(t)
    seq, ends = [], []
    for o in outlets.tolist():  # groups in the order of their first basin
        root = find(o)
        if root not in members:
            continue
        nodes = members.pop(root)
        seq.extend(sort(nodes, triples_of.get(root, [])) if len(nodes) > 1 else nodes)
        ends.append(len(seq))
    if on_cycle:
        return None, None, on_cycle
    rank[seq] = np.sort(rank[outlets])
    # the post-order with siblings by rank: relabel the reaches by rank, order, map back
    perm = np.argsort(rank, kind="stable")
    inv = np.empty(n, dtype=np.int64)
    inv[perm] = np.arange(n)
    down_r = np.where(down[perm] >= 0, inv[np.maximum(down[perm], 0)], -1)
    order_r, _, _ = subtree_postorder(down_r, levels[perm])
    order = perm[order_r]
    pos = np.empty(n, dtype=np.int64)
    pos[order] = np.arange(n)
    last = np.asarray(seq, dtype=np.int64)[np.asarray(ends, dtype=np.int64) - 1]
    group_ptr = np.r_[0, np.sort(pos[last]) + 1].astype(np.int64)
    return order.astype(np.int64), group_ptr, None


def minor_link_order(network: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A forest of the network's links and a subtree post-order of it in which every other link's source comes
    before its receiver: how the compiled recursions route a DAG in one pass.

    The forest starts as the main tree (``network.downstream``). A link u -> v outside it is met in post-order
    after u and before v when v is an ancestor of u (v's inflow is still open), and otherwise only if, at the
    lowest common ancestor a of u and v, the child subtree of a holding u comes before the one holding v (for
    reaches of different basins: u's basin before v's). Each reach's children, and the basins, are sorted
    topologically by these sibling constraints (ties in index order, as ``subtree_postorder``); basins joined by
    links are kept next to each other. Where the constraints are cyclic (possible in a valid DAG: two
    anabranches that exchange water both ways), a split reach with a link on the cycle is cut from the forest
    (all its links become outside links, its upstream a basin of its own), one per cyclic group of siblings,
    and the order is sought again. That always ends: with every split reach cut, a constraint runs from the
    basin of a split reach to the basin it sends water into, and a cycle of those would be a cycle of the DAG.

    Returns ``(order, group_ptr, forest)``: ``order`` int64 [N] the post-order, ``group_ptr`` int64 [G + 1] the
    post-order segments of the groups of basins joined by links (each segment holds all links of its reaches),
    ``forest`` int64 [N] the downstream index of the forest (``network.downstream`` where nothing was cut).
    """
    down = np.array(network.downstream, dtype=np.int64)
    n = down.size
    splits = network.splits
    if splits is None:
        src = to = np.zeros(0, dtype=np.int64)
        main = np.zeros(0, dtype=bool)
    else:
        src, to, main = splits.source, splits.to, splits.is_main
    cut = np.zeros(n, dtype=bool)
    cached = (np.asarray(network.levels), np.asarray(network.postorder), np.asarray(network.n_upstream),
              np.asarray(network.depth))
    while True:
        outside = np.flatnonzero(~main | cut[src])
        order, group_ptr, on_cycle = _forest_order(down, src[outside], to[outside], cached)
        if order is not None:
            return order, group_ptr, down
        # one split reach per cyclic group (cutting one at a time keeps the most in the tree); every cycle has a
        # link from a reach still in the tree (a cycle of cut reaches' links would be a cycle of the DAG)
        new = []
        for group in on_cycle:
            sources = [int(r) for r in src[outside[group]].tolist() if not cut[r]]
            if sources:
                new.append(sources[0])
        if not new:
            raise AssertionError("the links' order constraints are cyclic with every split reach on the cycle cut")
        cut[new] = True
        down[new] = -1
        cached = None
