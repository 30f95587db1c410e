"""The fast network preparation (C walks and radix-sorted numpy, thalweg.network.order) against the previous
implementations, kept here as references: Kahn's levels by np.unique, post-order by lexsort and pointer jumping,
level groups by a stable argsort, ids by a sorted search. Same arrays, exactly, on random forests, Scheidegger
networks and edge cases (one reach, only one-reach basins, a 100,000-reach chain, cycles), by both paths."""
from __future__ import annotations

import numpy as np
import pytest

from thalweg.errors import CycleError, DuplicateIdError
from thalweg.network import _native, from_arrays, order, scheidegger_network
from thalweg.routing.topology import build as build_topology
from thalweg.scale import basins, clusters

# ---- the references: the implementations before this change ------------------------------------------------


def ref_kahn_levels(downstream):
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


def ref_level_groups(levels):
    o = np.argsort(levels, kind="stable")
    bounds = np.searchsorted(levels[o], np.arange(levels.max(initial=-1) + 2))
    return [o[bounds[i]:bounds[i + 1]] for i in range(len(bounds) - 1)]


def ref_accumulate(downstream, values, levels):
    out = np.array(values, dtype=np.float64 if np.asarray(values).dtype.kind == "f" else np.int64, copy=True)
    for group in ref_level_groups(levels):
        ds = downstream[group]
        keep = ds >= 0
        np.add.at(out, ds[keep], out[group[keep]])
    return out


def ref_path_sum(downstream, values):
    acc = np.array(values, copy=True)
    ptr = downstream.copy()
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


def ref_postorder(downstream, levels):
    n = downstream.size
    size = ref_accumulate(downstream, np.ones(n, dtype=np.int64), levels)
    perm = np.lexsort((np.arange(n), downstream))
    sizes = size[perm]
    csum = np.cumsum(sizes) - sizes
    first = np.ones(n, dtype=bool)
    first[1:] = downstream[perm][1:] != downstream[perm][:-1]
    first_index = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    offset = np.empty(n, dtype=np.int64)
    offset[perm] = csum - csum[first_index]
    start, _ = ref_path_sum(downstream, offset)
    position = start + size - 1
    o = np.empty(n, dtype=np.int64)
    o[position] = np.arange(n)
    depth, basin = ref_path_sum(downstream, (downstream >= 0).astype(np.int64))
    return o, position, size, depth, basin


def ref_children(downstream):
    n = downstream.size
    has = downstream >= 0
    src = np.flatnonzero(has)
    dst = downstream[has]
    perm = np.lexsort((src, dst))
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.add.at(ptr, dst + 1, 1)
    return np.cumsum(ptr), src[perm].astype(np.int64)


def ref_positions(ids, ds_ids):
    n = ids.size
    sort = np.argsort(ids, kind="stable")
    where = np.clip(np.searchsorted(ids[sort], ds_ids), 0, n - 1)
    return np.where(ids[sort][where] == ds_ids, sort[where], -1).astype(np.int64)


def ref_basins(downstream, o, basin):
    basin_of = basin[o]
    bounds = np.flatnonzero(np.r_[True, basin_of[1:] != basin_of[:-1], True])
    sizes = np.diff(bounds)
    return [o[bounds[j]:bounds[j + 1]] for j in np.argsort(-sizes, kind="stable")]


# ---- networks ------------------------------------------------------------------------------------------------


def random_forest(n, seed, n_roots=None):
    """Random attachment in a shuffled row order: downstream positions point both ways."""
    rng = np.random.default_rng(seed)
    n_roots = n_roots or max(1, n // 50)
    parent = np.full(n, -1, dtype=np.int64)
    for i in range(n_roots, n):
        parent[i] = rng.integers(0, i)
    perm = rng.permutation(n)
    inv = np.empty(n, dtype=np.int64)
    inv[perm] = np.arange(n)
    down = np.full(n, -1, dtype=np.int64)
    has = parent[perm] >= 0
    down[has] = inv[parent[perm][has]]
    return down


def shuffled_scheidegger(n, seed):
    net = scheidegger_network(n, seed=seed)
    perm = np.random.default_rng(seed).permutation(net.n_reaches)
    inv = np.empty_like(perm)
    inv[perm] = np.arange(perm.size)
    d = np.asarray(net.downstream)[perm]
    return np.where(d >= 0, inv[np.maximum(d, 0)], -1)


CASES = {
    "one reach": lambda: np.array([-1]),
    "two reaches": lambda: np.array([-1, 0]),
    "only one-reach basins": lambda: np.full(500, -1),
    "star": lambda: np.r_[np.arange(1, 300), -1, np.full(200, 299)],
    "chain upward": lambda: np.r_[np.arange(1, 2000), -1],
    "chain downward": lambda: np.r_[-1, np.arange(0, 1999)],
    "random forest": lambda: random_forest(3000, 1),
    "random forest, one basin": lambda: random_forest(2000, 2, n_roots=1),
    "random forest, many basins": lambda: random_forest(2000, 3, n_roots=700),
    "scheidegger": lambda: np.asarray(scheidegger_network(3000, seed=4).downstream),
    "scheidegger shuffled": lambda: shuffled_scheidegger(3000, 5),
    "scheidegger deep basin": lambda: np.asarray(scheidegger_network(2000, seed=6, single_basin=True).downstream),
}

NATIVE = [False] + ([True] if _native.load() is not None else [])


@pytest.fixture(params=NATIVE, ids=lambda v: "c" if v else "numpy")
def path(request, monkeypatch):
    """Both implementations: the compiled walks (where a C compiler is here) and numpy."""
    if not request.param:
        monkeypatch.setattr(_native, "load", lambda: None)
    return "c" if request.param else "numpy"


def test_the_compiled_path_is_the_one_used_when_it_loads():
    lib = _native.load()
    assert (order._native_lib() is None) == (lib is None)


def _net(down):
    n = down.size
    ids = np.arange(10, 10 + n)
    return from_arrays(ids, np.where(down >= 0, ids[np.maximum(down, 0)], -1))


@pytest.mark.parametrize("case", list(CASES))
def test_levels_postorder_depth_basins_equal_the_references(case, path):
    down = np.asarray(CASES[case](), dtype=np.int64)
    levels, stuck = order.kahn_levels(down)
    ref_levels, ref_stuck = ref_kahn_levels(down)
    np.testing.assert_array_equal(levels, ref_levels)
    np.testing.assert_array_equal(stuck, ref_stuck)
    got = order.tree_order(down, levels)
    want = ref_postorder(down, ref_levels)
    for name, a, b in zip(("order", "position", "size", "depth", "basin"), got, want):
        np.testing.assert_array_equal(a, b, err_msg=name)
        assert a.dtype == np.int64, name
    np.testing.assert_array_equal(order.subtree_postorder(down, levels)[0], want[0])
    for a, b in zip(order.level_groups(levels), ref_level_groups(ref_levels)):
        np.testing.assert_array_equal(a, b)
    assert len(order.level_groups(levels)) == len(ref_level_groups(ref_levels))
    for a, b in zip(order.children(down), ref_children(down)):
        np.testing.assert_array_equal(a, b)
    offsets = np.random.default_rng(1).integers(0, 1000, down.size)
    for a, b in zip(order.path_sum(down, offsets, levels), ref_path_sum(down, offsets)):
        np.testing.assert_array_equal(a, b)
    # accumulation in the same order: float sums equal to the last bit
    values = np.random.default_rng(0).gamma(1.0, 1.0, down.size)
    np.testing.assert_array_equal(order.accumulate(down, values, levels), ref_accumulate(down, values, levels))


@pytest.mark.parametrize("case", ["random forest", "scheidegger shuffled", "scheidegger deep basin", "star",
                                  "only one-reach basins", "one reach"])
def test_topology_and_partitions_equal_the_references(case, path):
    down = np.asarray(CASES[case](), dtype=np.int64)
    net = _net(down)
    topo = build_topology(net)
    levels = ref_kahn_levels(down)[0]
    o, position, size, depth, basin = ref_postorder(down, levels)
    level_order = np.argsort(levels, kind="stable")
    level_ptr = np.searchsorted(levels[level_order], np.arange(int(levels.max()) + 2))
    child_ptr, child_idx = ref_children(down)
    expected = {"order": o, "position": position, "size": size, "depth": depth, "levels": levels,
                "level_order": level_order, "level_ptr": level_ptr, "child_ptr": child_ptr, "child_idx": child_idx,
                "basin_ptr": np.r_[0, np.sort(position[down < 0]) + 1]}
    for name, want in expected.items():
        got = getattr(topo, name)
        np.testing.assert_array_equal(got, want, err_msg=name)
        assert got.dtype == np.int64, name
    np.testing.assert_array_equal(net.basin, basin)
    pieces = basins(net)
    want_pieces = ref_basins(down, o, basin)
    assert len(pieces) == len(want_pieces)
    for p, w in zip(pieces, want_pieces):
        np.testing.assert_array_equal(p.reaches, w)
    for a, b in zip(net.level_groups, ref_level_groups(levels)):
        np.testing.assert_array_equal(a, b)


def ref_clusters(network, max_reaches):
    """scale.partition.clusters before this change (tree networks)."""
    from thalweg.scale.partition import _piece

    n = network.n_reaches
    ds = np.asarray(network.downstream, dtype=np.int64)
    levels = ref_kahn_levels(ds)[0]
    groups = ref_level_groups(levels)
    open_size = np.ones(n, dtype=np.int64)
    cut = np.zeros(n, dtype=bool)
    for group in groups:
        d = ds[group]
        inner = d >= 0
        cut[group] = (open_size[group] >= max_reaches) & inner
        carry = np.where(cut[group], 0, open_size[group])
        np.add.at(open_size, d[inner], carry[inner])
    root = np.where(cut | (ds < 0), np.arange(n), -1)
    for group in reversed(groups):
        free = group[root[group] < 0]
        root[free] = root[ds[free]]
    o = ref_postorder(ds, levels)[0]
    by_root = np.argsort(root[o], kind="stable")
    members = o[by_root]
    roots, starts = np.unique(root[members], return_index=True)
    bounds = np.r_[starts, n]
    cuts = np.flatnonzero(cut)
    target_root = root[ds[cuts]]
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


@pytest.mark.parametrize("case", ["scheidegger shuffled", "scheidegger deep basin", "random forest", "star",
                                  "chain upward", "one reach"])
@pytest.mark.parametrize("max_reaches", [1, 40, 400])
def test_clusters_equal_the_reference(case, max_reaches, path):
    net = _net(np.asarray(CASES[case](), dtype=np.int64))
    got, want = clusters(net, max_reaches), ref_clusters(net, max_reaches)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        for name in ("reaches", "inflow_from", "inflow_into"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
        assert (a.index, a.upstream, a.stage, a.members) == (b.index, b.upstream, b.stage, b.members)


def test_a_chain_of_100k_reaches_has_no_recursion_limit(path):
    n = 100_000
    down = np.r_[np.arange(1, n), -1]  # reach i drains to i + 1
    levels, stuck = order.kahn_levels(down)
    assert not stuck.size
    np.testing.assert_array_equal(levels, np.arange(n))
    o, position, size, depth, basin = order.tree_order(down, levels)
    np.testing.assert_array_equal(o, np.arange(n))
    np.testing.assert_array_equal(size, np.arange(1, n + 1))
    np.testing.assert_array_equal(depth, np.arange(n)[::-1])
    assert (basin == n - 1).all()
    ptr, idx = order.children(down)
    np.testing.assert_array_equal(idx, np.arange(n - 1))


@pytest.mark.parametrize("case", ["one cycle", "cycle with a tail", "two cycles and a tree", "a reach into itself"])
def test_cycles_leave_the_same_reaches_stuck(case, path):
    tree = random_forest(50, 8)
    down = {"one cycle": np.array([1, 2, 0]),
            "cycle with a tail": np.array([1, 2, 0, 0, 3, -1, 5]),  # 3, 4 drain into the cycle; 5, 6 a tree
            # 0 <-> 1 and 2 <-> 3, with 4 and 5 draining into them, then a tree of 50
            "two cycles and a tree": np.r_[1, 0, 3, 2, 1, 3, np.where(tree >= 0, tree + 6, -1)],
            "a reach into itself": np.array([-1, 0, 2, 2, 3]),
            }[case]
    levels, stuck = order.kahn_levels(down)
    ref_levels, ref_stuck = ref_kahn_levels(down)
    np.testing.assert_array_equal(levels, ref_levels)
    np.testing.assert_array_equal(stuck, ref_stuck)
    groups, ref_groups = order.level_groups(levels), ref_level_groups(ref_levels)  # the stuck reaches in none
    assert len(groups) == len(ref_groups)
    for a, b in zip(groups, ref_groups):
        np.testing.assert_array_equal(a, b)
    ids = np.arange(1, down.size + 1)
    with pytest.raises(CycleError):
        from_arrays(ids, np.where(down >= 0, ids[np.maximum(down, 0)], -1))


@pytest.mark.skipif(_native.load() is None, reason="no C compiler here")
def test_the_c_walks_refuse_positions_past_the_end():
    down = np.array([1, 5, -1])  # 5: past the end (a RiverNetwork built without from_arrays); never written through
    for fn in (order.kahn_levels, order.children, lambda d: order.tree_order(d, np.array([0, 1, 2]))):
        with pytest.raises(IndexError):
            fn(down)


@pytest.mark.parametrize("kind", ["dense", "sparse", "dense from zero", "huge"])
def test_ids_map_to_the_same_positions(kind):
    rng = np.random.default_rng(9)
    n = 2000
    ids = {"dense": rng.permutation(n) + 5, "sparse": rng.choice(10**12, n, replace=False),
           "dense from zero": rng.permutation(n), "huge": rng.permutation(n) + 2**62}[kind].astype(np.int64)
    # downstream ids: reaches, outlet codes, negatives, ids absent (dangling), just outside the id range
    picks = rng.integers(0, n, n)
    ds_ids = ids[picks].copy()
    ds_ids[::7] = -1
    ds_ids[1::11] = ids.max() + 1
    ds_ids[2::13] = -(2**63)
    from thalweg.network.build import _positions

    np.testing.assert_array_equal(_positions(ids, ds_ids), ref_positions(ids, ds_ids))


@pytest.mark.parametrize("dense", [True, False])
def test_duplicate_ids_are_named_the_same(dense):
    ids = np.array([4, 9, 4, 7, 9, 9, 1]) * (1 if dense else 10**11)
    with pytest.raises(DuplicateIdError) as err:
        from_arrays(ids, np.full(ids.size, -1))
    assert err.value.ids == [4 * (1 if dense else 10**11), 9 * (1 if dense else 10**11)]


@pytest.mark.parametrize("values", [
    np.array([3, 1, 2, 3, 1, 0]), np.arange(70_000)[::-1] % 65_537, np.array([-5, 2**40, 7, -5, 2**40]),
    np.array([2**63 - 1, -(2**63), 0]), np.arange(100, dtype=np.uint32)[::-1], np.zeros(0, dtype=np.int64),
    np.random.default_rng(1).integers(-1, 3_000_000, 50_000), np.repeat(np.arange(0, 10**6, 97), 3)[::-1].copy(),
    np.r_[np.arange(200_000), np.arange(100_000)]])
def test_stable_argsort_is_numpys(values):
    np.testing.assert_array_equal(order.stable_argsort(values), np.argsort(values, kind="stable"))


def test_a_library_is_loaded_once_and_waited_for_by_concurrent_first_uses():
    """``_cbuild.once``: threads that ask while the first is still loading get its library (not None, which sent a
    concurrent first route through torch), and the load runs once."""
    import threading
    import time

    from thalweg._cbuild import once

    calls, lib = [], object()

    @once
    def load():
        calls.append(1)
        time.sleep(0.2)  # a compile in progress
        return lib

    got: list = []
    threads = [threading.Thread(target=lambda: got.append(load())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == [lib] * 4 and calls == [1]
    assert _native.load() is _native.load()
