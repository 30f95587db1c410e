"""The CPU exact engine's one-pass DAG recursion (``routing.dag.native_plan``, ``_native/routing.c``): the float64
DAG reference per reach, mass, gradients in runoff, parameters and fractions, the stage path, fractions 1/0 = the
tree, split reaches cut from the tree where the main tree admits no order, threads."""
from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
import torch
from _routing_cases import DT, scheme_params
from thalweg.irf import SCHEMES
from thalweg.network import Links, from_arrays, scheidegger_dag, softmax_fractions
from thalweg.network.dag import minor_link_order
from thalweg.network.order import accumulate, kahn_levels
from thalweg.routing import _cpu, route, route_reference
from thalweg.routing import dag as dagmod

pytestmark = pytest.mark.skipif(not _cpu.available(), reason="needs the compiled CPU kernels (a C compiler)")

RECURSIVE = ("muskingum", "linear_storage", "muskingum_substep", "muskingum_nonneg")


def _max_rel(got, want) -> float:
    peak = np.abs(want).max(-1, keepdims=True)
    return float((np.abs(got - want) / np.maximum(peak, 1e-12)).max())


def _stages_only(monkeypatch):
    """Route every DAG in stages (the path the native one replaces)."""
    monkeypatch.setattr(dagmod, "_route_native", lambda job, frac: None)


@pytest.fixture
def native_only(monkeypatch):
    """Fail if the stage path runs."""
    def refuse(*_a, **_k):
        raise AssertionError("the stage path ran")

    monkeypatch.setattr(dagmod, "dag_plan", refuse)


@pytest.fixture(scope="module", params=[3, 5, 8])
def dag_net(request):
    """Deltas near the outlets and braids mid-network (some minor links go to a reach downstream on the split
    reach's main path, others to a reach of another subtree or basin: both kinds of link in the kernel)."""
    net = scheidegger_dag(400, seed=request.param, split_share=0.05)
    plan = dagmod.native_plan(net)
    minor = ~net.splits.is_main
    rows = plan.links.link_row[minor]
    assert (rows >= 0).any() and (rows < 0).any()
    return net


def _check_order(net, order, forest=None):
    pos = np.empty(net.n_reaches, dtype=np.int64)
    pos[order] = np.arange(net.n_reaches)
    down = net.downstream if forest is None else forest
    has = down >= 0
    size, d = accumulate(down, np.ones(down.size, dtype=np.int64), kahn_levels(down)[0]), down[has]
    # a subtree post-order of the main tree: each reach's upstream block lies inside its downstream reach's
    assert (pos[has] < pos[d]).all() and (pos[has] - size[has] >= pos[d] - size[d]).all()
    s = net.splits
    assert (pos[s.source] < pos[s.to]).all()  # every link's source before its receiver
    return pos


def test_order_meets_every_source_before_its_receiver_and_keeps_linked_basins_together(dag_net):
    order, group_ptr, forest = minor_link_order(dag_net)
    np.testing.assert_array_equal(forest, dag_net.downstream)  # nothing cut: the main tree
    pos = _check_order(dag_net, order)
    group = np.searchsorted(group_ptr, pos, side="right") - 1
    s = dag_net.splits
    assert (group[s.source] == group[s.to]).all()
    assert group_ptr[-1] == dag_net.n_reaches and group_ptr.size > 10  # still many work items


@pytest.mark.parametrize("scheme", RECURSIVE)
def test_native_matches_the_reference_on_dags(scheme, dag_net, native_only):
    rng = np.random.default_rng(hash(scheme) % 2**32)
    params = scheme_params(SCHEMES[scheme], dag_net, rng)
    q = rng.gamma(2.0, 1.0, size=(2, dag_net.n_reaches, 72))
    want = route_reference(dag_net, q, params, scheme, dt=DT)
    got = route(dag_net, q.astype("float32"), params, scheme, dt=DT, engine="exact").numpy()
    assert _max_rel(got, want) < 1e-5


def test_native_over_several_time_chunks(dag_net, native_only, monkeypatch):
    monkeypatch.setattr(_cpu, "STACK_BYTES", 1)  # 64-step chunks: side rows and adjoints across chunks
    rng = np.random.default_rng(2)
    params = scheme_params(SCHEMES["muskingum"], dag_net, rng)
    q = rng.gamma(2.0, 1.0, size=(1, dag_net.n_reaches, 200))
    want = route_reference(dag_net, q, params, "muskingum", dt=DT)
    got = route(dag_net, q, params, "muskingum", dt=DT, engine="exact", dtype=torch.float64).numpy()
    assert _max_rel(got, want) < 1e-10


def test_native_keeps_mass(dag_net, native_only):
    rng = np.random.default_rng(8)
    params = scheme_params(SCHEMES["muskingum_nonneg"], dag_net, rng)
    q = np.zeros((1, dag_net.n_reaches, 300))
    q[..., :30] = rng.gamma(2.0, 1.0, size=(1, dag_net.n_reaches, 30))
    out = route(dag_net, torch.as_tensor(q), params, "muskingum_nonneg", dt=DT, engine="exact",
                dtype=torch.float64).numpy()
    assert abs(out[:, dag_net.outlets].sum() - q.sum()) <= 1e-6 * q.sum()


def test_native_equals_the_stage_path(dag_net, monkeypatch):
    rng = np.random.default_rng(6)
    params = scheme_params(SCHEMES["linear_storage"], dag_net, rng)
    q = torch.as_tensor(rng.gamma(2.0, 1.0, size=(2, dag_net.n_reaches, 50)))
    f = softmax_fractions(dag_net, torch.as_tensor(rng.normal(size=dag_net.splits.n_links)))
    native = route(dag_net, q, params, "linear_storage", dt=DT, engine="exact", fractions=f, dtype=torch.float64)
    _stages_only(monkeypatch)
    staged = route(dag_net, q, params, "linear_storage", dt=DT, engine="exact", fractions=f, dtype=torch.float64)
    np.testing.assert_allclose(native.numpy(), staged.numpy(), rtol=1e-11, atol=1e-11)


def test_fractions_one_and_zero_route_the_tree(dag_net, native_only):
    rng = np.random.default_rng(9)
    params = scheme_params(SCHEMES["muskingum"], dag_net, rng)
    q = rng.gamma(2.0, 1.0, size=(1, dag_net.n_reaches, 40))
    main_only = dag_net.splits.is_main.astype(np.float64)
    got = route(dag_net, q, params, "muskingum", dt=DT, engine="exact", fractions=main_only,
                dtype=torch.float64).numpy()
    tree = dataclasses.replace(dag_net, splits=None)
    want = route(tree, q, params, "muskingum", dt=DT, engine="exact", dtype=torch.float64).numpy()
    assert _max_rel(got, want) < 1e-12


def test_threads_route_as_one(dag_net, native_only):
    rng = np.random.default_rng(10)
    params = scheme_params(SCHEMES["muskingum"], dag_net, rng)
    q = rng.gamma(2.0, 1.0, size=(3, dag_net.n_reaches, 90)).astype("float32")
    w = torch.as_tensor(rng.normal(size=q.shape).astype("float32"))

    def run():
        f = torch.as_tensor(np.array(dag_net.splits.fraction)).requires_grad_(True)
        qq = torch.as_tensor(q).requires_grad_(True)
        out = route(dag_net, qq, params, "muskingum", dt=DT, engine="exact", fractions=f)
        (out * w).sum().backward()
        return out.detach().numpy(), qq.grad.numpy(), f.grad.numpy()

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = run()
        torch.set_num_threads(4)  # several work items per batch element, run in threads
        assert len(_cpu._items(dagmod.native_plan(dag_net).topo, 3)) > 3
        many = run()
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(one, many):
        np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module")
def small_dag():
    """13 reaches in two basins: a braid rejoining two links down (a minor receiver in another subtree), a bypass
    straight to the reach two links down (a receiver on the main path), a split into two reaches of which one
    splits again, and a distributary into the other basin, whose outlet receives a second minor link."""
    ids = np.arange(1, 14)
    down = [2, 3, 4, -1, 4, 5, 6, 1, 3, 3, -1, 11, 11]
    # 8 -> 1 -> 2 -> 3 -> 4 (outlet); 7 -> 6 -> 5 -> 4; 9, 10 -> 3; 12, 13 -> 11 (outlet)
    links = Links(np.array([8, 8, 1, 1, 2, 2, 7, 7, 7, 6, 6]),
                  np.array([1, 9, 2, 3, 3, 10, 6, 12, 13, 5, 11]),
                  np.array([0.6, 0.4, 0.7, 0.3, 0.5, 0.5, 0.5, 0.3, 0.2, 0.9, 0.1]))
    return from_arrays(ids, np.array(down), np.full(13, 2e3), links=links)


def test_small_dag_uses_both_kinds_of_link(small_dag):
    plan = dagmod.native_plan(small_dag)
    rows = plan.links.link_row[~small_dag.splits.is_main]
    assert (rows >= 0).sum() >= 3 and (rows < 0).sum() >= 1
    _check_order(small_dag, plan.topo.order)


@pytest.mark.parametrize("scheme", ["muskingum", "muskingum_substep"])
@pytest.mark.parametrize("steps", [9, 150])
@pytest.mark.parametrize("which", ["small_dag", "crossed_dag"])
def test_gradients_in_runoff_parameters_and_fractions(scheme, steps, which, request, native_only, monkeypatch):
    small_dag = request.getfixturevalue(which)
    monkeypatch.setattr(_cpu, "STACK_BYTES", 1)  # 150 steps: three time chunks
    rng = np.random.default_rng(11)
    sch = SCHEMES[scheme]
    base = {k: torch.as_tensor(v) for k, v in scheme_params(sch, small_dag, rng).items()}
    q = torch.tensor(rng.gamma(2.0, 1.0, size=(2, small_dag.n_reaches, steps)), requires_grad=True)
    k = base["k"].clone().requires_grad_(True)
    x = base["x"].clone().requires_grad_(True)
    logits = torch.tensor(rng.normal(size=small_dag.splits.n_links), requires_grad=True)

    def fn(q, k, x, logits):
        return route(small_dag, q, {**base, "k": k, "x": x}, scheme, dt=DT, engine="exact", dtype=torch.float64,
                     fractions=softmax_fractions(small_dag, logits))

    assert torch.autograd.gradcheck(fn, (q, k, x, logits), eps=1e-6, atol=1e-7, rtol=1e-5, fast_mode=True)


def test_fraction_gradients_equal_the_stage_paths(small_dag, monkeypatch):
    rng = np.random.default_rng(12)
    params = scheme_params(SCHEMES["muskingum"], small_dag, rng)
    q = torch.as_tensor(rng.gamma(2.0, 1.0, size=(2, small_dag.n_reaches, 30)))
    w = torch.as_tensor(rng.normal(size=(2, small_dag.n_reaches, 30)))

    def grads():
        f = torch.as_tensor(small_dag.splits.fraction).clone().requires_grad_(True)
        out = route(small_dag, q, params, "muskingum", dt=DT, engine="exact", dtype=torch.float64, fractions=f)
        (out * w).sum().backward()
        return f.grad.numpy()

    native = grads()
    _stages_only(monkeypatch)
    np.testing.assert_allclose(native, grads(), rtol=1e-10, atol=1e-12)


@pytest.fixture(scope="module")
def crossed_dag():
    """Two anabranches that exchange water both ways: 6 -> 4 -> 2 -> 1 and 7 -> 5 -> 3 -> 1, with 6 also feeding 5
    and 7 also feeding 4. A valid DAG whose main tree has no post-order meeting both minor links' sources first."""
    links = Links(np.array([6, 6, 7, 7]), np.array([4, 5, 5, 4]), np.array([0.7, 0.3, 0.6, 0.4]))
    return from_arrays(np.arange(1, 8), np.array([-1, 1, 1, 2, 3, 4, 5]), np.full(7, 2e3), links=links)


def test_crossed_links_cut_a_split_reach_from_the_tree_and_route_right(crossed_dag, native_only, caplog):
    order, _, forest = minor_link_order(crossed_dag)
    cut = np.flatnonzero(forest != crossed_dag.downstream)
    assert cut.size == 1 and np.isin(cut, crossed_dag.splits.reach).all() and (forest[cut] == -1).all()
    _check_order(crossed_dag, order, forest)
    rng = np.random.default_rng(13)
    params = scheme_params(SCHEMES["muskingum"], crossed_dag, rng)
    q = rng.gamma(2.0, 1.0, size=(2, 7, 40))
    dagmod._PLANS.pop(crossed_dag, None)
    with caplog.at_level(logging.DEBUG, logger="thalweg.routing.dag"):
        got = route(crossed_dag, q, params, "muskingum", dt=DT, engine="exact", dtype=torch.float64).numpy()
    assert any("1 split reaches routed with all their links outside" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("thalweg.routing")]
    assert _max_rel(got, route_reference(crossed_dag, q, params, "muskingum", dt=DT)) < 1e-10


def test_anabranches_exchanging_water_many_times_route_right(native_only):
    """Two parallel channels of 12 reaches joined at the outlet, with cross-links both ways all along (each
    cross-link one reach downstream): most sibling constraints cyclic."""
    m = 12
    ids = np.arange(1, 2 * m + 2)  # 1: outlet; A: 2..m+1 (2 most downstream); B: m+2..2m+1
    a, b = ids[1:m + 1], ids[m + 1:]
    down = np.r_[-1, 1, a[:-1], 1, b[:-1]]
    rng = np.random.default_rng(15)
    f_ids, t_ids, fr = [], [], []
    for k in range(m - 1, 1, -2):  # A's reach k feeds B's reach k - 1, B's reach k - 1 feeds A's reach k - 2
        for s_, main, other in ((a[k], a[k - 1], b[k - 1]), (b[k - 1], b[k - 2], a[k - 2])):
            w = rng.uniform(0.5, 0.9)
            f_ids += [s_, s_]
            t_ids += [main, other]
            fr += [w, 1 - w]
    net = from_arrays(ids, down, np.full(ids.size, 2e3),
                      links=Links(np.array(f_ids), np.array(t_ids), np.array(fr)))
    order, _, forest = minor_link_order(net)
    assert (forest != net.downstream).sum() >= 2
    _check_order(net, order, forest)
    params = scheme_params(SCHEMES["linear_storage"], net, rng)
    q = rng.gamma(2.0, 1.0, size=(1, net.n_reaches, 60))
    got = route(net, q, params, "linear_storage", dt=DT, engine="exact", dtype=torch.float64).numpy()
    assert _max_rel(got, route_reference(net, q, params, "linear_storage", dt=DT)) < 1e-10


def test_convolution_schemes_route_in_stages(dag_net, native_only):
    rng = np.random.default_rng(14)
    params = scheme_params(SCHEMES["nash_cascade"], dag_net, rng)
    q = rng.gamma(2.0, 1.0, size=(1, dag_net.n_reaches, 16)).astype("float32")
    with pytest.raises(AssertionError, match="the stage path ran"):  # no recursion: routed in stages
        route(dag_net, q, params, "nash_cascade", dt=DT, engine="exact")


@pytest.mark.parametrize("seed", range(12))
def test_random_dense_dags_route_right(seed, native_only):
    """Random DAGs where 40 % of the reaches split into up to 4 reaches anywhere downstream (many cyclic sibling
    constraints, so many reaches cut from the tree), against the reference."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(8, 40))
    down = np.array([int(rng.integers(i + 1, n)) if i < n - 1 and rng.random() > 0.1 else -1 for i in range(n)])
    f_ids, t_ids, fr = [], [], []
    for i in np.flatnonzero((down >= 0) & (rng.random(n) < 0.4)).tolist():
        others = [j for j in range(i + 1, n) if j != down[i]]
        if not others:
            continue
        tos = [int(down[i]), *rng.choice(others, int(rng.integers(1, min(3, len(others)) + 1)), replace=False)]
        f_ids += [i + 1] * len(tos)
        t_ids += [t + 1 for t in tos]
        fr += rng.dirichlet(np.ones(len(tos))).tolist()
    net = from_arrays(np.arange(1, n + 1), np.where(down >= 0, down + 1, -1), np.full(n, 2e3),
                      links=Links(np.array(f_ids), np.array(t_ids), np.array(fr)))
    assert net.splits.n_splits >= 2
    order, _, forest = minor_link_order(net)
    _check_order(net, order, forest)
    params = {"k": rng.uniform(2e3, 3e4, n), "x": rng.uniform(0, 0.4, n)}
    q = rng.gamma(2.0, 1.0, size=(2, n, 50))
    got = route(net, q, params, "muskingum", dt=DT, engine="exact", dtype=torch.float64).numpy()
    assert _max_rel(got, route_reference(net, q, params, "muskingum", dt=DT)) < 1e-12
