"""The closure engine's structure: clusters, stages, path kernels, block layout; staged equals unsplit."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from _routing_cases import DT, runoff, scheme_params, small_tree
from thalweg.errors import InputError, ThalwegWarning
from thalweg.irf import SCHEMES
from thalweg.routing import route, route_reference
from thalweg.routing.closure import closure_plan_for, path_kernels
from thalweg.routing.params import scheme_params as per_reach
from thalweg.routing.topology import topology
from thalweg.testing import assert_discharge_close


def _kernels(network, scheme, params, n_steps):
    sch = SCHEMES[scheme]
    p = per_reach(network, sch, params, dtype=torch.float64, device="cpu")
    return sch.kernels(p, DT, n_steps)


@pytest.mark.parametrize("length", [32, 40, 64, 400])
def test_staged_equals_unsplit_and_reference(length, mid_basin, rng):
    """Short cluster kernels force many clusters and stages; every split gives the same discharge."""
    n = mid_basin.n_reaches  # |C2| well below 1: kernels of ~20 steps, paths of many reaches
    params = {"k": rng.uniform(1800.0, 5400.0, n), "x": rng.uniform(0.1, 0.4, n)}
    q = runoff(mid_basin, rng, batch=1, steps=120)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        ref = route_reference(mid_basin, q, params, "muskingum", dt=DT)
        k = _kernels(mid_basin, "muskingum", params, 120)
        plan = closure_plan_for(mid_basin, topology(mid_basin), k.h, k.g, length=min(length, 120), block=16)
        out = route(mid_basin, q, params, "muskingum", dt=DT, engine="closure", dtype=torch.float64,
                    cluster_length=length)
    if length <= 40:
        assert len(plan.stages) > 1 and plan.n_clusters > 1
    assert_discharge_close(out, ref, rtol=1e-9, ids=mid_basin.ids)


def test_plan_layout_invariants(mid_basin, rng):
    params = scheme_params(SCHEMES["linear_storage"], mid_basin, rng, max_travel=1.0 * DT)
    k = _kernels(mid_basin, "linear_storage", params, 100)
    topo = topology(mid_basin)
    plan = closure_plan_for(mid_basin, topo, k.h, k.g, length=20, block=16)
    seen = np.concatenate([s.reach[~s.is_virtual] for s in plan.stages])
    assert np.array_equal(np.sort(seen), np.arange(mid_basin.n_reaches))  # every reach routed once
    stage_of = np.empty(mid_basin.n_reaches, dtype=int)
    for number, s in enumerate(plan.stages):
        stage_of[s.reach[~s.is_virtual]] = number
        # post-order: each element right after its in-cluster upstream block
        assert (np.diff(topo.position[s.reach]) > 0).all()
        assert (s.size >= 1).all() and (np.arange(s.n) - s.size + 1 >= 0).all()
        for v in np.flatnonzero(s.is_virtual):  # a virtual source is a cut reach of an earlier stage
            u = s.reach[v]
            assert plan.cluster_root[u] == u and stage_of[u] < number
    roots = np.flatnonzero(plan.cluster_root == np.arange(mid_basin.n_reaches))
    down = mid_basin.downstream
    inner = np.flatnonzero(plan.cluster_root != np.arange(mid_basin.n_reaches))
    assert (plan.cluster_root[inner] == plan.cluster_root[down[inner]]).all()  # clusters are connected
    assert roots.size == plan.n_clusters


def test_path_kernels_are_exact_products():
    """K_ij = g_i * h_d(i) * ... * h_j, cut to L_c: against numpy convolutions on the hand tree."""
    net = small_tree()
    params = {"k": np.linspace(1800, 9000, 9), "x": np.linspace(0.05, 0.45, 9)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        k = _kernels(net, "muskingum", params, 40)
    plan = closure_plan_for(net, topology(net), k.h, k.g, length=40, block=16, tol=1.0)  # one cluster per tree
    (stage,) = plan.stages
    w = path_kernels(stage, k.h, k.g, 40, 16).numpy()
    elem = {int(r): e for e, r in enumerate(stage.reach)}
    i, j = net.index_of([7])[0], net.index_of([4])[0]  # 7 -> 2 -> 1 -> 4
    expected = k.g[i].numpy()
    for r in net.index_of([2, 1, 4]):
        expected = np.convolve(expected, k.h[r].numpy())[:40]
    ei, ej = elem[i], elem[j]
    jb = ej // 16
    bp = stage.bp_ptr[jb] + (ei // 16 - stage.bp_src[stage.bp_ptr[jb]])
    np.testing.assert_allclose(w[bp, ei % 16, ej % 16], expected, atol=1e-14)
    assert not w[bp, elem[net.index_of([3])[0]] % 16, elem[net.index_of([8])[0]] % 16].any()  # 3 is not above 8


def test_closure_options_are_checked(mid_basin):
    q = np.ones((mid_basin.n_reaches, 10))
    with pytest.raises(InputError, match="takes no option"):
        route(mid_basin, q, {"tau": 3600.0}, "linear_storage", dt=DT, engine="closure", blocks=3)
    with pytest.raises(InputError, match="unknown precision 'fp8'"):
        route(mid_basin, q, {"tau": 3600.0}, "linear_storage", dt=DT, engine="closure", precision="fp8")
    with pytest.raises(InputError, match="shorter than the longest reach kernel"):
        route(mid_basin, q, {"tau": 36000.0}, "linear_storage", dt=DT, engine="closure", cluster_length=4)


def test_block_sizes_agree(mid_basin, rng):
    params = scheme_params(SCHEMES["hayami"], mid_basin, rng, max_travel=1.0 * DT)
    q = runoff(mid_basin, rng, batch=1, steps=60)
    outs = [route(mid_basin, q, params, "hayami", dt=DT, engine="closure", dtype=torch.float64, block_size=b,
                  cluster_length=60) for b in (16, 32)]
    assert_discharge_close(outs[0], outs[1], rtol=1e-12)
