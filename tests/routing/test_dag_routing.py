"""Routing on networks whose rivers split: every engine against the float64 DAG reference, the reference against
a sum over paths, mass, fractions 1/0 = the tree, gradients (runoff, parameters, fraction logits)."""
from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
import torch
from _routing_cases import DT, requires_cuda, scheme_params
from thalweg.errors import InputError
from thalweg.irf import SCHEMES
from thalweg.network import Links, from_arrays, scheidegger_dag, softmax_fractions
from thalweg.network.dag import edges
from thalweg.routing import route, route_reference
from thalweg.routing.dag import dag_plan

ENGINES = ("exact", "closure", "fft")


@pytest.fixture(scope="module")
def dag_net():
    """~300 reaches, deltas near the outlets and braids mid-network, several stages deep."""
    net = scheidegger_dag(300, seed=3, split_share=0.05)
    assert net.splits.n_splits >= 10 and len(dag_plan(net).stages) >= 3
    return net


def _max_rel(got, want) -> float:
    """Largest error on any reach relative to that reach's peak (every reach judged, not an average)."""
    peak = np.abs(want).max(-1, keepdims=True)
    return float((np.abs(got - want) / np.maximum(peak, 1e-12)).max())


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_engine_matches_reference_on_a_dag(scheme, engine, dag_net):
    rng = np.random.default_rng(hash((scheme, engine)) % 2**32)
    params = scheme_params(SCHEMES[scheme], dag_net, rng)
    q = rng.gamma(2.0, 1.0, size=(2, dag_net.n_reaches, 64))
    want = route_reference(dag_net, q, params, scheme, dt=DT)
    got = route(dag_net, q.astype("float32"), params, scheme, dt=DT, engine=engine).cpu().numpy()
    assert _max_rel(got, want) < 1e-5


def _sum_over_paths(net, q, kern_h, kern_g):
    """Q_j = sum over reaches i and every path i -> ... -> j of (product of fractions) g_i * h_.. * h_j * q_i."""
    src, dst, frac = edges(net)
    out_links = {i: [(int(d), float(f)) for s, d, f in zip(src, dst, frac) if s == i] for i in range(net.n_reaches)}
    t_len = q.shape[-1]
    out = np.zeros_like(q)

    def walk(node, signal):
        out[node] += signal
        for nxt, f in out_links[node]:
            walk(nxt, f * np.convolve(signal, kern_h[nxt])[:t_len])

    for i in range(net.n_reaches):
        walk(i, np.convolve(q[i], kern_g[i])[:t_len])
    return out


@pytest.mark.parametrize("scheme", ["muskingum", "nash_cascade"])
def test_reference_is_the_sum_over_paths(scheme):
    # 1 -> 2 splits {3 (0.6), 4 (0.4)}; 3, 4 -> 5 (a braid); 5 splits {6 (0.7), 7 (0.3)}: two outlets (a delta)
    net = from_arrays([1, 2, 3, 4, 5, 6, 7], [2, 3, 5, 5, 6, -1, -1], [1e3] * 7,
                      links=Links(np.array([2, 2, 5, 5]), np.array([3, 4, 6, 7]), np.array([0.6, 0.4, 0.7, 0.3])))
    rng = np.random.default_rng(4)
    sch = SCHEMES[scheme]
    params = scheme_params(sch, net, rng)
    q = rng.gamma(2.0, 1.0, size=(7, 40))
    kern = sch.kernels({k: torch.as_tensor(v) for k, v in params.items()}, DT, 40)
    want = _sum_over_paths(net, q, kern.h.numpy(), kern.g.numpy())
    np.testing.assert_allclose(route_reference(net, q, params, scheme, dt=DT), want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("engine", ENGINES)
def test_mass_is_conserved_at_every_split(engine, dag_net):
    rng = np.random.default_rng(8)
    params = scheme_params(SCHEMES["muskingum_nonneg"], dag_net, rng)
    q = np.zeros((1, dag_net.n_reaches, 300))
    q[..., :30] = rng.gamma(2.0, 1.0, size=(1, dag_net.n_reaches, 30))
    out = route(dag_net, torch.as_tensor(q), params, "muskingum_nonneg", dt=DT, engine=engine,
                dtype=torch.float64).cpu().numpy()
    leaving = out[:, dag_net.outlets].sum()
    assert abs(leaving - q.sum()) <= 1e-6 * q.sum()


@pytest.mark.parametrize("engine", ENGINES)
def test_fractions_one_and_zero_route_the_tree(engine, dag_net):
    rng = np.random.default_rng(9)
    params = scheme_params(SCHEMES["muskingum"], dag_net, rng)
    q = rng.gamma(2.0, 1.0, size=(1, dag_net.n_reaches, 40)).astype("float32")
    main_only = dag_net.splits.is_main.astype(np.float64)
    got = route(dag_net, q, params, "muskingum", dt=DT, engine=engine, fractions=main_only).cpu().numpy()
    tree = dataclasses.replace(dag_net, splits=None)
    want = route(tree, q, params, "muskingum", dt=DT, engine=engine).cpu().numpy()
    assert _max_rel(got, want) < 1e-6


def test_fractions_given_to_route_replace_the_networks(dag_net):
    rng = np.random.default_rng(10)
    params = scheme_params(SCHEMES["linear_storage"], dag_net, rng)
    q = rng.gamma(2.0, 1.0, size=(1, dag_net.n_reaches, 48))
    logits = torch.as_tensor(rng.normal(size=dag_net.splits.n_links))
    f = softmax_fractions(dag_net, logits)
    want = route_reference(dag_net, q, params, "linear_storage", dt=DT, fractions=f.numpy())
    got = route(dag_net, q.astype("float32"), params, "linear_storage", dt=DT, fractions=f).cpu().numpy()
    assert _max_rel(got, want) < 1e-5
    assert _max_rel(route_reference(dag_net, q, params, "linear_storage", dt=DT), want) > 1e-3  # they matter


@pytest.fixture(scope="module")
def tiny_dag():
    # 1, 2 -> 3; 3 splits {4, 5}; 4 -> 6; 5 splits {6, 7}: a braid into 6 and a distributary 7
    return from_arrays([1, 2, 3, 4, 5, 6, 7], [3, 3, 4, 6, 6, -1, -1], [2e3] * 7,
                       links=Links(np.array([3, 3, 5, 5]), np.array([4, 5, 6, 7]), np.array([0.5, 0.5, 0.8, 0.2])))


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("scheme", ["muskingum", "nash_cascade"])
def test_gradients_reach_runoff_parameters_and_fraction_logits(engine, scheme, tiny_dag):
    rng = np.random.default_rng(11)
    sch = SCHEMES[scheme]
    base = {k: torch.as_tensor(v) for k, v in scheme_params(sch, tiny_dag, rng).items()}
    name = "k" if scheme == "muskingum" else "tau"
    q = torch.tensor(rng.gamma(2.0, 1.0, size=(1, 7, 8)), requires_grad=True)
    p = base[name].clone().requires_grad_(True)
    logits = torch.tensor(rng.normal(size=tiny_dag.splits.n_links), requires_grad=True)

    def fn(q, p, logits):
        params = {**base, name: p}
        return route(tiny_dag, q, params, scheme, dt=DT, engine=engine, dtype=torch.float64,
                     fractions=softmax_fractions(tiny_dag, logits))

    # fast mode: the Jacobian checked along random directions (every input and output takes part)
    assert torch.autograd.gradcheck(fn, (q, p, logits), eps=1e-6, atol=1e-7, rtol=1e-5, fast_mode=True)


def test_bad_fractions_and_warm_states_are_refused(dag_net, small_network):
    q = np.ones((1, dag_net.n_reaches, 8), dtype="float32")
    params = {"k": 3600.0, "x": 0.2}
    with pytest.raises(InputError, match=r"fractions have shape \(3,\); the network's splits have"):
        route(dag_net, q, params, "muskingum", dt=DT, fractions=np.ones(3))
    bad = np.array(dag_net.splits.fraction)
    bad[0] += 0.1
    with pytest.raises(InputError, match=r"split fractions of 1 reaches are negative, not finite or do not sum") as err:
        route(dag_net, q, params, "muskingum", dt=DT, fractions=bad)
    assert err.value.ids == [int(dag_net.ids[dag_net.splits.reach[0]])]
    with pytest.raises(InputError, match="the network has no splits"):
        route(small_network, np.ones((small_network.n_reaches, 8)), params, "muskingum", dt=DT, fractions=[1.0])
    with pytest.raises(InputError, match="not supported yet on a network whose rivers split"):
        route(dag_net, q, params, "muskingum", dt=DT, return_state=True)


def test_stages_cut_only_links_out_of_split_reaches(dag_net):
    plan = dag_plan(dag_net)
    src, _, _ = edges(dag_net)
    crossing = np.concatenate([s.v_link for s in plan.stages])
    assert np.isin(src[crossing], dag_net.splits.reach).all()
    assert crossing.size == dag_net.splits.n_links
    assert sorted(itertools.chain.from_iterable(s.real.tolist() for s in plan.stages)) == list(range(dag_net.n_reaches))


@requires_cuda
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("scheme", ["muskingum_nonneg", "hayami"])
def test_gpu_engines_match_reference_on_a_dag(engine, scheme, dag_net):
    rng = np.random.default_rng(12)
    params = scheme_params(SCHEMES[scheme], dag_net, rng)
    q = rng.gamma(2.0, 1.0, size=(2, dag_net.n_reaches, 96))
    want = route_reference(dag_net, q, params, scheme, dt=DT)
    got = route(dag_net, torch.as_tensor(q, dtype=torch.float32, device="cuda"), params, scheme, dt=DT,
                engine=engine)
    assert got.is_cuda
    assert _max_rel(got.cpu().numpy(), want) < 1e-5
