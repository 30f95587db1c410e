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
        p, e, x, s = _np(pn), _np(en), _np(x1), _np(s0).copy()
        n = p.shape[1]
        keep = {name: np.empty((n, s.size)) for name in ("s", "tp", "te", "s1", "u")}
        masks = {name: np.empty((n, s.size), dtype=bool) for name in ("pos", "wp", "we")}
        pr = np.empty_like(p)
        for t in range(n):
            wp, we = p[:, t] / x, e[:, t] / x
            tp, te = np.tanh(np.minimum(wp, _CAP)), np.tanh(np.minimum(we, _CAP))
            sr = s / x
            ps = x * (1.0 - sr * sr) * tp / (1.0 + sr * tp)
            es = s * (2.0 - sr) * te / (1.0 + (1.0 - sr) * te)
            a = s + ps - es
            s1 = np.maximum(a, 0.0)
            u = 1.0 + (s1 / x) ** 4 / k
            s2 = s1 * u ** -0.25
            pr[:, t] = p[:, t] - ps + (s1 - s2)
            for name, value in (("s", s), ("tp", tp), ("te", te), ("s1", s1), ("u", u)):
                keep[name][t] = value
            masks["pos"][t], masks["wp"][t], masks["we"][t] = a > 0, wp < _CAP, we < _CAP
            s = s2
        ctx.saved = (p, e, x, keep, masks, k)
        return (torch.as_tensor(pr, dtype=pn.dtype, device=pn.device),
                torch.as_tensor(s, dtype=s0.dtype, device=s0.device))

    @staticmethod
    def backward(ctx, g_pr, g_send):
        p, e, x, keep, masks, k = ctx.saved
        n = p.shape[1]
        gpr = np.zeros_like(p) if g_pr is None else _np(g_pr)
        gs = np.zeros(x.size) if g_send is None else _np(g_send)
        gx = np.zeros(x.size)
        for t in range(n - 1, -1, -1):
            s, tp, te, s1, u = (keep[name][t] for name in ("s", "tp", "te", "s1", "u"))
            g_p = gpr[:, t]
            du = u ** -1.25
            g_s1 = g_p + (gs - g_p) * du
            gx += (gs - g_p) * du * s1 * (u - 1.0) / x
            g_a = np.where(masks["pos"][t], g_s1, 0.0)
            g_ps = g_a - g_p
            g_es = -g_a
            sr = s / x
            # ps = x N / D, N = (1 - sr^2) tp, D = 1 + sr tp
            d = 1.0 + sr * tp
            nn = (1.0 - sr * sr) * tp
            dps_dsr = x * (-2.0 * sr * tp * d - nn * tp) / (d * d)
            dps_dtp = x * (1.0 - sr * sr) / (d * d)
            dwp_dx = np.where(masks["wp"][t], -p[:, t] / (x * x), 0.0)
            dps_ds = dps_dsr / x
            dps_dx = nn / d - dps_dsr * s / (x * x) + dps_dtp * (1.0 - tp * tp) * dwp_dx
            # es = M / E1, M = s (2 - sr) te, E1 = 1 + (1 - sr) te
            e1 = 1.0 + (1.0 - sr) * te
            m = s * (2.0 - sr) * te
            des_dsr = te * (m - s * e1) / (e1 * e1)
            des_dte = s * (2.0 - sr) / (e1 * e1)
            dwe_dx = np.where(masks["we"][t], -e[:, t] / (x * x), 0.0)
            des_ds = (2.0 - sr) * te / e1 + des_dsr / x
            des_dx = -des_dsr * s / (x * x) + des_dte * (1.0 - te * te) * dwe_dx
            gx += g_ps * dps_dx + g_es * des_dx
            gs = g_a + g_ps * dps_ds + g_es * des_ds
        x1_dev = g_pr if g_pr is not None else g_send
        return (None, None, torch.as_tensor(gx, dtype=x1_dev.dtype, device=x1_dev.device),
                torch.as_tensor(gs, dtype=x1_dev.dtype, device=x1_dev.device), None)


class _Routing(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q9, q1, x2, x3, r0):  # q9, q1 [M, T]; x2, x3, r0 [M]
        a9, a1, c2, c3, r = _np(q9), _np(q1), _np(x2), _np(x3), _np(r0).copy()
        n = a9.shape[1]
        keep = {name: np.empty((n, r.size)) for name in ("r", "r1", "v")}
        masks = {name: np.empty((n, r.size), dtype=bool) for name in ("b", "d")}
        out = np.empty_like(a9)
        for t in range(n):
            f = c2 * (r / c3) ** 3.5
            b = r + a9[:, t] + f
            r1 = np.maximum(b, 0.0)
            v = 1.0 + (r1 / c3) ** 4
            r2 = r1 * v ** -0.25
            d = a1[:, t] + f
            out[:, t] = (r1 - r2) + np.maximum(d, 0.0)
            keep["r"][t], keep["r1"][t], keep["v"][t] = r, r1, v
            masks["b"][t], masks["d"][t] = b > 0, d > 0
            r = r2
        ctx.saved = (c2, c3, keep, masks, n)
        return (torch.as_tensor(out, dtype=q9.dtype, device=q9.device),
                torch.as_tensor(r, dtype=r0.dtype, device=r0.device))

    @staticmethod
    def backward(ctx, g_q, g_rend):
        c2, c3, keep, masks, n = ctx.saved
        gq = np.zeros((c2.size, n)) if g_q is None else _np(g_q)
        gr = np.zeros(c2.size) if g_rend is None else _np(g_rend)
        g9, g1 = np.empty((c2.size, n)), np.empty((c2.size, n))
        gx2, gx3 = np.zeros(c2.size), np.zeros(c2.size)
        for t in range(n - 1, -1, -1):
            r, r1, v = keep["r"][t], keep["r1"][t], keep["v"][t]
            g = gq[:, t]
            dv = v ** -1.25
            g_r1 = g + (gr - g) * dv
            gx3 += (gr - g) * dv * r1 * (v - 1.0) / c3
            g_b = np.where(masks["b"][t], g_r1, 0.0)
            g_d = np.where(masks["d"][t], g, 0.0)
            g_f = g_b + g_d
            ratio = r / c3
            gx2 += g_f * ratio ** 3.5
            gx3 += g_f * (-3.5 * c2 * ratio ** 3.5 / c3)
            g9[:, t], g1[:, t] = g_b, g_d
            gr = g_b + g_f * 3.5 * c2 * ratio ** 2.5 / c3
        like = g_q if g_q is not None else g_rend

        def back(a: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(a, dtype=like.dtype, device=like.device)

        return back(g9), back(g1), back(gx2), back(gx3), back(gr)


def production(pn: torch.Tensor, en: torch.Tensor, x1: torch.Tensor, s0: torch.Tensor,
               k: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Pr [M, T] and the final store [M] from net rainfall/evaporation [M, T], x1 [M], initial store [M]
    (gradients to x1 and s0; the forcings are data)."""
    return _Production.apply(pn, en, x1, s0, float(k))


def routing(q9: torch.Tensor, q1: torch.Tensor, x2: torch.Tensor, x3: torch.Tensor,
            r0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Runoff [M, T] and the final routing store [M] (gradients to every input)."""
    return _Routing.apply(q9, q1, x2, x3, r0)
