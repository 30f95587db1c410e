"""Pure lag: h[k] = max(0, 1 - |k - d|), d = lag / dt steps, fractional allowed (ROUTING.md section 3)."""
from __future__ import annotations

import torch

from .base import Compact, Parameter, Scheme, steps_index


def kernel(params, dt: float, n_steps: int):
    d = params["lag"][:, None] / dt
    k = steps_index(n_steps, d)
    return torch.clamp(1.0 - torch.abs(k - d), min=0.0), None


def compact(params, dt: float, n_steps: int, tol: float) -> Compact:
    """``Scheme.compact``: the kernel's only nonzero taps, h[first] = 1 - f and h[first + 1] = f, first = floor(d),
    f = d - first for d = lag / dt (differentiable in the lag): the same kernel as ``kernel`` (a shift when d is
    whole, a two-tap filter otherwise). They hold all of the mass, so ``tol`` and ``n_steps`` change nothing; count
    2 also where the second tap is 0, a whole lag, so the lag's gradient keeps both taps. Everything stays on the
    parameters' device (no copy to the host and back per call)."""
    d = params["lag"] / dt
    first = torch.floor(d.detach())
    f = d - first
    first = first.to(torch.int64)
    return Compact(first, torch.full_like(first, 2), torch.stack([1.0 - f, f], dim=-1).to(torch.float64))


SCHEME = Scheme(
    name="pure_lag",
    parameters=(Parameter("lag", "s", "travel time through the reach", 0.0, 30 * 86400.0, 3600.0,
                          prior="travel_time"),),
    kernel=kernel,
    travel_time=lambda p, dt: p["lag"],
    description="pure translation by a (fractional) lag, linear interpolation between steps",
    compact=compact,
)
