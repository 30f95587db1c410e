"""The GPU exact engine on networks whose rivers split: the weighted Triton recursions (``_gpu.iir_route_dag``)
against an independent float64 oracle, a step-by-step recursion over the links written with torch ops (its
gradients by autograd). On a CUDA machine for real; otherwise tiny cases in Triton's interpreter (in a
subprocess: TRITON_INTERPRET must be set before triton is imported); skipped without triton.
"""
from __future__ import annotations

import textwrap

import pytest
from _routing_cases import requires_triton, run_check

_CHECK = textwrap.dedent("""
    import sys, warnings
    import numpy as np, torch
    from thalweg.network import scheidegger_dag
    from thalweg.network.dag import edges
    from thalweg.routing import _gpu
    warnings.simplefilter("ignore")
    dev = torch.device(sys.argv[1])
    n_req, t_len = 40, 37
    if dev.type == "cpu":
        _gpu.FWD_BT, _gpu.BWD_BT = 16, 16  # several time chunks in a tiny case
    else:
        t_len = 1100  # two backward chunks of 1024, three forward chunks of 512

    def oracle(q, coef, frac, src, dst, n):
        # Q_i[t] = r Q_i[t-1] + b0 U_i[t] + b1 U_i[t-1] + c0 q_i[t] + c1 q_i[t-1], U_i = sum_links f Q_src
        order = np.argsort(levels)
        t_len = q.shape[-1]
        rows = [None] * n
        for i in order:
            into = np.flatnonzero(dst == i)
            u = sum((frac[e] * rows[src[e]] for e in into), torch.zeros(t_len, dtype=torch.float64))
            r, b0, b1, c0, c1 = coef[i]
            x = b0 * u + c0 * q[i]
            x = x + torch.cat([torch.zeros(1, dtype=x.dtype), b1 * u[:-1] + c1 * q[i, :-1]])
            y, out = torch.zeros((), dtype=torch.float64), []
            for t in range(t_len):
                y = r * y + x[t]
                out.append(y)
            rows[i] = torch.stack(out)
        return torch.stack(rows)

    from thalweg.network.dag import dag_levels
    for seed in (0, 1):
        net = scheidegger_dag(n_req, split_share=0.15, seed=seed)
        n = net.n_reaches
        src, dst, f0 = edges(net)
        levels, _ = dag_levels(n, src, dst)
        rng = np.random.default_rng(seed)
        r = rng.uniform(0.1, 0.9, n)
        # seed 0 with c1 != 0 (the backward stores lambda, a pass turns it into dL/dq), seed 1 with c1 = 0 as every
        # scheme's recursion (it stores dL/dq = c0 lambda, the readers divide by c0)
        c1 = 0.1 * (1 - r) if seed == 0 else np.zeros(n)
        coef = torch.as_tensor(np.stack([r, 0.3 * (1 - r), 0.2 * (1 - r), 0.4 * (1 - r), c1], 1))
        assert _gpu._dq_as_stored(coef) == (seed == 1)
        q = torch.as_tensor(rng.gamma(2.0, 1.0, (n, t_len)))
        frac = torch.as_tensor(np.array(net.splits.fraction), dtype=torch.float64)  # the split links'
        n_tree = src.size - frac.numel()
        assert np.allclose(f0[n_tree:], frac.numpy()) and (frac < 1).any(), "edges(): tree links, then split links"
        w = torch.as_tensor(rng.standard_normal((n, t_len)))
        # the oracle, its gradients
        qa, ca, fa = (x.clone().requires_grad_(True) for x in (q, coef, frac))
        ref = oracle(qa, ca, torch.cat([torch.ones(n_tree, dtype=torch.float64), fa]), src, dst, n)
        (ref * w).sum().backward()
        # the kernels, float64 and float32
        for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-5)):
            qg, cg, fg = (x.to(dev).clone().requires_grad_(True) for x in (q.to(dtype), coef, frac))
            out = _gpu.iir_route_dag(qg[None], cg, net, fg)[0]
            err = float((out.double().cpu() - ref.detach()).abs().max() / ref.detach().abs().max())
            assert err < tol, ("Q", dtype, err)
            (out.double() * w.to(dev)).sum().backward()
            for name, a, b in (("dq", qg.grad, qa.grad), ("dcoef", cg.grad, ca.grad), ("dfrac", fg.grad, fa.grad)):
                e = float((a.double().cpu() - b).abs().max() / b.abs().max())
                assert e < (1e-10 if dtype == torch.float64 else 1e-4), (name, dtype, e)
        # mass: with r = 0, b0 = c0 = 1 (Q = q + U) every unit of runoff reaches the outlets
        unit = torch.zeros(n, 5, dtype=torch.float64)
        unit[:, 1] = 1.0
        unit[:, 3] = 1.0
        outq = _gpu.iir_route_dag(q.to(dev)[None], unit.to(dev), net, frac.to(dev))[0].cpu()
        outlets = np.flatnonzero(np.bincount(src, minlength=n) == 0)
        mass = float(outq[outlets].sum() / q.sum())
        assert abs(mass - 1.0) < 1e-6, mass
    print("OK")
""")


@requires_triton
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_weighted_recursions_match_the_float64_oracle(device):
    """Q, dL/dq, dL/dcoef and dL/dfractions on two random DAGs, float64 and float32; mass at the outlets."""
    import torch

    if device == "cuda":
        if not torch.cuda.is_available():
            pytest.skip("needs CUDA")
    elif torch.cuda.is_available():
        pytest.skip("the interpreted run is for machines without CUDA (the cuda case runs there)")
    run_check(_CHECK, device, interpreter=device == "cpu", timeout=900)
