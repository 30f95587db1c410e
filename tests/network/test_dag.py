"""Networks whose rivers split: link tables -> splits, validation, sub-networks, multi-path regions, generator."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
from thalweg.errors import CycleError, NetworkError, ThalwegWarning
from thalweg.network import Links, from_arrays, scheidegger_dag
from thalweg.network.model import Source
from thalweg.network.dag import dag_levels, edges, fraction_logits, multipath_regions, softmax_fractions

# 1 -> 2 -> {3, 4} -> 5 (a braid), 5 -> outlet; areas in m2
IDS = [1, 2, 3, 4, 5]
DOWN = [2, 3, 5, 5, -1]
AREA = [1e6, 2e6, 3e6, 1e6, 5e6]


def braid(fraction=(0.7, 0.3), **kw):
    return from_arrays(IDS, DOWN, [1e3] * 5, AREA, links=Links(np.array([2, 2]), np.array([3, 4]),
                                                               None if fraction is None else np.array(fraction)), **kw)


def test_links_with_fractions_make_a_split():
    net = braid()
    s = net.splits
    assert s.n_splits == 1 and net.ids[s.reach].tolist() == [2]
    assert net.ids[s.to].tolist() == [3, 4] and s.fraction.tolist() == [0.7, 0.3] and s.origin == "field"
    assert net.ids[net.downstream[1]] == 3  # the main path is what trees see
    src, dst, frac = edges(net)
    assert sorted(zip(net.ids[src].tolist(), net.ids[dst].tolist(), frac.tolist())) == \
        [(1, 2, 1.0), (2, 3, 0.7), (2, 4, 0.3), (3, 5, 1.0), (4, 5, 1.0)]
    summary = net.summary()
    assert summary["splits"] == 1 and summary["split_links"] == 2 and summary["largest_multipath_region"] == 3


def test_main_path_is_the_marked_link_then_the_layer_downstream_then_the_largest_fraction():
    net = from_arrays(IDS, DOWN, [1e3] * 5, AREA, links=Links(np.array([2, 2]), np.array([3, 4]),
                                                              np.array([0.2, 0.8]), main=np.array([False, True])))
    assert net.ids[net.downstream[1]] == 4 and net.ids[net.splits.to].tolist() == [4, 3]
    net = braid((0.2, 0.8))
    assert net.ids[net.downstream[1]] == 3  # the layer's downstream field names 3
    net = from_arrays(IDS, [2, 5, 5, 5, -1], [1e3] * 5, AREA, links=Links(np.array([2, 2]), np.array([3, 4]),
                                                                          np.array([0.2, 0.8])))
    assert net.ids[net.downstream[1]] == 4


def test_without_fractions_the_main_path_is_kept_and_said_so():
    with pytest.warns(ThalwegWarning, match=r"the main path is kept and the minor paths 2 -> 4 are ignored. Pass "
                                            r"bifurcations='split'"):
        net = braid(None)
    assert net.splits is None and net.ids[net.downstream[1]] == 3


def test_split_without_fractions_divides_by_drainage_area_or_equally():
    with pytest.warns(ThalwegWarning, match=r"1 split reach has no split fractions in the data \(2\); its "
                                            r"outflow is divided by the receiving reaches' drainage area\."):
        net = braid(None, bifurcations="split")
    np.testing.assert_allclose(net.splits.fraction, [0.75, 0.25])
    assert net.splits.origin == "area"
    with pytest.warns(ThalwegWarning, match=r"in equal shares \(no drainage area\)"):
        net = from_arrays(IDS, DOWN, [1e3] * 5, links=Links(np.array([2, 2]), np.array([3, 4])), bifurcations="split")
    np.testing.assert_allclose(net.splits.fraction, [0.5, 0.5])
    assert net.splits.origin == "equal"


def test_bifurcations_main_keeps_the_tree():
    with pytest.warns(ThalwegWarning, match=r"as asked \(bifurcations='main'\), the main path is kept and the minor "
                                            r"paths 2 -> 4 are ignored"):
        net = braid(bifurcations="main")
    assert net.splits is None and net.ids[net.downstream[1]] == 3


def test_fractions_that_do_not_sum_to_one_name_the_reach():
    with pytest.raises(NetworkError, match=r"split fractions of 1 reach do not sum to 1 \(2 -> 3: 0.6 \+ 2 -> 4: "
                                           r"0.3 = 0.9\)") as err:
        braid((0.6, 0.3))
    assert err.value.ids == [2] and "sum to 1" in err.value.hint


def test_a_cycle_closed_by_a_link_table_row_names_the_row():
    # 5 is the outlet; the table sends it back to 1: 1 -> 2 -> 3 -> 5 -> 1
    table = Links(np.array([5]), np.array([1]), np.array([1.0]), origin="links", where="links_cycle.csv")
    with pytest.raises(CycleError, match=r"the link table's row 5 -> 1 \(data row 1\) closes a cycle: reaches "
                                         r"\d( -> \d)+") as err:
        from_arrays(IDS, DOWN, [1e3] * 5, AREA, links=table, bifurcations="split")
    assert err.value.path == "links_cycle.csv" and err.value.layer is None and err.value.field is None
    assert sorted(err.value.ids) == [1, 2, 3, 5]
    # a cycle through a split branch: 2 -> 4 (a table row) -> back up to 2 through 4's override
    table = Links(np.array([2, 2, 4]), np.array([3, 4, 2]), np.array([0.5, 0.5, 1.0]), where="t.csv")
    with pytest.raises(CycleError, match=r"rows 2 -> 4 \(data row 2\), 4 -> 2 \(data row 3\) close a cycle"):
        from_arrays(IDS, DOWN, [1e3] * 5, AREA, links=table)


def test_fractions_of_a_link_table_name_the_table_not_the_layer():
    table = Links(np.array([2, 2]), np.array([3, 4]), np.array([0.7, 0.7]), origin="links", where="links_bad.csv")
    with pytest.raises(NetworkError, match=r"1 reach do not sum to 1 \(2 -> 3: 0.7 \+ 2 -> 4: 0.7 = 1.4\)") as err:
        from_arrays(IDS, DOWN, [1e3] * 5, AREA, links=table, source=Source(path="rivers.gpkg", layer="rivers"))
    assert err.value.path == "links_bad.csv" and err.value.layer is None and err.value.field == "fraction"
    assert "layer" not in str(err.value)


def test_rounded_fractions_are_renormalised():
    net = from_arrays([1, 2, 3, 4], [-1, -1, 1, -1], [1e3] * 4,
                      links=Links(np.array([3, 3, 3]), np.array([1, 2, 4]), np.array([0.333, 0.333, 0.3335])))
    np.testing.assert_allclose(net.splits.fraction.sum(), 1.0, atol=1e-15)


def test_a_split_with_one_outlet_is_refused():
    with pytest.raises(NetworkError, match=r"one downstream link with a fraction other than 1 \(2 -> 3: 0.6\): a "
                                           r"split with one outlet") as err:
        from_arrays(IDS, DOWN, [1e3] * 5, links=Links(np.array([2]), np.array([3]), np.array([0.6])))
    assert err.value.ids == [2]


def test_a_lone_link_overrides_the_downstream_field():
    net = from_arrays(IDS, DOWN, [1e3] * 5, links=Links(np.array([2]), np.array([4]), np.array([1.0])))
    assert net.splits is None and net.ids[net.downstream[1]] == 4


def test_split_into_a_cycle_names_it():
    # 2 splits into 3 and 1; 1 drains into 2: a cycle through the split link
    with pytest.raises(CycleError, match=r"the link table's row 2 -> 1 \(data row 2\) closes a cycle: reaches "
                                         r"(1 -> 2 -> 1|2 -> 1 -> 2)\.") as err:
        from_arrays(IDS, DOWN, [1e3] * 5, links=Links(np.array([2, 2]), np.array([3, 1]), np.array([0.5, 0.5])))
    assert sorted(err.value.ids) == [1, 2]


def test_bad_link_rows():
    with pytest.raises(NetworkError, match=r"appear more than once \(2 -> 3\)"):
        from_arrays(IDS, DOWN, [1e3] * 5, links=Links(np.array([2, 2, 2]), np.array([3, 3, 4]),
                                                      np.array([0.5, 0.2, 0.3])))
    with pytest.raises(NetworkError, match=r"from_id values of the link table are not reach ids \(77\)"):
        from_arrays(IDS, DOWN, [1e3] * 5, links=Links(np.array([77, 77]), np.array([3, 4])))
    with pytest.raises(NetworkError, match=r"fraction outside \[0, 1\]"):
        braid((1.5, -0.5))
    with pytest.raises(NetworkError, match=r"give fractions for some of their links only \(2\)"):
        braid((0.5, np.nan))


def test_links_leaving_the_network_are_dropped_with_a_warning():
    with pytest.warns(ThalwegWarning, match=r"1 links lead to ids that are not reaches \(99\)"):
        net = from_arrays(IDS, DOWN, [1e3] * 5, links=Links(np.array([2, 2, 2]), np.array([3, 4, 99]),
                                                            np.array([0.5, 0.3, 0.2])))
    np.testing.assert_allclose(net.splits.fraction, [0.625, 0.375])


def test_take_and_split_keep_the_splits():
    net = braid()
    sub = net.take(np.array([0, 1, 2, 4]))  # reach 4 dropped: 2 no longer splits
    assert sub.splits is None and sub.ids[sub.downstream[1]] == 3
    sub = net.take(np.array([0, 1, 3, 4]))  # its main outlet 3 dropped: 4 takes all the water
    assert sub.splits is None and sub.ids[sub.downstream[1]] == 4
    three = from_arrays([1, 2, 3, 4], [2, -1, -1, -1], [1e3] * 4,
                        links=Links(np.array([1, 1, 1]), np.array([2, 3, 4]), np.array([0.5, 0.3, 0.2])))
    sub = three.take(np.array([0, 2, 3]))  # the main outlet 2 dropped: 3 (the larger share) becomes the main path
    assert sub.ids[sub.downstream[0]] == 3 and sub.ids[sub.splits.to].tolist() == [3, 4]
    np.testing.assert_allclose(sub.splits.fraction, [0.6, 0.4])
    delta = from_arrays([1, 2, 3, 4], [2, -1, -1, -1], [1e3] * 4,
                        links=Links(np.array([2, 2]), np.array([3, 4]), np.array([0.6, 0.4])), bifurcations="split")
    basins = delta.split()
    assert len(basins) == 1 and basins[0].n_reaches == 4 and basins[0].splits.n_splits == 1
    back = pickle.loads(pickle.dumps(delta))
    assert back.splits.fraction.tolist() == [0.6, 0.4]


def test_multipath_regions_end_where_the_braid_closes():
    # 1 -> 2 -> {3, 4}; 3 -> 5, 4 -> 5; 5 -> 6 -> 7 (a second split) -> {8, 9} two outlets
    net = from_arrays([1, 2, 3, 4, 5, 6, 7, 8, 9], [2, 3, 5, 5, 6, 7, 8, -1, -1], [1e3] * 9,
                      links=Links(np.array([2, 2, 7, 7]), np.array([3, 4, 8, 9]), np.array([0.5, 0.5, 0.9, 0.1])))
    regions = multipath_regions(net)
    assert [sorted(net.ids[r].tolist()) for r in regions] == [[2, 3, 4], [7, 8, 9]]


def test_softmax_fractions_sum_to_one_per_split():
    import torch

    net = scheidegger_dag(200, seed=2, split_share=0.05)
    logits = torch.randn(net.splits.n_links, dtype=torch.float64)
    f = softmax_fractions(net, logits).numpy()
    np.testing.assert_allclose(np.add.reduceat(f, net.splits.ptr[:-1]), 1.0, atol=1e-14)
    np.testing.assert_allclose(softmax_fractions(net, fraction_logits(net)).numpy(), net.splits.fraction, rtol=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_scheidegger_dag_has_deltas_and_braids(seed):
    net = scheidegger_dag(400, seed=seed, split_share=0.04)
    s = net.splits
    assert s.n_splits >= 10
    np.testing.assert_allclose(np.add.reduceat(s.fraction, s.ptr[:-1]), 1.0, atol=1e-12)
    src, dst, _ = edges(net)
    _, stuck = dag_levels(net.n_reaches, src, dst)
    assert not stuck.size
    # a braid: two links of a split reach meet again at one reach; a delta: they end at different outlets
    down = np.asarray(net.downstream)
    meets = ends_apart = 0
    for k in range(s.n_splits):
        outs = s.to[s.ptr[k]:s.ptr[k + 1]]
        basins = net.basin[outs]
        nxt = {int(down[o]) for o in outs} | set(outs.tolist())
        meets += len(nxt) < 2 * len(outs)
        ends_apart += np.unique(basins).size > 1
    assert meets > 0 and ends_apart > 0
    assert net.summary()["largest_multipath_region"] >= 3
