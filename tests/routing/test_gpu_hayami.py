"""Hayami's kernels over their supports built by Triton kernels (``irf.hayami.compact`` on a GPU:
``routing/_triton/hayami.py``), against the compiled C functions (held to mpmath in tests/irf/test_compact.py),
the torch full kernels, finite differences, and, on CUDA, routing through them against the float64 C routing
(value and gradients in celerity and diffusivity). On a CUDA machine for real; otherwise a small case in Triton's
interpreter on CPU tensors (in a subprocess: TRITON_INTERPRET must be set before triton is imported).
"""
from __future__ import annotations

import textwrap

from _routing_cases import requires_cuda, requires_triton, run_check

_CHECK = textwrap.dedent("""
    import math, sys, warnings
    import numpy as np, torch
    from thalweg.irf import SCHEMES, hayami
    from thalweg.network import scheidegger_network
    from thalweg.routing import _cpu, exact
    from thalweg.routing.topology import topology
    warnings.simplefilter("ignore")
    dev = torch.device(sys.argv[1])
    rng = np.random.default_rng(4)
    cel, dif = SCHEMES["hayami"].parameters

    def spread(n):  # over the whole parameter bounds, the four corners included; lengths 10 m to 100 km
        c = np.exp(rng.uniform(math.log(cel.lower), math.log(cel.upper), n))
        d = np.exp(rng.uniform(math.log(dif.lower), math.log(dif.upper), n))
        length = np.exp(rng.uniform(math.log(10.0), math.log(1e5), n))
        c[:4], d[:4] = [cel.lower, cel.lower, cel.upper, cel.upper], [dif.lower, dif.upper, dif.lower, dif.upper]
        length[4:8] = [10.0, 1e5, 10.0, 1e5]
        return {"celerity": torch.as_tensor(c), "diffusivity": torch.as_tensor(d), "length": torch.as_tensor(length)}

    on = lambda p: {k: v.to(dev) for k, v in p.items()}
    if dev.type == "cpu":
        # the interpreter's cost is per program and operation: short blocks for short supports (several per reach:
        # the taps' blocks overlap by a point)
        hayami.GPU_TAPS_BLOCK = hayami.GPU_BACKWARD_BLOCK = 128
    n = 60 if dev.type == "cpu" else 4000
    cases = [(3600.0, 300, 1e-13)] if dev.type == "cpu" else [
        (3600.0, 1500, 1e-13), (86400.0, 366, 1e-9), (60.0, 400, 1e-7), (0.1, 200, 1e-9)]
    for dt, n_steps, tol in cases:
        p = spread(n)
        want = hayami.compact(p, dt, n_steps, tol, native=True)  # routing.c on CPU tensors
        mu, lam = hayami._shape(on(p))
        got = hayami._gpu_compact(mu, lam, dt, n_steps, tol)
        first, count, taps = got.first.cpu(), got.count.cpu(), got.taps.detach().cpu()
        assert first.dtype == count.dtype == torch.int64 and taps.dtype == torch.float64
        assert taps.shape[1] % 4 == 0 and taps.shape[1] >= int(count.max()) and int(count.min()) >= 1
        same = (first == want.first) & (count == want.count)
        assert float(same.double().mean()) >= 0.99, (dt, float(same.double().mean()))
        w = want.taps.shape[1]
        np.testing.assert_allclose(taps[same, :w].numpy(), want.taps[same].numpy(), rtol=0, atol=1e-15)
        assert not taps[:, w:].any() and not taps[torch.arange(taps.shape[1])[None] >= count[:, None]].any()
        # the torch full kernels (erfc and log_ndtr, autograd) at the same columns
        full, _ = hayami.kernel(p, dt, n_steps)
        cols = (first[:, None] + torch.arange(taps.shape[1])[None]).clamp(max=n_steps - 1)
        inside = torch.arange(taps.shape[1])[None] < count[:, None]
        ref = torch.where(inside, full.gather(1, cols), 0.0)
        np.testing.assert_allclose(taps.numpy(), ref.numpy(), rtol=0, atol=1e-12)
        # backward: the C function's analytic derivatives on the same supports, for a random dL/dtaps
        g = torch.as_tensor(rng.standard_normal(taps.shape))
        mu_c, lam_c = (x.detach().cpu().clone().requires_grad_(True) for x in (mu, lam))
        mu_g, lam_g = (x.detach().clone().requires_grad_(True) for x in (mu, lam))
        t_c = hayami._Taps.apply(mu_c, lam_c, first, count, taps.shape[1], dt, n_steps)
        (t_c * g).sum().backward()
        t_g = hayami._GpuTaps.apply(mu_g, lam_g, got.first, got.count, taps.shape[1],
                                    hayami._gpu_constants(dt, tol, dev))
        (t_g * g.to(dev)).sum().backward()
        for a, b in ((mu_g.grad, mu_c.grad), (lam_g.grad, lam_c.grad)):
            scale = b.abs() + 1e-300
            assert float(((a.cpu() - b).abs() / scale).max()) <= 1e-9, (dt, float(((a.cpu() - b).abs() / scale).max()))

    # gradients by central differences in logs of celerity, diffusivity and length (supports held fixed)
    p = spread(8)
    p["length"] = torch.as_tensor([800.0, 3000.0, 12000.0, 500.0, 40000.0, 2000.0, 150.0, 7000.0],
                                  dtype=torch.float64)
    mu, lam = hayami._shape(on(p))
    comp = hayami._gpu_compact(mu, lam, 3600.0, 120, 1e-13)
    cp = hayami._gpu_constants(3600.0, 1e-13, dev)

    def taps(log_c, log_d, log_length):
        c, d, length = torch.exp(log_c), torch.exp(log_d), torch.exp(log_length)
        return hayami._GpuTaps.apply(length / c, length**2 / (2 * d), comp.first, comp.count, comp.taps.shape[1], cp)

    args = tuple(torch.log(on(p)[k]).requires_grad_(True) for k in ("celerity", "diffusivity", "length"))
    # fast mode (random projections of the Jacobian): the full one takes a backward per tap, minutes interpreted
    assert torch.autograd.gradcheck(taps, args, eps=1e-6, atol=1e-8, rtol=1e-5, fast_mode=dev.type == "cpu")

    if dev.type == "cuda":  # routing through them: the path, float32 against the float64 C routing, gradients
        net = scheidegger_network(2000, seed=3)
        topo = topology(net)
        nr = net.n_reaches
        length = torch.as_tensor(np.asarray(net.length, dtype=np.float64))
        c = torch.as_tensor(rng.uniform(0.2, 3.0, nr))
        d = torch.as_tensor(np.exp(rng.uniform(math.log(50.0), math.log(5e4), nr)))
        q = torch.as_tensor(rng.gamma(2.0, 1.0, (2, nr, 1200)))
        w = torch.as_tensor(rng.uniform(0.5, 1.5, q.shape))
        grads = []
        for device, dtype, name in ((torch.device("cpu"), torch.float64, "fir-compact"),
                                    (dev, torch.float32, "fir-compact-triton")):
            cc, dd = (x.to(device).detach().clone().requires_grad_(True) for x in (c, d))
            out, _, path = exact.route_exact(topo, q.to(device, dtype), SCHEMES["hayami"],
                                             {"celerity": cc, "diffusivity": dd, "length": length.to(device)},
                                             3600.0, kernels_fn=None, kernel_length=None)
            assert path == name, path
            (out.double() * w.to(device)).sum().backward()
            grads.append((out.detach().double().cpu(), cc.grad.cpu(), dd.grad.cpu()))
        (ref, gc, gd), (out, gc2, gd2) = grads
        rel = ((out - ref).abs().amax(-1) / ref.abs().amax(-1)).max()
        assert float(rel) <= 1e-5, float(rel)
        for a, b in ((gc2, gc), (gd2, gd)):
            assert float(((a - b).abs() / b.abs().max()).max()) <= 1e-4, float(((a - b).abs() / b.abs().max()).max())
    print("OK")
""")


@requires_triton
def test_triton_hayami_taps_in_the_interpreter():
    run_check(_CHECK, "cpu", interpreter=True)


@requires_triton
@requires_cuda
def test_triton_hayami_taps_on_cuda():
    run_check(_CHECK, "cuda")
