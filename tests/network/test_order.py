"""Post-order, levels, depth, basins and subsets against brute force on random and lattice networks."""
from __future__ import annotations

import networkx as nx
import numpy as np
from hypothesis import given, settings

from thalweg.network import from_arrays, scheidegger_network
from thalweg.testing.strategies import networks


def _graph(net):
    g = nx.DiGraph()
    g.add_nodes_from(range(net.n_reaches))
    g.add_edges_from((i, int(d)) for i, d in enumerate(net.downstream) if d >= 0)
    return g


def _check_invariants(net):
    n = net.n_reaches
    order = net.postorder
    assert sorted(order.tolist()) == list(range(n))
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    has_ds = net.downstream >= 0
    # every reach comes after its whole upstream: in particular before its downstream reach
    assert (position[has_ds] < position[net.downstream[has_ds]]).all()
    g = _graph(net)
    for i in range(n):
        up = nx.ancestors(g, i) | {i}
        assert set(net.upstream_of(net.ids[i]).tolist()) == up
        assert net.n_upstream[i] == len(up)
        # levels: 0 at headwaters, else 1 + max upstream level
        parents = list(g.predecessors(i))
        expected = 0 if not parents else 1 + max(net.levels[p] for p in parents)
        assert net.levels[i] == expected
        # depth: hops to the outlet; basin: that outlet
        path = nx.descendants(g, i)
        assert net.depth[i] == len(path)
        outlet = i if not path else next(p for p in path if net.downstream[p] < 0)
        assert net.basin[i] == outlet


@settings(max_examples=60, deadline=None)
@given(networks(max_reaches=40))
def test_postorder_levels_depth_on_random_trees(net):
    _check_invariants(net)


def test_invariants_on_a_lattice_network():
    net = scheidegger_network(400, seed=2)
    assert net.n_reaches > 150
    _check_invariants(net)


@settings(max_examples=30, deadline=None)
@given(networks(min_reaches=2, max_reaches=40))
def test_shuffled_rows_give_the_same_network(net):
    rng = np.random.default_rng(net.n_reaches)
    perm = rng.permutation(net.n_reaches)
    ds_ids = np.where(net.downstream >= 0, net.ids[np.maximum(net.downstream, 0)], -1)
    other = from_arrays(net.ids[perm], ds_ids[perm], net.length[perm])
    for reach_id in net.ids:
        assert set(net.ids[net.upstream_of(reach_id)]) == set(other.ids[other.upstream_of(reach_id)])
    back = other.index_of(net.ids)
    assert (other.levels[back] == net.levels).all()
    assert (other.depth[back] == net.depth).all()


def test_split_into_basins_partitions_the_network():
    net = scheidegger_network(500, seed=4)
    parts = net.split()
    assert len(parts) == net.outlets.size
    assert sum(p.n_reaches for p in parts) == net.n_reaches
    assert sorted(np.concatenate([p.ids for p in parts]).tolist()) == sorted(net.ids.tolist())
    assert [p.n_reaches for p in parts] == sorted((p.n_reaches for p in parts), reverse=True)
    for part in parts[:5]:
        assert part.outlets.size == 1
        assert (part.postorder == np.arange(part.n_reaches)).all()  # split returns post-ordered basins


def test_upstream_subset_is_a_network_with_that_reach_as_outlet():
    net = scheidegger_network(500, seed=5)
    target = net.ids[np.argmax(net.n_upstream)]
    sub = net.upstream(target)
    assert sub.outlets.size == 1 and sub.ids[sub.outlets[0]] == target
    assert sub.n_reaches == net.n_upstream[net.index_of([target])[0]]
    assert np.isclose(sub.area[sub.outlets[0]], net.area[net.index_of([target])[0]])


def test_lattice_area_is_consistent_with_catchments():
    net = scheidegger_network(600, seed=6)
    from thalweg.network.order import accumulate

    acc = accumulate(net.downstream, net.catchment_area, net.levels)
    np.testing.assert_allclose(acc, net.area, rtol=1e-12)
    assert net.depth.max() >= 10  # lattice networks are deep, unlike random attachment trees


def test_summary_counts():
    net = scheidegger_network(300, seed=8)
    s = net.summary()
    assert s["reaches"] == net.n_reaches
    assert s["outlets"] == int((net.downstream < 0).sum())
    assert s["max_depth"] == int(net.depth.max())
    assert np.isclose(s["total_length_km"], net.length.sum() / 1e3)
