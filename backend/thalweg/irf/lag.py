"""Pure lag: h[k] = max(0, 1 - |k - d|), d = lag / dt steps, fractional allowed (ROUTING.md section 3)."""
from __future__ import annotations

import torch

from .base import Parameter, Scheme, steps_index


def kernel(params, dt: float, n_steps: int):
    d = params["lag"][:, None] / dt
    k = steps_index(n_steps, d)
    return torch.clamp(1.0 - torch.abs(k - d), min=0.0), None


SCHEME = Scheme(
    name="pure_lag",
    parameters=(Parameter("lag", "s", "travel time through the reach", 0.0, 30 * 86400.0, 3600.0,
                          prior="travel_time"),),
    kernel=kernel,
    travel_time=lambda p, dt: p["lag"],
    description="pure translation by a (fractional) lag, linear interpolation between steps",
)
