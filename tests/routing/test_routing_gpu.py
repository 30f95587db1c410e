"""GPU paths: Triton kernels against the CPU engines and the reference.

On a CUDA machine the engines run for real. Without one, the Triton kernels still run tiny cases
through Triton's interpreter (TRITON_INTERPRET=1, in a subprocess, since the variable must be set
before triton is imported), when triton is installed; otherwise these tests skip.
"""
from __future__ import annotations

import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from _routing_cases import DT, requires_cuda, requires_triton, run_check, runoff, scheme_params
from thalweg.errors import ThalwegWarning
from thalweg.irf import SCHEMES
from thalweg.routing import route, route_reference
from thalweg.testing import assert_discharge_close

_INTERPRETED = textwrap.dedent("""
    import os, sys, warnings
    os.environ["TRITON_INTERPRET"] = "1"
    import numpy as np, torch
    sys.path.insert(0, sys.argv[1])
    from _routing_cases import DT, runoff, scheme_params
    from thalweg.irf import SCHEMES
    from thalweg.network import scheidegger_network
    from thalweg.routing import _cpu, _gpu
    from thalweg.routing.closure import closure_plan_for, path_kernels, _apply_torch
    from thalweg.routing.params import scheme_params as per_reach
    from thalweg.routing.topology import topology
    from thalweg.routing._triton.closure import block_conv
    warnings.simplefilter("ignore")
    net = scheidegger_network(12, seed=3, single_basin=True)
    topo = topology(net)
    rng = np.random.default_rng(0)
    s = SCHEMES["muskingum"]
    p = per_reach(net, s, scheme_params(s, net, rng), dtype=torch.float64, device="cpu")
    coef = s.recursion(p, DT).stacked()
    q = torch.as_tensor(runoff(net, rng, batch=1, steps=1100))  # two time chunks of 1024
    state = torch.rand(1, net.n_reaches, 3, dtype=torch.float64)
    w = torch.randn_like(q)
    res = []
    for impl in (_gpu, _cpu):
        qq, cc = q.clone().requires_grad_(True), coef.clone().requires_grad_(True)
        out, st = impl.iir_route(qq, cc, topo, state)
        (out * w).sum().backward()
        res.append((out.detach(), st, qq.grad, cc.grad))
    for a, b, name in zip(res[0], res[1], ("Q", "state", "dq", "dcoef")):
        err = float((a - b).abs().max() / b.abs().max())
        assert err < 1e-12, (name, err)
    k = s.kernels(p, DT, 100)
    plan = closure_plan_for(net, topo, k.h, k.g, length=24, block=16)
    stage = plan.stages[-1]
    wk = path_kernels(stage, k.h, k.g, 24, 16)
    x = torch.rand(2, stage.n_pad, 100)
    y_t = block_conv(x, wk.float(), stage.bp_ptr, stage.bp_src, block=16)
    y_r = _apply_torch(stage, wk, x.double(), 16)
    err = float((y_t - y_r).abs().max() / y_r.abs().max())
    assert err < 1e-6, ("block_conv", err)
    print("OK")
""")


@requires_triton
def test_triton_kernels_in_the_interpreter():
    run_check(_INTERPRETED, str(Path(__file__).parent), interpreter=True, timeout=600)


_INTERPRETED_FIR_RING = textwrap.dedent("""
    import os, sys, warnings
    os.environ["TRITON_INTERPRET"] = "1"
    import numpy as np, torch
    sys.path.insert(0, sys.argv[1])
    from _routing_cases import DT, runoff, scheme_params
    from thalweg.irf import SCHEMES
    from thalweg.network import scheidegger_network
    from thalweg.routing import _cpu, _gpu
    from thalweg.routing.params import scheme_params as per_reach
    from thalweg.routing.topology import topology
    warnings.simplefilter("ignore")
    _gpu.BT = 64  # short work items: four time chunks in 200 steps, so the adjoint ring (2 slots) wraps
    net = scheidegger_network(12, seed=3, single_basin=True)
    topo = topology(net)
    rng = np.random.default_rng(0)


    def close(a, b, name):
        err = float((a - b).abs().max() / b.abs().max())
        assert err < 1e-12, (name, err)


    s = SCHEMES["muskingum"]
    p = per_reach(net, s, scheme_params(s, net, rng), dtype=torch.float64, device="cpu")
    coef = s.recursion(p, DT).stacked()
    q = torch.as_tensor(runoff(net, rng, batch=2, steps=200))
    w = torch.randn_like(q)
    # a dense dL/dQ with dL/dq (stored as c0 lambda: c1 = 0); a broadcast one (out.sum()) without; and c1 != 0,
    # where lambda is stored and turned into dL/dq by a pass after
    general = coef.clone()
    general[:, 4] = 0.3 * general[:, 3]
    assert _gpu._dq_as_stored(coef) and not _gpu._dq_as_stored(general)
    for weighted, cf in ((True, coef), (False, coef), (True, general)):
        res = []
        for impl in (_gpu, _cpu):
            qq, cc = q.clone().requires_grad_(weighted), cf.clone().requires_grad_(True)
            out, _ = impl.iir_route(qq, cc, topo, None)
            ((out * w).sum() if weighted else out.sum()).backward()
            res.append((out.detach(), cc.grad) + ((qq.grad,) if weighted else ()))
        for a, b, name in zip(*res, ("Q", "dcoef", "dq")):
            close(a, b, f"iir {name} {weighted} {cf is general}")
    for name, steps, gs in (("hayami", 150, (None,)), ("pure_lag", 150, (None, "shifted"))):
        s = SCHEMES[name]
        p = per_reach(net, s, scheme_params(s, net, rng, max_travel=3 * DT), dtype=torch.float64, device="cpu")
        q = torch.as_tensor(runoff(net, rng, batch=1, steps=steps))
        k = s.kernels(p, DT, steps)
        w = torch.randn_like(q)
        for g in gs:  # g = h, and a separate g
            g = None if g is None else 0.5 * (k.h + k.h.roll(1, -1))
            res = []
            for impl in ("triton", "native"):
                qq, hh = q.clone().requires_grad_(True), k.h.clone().requires_grad_(True)
                gg = None if g is None else g.clone().requires_grad_(True)
                if impl == "triton":
                    out = _gpu.fir_route(qq, hh, gg, topo, _cpu.kernel_support_on(hh, gg))
                else:
                    out, _, _ = _cpu.fir_route(qq, hh, gg, topo)
                (out * w).sum().backward()
                res.append((out.detach(), qq.grad, hh.grad) + (() if gg is None else (gg.grad,)))
            for a, b, what in zip(*res, ("Q", "dq", "dh", "dg")):
                close(a, b, f"fir {name} {what} {g is None}")
        if g is None:  # float32: float32 loads and products, float64 accumulation
            out32 = _gpu.fir_route(q.float(), k.h, None, topo, _cpu.kernel_support_on(k.h, None))
            err = float((out32.double() - res[1][0]).abs().max() / res[1][0].abs().max())
            assert out32.dtype == torch.float32 and err < 1e-6, ("fir float32", name, err)
    print("OK")
""")


@requires_triton
def test_triton_convolution_and_adjoint_ring_in_the_interpreter():
    """The direct-convolution kernels (g = h and g apart) and the recursion's backward with its adjoint ring
    wrapping (short work items), a dense and a broadcast dL/dQ, against the compiled CPU engine."""
    run_check(_INTERPRETED_FIR_RING, str(Path(__file__).parent), interpreter=True, timeout=900)


@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("engine", ["exact", "closure", "fft"])
@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_gpu_engine_matches_reference(scheme, engine, deep_network):
    rng = np.random.default_rng(3)
    params = scheme_params(SCHEMES[scheme], deep_network, rng, max_travel=2 * DT)
    q = runoff(deep_network, rng, batch=2, steps=700)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        ref = route_reference(deep_network, q, params, scheme, dt=DT)
        out = route(deep_network, torch.as_tensor(q, dtype=torch.float32, device="cuda"), params, scheme, dt=DT,
                    engine=engine)
    assert out.is_cuda
    assert_discharge_close(out.cpu(), ref, rtol=1e-5, ids=deep_network.ids)


@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("scheme", ["muskingum", "linear_storage", "hayami", "pure_lag", "nash_cascade"])
def test_gpu_gradients_equal_cpu_gradients(scheme, deep_network):
    rng = np.random.default_rng(4)
    params = scheme_params(SCHEMES[scheme], deep_network, rng, max_travel=2 * DT)
    q = runoff(deep_network, rng, batch=1, steps=600)
    weights = torch.as_tensor(rng.standard_normal(q.shape))
    grads = []
    for device in ("cuda", "cpu"):
        qq = torch.as_tensor(q, device=device).requires_grad_(True)
        pp = {k: torch.as_tensor(v, device=device).requires_grad_(True) for k, v in params.items()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ThalwegWarning)
            out = route(deep_network, qq, pp, scheme, dt=DT, engine="exact", dtype=torch.float64)
        (out * weights.to(device)).sum().backward()
        grads.append([qq.grad.cpu()] + [pp[k].grad.cpu() for k in sorted(pp)])
    for g_gpu, g_cpu in zip(*grads):  # float64; convolutions: Triton direct on GPU, compiled C on CPU
        assert float((g_gpu - g_cpu).abs().max()) <= 1e-7 * float(g_cpu.abs().max())


@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("engine, kernel_length", [("exact", None), ("exact", 200), ("closure", 200)])
def test_gpu_chunks_equal_one_pass(engine, kernel_length, deep_network):
    rng = np.random.default_rng(5)
    params = scheme_params(SCHEMES["muskingum"], deep_network, rng, max_travel=2 * DT)
    q = torch.as_tensor(runoff(deep_network, rng, batch=1, steps=2500), device="cuda")
    opts = {"dt": DT, "engine": engine, "dtype": torch.float64, "kernel_length": kernel_length}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        whole, _ = route(deep_network, q, params, "muskingum", return_state=True, **opts)
        state, parts = None, []
        for a, b in ((0, 300), (300, 1100), (1100, 2500)):  # chunks across the kernels' 1024-step tiles
            part, state = route(deep_network, q[..., a:b], params, "muskingum", state=state, return_state=True,
                                **opts)
            parts.append(part)
    assert state.steps == 2500
    assert_discharge_close(torch.cat(parts, -1).cpu(), whole.cpu(), rtol=1e-10)


@pytest.mark.gpu
@requires_cuda
def test_gpu_closure_tf32x3_keeps_float32_accuracy(deep_network):
    rng = np.random.default_rng(6)
    params = scheme_params(SCHEMES["linear_storage"], deep_network, rng, max_travel=2 * DT)
    q = runoff(deep_network, rng, batch=1, steps=500)
    ref = route_reference(deep_network, q, params, "linear_storage", dt=DT)
    out = route(deep_network, torch.as_tensor(q, dtype=torch.float32, device="cuda"), params, "linear_storage",
                dt=DT, engine="closure", precision="tf32x3")
    assert_discharge_close(out.cpu(), ref, rtol=2e-5)




@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("separate_g", [False, True])
def test_gpu_direct_convolution_equals_cpu_over_several_chunks(separate_g, deep_network):
    from thalweg.routing import _cpu, _gpu
    from thalweg.routing.params import scheme_params as per_reach
    from thalweg.routing.topology import topology

    rng = np.random.default_rng(7)
    s = SCHEMES["hayami"]
    p = per_reach(deep_network, s, scheme_params(s, deep_network, rng, max_travel=3 * DT), dtype=torch.float64,
                  device="cpu")
    q = torch.as_tensor(runoff(deep_network, rng, batch=2, steps=2500))  # three 1024-step work items per reach
    k = s.kernels(p, DT, 2500)
    g = 0.5 * (k.h + k.h.roll(1, -1)) if separate_g else None
    w = torch.randn_like(q)
    topo = topology(deep_network)
    k0, k1 = _cpu.kernel_support(k.h, g)  # one support for both: dL/dh of a tap does not scale with the tap
    res = []
    for dev in ("cuda", "cpu"):
        qq, hh = q.to(dev).requires_grad_(True), k.h.to(dev).requires_grad_(True)
        gg = None if g is None else g.to(dev).requires_grad_(True)
        if dev == "cuda":
            out = _gpu.fir_route(qq, hh, gg, topo, (torch.from_numpy(k0).to(dev), torch.from_numpy(k1).to(dev)))
        else:
            out, _, _ = _cpu.fir_route(qq, hh, gg, topo, support=(k0, k1))
        (out * w.to(dev)).sum().backward()
        res.append([x.detach().cpu() for x in (out, qq.grad, hh.grad) + (() if gg is None else (gg.grad,))])
    for a, b in zip(*res):
        assert float((a - b).abs().max()) <= 1e-11 * float(b.abs().max())


@pytest.mark.gpu
@requires_cuda
def test_gpu_recursion_backward_memory_is_bounded(deep_network):
    """The backward holds dL/dq and a two-chunk adjoint ring, not three more [B, N, T] arrays; a broadcast
    dL/dQ (loss = Q.sum()) is read by strides, never copied; gradients equal the CPU engine's."""
    from thalweg.routing import _cpu, _gpu
    from thalweg.routing.params import scheme_params as per_reach
    from thalweg.routing.topology import topology

    rng = np.random.default_rng(8)
    s = SCHEMES["muskingum"]
    p = per_reach(deep_network, s, scheme_params(s, deep_network, rng), dtype=torch.float64, device="cpu")
    coef = s.recursion(p, DT).stacked()
    q = torch.as_tensor(runoff(deep_network, rng, batch=1, steps=6000))  # six work items: the ring wraps
    topo = topology(deep_network)
    grads = []
    for dev in ("cuda", "cpu"):
        qq, cc = q.to(dev).requires_grad_(True), coef.to(dev).requires_grad_(True)
        out, _ = (_gpu if dev == "cuda" else _cpu).iir_route(qq, cc, topo, None)
        if dev == "cuda":
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        out.sum().backward()
        if dev == "cuda":
            extra = torch.cuda.max_memory_allocated() - base
            ring = 2 * _gpu.BT / q.shape[-1]
            assert extra <= (1.0 + ring + 0.05) * q.numel() * q.element_size(), extra / (q.numel() * 8)
        grads.append([qq.grad.cpu(), cc.grad.cpu()])
    for a, b in zip(*grads):
        assert float((a - b).abs().max()) <= 1e-10 * float(b.abs().max())
