"""The Scheme protocol: a routing scheme is a named, differentiable kernel function (ROUTING.md section 3).

A scheme maps per-reach parameters to two unit-mass causal kernels: ``h`` (upstream inflow -> outflow)
and ``g`` (the reach's own lateral runoff -> outflow; ``None`` means ``g = h``). Engines only ever see
kernels, so adding a scheme never touches an engine.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping

import numpy as np
import torch

__all__ = ["PRIORS", "Kernels", "Parameter", "Recursion", "Scheme", "steps_index", "truncate"]

Params = Mapping[str, torch.Tensor]


PRIORS = ("default", "travel_time", "velocity")


@dataclasses.dataclass(frozen=True)
class Parameter:
    """One kernel parameter, the one place that says what values it takes and where its prior comes from.

    Attributes
    ----------
    name, unit, description : the parameter's name, SI unit and meaning.
    lower, upper : physical bounds (inclusive); routing refuses values outside them.
    default : the value used when nothing else gives one (``prior='default'``).
    typical : where the bounds are much wider than usual values, the range tests and benchmarks sample.
    positive : the value must be > 0 even where ``lower`` is 0 (a time constant, a speed).
    prior : where :func:`thalweg.params.resolve_params` takes the value when the user gives none:
        'default' (``default``), 'travel_time' (the GEOGloWS travel time length / velocity(area), s) or
        'velocity' (the GEOGloWS velocity, m/s).
    prior_divisor : name of another parameter the prior is divided by (a Nash cascade's residence time per
        reservoir: travel time / n).
    network_field : a network attribute that, when present, gives the value before the prior
        (``muskingum_k`` from RAPID ``k.csv`` or river-route ``muskingumK``).
    """

    name: str
    unit: str
    description: str
    lower: float
    upper: float
    default: float
    typical: tuple[float, float] | None = None
    positive: bool = False
    prior: str = "default"
    prior_divisor: str | None = None
    network_field: str | None = None

    def __post_init__(self) -> None:
        if self.prior not in PRIORS:
            raise ValueError(f"parameter '{self.name}': prior must be one of {', '.join(PRIORS)}, not {self.prior!r}")
        if not self.lower <= self.default <= self.upper:
            raise ValueError(f"parameter '{self.name}': default {self.default} is outside [{self.lower}, {self.upper}]")

    def bounds_text(self) -> str:
        """'[0.1, 2.592e+06] s' or '(0, 10] m s-1' for messages."""
        unit = "" if self.unit in ("1", "-", "") else f" {self.unit}"
        opening = "(" if self.positive and self.lower == 0 else "["
        return f"{opening}{self.lower:g}, {self.upper:g}]{unit}"

    def outside(self, values):
        """Bool mask (numpy or torch, as given) of values that are not finite or outside the bounds."""
        if hasattr(values, "isfinite") or type(values).__module__.startswith("torch"):
            bad = ~torch.isfinite(values) | (values < self.lower) | (values > self.upper)
        else:
            values = np.asarray(values, dtype=np.float64)
            bad = ~np.isfinite(values) | (values < self.lower) | (values > self.upper)
        if self.positive:
            bad = bad | (values <= 0)
        return bad

    def to_dict(self) -> dict:
        """JSON-ready: ``typical`` as a [low, high] list or None."""
        out = dataclasses.asdict(self)
        out["typical"] = list(self.typical) if self.typical else None
        return out


@dataclasses.dataclass(frozen=True)
class Kernels:
    """Kernels of every reach: ``h`` [N, L] and ``g`` [N, L] (``g is h`` when the scheme uses one kernel)."""

    h: torch.Tensor
    g: torch.Tensor

    @property
    def length(self) -> int:
        return int(self.h.shape[-1])


@dataclasses.dataclass(frozen=True)
class Recursion:
    """A first-order recursive form of a reach's two kernels, each coefficient a tensor [N]:

        Q[t] = r Q[t-1] + b0 U[t] + b1 U[t-1] + c0 q[t] + c1 q[t-1]

    Its impulse responses are h[0] = b0, h[k] = r^(k-1) (r b0 + b1) for the inflow U and
    g[0] = c0, g[k] = r^(k-1) (r c0 + c1) for the runoff q. Engines that run recursions (cost per
    step independent of the kernel length) use it; schemes without one are convolved with their kernels.
    """

    r: torch.Tensor
    b0: torch.Tensor
    b1: torch.Tensor
    c0: torch.Tensor
    c1: torch.Tensor

    def stacked(self) -> torch.Tensor:
        """Coefficients as one tensor [N, 5] in the order r, b0, b1, c0, c1."""
        return torch.stack([self.r, self.b0, self.b1, self.c0, self.c1], dim=-1)


@dataclasses.dataclass(frozen=True)
class Scheme:
    """A routing scheme.

    Attributes
    ----------
    name : registry key, e.g. 'muskingum'.
    parameters : the per-reach parameters it takes (besides the network's own ``length``).
    kernel : ``kernel(params, dt, n_steps) -> (h, g or None)``, each [N, n_steps], differentiable in params.
        ``params`` holds float tensors [N] in SI units; ``length`` [m] is added when ``uses_length``.
    travel_time : ``travel_time(params, dt) -> tensor [N]`` (s), the kernel's mean delay; sets the
        automatic kernel length.
    uses_length : the kernel needs each reach's length (Hayami).
    description : one line for ``thalweg schemes`` and ``GET /schemes``.
    recursion : optional ``recursion(params, dt) -> Recursion``, the same kernels as a first-order
        recursion (exact, differentiable in params); lets engines skip convolutions.
    adjusted : optional ``adjusted(params, dt) -> (bool tensor [N], text)``: the reaches where the scheme
        routes with other values than the parameters given (``muskingum_nonneg`` lowering x) and a sentence
        saying what it does; ``route`` reports them once, with their ids.
    """

    name: str
    parameters: tuple[Parameter, ...]
    kernel: Callable[[Params, float, int], tuple[torch.Tensor, torch.Tensor | None]]
    travel_time: Callable[[Params, float], torch.Tensor]
    description: str = ""
    uses_length: bool = False
    recursion: Callable[[Params, float], Recursion] | None = None
    adjusted: Callable[[Params, float], tuple[torch.Tensor, str]] | None = None

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    def kernels(self, params: Params, dt: float, n_steps: int) -> Kernels:
        h, g = self.kernel(params, float(dt), int(n_steps))
        return Kernels(h, h if g is None else g)

    def auto_length(self, params: Params, dt: float, *, spread: float = 8.0, minimum: int = 8) -> int:
        """Kernel length covering ``spread`` times the largest travel time (in steps)."""
        with torch.no_grad():
            tt = self.travel_time(params, float(dt))
            longest = float(tt.max()) if tt.numel() else 0.0
        return max(minimum, math.ceil(spread * longest / dt) + 2)

    def sample_params(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Random parameters inside physical bounds (tests and benchmarks)."""
        out = {}
        for p in self.parameters:
            lo, hi = p.typical or (p.lower, p.upper)
            if lo > 0 and hi / lo > 100:
                out[p.name] = np.exp(rng.uniform(np.log(lo), np.log(hi), n))
            else:
                out[p.name] = rng.uniform(lo, hi, n)
        return out

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "uses_length": self.uses_length,
                "parameters": [p.to_dict() for p in self.parameters]}


def steps_index(n_steps: int, like: torch.Tensor) -> torch.Tensor:
    """k = 0..n_steps-1 as a [1, n_steps] tensor of ``like``'s dtype and device."""
    return torch.arange(n_steps, dtype=like.dtype, device=like.device)[None, :]


def truncate(kernel: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut kernels [N, L0] to ``length`` steps keeping their mass (renormalise the kept part).

    Returns ``(kernel [N, length], tail [N])`` with ``tail`` the fraction of each kernel's mass that lay
    beyond the cut, so callers can report it (ROUTING.md section 2).
    """
    kept = kernel[..., :length]
    total = kernel.sum(-1)
    part = kept.sum(-1)
    tail = (total - part) / total
    return kept * (total / part)[..., None], tail
