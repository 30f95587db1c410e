"""Muskingum in the RAPID / river-route convention (ROUTING.md section 3).

D = 2K(1-x) + dt;  C0 = (dt - 2Kx)/D;  C1 = (dt + 2Kx)/D;  C2 = (2K(1-x) - dt)/D.
Upstream kernel h[0] = C0, h[k] = (C1 + C2 C0) C2^(k-1); lateral kernel g[k] = (1 - C2) C2^k.
Equivalent recursion: Q[t] = C2 Q[t-1] + C0 U[t] + C1 U[t-1] + (C0 + C1) q[t].
"""
from __future__ import annotations

import warnings

import torch

from ..errors import ThalwegWarning
from .base import Parameter, Recursion, Scheme, steps_index

__all__ = ["SCHEME", "SUBSTEPPED", "coefficients"]


def coefficients(k: torch.Tensor, x: torch.Tensor, dt: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(C0, C1, C2) per reach; they sum to 1."""
    d = 2.0 * k * (1.0 - x) + dt
    return (dt - 2.0 * k * x) / d, (dt + 2.0 * k * x) / d, (2.0 * k * (1.0 - x) - dt) / d


def _power(base: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    # base^k for integer k >= 0 and any sign of base, differentiable in base
    return torch.pow(base, k)


def _warn_negative(c0: torch.Tensor, c2: torch.Tensor, dt: float) -> None:
    with torch.no_grad():
        n0, n2 = int((c0 < 0).sum()), int((c2 < 0).sum())
    if n0 or n2:
        warnings.warn(
            f"Muskingum with dt = {dt:g} s gives negative coefficients for {n0:,} reaches (C0 < 0: dt < 2Kx) and "
            f"{n2:,} reaches (C2 < 0: dt > 2K(1-x)); their kernels have negative values. Use the scheme "
            f"'muskingum_substep' for C2 < 0, or a longer step for C0 < 0.", ThalwegWarning, stacklevel=4)


def kernel(params, dt: float, n_steps: int):
    c0, c1, c2 = coefficients(params["k"], params["x"], dt)
    _warn_negative(c0, c2, dt)
    c0, c1, c2 = c0[:, None], c1[:, None], c2[:, None]
    k = steps_index(n_steps, c0)
    tail = _power(c2, torch.clamp(k - 1.0, min=0.0))
    h = torch.where(k == 0, c0, (c1 + c2 * c0) * tail)
    g = (1.0 - c2) * _power(c2, k)
    return h, g


def recursion(params, dt: float) -> Recursion:
    """Q[t] = C2 Q[t-1] + C0 U[t] + C1 U[t-1] + (C0 + C1) q[t]  (C0 + C1 written 1 - C2)."""
    c0, c1, c2 = coefficients(params["k"], params["x"], dt)
    _warn_negative(c0, c2, dt)
    return Recursion(r=c2, b0=c0, b1=c1, c0=1.0 - c2, c1=torch.zeros_like(c2))


def substeps(params, dt: float) -> torch.Tensor:
    """Sub-steps s per reach (float tensor [N]) making C2 >= 0 at dt / s: s = ceil(dt / (2K(1-x)))."""
    with torch.no_grad():
        limit = torch.clamp(2.0 * params["k"] * (1.0 - params["x"]), min=1e-9)
        return torch.clamp(torch.ceil(dt / limit - 1e-9), min=1.0)


def substep_kernel(params, dt: float, n_steps: int):
    """Route at dt/s with each input held constant over its step, output sampled at step ends.

    Closed form of the sums of s consecutive fine-step kernel values (geometric series), so any s costs
    the same: h[0] = C0 + A S(s-1), h[j] = A C2^(js-1) S(s), g[j] = C2^(js) (1 - C2^s), with the fine-step
    coefficients, A = C1 + C2 C0 and S(m) = (1 - C2^m) / (1 - C2).
    """
    s = substeps(params, dt)
    c0, c1, c2 = coefficients(params["k"], params["x"], dt / s)
    c0, c1, c2, s = c0[:, None], c1[:, None], c2[:, None], s[:, None]
    a = c1 + c2 * c0
    j = steps_index(n_steps, c0)

    def geometric(m):
        return (1.0 - _power(c2, m)) / (1.0 - c2)

    h = torch.where(j == 0, c0 + a * geometric(s - 1.0),
                    a * _power(c2, torch.clamp(j * s - 1.0, min=0.0)) * geometric(s))
    g = _power(c2, j * s) * (1.0 - _power(c2, s))
    return h, g


def substep_recursion(params, dt: float) -> Recursion:
    """The sub-stepped kernels as one coarse recursion with ratio R = C2^s (fine-step coefficients):
    h[0] = C0 + A S(s-1) = b0 and h[1] = A C2^(s-1) S(s) = R b0 + b1; g[k] = (1 - R) R^k."""
    s = substeps(params, dt)
    c0, c1, c2 = coefficients(params["k"], params["x"], dt / s)
    a = c1 + c2 * c0
    big_r = _power(c2, s)
    s_full = (1.0 - big_r) / (1.0 - c2)
    h0 = c0 + a * (1.0 - _power(c2, s - 1.0)) / (1.0 - c2)
    h1 = a * _power(c2, s - 1.0) * s_full
    return Recursion(r=big_r, b0=h0, b1=h1 - big_r * h0, c0=1.0 - big_r, c1=torch.zeros_like(big_r))


_PARAMS = (
    # k down to 0.1 s: NHDPlus and MERIT carry reaches of a few metres (k of seconds); at hourly steps such
    # reaches get C2 near -1 and a warning pointing to muskingum_substep, not a refusal of the whole network
    Parameter("k", "s", "Muskingum storage constant (travel time)", 0.1, 30 * 86400.0, 86400.0,
              typical=(60.0, 30 * 86400.0)),
    Parameter("x", "1", "Muskingum weighting factor", 0.0, 0.5, 0.25),
)

SCHEME = Scheme(
    name="muskingum",
    parameters=_PARAMS,
    kernel=kernel,
    travel_time=lambda p, dt: p["k"] + dt,
    description="Muskingum, RAPID / river-route convention (lateral runoff enters at the reach inlet)",
    recursion=recursion,
)

SUBSTEPPED = Scheme(
    name="muskingum_substep",
    parameters=_PARAMS,
    kernel=substep_kernel,
    travel_time=lambda p, dt: p["k"] + dt,
    description="Muskingum sub-stepped so that C2 >= 0 (stable when dt > 2K(1-x)); inputs held over each step",
    recursion=substep_recursion,
)
