"""Parameters of a conceptual runoff model per catchment, within bounds: uniform, per catchment, or a regression
of catchment descriptors (smash's "multi-linear" with no hidden layer, its "ANN" with hidden layers).

Each parameter goes through the bounded map of the routing parameter models (:class:`thalweg.params.models.Bound`:
the prior's position between the bounds on a logit scale, plus the model's offset, mapped back with a sigmoid), so
any offset gives a value within bounds and an offset of 0 gives the prior.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ...errors import InputError, opt
from ...params.models import Bound, zero_output_mlp

__all__ = ["ParameterSpec", "CatchmentParameters", "PARAMETER_MODELS"]

PARAMETER_MODELS = ("uniform", "per-catchment", "regression")


@dataclasses.dataclass(frozen=True)
class ParameterSpec:
    """One parameter of a runoff model: name, unit, bounds (inclusive), prior and meaning."""

    name: str
    unit: str
    lower: float
    upper: float
    default: float
    description: str = ""

    def bound(self, bounds: Mapping[str, Sequence[float]] | None = None) -> Bound:
        lo, hi = self.lower, self.upper
        if bounds and self.name in bounds:
            lo, hi = (float(v) for v in bounds[self.name])
            if not (self.lower <= lo < hi <= self.upper):
                raise InputError(f"bounds of '{self.name}' are [{lo:g}, {hi:g}] {self.unit}; they must be increasing "
                                 f"and inside [{self.lower:g}, {self.upper:g}].", field="bounds",
                                 hint=f"Narrow them within those limits, e.g. {opt('train.bounds', '{}')}.")
        return Bound(self.name, float(lo), float(hi), "log" if lo > 0 else "linear")


class CatchmentParameters(torch.nn.Module):
    """Parameters [C] per catchment of a runoff model.

    Parameters
    ----------
    specs : the model's parameters.
    n_catchments : C.
    kind : 'uniform' (one value per parameter for every catchment), 'per-catchment' (one free value per catchment,
        pulled towards the prior by ``prior_weight``) or 'regression' (an MLP of the standardised static attributes:
        ``hidden=()`` is multi-linear; the last layer starts at zero, so the model starts at the prior).
    static : float64 [C, A] standardised static attributes (for 'regression').
    prior : name -> value (scalar) replacing a spec's default.
    bounds : name -> (lower, upper), narrower than the specs'.
    hidden, seed : the regression's hidden widths and initialisation seed.
    prior_weight : 'per-catchment': weight of the mean squared offset (on the logit scale).
    """

    def __init__(self, specs: Sequence[ParameterSpec], n_catchments: int, *, kind: str = "uniform",
                 static: torch.Tensor | None = None, prior: Mapping[str, float] | None = None,
                 bounds: Mapping[str, Sequence[float]] | None = None, hidden: Sequence[int] = (),
                 seed: int = 0, prior_weight: float = 1e-3) -> None:
        super().__init__()
        if kind not in PARAMETER_MODELS:
            raise InputError(f"unknown runoff parameter model '{kind}'.", field="parameter_model",
                             hint=f"Use one of: {', '.join(PARAMETER_MODELS)}, e.g. "
                                  f"{opt('train.parameter_model', 'uniform')}.")
        self.specs = tuple(specs)
        self.kind = kind
        self.names = tuple(s.name for s in self.specs)
        unknown = sorted(set(prior or {}) - set(self.names)) + sorted(set(bounds or {}) - set(self.names))
        if unknown:
            raise InputError(f"the runoff model has no parameter {', '.join(unknown)}.", field="prior",
                             hint=f"Its parameters are {', '.join(self.names)}.")
        self.bounds = {s.name: s.bound(bounds) for s in self.specs}
        values = [float((prior or {}).get(s.name, s.default)) for s in self.specs]
        for s, v in zip(self.specs, values):
            b = self.bounds[s.name]
            if not (math.isfinite(v) and b.lower <= v <= b.upper):
                raise InputError(f"the prior of '{s.name}' is {v:g}, outside [{b.lower:g}, {b.upper:g}] {s.unit}.",
                                 field=s.name, hint="Give a prior within the bounds.")
        free = torch.stack([self.bounds[n].to_free(torch.tensor([v], dtype=torch.float64))[0]
                            for n, v in zip(self.names, values)])
        self.register_buffer("free_prior", free)
        self.n_catchments = int(n_catchments)
        self.prior_weight = float(prior_weight)
        self.hidden = tuple(int(h) for h in hidden)
        n_par = len(self.specs)
        if kind == "uniform":
            self.offset = torch.nn.Parameter(torch.zeros(n_par, dtype=torch.float64))
        elif kind == "per-catchment":
            self.offset = torch.nn.Parameter(torch.zeros(self.n_catchments, n_par, dtype=torch.float64))
        else:
            if static is None or static.shape[-1] == 0:
                raise InputError("the 'regression' runoff parameter model needs static catchment attributes.",
                                 field="static", hint=f"Name some, e.g. {opt('train.static', '[slope, area]')}, "
                                                      "or use the 'uniform' model.")
            self.mlp = zero_output_mlp([int(static.shape[-1]), *self.hidden, n_par], seed)

    def offsets(self, static: torch.Tensor | None) -> torch.Tensor:
        """Offsets [C, P] on the logit scale."""
        if self.kind == "uniform":
            return self.offset.expand(self.n_catchments, -1)
        if self.kind == "per-catchment":
            return self.offset
        return self.mlp(static.to(torch.float64))

    def forward(self, static: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """name -> float64 [C] values within bounds."""
        z = self.free_prior + self.offsets(static)
        return {n: self.bounds[n].from_free(z[:, j]) for j, n in enumerate(self.names)}

    def penalty(self) -> torch.Tensor:
        if self.kind == "per-catchment" and self.prior_weight > 0:
            return self.prior_weight * (self.offset ** 2).mean()
        return self.free_prior.new_zeros(())

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "hidden": list(self.hidden),
                "bounds": {n: [b.lower, b.upper] for n, b in self.bounds.items()}}
