"""Linear storage (implicit Euler): a = dt / (tau + dt), h[k] = a (1 - a)^k (ROUTING.md section 3)."""
from __future__ import annotations

import torch

from .base import Parameter, Recursion, Scheme, steps_index


def kernel(params, dt: float, n_steps: int):
    a = (dt / (params["tau"] + dt))[:, None]
    k = steps_index(n_steps, a)
    return a * torch.exp(k * torch.log1p(-a)), None


def recursion(params, dt: float) -> Recursion:
    """Q[t] = (1 - a) Q[t-1] + a (U[t] + q[t])."""
    a = dt / (params["tau"] + dt)
    zero = torch.zeros_like(a)
    return Recursion(r=1.0 - a, b0=a, b1=zero, c0=a, c1=zero)


SCHEME = Scheme(
    name="linear_storage",
    parameters=(Parameter("tau", "s", "residence time of the reach's storage", 1.0, 30 * 86400.0, 86400.0,
                          positive=True, prior="travel_time"),),
    kernel=kernel,
    travel_time=lambda p, dt: p["tau"] + dt,
    description="one linear reservoir per reach (implicit Euler)",
    recursion=recursion,
)
