"""Pure array kernels on the downstream index (pyflwdir's ``idxs_ds`` idea).

Every function takes ``downstream`` (int64 [N], the position of each reach's downstream reach,
-1 at an outlet) and works level by level or by pointer jumping: the number of numpy calls grows
with the network's depth (or its logarithm), never with its number of reaches.
"""
from __future__ import annotations

import numpy as np

__all__ = ["kahn_levels", "find_cycle", "accumulate", "path_sum", "subtree_postorder", "level_groups"]


def _scatter_add(target: np.ndarray, index: np.ndarray, values: np.ndarray) -> None:
    np.add.at(target, index, values)


def kahn_levels(downstream: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Topological level of each reach: 0 for a headwater, else 1 + the largest level upstream.

    Returns ``(levels, stuck)``; ``stuck`` holds the reaches never reached because they lie on
    or below a cycle (empty for a valid tree), and those reaches get level -1.
    """
    downstream = np.asarray(downstream, dtype=np.int64)
    n = downstream.size
    has_ds = downstream >= 0
    remaining = np.bincount(downstream[has_ds], minlength=n).astype(np.int64)
    levels = np.full(n, -1, dtype=np.int64)
    frontier = np.flatnonzero(remaining == 0)
    level = 0
    while frontier.size:
        levels[frontier] = level
        ds = downstream[frontier]
        ds = ds[ds >= 0]
        if not ds.size:
            break
        targets, counts = np.unique(ds, return_counts=True)
        remaining[targets] -= counts
        frontier = targets[remaining[targets] == 0]
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
    order = np.argsort(levels, kind="stable")
    bounds = np.searchsorted(levels[order], np.arange(levels.max(initial=-1) + 2))
    return [order[bounds[i]:bounds[i + 1]] for i in range(len(bounds) - 1)]


def accumulate(downstream: np.ndarray, values: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Each reach's value plus the sum over its whole upstream (flow accumulation)."""
    out = np.array(values, dtype=np.result_type(values, np.float64) if np.asarray(values).dtype.kind == "f"
                   else np.int64, copy=True)
    for group in level_groups(levels):
        ds = downstream[group]
        keep = ds >= 0
        _scatter_add(out, ds[keep], out[group[keep]])
    return out


def path_sum(downstream: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum of ``values`` over each reach and every reach downstream of it, and each reach's outlet.

    Pointer jumping: log2(depth) vectorised passes. The network must be acyclic.
    """
    acc = np.array(values, copy=True)
    ptr = np.asarray(downstream, dtype=np.int64).copy()
    n = ptr.size
    root = np.where(ptr < 0, np.arange(n), ptr)
    live = np.flatnonzero(ptr >= 0)
    while live.size:
        nxt = ptr[live]
        acc[live] = acc[live] + acc[nxt]
        ptr[live] = ptr[nxt]
        root[live] = root[nxt]
        live = live[ptr[live] >= 0]
    return acc, root


def subtree_postorder(downstream: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DFS post-order: each reach right after its whole upstream block.

    Returns ``(order, position, size)``: ``order[k]`` is the reach at post-order position k,
    ``position[i]`` the position of reach i, ``size[i]`` the number of reaches upstream of i
    (itself included). The upstream of reach i is ``order[position[i] - size[i] + 1 : position[i] + 1]``.
    Siblings and basins come in ascending position of their input rows, so the order is deterministic.
    """
    downstream = np.asarray(downstream, dtype=np.int64)
    n = downstream.size
    size = accumulate(downstream, np.ones(n, dtype=np.int64), levels)
    # offset of each reach inside its parent's block (outlets: inside the whole network)
    key = downstream
    perm = np.lexsort((np.arange(n), key))
    sizes = size[perm]
    csum = np.cumsum(sizes) - sizes
    first = np.ones(n, dtype=bool)
    first[1:] = key[perm][1:] != key[perm][:-1]
    first_index = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    offset = np.empty(n, dtype=np.int64)
    offset[perm] = csum - csum[first_index]
    start, _ = path_sum(downstream, offset)
    position = start + size - 1
    order = np.empty(n, dtype=np.int64)
    order[position] = np.arange(n)
    return order, position, size
