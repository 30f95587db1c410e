"""Nash cascade of n reservoirs (n real > 0): negative-binomial kernel (ROUTING.md section 3).

h[k] = Gamma(k + n) / (Gamma(n) k!) a^n (1 - a)^k with a = dt / (tau + dt), evaluated in log space.
"""
from __future__ import annotations

import torch

from .base import Parameter, Scheme, steps_index


def kernel(params, dt: float, n_steps: int):
    tau = params["tau"][:, None]
    n = params["n"][:, None]
    a = dt / (tau + dt)
    k = steps_index(n_steps, a)
    log_h = (torch.lgamma(k + n) - torch.lgamma(n) - torch.lgamma(k + 1.0)
             + n * torch.log(a) + k * torch.log1p(-a))
    return torch.exp(log_h), None


def whole_cascade(params, dt: float):
    """``(a [N], n [N] int32)`` on the parameters' device when every reach has a whole number n >= 1 of reservoirs
    and n is not being differentiated: the kernel is then exactly n passes of the linear storage
    y = (1-a) y + a x (the product of n linear-storage responses, ROUTING.md section 3); otherwise None."""
    n = params["n"]
    if n.requires_grad or n.numel() == 0:
        return None
    whole = torch.round(n)
    if not bool(((n == whole) & (whole >= 1)).all()):
        return None
    return dt / (params["tau"] + dt), whole.to(torch.int32)  # stays on the device: the GPU cascade's type


SCHEME = Scheme(
    name="nash_cascade",
    parameters=(
        Parameter("tau", "s", "residence time of each reservoir", 1.0, 30 * 86400.0, 43200.0, positive=True,
                  prior="travel_time", prior_divisor="n"),
        Parameter("n", "1", "number of reservoirs (any real > 0)", 0.2, 10.0, 3.0, positive=True),
    ),
    kernel=kernel,
    travel_time=lambda p, dt: p["n"] * (p["tau"] + dt),
    description="cascade of n equal linear reservoirs, n real (negative binomial)",
)
