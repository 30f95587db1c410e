"""The GPU's long convolutions as block-Toeplitz products on tensor cores (``_triton/toeplitz.py``, float32 runs
with long kernels), against an independent float64 oracle: each level of the tree convolved with torch's conv1d
(Q = h * U + g * q, U the upstream outflow), its gradients by autograd. Per-reach supports (first tap, count)
of many lengths, g = h and g apart, several time chunks; on CUDA supports past one tile of tap rows
(> 1,024 taps). On a CUDA machine for real; otherwise a tiny case in Triton's interpreter with short chunks and
blocks (in a subprocess: TRITON_INTERPRET must be set before triton is imported); skipped without triton.
"""
from __future__ import annotations

import textwrap

import pytest
from _routing_cases import requires_cuda, requires_triton, run_check

_CHECK = textwrap.dedent("""
    import sys, warnings
    import numpy as np, torch
    import torch.nn.functional as F
    from thalweg.network import scheidegger_network
    from thalweg.routing import _gpu
    from thalweg.routing.topology import topology
    warnings.simplefilter("ignore")
    dev = torch.device(sys.argv[1])
    if dev.type == "cpu":
        size, t_len, long_k = 10, 150, 40
        _gpu.BT, _gpu.TOEPLITZ_R, _gpu.TOEPLITZ_MIN_TAPS = 64, 16, 1  # three chunks, 16-tap blocks
    else:
        size, t_len, long_k = 400, 2500, 1500  # three chunks of 1024; supports past 32 x 32 taps
    net = scheidegger_network(size, seed=5, single_basin=True)
    topo = topology(net)
    n = net.n_reaches
    down = np.asarray(topo.downstream)
    rng = np.random.default_rng(2)
    k0 = torch.as_tensor(rng.integers(0, 6, n))
    kn = torch.as_tensor(rng.integers(long_k // 4, long_k + 1, n))
    kn[0] = long_k  # the longest support is there
    length = int((k0 + kn).max())

    def kernel():  # decaying positive taps over each reach's support, zero elsewhere
        t = torch.arange(length, dtype=torch.float64)
        on = (t[None] >= k0[:, None]) & (t[None] < (k0 + kn)[:, None])
        h = torch.as_tensor(rng.random((n, length))) * torch.exp(-t[None] / (0.3 * kn[:, None]))
        return torch.where(on, h, 0.0) / torch.where(on, h, 0.0).sum(-1, keepdim=True)

    # levels: a reach comes after every reach upstream of it
    level = np.zeros(n, dtype=int)
    for i in np.asarray(topo.level_order):
        if down[i] >= 0:
            level[down[i]] = max(level[down[i]], level[i] + 1)

    def oracle(q, h, g):  # float64, level by level: Q[t] = sum_k h[k] U[t - k] + g[k] q[t - k]
        out = [None] * n
        flow = torch.zeros_like(q)
        for lev in range(level.max() + 1):
            idx = np.flatnonzero(level == lev)
            u = flow[:, idx]
            conv = lambda x, k: F.conv1d(F.pad(x, (length - 1, 0)), k.flip(-1)[:, None], groups=len(idx))
            y = conv(u, h[idx]) + conv(q[:, idx], (h if g is None else g)[idx])
            for j, i in enumerate(idx):
                out[i] = y[:, j]
                if down[i] >= 0:
                    flow = flow.index_add(1, torch.tensor([int(down[i])]), y[:, j:j + 1])
        return torch.stack(out, 1)

    q = torch.as_tensor(rng.gamma(2.0, 1.0, (2, n, t_len)))
    w = torch.as_tensor(rng.standard_normal((2, n, t_len)))
    support = (k0.to(dev), (k0 + kn).to(dev))
    for apart in (False, True):
        h = kernel()
        g = kernel() if apart else None
        leaves = [x.clone().requires_grad_(True) for x in (q, h) + (() if g is None else (g,))]
        ref = oracle(leaves[0], leaves[1], None if g is None else leaves[2])
        (ref * w).sum().backward()
        refs = [ref.detach()] + [x.grad for x in leaves]
        kmax = _gpu._tap_width(int(kn.max()))
        assert _gpu._toeplitz(kmax, torch.float32)
        leaves = [x.to(dev).clone().requires_grad_(True) for x in (q.float(), h, ) + (() if g is None else (g,))]
        out = _gpu.fir_route(leaves[0], leaves[1], None if g is None else leaves[2], topo, support)
        assert out.dtype == torch.float32
        (out.double() * w.to(dev)).sum().backward()
        got = [out.detach()] + [x.grad for x in leaves]
        for name, a, b in zip(("Q", "dq", "dh", "dg"), got, refs):
            a = a.double().cpu()
            if name in ("dh", "dg"):  # taps outside a reach's support are not parameters of the run
                t = torch.arange(length)
                on = (t[None] >= k0[:, None]) & (t[None] < (k0 + kn)[:, None])
                a, b = a * on, b * on
            e = float((a - b).abs().max() / b.abs().max())
            assert e < 1e-5, (name, apart, e)
        print("apart" if apart else "same", "ok")
    print("OK")
""")


@requires_triton
def test_toeplitz_convolution_in_the_interpreter():
    run_check(_CHECK, "cpu", interpreter=True)


@pytest.mark.gpu
@requires_cuda
def test_toeplitz_convolution_on_cuda():
    run_check(_CHECK, "cuda")
