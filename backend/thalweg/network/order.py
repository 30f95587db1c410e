"""Pure array kernels on the downstream index (pyflwdir's ``idxs_ds`` idea).

Every function takes ``downstream`` (int64 [N], the position of each reach's downstream reach,
-1 at an outlet) and works level by level, each reach touched once or a few times: the number of numpy
calls grows with the network's depth, never with its number of reaches. Sorts by level or by downstream
reach are radix sorts (:func:`stable_argsort`), linear in the number of reaches. Where a C compiler is
available, levels, post-order, depth, basins, upstream CSR and level sort are single linear walks in C
(:mod:`._native`), with the same results.
"""
from __future__ import annotations

import numpy as np

from . import _native

__all__ = ["kahn_levels", "find_cycle", "accumulate", "path_sum", "subtree_postorder", "tree_order", "children",
           "level_groups", "level_sort", "stable_argsort"]


def _native_lib():
    """The compiled kernels (:mod:`._native`), or None: then numpy does the same work."""
    return _native.load()


def _scatter_add(target: np.ndarray, index: np.ndarray, values: np.ndarray) -> None:
    np.add.at(target, index, values)


def stable_argsort(key: np.ndarray) -> np.ndarray:
    """``np.argsort(key, kind="stable")`` of an integer array, as int64, fast for the keys networks sort by
    (levels, downstream positions, cluster roots). The permutation is the same whichever way (a stable sort's is
    unique): numpy sorts 16-bit integers by radix (linear time) and larger ones by timsort, which is quick on
    keys already in long runs (cluster roots along the post-order: 0.06 s for 6.8 M) but slow on shuffled ones
    (2.2 s); so a key spanning fewer than 2**16 values is sorted as uint16, and a shuffled one (more than 40 % of
    neighbours descending) spanning fewer than 2**32 by two stable uint16 passes (low half, then high half: least
    significant digit first, 0.6 s)."""
    key = np.asarray(key)
    if key.size == 0:
        return np.zeros(0, dtype=np.int64)
    lo = int(key.min())
    span = int(key.max()) - lo
    if key.dtype.kind not in "iu" or span >= 2**32 or (
            span >= 2**16 and np.count_nonzero(key[1:] < key[:-1]) <= 0.4 * key.size):
        return np.argsort(key, kind="stable").astype(np.int64, copy=False)
    shifted = key - lo if lo else key
    if span < 2**16:
        return np.argsort(shifted.astype(np.uint16), kind="stable").astype(np.int64, copy=False)
    shifted = shifted.astype(np.uint64, copy=False)
    low = np.argsort((shifted & 0xFFFF).astype(np.uint16), kind="stable")
    high = (shifted >> 16).astype(np.uint16)[low]
    return low[np.argsort(high, kind="stable")].astype(np.int64, copy=False)


def level_sort(levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(order, ptr)``: reaches sorted by level (ascending position within a level), and ``ptr`` [n_levels + 1]
    with level ``k``'s reaches at ``order[ptr[k]:ptr[k + 1]]`` (``np.argsort(levels, kind="stable")`` and its
    ``searchsorted`` bounds)."""
    levels = np.asarray(levels)
    lib = _native_lib()
    if lib is not None and levels.size and levels.dtype.kind in "iu" and int(levels.min()) >= 0:
        return _native.counting_sort(lib, levels, int(levels.max()) + 1)
    order = stable_argsort(levels)
    # reaches of level -1 (on or below a cycle) come first and belong to no level
    ptr = np.searchsorted(levels[order], np.arange(int(levels.max(initial=-1)) + 2)).astype(np.int64)
    return order, ptr


def kahn_levels(downstream: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Topological level of each reach: 0 for a headwater, else 1 + the largest level upstream.

    Returns ``(levels, stuck)``; ``stuck`` holds the reaches never reached because they lie on
    or below a cycle (empty for a valid tree), and those reaches get level -1.

    Frontier by frontier (one pass per level, the work of each proportional to its frontier): a reach joins
    the next frontier when its last upstream reach is in this one; a reach with several upstream reaches in the
    frontier is kept once (the last writer of a scatter wins), without sorting.
    """
    downstream = np.asarray(downstream, dtype=np.int64)
    lib = _native_lib()
    if lib is not None:
        return _native.kahn_levels(lib, downstream)
    n = downstream.size
    has_ds = downstream >= 0
    remaining = np.bincount(downstream[has_ds], minlength=n).astype(np.int64)
    levels = np.full(n, -1, dtype=np.int64)
    stamp = np.empty(n, dtype=np.int64)
    frontier = np.flatnonzero(remaining == 0)
    level = 0
    while frontier.size:
        levels[frontier] = level
        ds = downstream[frontier]
        ds = ds[ds >= 0]
        if not ds.size:
            break
        np.subtract.at(remaining, ds, 1)
        ready = ds[remaining[ds] == 0]  # each ready reach once per upstream reach in the frontier
        k = np.arange(ready.size)
        stamp[ready] = k
        frontier = ready[stamp[ready] == k]
        level += 1
    return levels, np.flatnonzero(levels < 0)


def find_cycle(downstream: np.ndarray, candidates: np.ndarray) -> list[int]:
    """Positions of one cycle, following downstream links from ``candidates`` (reaches Kahn left).

    Only runs on the error path, so a Python walk is fine.
    """
    seen_global: set[int] = set()
    for start in candidates.tolist():
        if start in seen_global:
            continue
        path: list[int] = []
        where: dict[int, int] = {}
        node = start
        while node >= 0 and node not in where and node not in seen_global:
            where[node] = len(path)
            path.append(node)
            node = int(downstream[node])
        seen_global.update(path)
        if node >= 0 and node in where:
            return path[where[node]:]
    raise AssertionError("kahn_levels left reaches unprocessed but no cycle was found")


def level_groups(levels: np.ndarray) -> list[np.ndarray]:
    """Reaches of each level, level 0 first (positions, ascending within a level)."""
    order, bounds = level_sort(levels)
    return [order[bounds[i]:bounds[i + 1]] for i in range(len(bounds) - 1)]


def accumulate(downstream: np.ndarray, values: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Each reach's value plus the sum over its whole upstream (flow accumulation).

    Level by level, headwaters first; within a level the reaches add into their downstream reach in ascending
    position (so floating-point sums are the same whatever the implementation of the level sort)."""
    out = np.array(values, dtype=np.result_type(values, np.float64) if np.asarray(values).dtype.kind == "f"
                   else np.int64, copy=True)
    downstream = np.asarray(downstream, dtype=np.int64)
    return _accumulate(out, downstream, *level_sort(levels))


def _accumulate(out: np.ndarray, downstream: np.ndarray, order: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    ds_sorted = downstream[order]
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        group, ds = order[a:b], ds_sorted[a:b]
        keep = ds >= 0
        _scatter_add(out, ds[keep], out[group[keep]])
    return out


def path_sum(downstream: np.ndarray, values: np.ndarray,
             levels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sum of ``values`` (integers) over each reach and every reach downstream of it, and each reach's outlet.

    Top down, one pass per level from the highest: a reach's downstream reach has a higher level, so its sum is
    final when the reach's level comes, and each reach is touched once (``levels``: :func:`kahn_levels`,
    computed when not given). The network must be acyclic.
    """
    downstream = np.asarray(downstream, dtype=np.int64)
    if levels is None:
        levels = kahn_levels(downstream)[0]
    return _path_sum(downstream, values, *level_sort(levels))


def _path_sum(downstream: np.ndarray, values: np.ndarray, order: np.ndarray,
              bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`path_sum` with the level sort given (:func:`level_sort`)."""
    values = np.asarray(values)
    if values.dtype.kind not in "iub":
        raise TypeError(f"path_sum sums integers (got {values.dtype}); a float sum along paths depends on order")
    n = downstream.size
    acc = values.astype(np.int64, copy=True)
    root = np.arange(n, dtype=np.int64)
    if not n:
        return acc, root
    # the reaches that have a downstream reach, still grouped by level (every level holds a reach)
    inner = downstream[order] >= 0
    counts = np.add.reduceat(inner.astype(np.int64), bounds[:-1])
    reaches = order[inner]
    bounds = np.r_[0, np.cumsum(counts)]
    ds_sorted = downstream[reaches]
    for a, b in zip(bounds[-2::-1].tolist(), bounds[:0:-1].tolist()):
        group, ds = reaches[a:b], ds_sorted[a:b]
        acc[group] += acc[ds]
        root[group] = root[ds]
    return acc, root


def _numpy_postorder(downstream: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DFS post-order: each reach right after its whole upstream block.

    Returns ``(order, position, size)``: ``order[k]`` is the reach at post-order position k,
    ``position[i]`` the position of reach i, ``size[i]`` the number of reaches upstream of i
    (itself included). The upstream of reach i is ``order[position[i] - size[i] + 1 : position[i] + 1]``.
    Siblings and basins come in ascending position of their input rows, so the order is deterministic.
    """
    downstream = np.asarray(downstream, dtype=np.int64)
    n = downstream.size
    by_level = level_sort(levels)  # one sort for the two passes
    size = _accumulate(np.ones(n, dtype=np.int64), downstream, *by_level)
    # offset of each reach inside its parent's block (outlets: inside the whole network)
    key = downstream
    perm = stable_argsort(key)  # by downstream reach, then position
    sizes = size[perm]
    csum = np.cumsum(sizes) - sizes
    first = np.ones(n, dtype=bool)
    first[1:] = key[perm][1:] != key[perm][:-1]
    first_index = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    offset = np.empty(n, dtype=np.int64)
    offset[perm] = csum - csum[first_index]
    start, _ = _path_sum(downstream, offset, *by_level)
    position = start + size - 1
    order = np.empty(n, dtype=np.int64)
    order[position] = np.arange(n)
    return order, position, size


def subtree_postorder(downstream: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DFS post-order: each reach right after its whole upstream block.

    Returns ``(order, position, size)``: ``order[k]`` is the reach at post-order position k,
    ``position[i]`` the position of reach i, ``size[i]`` the number of reaches upstream of i
    (itself included). The upstream of reach i is ``order[position[i] - size[i] + 1 : position[i] + 1]``.
    Siblings and basins come in ascending position of their input rows, so the order is deterministic.
    """
    return tree_order(downstream, levels)[:3]


def tree_order(downstream: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(order, position, size, depth, basin)``: the post-order of :func:`subtree_postorder`, the links from each
    reach to its outlet, and that outlet's position. The network must be acyclic (``levels``: :func:`kahn_levels`).

    In C, one depth-first walk with its own stack (no recursion limit). In numpy, depth and basin come from the
    post-order blocks without another pass per level: a reach lies in the upstream block of itself and of every
    reach downstream of it (depth + 1 blocks), and the outlets' blocks tile the post-order.
    """
    downstream = np.asarray(downstream, dtype=np.int64)
    lib = _native_lib()
    if lib is not None:
        return _native.postorder(lib, downstream)
    order, position, size = _numpy_postorder(downstream, levels)
    n = downstream.size
    cover = np.bincount(position - size + 1, minlength=n + 1) - np.bincount(position + 1, minlength=n + 1)
    depth = np.empty(n, dtype=np.int64)
    depth[order] = np.cumsum(cover[:n]) - 1
    outlets = order[downstream[order] < 0]  # in post-order: their blocks in turn
    basin = np.empty(n, dtype=np.int64)
    basin[order] = np.repeat(outlets, size[outlets])
    return order, position, size, depth, basin


def children(downstream: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(ptr, idx)``: the reaches flowing directly into each reach as CSR, ascending position within a reach
    (reach i's at ``idx[ptr[i]:ptr[i + 1]]``)."""
    downstream = np.asarray(downstream, dtype=np.int64)
    lib = _native_lib()
    if lib is not None:
        return _native.children(lib, downstream)
    n = downstream.size
    src = np.flatnonzero(downstream >= 0)
    dst = downstream[src]
    perm = stable_argsort(dst)  # by downstream reach, then position (src ascends)
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(dst, minlength=n), out=ptr[1:])
    return ptr, src[perm].astype(np.int64)
