"""Muskingum in the RAPID / river-route convention (ROUTING.md section 3), in three variants.

D = 2K(1-x) + dt;  C0 = (dt - 2Kx)/D;  C1 = (dt + 2Kx)/D;  C2 = (2K(1-x) - dt)/D.
Upstream kernel h[0] = C0, h[k] = (C1 + C2 C0) C2^(k-1); lateral kernel g[k] = (1 - C2) C2^k.
Equivalent recursion: Q[t] = C2 Q[t-1] + C0 U[t] + C1 U[t-1] + (C0 + C1) q[t].

- ``muskingum``: the formulas as they are (RAPID-identical); C0 < 0 (dt < 2Kx) or C2 < 0 (dt > 2K(1-x))
  give negative kernel values, so non-negative runoff can give negative discharge (warned).
- ``muskingum_substep``: s = ceil(dt / 2K(1-x)) sub-steps of dt/s (inputs held over each step), so C2 >= 0:
  no oscillation, but C0 < 0 remains where dt/s < 2Kx (warned).
- ``muskingum_nonneg``: sub-steps chosen so that C0, C1 and C2 of every sub-step are >= 0; where no sub-step
  count can (the interval dt/(2K(1-x)) <= s <= dt/(2Kx) holds no integer, always so when dt < 2Kx), x of that
  reach is lowered to the largest value for which one can, and the routing reports those reaches once. All
  coefficients non-negative: non-negative runoff gives non-negative discharge, exactly, and every kernel
  still sums to 1 (mass conserved). See docs/parameters.md.
"""
from __future__ import annotations

import warnings

import torch

from ..errors import ThalwegWarning, opt, render_options
from .base import Parameter, Recursion, Scheme, shared, steps_index

__all__ = ["NONNEGATIVE", "SCHEME", "SUBSTEPPED", "coefficients", "nonneg_substeps", "substeps"]


def coefficients(k: torch.Tensor, x: torch.Tensor, dt: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(C0, C1, C2) per reach; they sum to 1."""
    storage, weighted = 2.0 * k * (1.0 - x), 2.0 * k * x  # 2K(1-x) and 2Kx, each once
    d = storage + dt
    return (dt - weighted) / d, (dt + weighted) / d, (storage - dt) / d


def _power(base: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    # base^k for integer k >= 0 and any sign of base, differentiable in base
    return torch.pow(base, k)


def _warn_negative(c0: torch.Tensor, c2: torch.Tensor, dt: float) -> None:
    with torch.no_grad():
        n0, n2 = torch.stack([(c0 < 0).sum(), (c2 < 0).sum()]).tolist()  # one device sync for both
    if n0 or n2:
        warnings.warn(render_options(
            f"Muskingum with dt = {dt:g} s gives negative coefficients for {n0:,} reaches (C0 < 0: dt < 2Kx) and "
            f"{n2:,} reaches (C2 < 0: dt > 2K(1-x)); their kernels have negative values, so discharge can go "
            f"negative. Use the scheme 'muskingum_nonneg' ({opt('route.scheme', 'muskingum_nonneg')}), which "
            f"never does."), ThalwegWarning, stacklevel=4)


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


def _substepped_kernel(c0, c1, c2, s, n_steps: int):
    """Kernels [N, n_steps] of s fine steps per step (fine coefficients c0, c1, c2 and s, each [N]).

    Closed form of the sums of s consecutive fine-step kernel values (geometric series), so any s costs
    the same: h[0] = C0 + A S(s-1), h[j] = A C2^(js-1) S(s), g[j] = C2^(js) (1 - C2^s), with A = C1 + C2 C0
    and S(m) = (1 - C2^m) / (1 - C2).
    """
    c0, c1, c2, s = c0[:, None], c1[:, None], c2[:, None], s[:, None]
    a = c1 + c2 * c0
    j = steps_index(n_steps, c0)

    def geometric(m):
        return (1.0 - _power(c2, m)) / (1.0 - c2)

    h = torch.where(j == 0, c0 + a * geometric(s - 1.0),
                    a * _power(c2, torch.clamp(j * s - 1.0, min=0.0)) * geometric(s))
    g = _power(c2, j * s) * (1.0 - _power(c2, s))
    return h, g


def _substepped_recursion(c0, c1, c2, s) -> Recursion:
    """The sub-stepped kernels as one coarse recursion with ratio R = C2^s (fine-step coefficients):
    b0 = h[0] = C0 + A S(s-1), and b1 = h[1] - R b0, which simplifies to C1 C2^(s-1) (written so: no
    cancellation, and >= 0 whenever C1, C2 >= 0); g[k] = (1 - R) R^k."""
    a = c1 + c2 * c0
    big_r = _power(c2, s)
    before = _power(c2, s - 1.0)  # C2^(s-1), once (torch.pow of two tensors: about nine adds' time on the CPU)
    h0 = c0 + a * (1.0 - before) / (1.0 - c2)
    b1 = c1 * before
    return Recursion(r=big_r, b0=h0, b1=b1, c0=1.0 - big_r, c1=torch.zeros_like(big_r))


def _warn_negative_c0(c0: torch.Tensor, dt: float) -> None:
    with torch.no_grad():
        n0 = int((c0 < 0).sum())
    if n0:
        warnings.warn(render_options(
            f"sub-stepped Muskingum with dt = {dt:g} s keeps C0 < 0 (dt/s < 2Kx) on {n0:,} reaches: their discharge "
            f"can go negative. Use the scheme 'muskingum_nonneg' ({opt('route.scheme', 'muskingum_nonneg')}), "
            f"which lowers x there instead."), ThalwegWarning, stacklevel=4)


def substep_kernel(params, dt: float, n_steps: int):
    """Route at dt/s (s = :func:`substeps`) with each input held constant over its step, output sampled at
    step ends (closed form: :func:`_substepped_kernel`)."""
    s = substeps(params, dt)
    c0, c1, c2 = coefficients(params["k"], params["x"], dt / s)
    _warn_negative_c0(c0, dt)
    return _substepped_kernel(c0, c1, c2, s, n_steps)


def substep_recursion(params, dt: float) -> Recursion:
    """The sub-stepped kernels as one coarse recursion (:func:`_substepped_recursion`)."""
    s = substeps(params, dt)
    c0, c1, c2 = coefficients(params["k"], params["x"], dt / s)
    _warn_negative_c0(c0, dt)
    return _substepped_recursion(c0, c1, c2, s)


def _best_lowered(r: torch.Tensor) -> torch.Tensor:
    """For r = dt/(2K): the sub-step count s >= 1 maximising min(r/s, 1 - r/s).

    Every coefficient of a sub-step dt/s is >= 0 iff x <= r/s (C0) and x <= 1 - r/s (C2); min(r/s, 1 - r/s)
    rises then falls in s, peaking at s = 2r, so the best integer is floor(2r) or ceil(2r) (at least 1).
    """
    lo = torch.clamp(torch.floor(2.0 * r), min=1.0)
    hi = torch.clamp(torch.ceil(2.0 * r), min=1.0)
    take_hi = torch.minimum(r / hi, 1.0 - r / hi) > torch.minimum(r / lo, 1.0 - r / lo)
    # hi - lo is 0 or 1: whole numbers added, exact (torch.where branches per element on the CPU: 0.35 ms at
    # 100k reaches on a mask without order, seven times an add)
    return lo + take_hi * (hi - lo)


def _substep_choice(k: torch.Tensor, x: torch.Tensor, dt: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(s, keeps): the sub-steps of :func:`nonneg_substeps` and where they keep the reach's own x (no grad); made
    once for the report and the recursion of a prepared route (``base.shared``)."""
    def make():
        with torch.no_grad():
            r = dt / (2.0 * k)
            s_keep = torch.clamp(torch.ceil(r / torch.clamp(1.0 - x, min=1e-12)), min=1.0)
            keeps = dt / s_keep >= 2.0 * k * x
            s_low = _best_lowered(r)
            return s_low + keeps * (s_keep - s_low), keeps  # whole numbers: exact, without torch.where
    return shared("muskingum_nonneg.substeps", (k, x), (float(dt),), make)


def nonneg_substeps(params, dt: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sub-steps and weighting factor per reach that make C0, C1, C2 of every sub-step >= 0.

    Returns ``(s, x, lowered)``: s float tensor [N] of whole sub-step counts; x [N], the reach's own x where
    some s keeps it (then s is the smallest such, the one ``muskingum_substep`` takes), else the largest x for
    which one s can, x = min(dt/(2Ks), 1 - dt/(2Ks)) (x = dt/(2K) whenever dt <= K); ``lowered`` bool [N],
    where x was lowered. x stays differentiable: in x where kept, in K where lowered.
    """
    k, x = params["k"], params["x"]
    s, keeps = _substep_choice(k, x, dt)
    r_s = dt / (2.0 * k * s)  # with grad in k
    x_low = torch.clamp(torch.minimum(r_s, 1.0 - r_s), min=0.0)
    # the reach's own x where s keeps it, else min(x, x_low): x_low is at most 0.5, so x_low + 1 >= x never binds
    # where it keeps (the same values and gradients as torch.where, without its per-element branch)
    x_used = torch.minimum(x, x_low + keeps)
    # lowered: where the x used is below the reach's own (the best lowered x can equal it, e.g. x = 0.5 at r_s = 0.5)
    return s, x_used, ~keeps & (x_low.detach() < x.detach())


def _nonneg_coefficients(params, dt: float):
    s, x, _ = nonneg_substeps(params, dt)
    c0, _c1, c2 = coefficients(params["k"], x, dt / s)
    # s and x make both >= 0 up to rounding (x = dt/(2Ks) gives C0 = 0 to 1e-17): clamp that rounding away and
    # take C1 as the rest, so the three still sum to 1
    c0, c2 = torch.clamp(c0, min=0.0), torch.clamp(c2, min=0.0)
    return c0, 1.0 - c0 - c2, c2, s


def nonneg_kernel(params, dt: float, n_steps: int):
    """Kernels of ``muskingum_nonneg``: :func:`_substepped_kernel` at the sub-steps and x of
    :func:`nonneg_substeps`; every value >= 0."""
    c0, c1, c2, s = _nonneg_coefficients(params, dt)
    return _substepped_kernel(c0, c1, c2, s, n_steps)


def nonneg_recursion(params, dt: float) -> Recursion:
    """``muskingum_nonneg`` as one coarse recursion; every coefficient >= 0, so the recursion itself never
    makes a negative value from non-negative inputs (in any float precision)."""
    c0, c1, c2, s = _nonneg_coefficients(params, dt)
    return _substepped_recursion(c0, c1, c2, s)


def nonneg_adjusted(params, dt: float) -> tuple[torch.Tensor, str]:
    """Reaches whose x ``muskingum_nonneg`` lowers at this dt (bool [N]) and what that does, for the one
    warning the routing gives (with their ids)."""
    s, x, lowered = nonneg_substeps(params, dt)
    if not bool(lowered.any()):
        return lowered, ""
    with torch.no_grad():  # masked reductions, not x[lowered] (a gather by index: 0.5 ms each at 100k reaches)
        x_old = params["x"]
        top_old = float((x_old * lowered).max())  # x is in [0, 0.5]: zeros elsewhere never win
        low_new = float((x + ~lowered).min())  # nor does x + 1 elsewhere
        below_c0 = int(((dt < 2.0 * params["k"] * x_old) & lowered).sum())
    text = (f"x lowered (from up to {top_old:.3g} to as low as {low_new:.3g}) so that every "
            f"Muskingum coefficient stays >= 0 at dt = {dt:g} s; {below_c0:,} of them have dt < 2Kx, where no "
            f"sub-step can keep x. Discharge there rises earlier and peaks lower than with their own x. Keep x "
            f"with a longer step, or route RAPID-identically with {opt('route.scheme', 'muskingum')} (which can "
            f"give negative discharge)")
    return lowered, text


_PARAMS = (
    # k down to 0.1 s: NHDPlus and MERIT carry reaches of a few metres (k of seconds); at hourly steps such
    # reaches get C2 near -1 and a warning pointing to muskingum_substep, not a refusal of the whole network
    Parameter("k", "s", "Muskingum storage constant (travel time)", 0.1, 30 * 86400.0, 86400.0,
              typical=(60.0, 30 * 86400.0), positive=True, prior="travel_time", network_field="muskingum_k"),
    # 0.25: the GEOGloWS v2 rule's x
    Parameter("x", "1", "Muskingum weighting factor", 0.0, 0.5, 0.25, network_field="muskingum_x"),
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

NONNEGATIVE = Scheme(
    name="muskingum_nonneg",
    parameters=_PARAMS,
    kernel=nonneg_kernel,
    travel_time=lambda p, dt: p["k"] + dt,
    description="Muskingum sub-stepped so that every coefficient is >= 0 (x lowered where no sub-step can): "
                "never negative discharge, mass conserved",
    recursion=nonneg_recursion,
    adjusted=nonneg_adjusted,
)
