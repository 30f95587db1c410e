"""GR4's two store recursions as autograd Functions: numpy float64 loops forward, the hand-derived adjoint
backward (reverse loops), so a step costs a few numpy operations on [M] vectors instead of a dozen recorded torch
operations. ``GR4(..., engine='autograd')`` runs the same equations through torch autograd; the tests hold both
to each other and to finite differences.

Production step (s the store, pn/en net rainfall/evaporation, x1; K = (21/4)^4):
    sr = s/x1, tp = tanh(min(pn/x1, 13)), te = tanh(min(en/x1, 13))
    ps = x1 (1 - sr^2) tp / (1 + sr tp),  es = s (2 - sr) te / (1 + (1 - sr) te)
    a = s + ps - es,  s1 = max(a, 0),  u = 1 + (s1/x1)^4 / K,  s2 = s1 u^(-1/4),  pr = pn - ps + (s1 - s2)
with ds2/ds1 = u^(-5/4) and ds2/dx1 = u^(-5/4) s1 (u - 1) / x1.

Routing step (r the store, q9/q1 the unit hydrographs' outflows, x2, x3):
    f = x2 (r/x3)^(7/2),  b = r + q9 + f,  r1 = max(b, 0),  v = 1 + (r1/x3)^4,  r2 = r1 v^(-1/4)
    d = q1 + f,  q = (r1 - r2) + max(d, 0)
with dr2/dr1 = v^(-5/4) and dr2/dx3 = v^(-5/4) r1 (v - 1) / x3.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["production", "routing"]

_CAP = 13.0


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float64)


class _Production(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pn, en, x1, s0, k):  # pn, en [M, T]; x1, s0 [M]
        p, e, x, s = _np(pn).T, _np(en).T, _np(x1), _np(s0).copy()  # time first: rows are contiguous
        n = p.shape[0]
        # the tanh terms do not depend on the store: whole series at once
        tp, te = np.tanh(np.minimum(p / x, _CAP)), np.tanh(np.minimum(e / x, _CAP))
        ss, s1s, us = np.empty_like(p), np.empty_like(p), np.empty_like(p)
        pr = np.empty_like(p)
        inv_k = 1.0 / k
        for t in range(n):
            sr = s / x
            ps = x * (1.0 - sr * sr) * tp[t] / (1.0 + sr * tp[t])
            es = s * (2.0 - sr) * te[t] / (1.0 + (1.0 - sr) * te[t])
            ss[t] = s
            s1 = np.maximum(s + ps - es, 0.0)
            u = 1.0 + (s1 / x) ** 4 * inv_k
            s = s1 * u ** -0.25
            pr[t] = p[t] - ps + (s1 - s)
            s1s[t], us[t] = s1, u
        ctx.saved = (p, e, x, tp, te, ss, s1s, us)
        return (torch.as_tensor(np.ascontiguousarray(pr.T), dtype=pn.dtype, device=pn.device),
                torch.as_tensor(s, dtype=s0.dtype, device=s0.device))

    @staticmethod
    def backward(ctx, g_pr, g_send):
        p, e, x, tp, te, s, s1, u = ctx.saved
        n = p.shape[0]
        gpr = np.zeros_like(p) if g_pr is None else _np(g_pr).T
        gs = np.zeros(x.size) if g_send is None else _np(g_send)
        # every local derivative from the saved forward states, whole series at once
        du = u ** -1.25
        pos = (s1 > 0).astype(np.float64)  # a = s + ps - es > 0  <=>  s1 > 0 (s1 = max(a, 0))
        sr = s / x
        d = 1.0 + sr * tp
        nn = (1.0 - sr * sr) * tp
        dps_dsr = x * (-2.0 * sr * tp * d - nn * tp) / (d * d)
        dps_ds = dps_dsr / x
        dps_dx = nn / d - dps_dsr * s / (x * x) + x * (1.0 - sr * sr) / (d * d) * (1.0 - tp * tp) * np.where(
            p / x < _CAP, -p / (x * x), 0.0)
        e1 = 1.0 + (1.0 - sr) * te
        des_dsr = te * (s * (2.0 - sr) * te - s * e1) / (e1 * e1)
        des_ds = (2.0 - sr) * te / e1 + des_dsr / x
        des_dx = -des_dsr * s / (x * x) + s * (2.0 - sr) / (e1 * e1) * (1.0 - te * te) * np.where(
            e / x < _CAP, -e / (x * x), 0.0)
        # the reverse recursion itself: g_s1 = g_pr + (g_s2 - g_pr) du, g_a = pos g_s1,
        # g_s = g_a (1 + dps/ds - des/ds) - g_pr dps/ds
        keep_a = pos * du
        lead = 1.0 + dps_ds - des_ds
        g_next = np.empty_like(p)  # the store's gradient after each step (g_s2)
        for t in range(n - 1, -1, -1):
            g_next[t] = gs
            gp = gpr[t]
            g_a = pos[t] * gp + keep_a[t] * (gs - gp)
            gs = g_a * lead[t] - gp * dps_ds[t]
        g_a = pos * (gpr + (g_next - gpr) * du)
        gx = ((g_next - gpr) * du * s1 * (u - 1.0) / x + (g_a - gpr) * dps_dx - g_a * des_dx).sum(0)
        like = g_pr if g_pr is not None else g_send
        return (None, None, torch.as_tensor(gx, dtype=like.dtype, device=like.device),
                torch.as_tensor(gs, dtype=like.dtype, device=like.device), None)


class _Routing(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q9, q1, x2, x3, r0):  # q9, q1 [M, T]; x2, x3, r0 [M]
        a9, a1, c2, c3, r = _np(q9).T, _np(q1).T, _np(x2), _np(x3), _np(r0).copy()
        n = a9.shape[0]
        rs, bs, vs, ds = (np.empty_like(a9) for _ in range(4))
        out = np.empty_like(a9)
        inv3 = 1.0 / c3
        for t in range(n):
            f = c2 * (r * inv3) ** 3.5
            b = r + a9[t] + f
            r1 = np.maximum(b, 0.0)
            v = 1.0 + (r1 * inv3) ** 4
            d = a1[t] + f
            rs[t], bs[t], vs[t], ds[t] = r, b, v, d
            r = r1 * v ** -0.25
            out[t] = (r1 - r) + np.maximum(d, 0.0)
        ctx.saved = (c2, c3, rs, bs, vs, ds)
        return (torch.as_tensor(np.ascontiguousarray(out.T), dtype=q9.dtype, device=q9.device),
                torch.as_tensor(r, dtype=r0.dtype, device=r0.device))

    @staticmethod
    def backward(ctx, g_q, g_rend):
        c2, c3, r, b, v, d = ctx.saved
        n = r.shape[0]
        gq = np.zeros_like(r) if g_q is None else _np(g_q).T
        gr = np.zeros(c2.size) if g_rend is None else _np(g_rend)
        r1 = np.maximum(b, 0.0)
        dv = v ** -1.25
        mb, md = (b > 0).astype(np.float64), (d > 0).astype(np.float64)
        ratio = r / c3
        df_dr = 3.5 * c2 * ratio ** 2.5 / c3
        g_next = np.empty_like(r)  # the store's gradient after each step
        for t in range(n - 1, -1, -1):
            g_next[t] = gr
            g = gq[t]
            g_b = mb[t] * (g + (gr - g) * dv[t])
            gr = g_b + (g_b + md[t] * g) * df_dr[t]
        g_b = mb * (gq + (g_next - gq) * dv)
        g_d = md * gq
        g_f = g_b + g_d
        gx2 = (g_f * ratio ** 3.5).sum(0)
        gx3 = ((g_next - gq) * dv * r1 * (v - 1.0) / c3 - g_f * 3.5 * c2 * ratio ** 3.5 / c3).sum(0)
        like = g_q if g_q is not None else g_rend

        def back(a: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.ascontiguousarray(a.T) if a.ndim == 2 else a, dtype=like.dtype,
                                   device=like.device)

        return back(g_b), back(g_d), back(gx2), back(gx3), back(gr)


def production(pn: torch.Tensor, en: torch.Tensor, x1: torch.Tensor, s0: torch.Tensor,
               k: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Pr [M, T] and the final store [M] from net rainfall/evaporation [M, T], x1 [M], initial store [M]
    (gradients to x1 and s0; the forcings are data)."""
    return _Production.apply(pn, en, x1, s0, float(k))


def routing(q9: torch.Tensor, q1: torch.Tensor, x2: torch.Tensor, x3: torch.Tensor,
            r0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Runoff [M, T] and the final routing store [M] (gradients to every input)."""
    return _Routing.apply(q9, q1, x2, x3, r0)
