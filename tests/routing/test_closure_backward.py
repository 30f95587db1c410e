"""The closure engine's backward (custom autograd: transposed blocks on reversed time, per-reach kernel
gradients) and its FFT blocks, against independent oracles: the exact engine's gradients (the compiled
adjoint recursion), the fft engine's autograd, gradcheck, and the direct convolution."""
from __future__ import annotations

import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from _routing_cases import DT, requires_cuda, requires_triton, run_check, runoff, scheme_params, small_tree
from thalweg.errors import ThalwegWarning
from thalweg.irf import SCHEMES
from thalweg.network import scheidegger_network
from thalweg.routing import closure as closure_mod
from thalweg.routing import route
from thalweg.routing.closure import _apply_torch, closure_plan_for, path_kernels
from thalweg.routing.params import scheme_params as per_reach
from thalweg.routing.topology import topology


@pytest.fixture(scope="module")
def basin():
    """One small deep basin (~100 reaches): the CPU backward of every case stays well under a second."""
    return scheidegger_network(70, seed=5, single_basin=True)


def _params(scheme, net, rng):
    if scheme == "muskingum":  # |C2| well below 1 at this dt: short kernels, long paths, many clusters
        return {"k": rng.uniform(1800.0, 5400.0, net.n_reaches), "x": rng.uniform(0.1, 0.4, net.n_reaches)}
    return scheme_params(SCHEMES[scheme], net, rng, max_travel=1.0 * DT)


def _grads(net, q, params, scheme, engine, weight, **opts):
    qq = torch.as_tensor(q).clone().requires_grad_(True)
    pp = {k: torch.as_tensor(v, dtype=torch.float64).clone().requires_grad_(True) for k, v in params.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        out = route(net, qq, pp, scheme, dt=DT, engine=engine, dtype=torch.float64, **opts)
    (out * weight).sum().backward()
    return [out.detach(), qq.grad] + [pp[k].grad for k in sorted(pp)]


def _rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


def _plan(net, scheme, params, steps, length):
    sch = SCHEMES[scheme]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        k = sch.kernels(per_reach(net, sch, params, dtype=torch.float64, device="cpu"), DT, steps)
    return closure_plan_for(net, topology(net), k.h, k.g, length=length, block=16), k


def _stage(net, scheme, params, steps, length):
    plan, k = _plan(net, scheme, params, steps, length)
    return max(plan.stages, key=lambda s: s.n_bp), k


@pytest.mark.parametrize("scheme, cluster_length", [("muskingum", 32), ("muskingum", None), ("hayami", 40),
                                                    ("linear_storage", 40)])
def test_gradients_equal_the_exact_engines(scheme, cluster_length, basin, rng):
    """dL/dq and dL/dparameters (through g and h), staged (several stages) and unstaged, to 1e-6."""
    params = _params(scheme, basin, rng)
    q = runoff(basin, rng, batch=2, steps=60)
    weight = torch.as_tensor(rng.standard_normal(q.shape))
    opts = {"cluster_length": cluster_length} if cluster_length else {}
    if cluster_length:  # the case is staged, so virtual sources carry adjoints back
        assert len(_plan(basin, scheme, params, 60, cluster_length)[0].stages) > 1
    ref = _grads(basin, q, params, scheme, "exact", weight)
    got = _grads(basin, q, params, scheme, "closure", weight, **opts)
    for a, b, name in zip(got, ref, ["Q", "dq"] + sorted(params)):
        assert _rel(a, b) < 1e-6, (name, _rel(a, b))


def test_warm_started_gradients_equal_the_fft_engines(basin, rng):
    """A warm start (history state): runoff and parameter gradients against the fft engine's autograd."""
    params = _params("muskingum", basin, rng)
    q = runoff(basin, rng, batch=1, steps=50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        _, state = route(basin, q[..., :20], params, "muskingum", dt=DT, engine="fft", dtype=torch.float64,
                         kernel_length=24, return_state=True)
    weight = torch.as_tensor(rng.standard_normal(q[..., 20:].shape))
    res = [_grads(basin, q[..., 20:], params, "muskingum", engine, weight, kernel_length=24, state=state)
           for engine in ("fft", "closure")]
    for a, b, name in zip(res[1], res[0], ["Q", "dq", "k", "x"]):
        assert _rel(a, b) < 1e-6, (name, _rel(a, b))


def test_gradcheck_tiny_tree():
    """gradcheck (fast mode: random directions) through route() on the nine-reach tree: runoff and both
    Muskingum parameters, over several stages."""
    net = small_tree()
    rng = np.random.default_rng(3)
    q = torch.as_tensor(runoff(net, rng, batch=1, steps=12)).requires_grad_(True)
    k = torch.linspace(1800.0, 5000.0, 9, dtype=torch.float64).requires_grad_(True)
    x = torch.linspace(0.1, 0.4, 9, dtype=torch.float64).requires_grad_(True)
    plan, _ = _plan(net, "muskingum", {"k": k.detach().numpy(), "x": x.detach().numpy()}, 12, 12)
    assert len(plan.stages) > 1

    def f(q, k, x):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ThalwegWarning)
            return route(net, q, {"k": k, "x": x}, "muskingum", dt=DT, engine="closure", dtype=torch.float64,
                         cluster_length=12)

    assert torch.autograd.gradcheck(f, (q, k, x), eps=1e-6, atol=1e-7, rtol=1e-5, fast_mode=True)




@pytest.mark.parametrize("g_delta", [False, True])
def test_fft_blocks_equal_direct_blocks(g_delta, basin, rng, monkeypatch):
    """Every block by FFT, every block direct, and the per-block rule: forward and adjoint to 1e-10 (float64);
    the adjoint is the transpose (<A x, y> = <x, A^T y>)."""
    params = {"k": rng.uniform(3600.0, 20000.0, basin.n_reaches), "x": np.full(basin.n_reaches, 0.2)}
    stage, k = _stage(basin, "muskingum", params, 90, 90)
    w = path_kernels(stage, k.h, None if g_delta else k.g, 90, 16)
    x = torch.as_tensor(rng.random((2, stage.n_pad, 90)))
    y = torch.as_tensor(rng.random((2, stage.n_pad, 90)))
    res = {}
    for mode, taps in (("direct", 10**9), ("fft", 1), ("rule", closure_mod.FFT_MIN_TAPS)):
        monkeypatch.setattr(closure_mod, "FFT_MIN_TAPS", taps)
        res[mode] = (_apply_torch(stage, w, x, 16), _apply_torch(stage, w, y, 16, adjoint=True))
    for mode in ("fft", "rule"):
        for a, b in zip(res[mode], res["direct"]):
            assert _rel(a, b) < 1e-10, (mode, _rel(a, b))
    lhs, rhs = float((res["fft"][0] * y).sum()), float((x * res["fft"][1]).sum())
    assert abs(lhs - rhs) < 1e-12 * abs(lhs)


def test_kernel_supports_cut_only_negligible_taps(rng):
    """A kernel's support keeps every tap above SUPPORT_TOL of its mass; past the cap it is the full length."""
    w = torch.zeros(4, 50, dtype=torch.float64)
    w[:, :7] = torch.as_tensor(rng.random((4, 7)))
    w[1, 12] = 1e-3
    w[2, 12] = 1e-18  # below the tolerance of its kernel's mass: cut
    w[3, 40] = 1e-3  # past the cap: a long kernel
    assert closure_mod._row_supports(w, 24).tolist() == [7, 13, 7, 50]
    assert closure_mod._row_supports(torch.zeros(1, 50, dtype=torch.float64), 24).tolist() == [1]


_INTERPRETED = textwrap.dedent("""
    import os, sys, warnings
    os.environ["TRITON_INTERPRET"] = "1"
    import numpy as np, torch
    sys.path.insert(0, sys.argv[1])
    from _routing_cases import DT, runoff
    from thalweg.irf import SCHEMES
    from thalweg.network import scheidegger_network
    from thalweg.routing import closure
    from thalweg.routing.closure import _Closure, _Run, _apply_torch, _transposed, closure_plan_for, path_kernels
    from thalweg.routing._triton.closure import block_conv_adjoint
    from thalweg.routing.params import scheme_params as per_reach
    from thalweg.routing.topology import topology
    warnings.simplefilter("ignore")
    net = scheidegger_network(40, seed=3, single_basin=True)
    topo = topology(net)
    rng = np.random.default_rng(0)
    s = SCHEMES["muskingum"]
    n = net.n_reaches
    p = per_reach(net, s, {"k": rng.uniform(1800.0, 5400.0, n), "x": rng.uniform(0.1, 0.4, n)},
                  dtype=torch.float64, device="cpu")
    steps, length = 70, 40
    k = s.kernels(p, DT, steps)
    plan = closure_plan_for(net, topo, k.h, k.g, length=length, block=16)
    assert len(plan.stages) > 1, len(plan.stages)
    stage = max(plan.stages, key=lambda st: st.n_bp)
    wk = path_kernels(stage, k.h, None, length, 16)
    dy = torch.rand(2, stage.n_pad, steps, dtype=torch.float64)
    d_t = block_conv_adjoint(dy.float(), wk.float(), *_transposed(stage, "cpu"), block=16)
    d_r = _apply_torch(stage, wk, dy, 16, adjoint=True)
    err = float((d_t - d_r).abs().max() / d_r.abs().max())
    assert err < 1e-6, ("adjoint", err)
    # the whole backward with the Triton kernels (float32) against the torch path (float64): Triton for every
    # block, FFT for every block, and the two mixed by the blocks' supports
    q = torch.as_tensor(runoff(net, rng, batch=2, steps=steps))
    wt = torch.randn_like(q)
    res = []
    for triton, taps in ((True, None), (True, 1), (True, 30), (False, None)):
        closure.GPU_FFT_MIN_TAPS = taps
        dtype = torch.float32 if triton else torch.float64
        run = _Run(plan=plan, topo=topo, length=length, block=16, precision="ieee", h_len=0, triton=triton)
        qq = q.to(dtype).requires_grad_(True)
        hh = k.h[:, :length].clone().requires_grad_(True)
        gg = k.g[:, :length].clone().requires_grad_(True)
        out = _Closure.apply(qq, hh, gg, None, run)
        (out * wt.to(dtype)).sum().backward()
        res.append((out.detach().double(), qq.grad.double(), hh.grad, gg.grad))
    for got, taps in zip(res[:-1], (None, 1, 30)):
        for a, b, name in zip(got, res[-1], ("Q", "dq", "dh", "dg")):
            err = float((a - b).abs().max() / b.abs().max())
            assert err < 1e-5, (name, taps, err)
    print("OK")
""")


@requires_triton
def test_triton_adjoint_and_backward_in_the_interpreter():
    """The Triton adjoint kernel against the torch adjoint, and the whole backward through it (float32 with
    float64 sums) against the float64 torch backward, in Triton's interpreter on CPU."""
    run_check(_INTERPRETED, str(Path(__file__).parent), interpreter=True, timeout=600)


@pytest.mark.gpu
@requires_cuda
def test_gpu_backward_matches_cpu_and_stays_within_twice_the_forward_memory(deep_network):
    """On the GPU (Triton forward and adjoint, float32): gradients within 1e-5 of the CPU float64 backward,
    and the forward+backward peak within 2x the forward's."""
    net = deep_network
    rng = np.random.default_rng(1)
    params = scheme_params(SCHEMES["muskingum"], net, rng, max_travel=2 * DT)
    q = runoff(net, rng, batch=1, steps=300)
    weight = torch.as_tensor(rng.standard_normal(q.shape))
    ref = _grads(net, q, params, "muskingum", "exact", weight)
    dev = torch.device("cuda")
    qq = torch.as_tensor(q, dtype=torch.float32, device=dev).requires_grad_(True)
    kk = torch.as_tensor(params["k"], dtype=torch.float64, device=dev).requires_grad_(True)
    p = {"k": kk, "x": torch.as_tensor(params["x"], device=dev)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        route(net, qq.detach(), p, "muskingum", dt=DT, engine="closure", device=dev)  # plan built
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        with torch.no_grad():
            route(net, qq, p, "muskingum", dt=DT, engine="closure", device=dev)
        fwd_peak = torch.cuda.max_memory_allocated() - base
        torch.cuda.reset_peak_memory_stats()
        out = route(net, qq, p, "muskingum", dt=DT, engine="closure", device=dev)
        (out * weight.to(dev, torch.float32)).sum().backward()
        both_peak = torch.cuda.max_memory_allocated() - base
    assert _rel(out.detach().double().cpu(), ref[0]) < 1e-5
    assert _rel(qq.grad.double().cpu(), ref[1]) < 1e-5
    assert _rel(kk.grad.cpu(), ref[2]) < 1e-5
    assert both_peak <= 2 * fwd_peak, (both_peak, fwd_peak)
