"""The GPU's exact paths for the convolution schemes without building kernels: the Nash cascade with a whole
number of reservoirs as n recursions (``_gpu.cascade_route``) and the pure lag as two taps
(``_gpu.fir_route_taps``), against independent float64 oracles written step by step with torch ops (their
gradients by autograd): the cascade against n linear reservoirs in a row, and against the Nash kernel
a^n C(k+n-1, k) (1-a)^k convolved directly; the lag against an explicit shift. On a CUDA machine for real;
otherwise tiny cases in Triton's interpreter (in a subprocess: TRITON_INTERPRET must be set before triton is
imported); skipped without triton.
"""
from __future__ import annotations

import textwrap

import pytest
from _routing_cases import requires_cuda, requires_triton, run_check

_CHECK = textwrap.dedent("""
    import math, sys, warnings
    import numpy as np, torch
    from thalweg.network import scheidegger_network
    from thalweg.routing import _gpu
    from thalweg.routing.topology import topology
    warnings.simplefilter("ignore")
    dev = torch.device(sys.argv[1])
    if dev.type == "cpu":
        n_req, t_len, batch = 14, 41, 2
        _gpu.FWD_BT = 16  # three time chunks in a tiny case
    else:
        n_req, t_len, batch = 3000, 1300, 2  # six chunks of 256

    def reservoirs(x, a, n):  # n passes of y[t] = (1 - a) y[t-1] + a x[t], step by step
        for _ in range(n):
            y, out = torch.zeros((), dtype=torch.float64), []
            for t in range(x.shape[0]):
                y = (1.0 - a) * y + a * x[t]
                out.append(y)
            x = torch.stack(out)
        return x

    def nash_direct(x, a, n):  # the Nash kernel, convolved directly
        k = torch.arange(x.shape[0], dtype=torch.float64)
        logc = torch.lgamma(k + n) - torch.lgamma(k + 1.0) - math.lgamma(n)
        h = a**n * torch.exp(logc + k * torch.log1p(-a))
        return torch.stack([(h[:t + 1].flip(0) * x[:t + 1]).sum() for t in range(x.shape[0])])

    def lagged(x, first, w):  # w0 x[t - first] + w1 x[t - first - 1]
        pad = torch.zeros(first + 1, dtype=torch.float64)
        xp = torch.cat([pad, x])
        t = x.shape[0]
        return w[0] * xp[1:1 + t] + w[1] * xp[:t]

    def tree_oracle(net, q, step):
        rows = {}
        ups = {i: [] for i in range(net.n_reaches)}
        for i, d in enumerate(np.asarray(topo.downstream)):
            if d >= 0:
                ups[int(d)].append(i)
        def go(i):
            if i not in rows:
                x = q[i] + sum((go(u) for u in ups[i]), torch.zeros(q.shape[-1], dtype=torch.float64))
                rows[i] = step(i, x)
            return rows[i]
        return torch.stack([go(i) for i in range(net.n_reaches)])

    net = scheidegger_network(n_req, seed=5, single_basin=True)
    topo = topology(net)
    n = net.n_reaches
    rng = np.random.default_rng(1)
    nres = rng.integers(1, 5, n)
    a = torch.as_tensor(rng.uniform(0.05, 0.9, n))
    q = torch.as_tensor(rng.gamma(2.0, 1.0, (batch, n, t_len)))
    w = torch.as_tensor(rng.standard_normal((batch, n, t_len)))
    first = rng.integers(0, 6, n)
    taps = torch.as_tensor(rng.uniform(0.0, 1.0, (n, 2)))
    small = dev.type == "cpu"
    cases = [("cascade", lambda i, x, aa, tt: reservoirs(x, aa[i], int(nres[i])))]
    if small:  # the kernel form too (slow in Python: tiny case only)
        cases.append(("nash-kernel", lambda i, x, aa, tt: nash_direct(x, aa[i], float(nres[i]))))
    cases.append(("lag", lambda i, x, aa, tt: lagged(x, int(first[i]), tt[i])))
    for name, step in cases:
        if small:  # oracle values and gradients by autograd through the step-by-step recursion
            qa, aa, ta = (x.clone().requires_grad_(True) for x in (q, a, taps))
            ref = torch.stack([tree_oracle(net, qa[k], lambda i, x: step(i, x, aa, ta)) for k in range(batch)])
            (ref * w).sum().backward()
            refs = (ref.detach(), qa.grad, aa.grad if name != "lag" else ta.grad)
        else:  # on the GPU the float64 run of the same kernels is judged by the CPU's compiled engine
            from thalweg.routing import _cpu
            qa, aa, ta = (x.clone().requires_grad_(True) for x in (q, a, taps))
            if name == "cascade":
                ref = _cpu.cascade_route(qa, aa, nres, topo)
            else:
                ref, _, _ = _cpu.fir_route(qa, ta, None, topo, support=(first, first + 2), offset=first)
            (ref * w).sum().backward()
            refs = (ref.detach(), qa.grad, aa.grad if name != "lag" else ta.grad)
        for dtype, tol, gtol in ((torch.float64, 1e-10, 1e-9), (torch.float32, 1e-5, 1e-4)):
            qg, ag, tg = (x.to(dev).clone().requires_grad_(True) for x in (q.to(dtype), a, taps))
            if name == "lag":
                out = _gpu.fir_route_taps(qg, torch.as_tensor(first), tg, topo)
            else:
                out = _gpu.cascade_route(qg, ag, nres, topo)
            (out.double() * w.to(dev)).sum().backward()
            grads = (qg.grad, ag.grad if name != "lag" else tg.grad)
            e = float((out.detach().double().cpu() - refs[0]).abs().max() / refs[0].abs().max())
            assert e < tol, (name, "Q", dtype, e)
            for gname, g, r in zip(("dq", "dparam"), grads, refs[1:]):
                e = float((g.double().cpu() - r).abs().max() / r.abs().max())
                assert e < gtol, (name, gname, dtype, e)
    # Hayami's compact kernels (per-reach first tap and count) through the same GPU kernel, against the CPU's
    # compiled convolution of the same taps (itself tested against the numpy reference in tests/irf)
    from thalweg.irf import SCHEMES
    from thalweg.routing import _cpu
    hp = {"celerity": torch.as_tensor(rng.uniform(0.3, 3.0, n)),
          "diffusivity": torch.as_tensor(rng.uniform(1e2, 1e5, n)),
          "length": torch.as_tensor(np.asarray(net.length, dtype=np.float64))}
    dt_h = 3600.0
    comp = SCHEMES["hayami"].compact(hp, dt_h, t_len, 1e-13)
    assert int(comp.count.min()) < int(comp.count.max()), "a spread of supports"
    ref, _, _ = _cpu.fir_route(q, comp.taps, None, topo, support=comp.support, offset=comp.first.numpy())
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-5)):
        out = _gpu.fir_route_taps(q.to(dtype).to(dev), comp.first, comp.taps.to(dev), topo,
                                  counts=comp.count).double().cpu()
        e = float((out - ref).abs().max() / ref.abs().max())
        assert e < tol, ("hayami compact", dtype, e)
    # mass: every unit of runoff leaves through the outlet (sum over a long horizon, fast reservoirs)
    qm = torch.zeros(1, n, 400 if small else t_len, dtype=torch.float64)
    qm[..., :5] = 1.0
    out = _gpu.cascade_route(qm.to(dev), torch.full((n,), 0.9, dtype=torch.float64).to(dev), nres, topo).cpu()
    outlet = int(np.flatnonzero(np.asarray(topo.downstream) < 0)[0])
    assert abs(float(out[0, outlet].sum()) - 5.0 * n) < 1e-8 * n, float(out[0, outlet].sum())
    print("OK")
""")


@requires_triton
def test_gpu_cascade_and_lag_in_the_interpreter():
    run_check(_CHECK, "cpu", interpreter=True)


@requires_cuda
def test_gpu_cascade_and_lag_on_cuda():
    run_check(_CHECK, "cuda")


def test_cascade_route_refuses_a_reach_without_reservoirs():
    torch = pytest.importorskip("torch")
    from thalweg.network import scheidegger_network
    from thalweg.routing import _gpu
    from thalweg.routing.topology import topology

    net = scheidegger_network(10, seed=1, single_basin=True)
    n = net.n_reaches
    with pytest.raises(ValueError, match=r"every reach needs at least one reservoir \(nres >= 1\)"):
        _gpu.cascade_route(torch.ones(1, n, 5), torch.full((n,), 0.5, dtype=torch.float64), [0] + [1] * (n - 1),
                           topology(net))
