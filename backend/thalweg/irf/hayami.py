"""Linear diffusive wave (Hayami), cell-integrated inverse Gaussian (ROUTING.md section 3).

mu = L / c, lambda = L^2 / (2 D); F(s) = Phi(sqrt(lambda/s)(s/mu - 1))
+ exp(2 lambda / mu) Phi(-sqrt(lambda/s)(s/mu + 1)), the second term in log space; h[k] = F((k+1)dt) - F(k dt).
"""
from __future__ import annotations

import torch

from .base import Parameter, Scheme, steps_index


def cdf(s: torch.Tensor, mu: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Inverse-Gaussian CDF at s > 0 (s = 0 gives 0)."""
    # evaluate the unselected branch at s = 1 s, not at a tiny s: its infinities would turn the gradient
    # into NaN (0 * inf) through torch.where
    positive = s > 0
    s_pos = torch.where(positive, s, torch.ones_like(s))
    root = torch.sqrt(lam / s_pos)
    first = torch.special.ndtr(root * (s_pos / mu - 1.0))
    second = torch.exp(2.0 * lam / mu + torch.special.log_ndtr(-root * (s_pos / mu + 1.0)))
    return torch.where(positive, first + second, torch.zeros_like(first))


def kernel(params, dt: float, n_steps: int):
    length = params["length"][:, None]
    mu = length / params["celerity"][:, None]
    lam = length**2 / (2.0 * params["diffusivity"][:, None])
    k = steps_index(n_steps + 1, mu)
    f = cdf(k * dt, mu, lam)
    return f[:, 1:] - f[:, :-1], None


SCHEME = Scheme(
    name="hayami",
    parameters=(
        Parameter("celerity", "m s-1", "wave celerity", 0.05, 10.0, 1.0, positive=True, prior="velocity"),
        Parameter("diffusivity", "m2 s-1", "hydraulic diffusivity", 10.0, 1e6, 1e4, positive=True),
    ),
    kernel=kernel,
    travel_time=lambda p, dt: p["length"] / p["celerity"],
    description="linear diffusive wave (Hayami), inverse-Gaussian kernel integrated over each step",
    uses_length=True,
)
