"""The runoff-model interface: forcings per catchment and step -> runoff depth per catchment and step.

Every model is a ``torch.nn.Module`` with one call,

    runoff, state = model(forcings, state=None)

- ``forcings`` : tensor [B, C, T, F], the model's ``inputs`` (F variable names, in that order) per catchment and
  step; depths (precipitation, PET) in mm per step.
- ``state`` : the model's state after the previous chunk (None: the model's own initial state); a run split into
  time chunks, each given the state the previous one returned, equals one pass (tests hold it to rounding).
- ``runoff`` : tensor [B, C, T], mm per step, the depth leaving each catchment into its reach.

Static catchment attributes (descriptors: area, slope, drainage density, ...) are given once, when the model is
built, as ``static`` [C, A]; they are standardised here (mean 0, std 1 over the catchments, log first for the
positive, decade-spanning ones) and kept as a buffer, with the standardisation, so a saved model can be applied to
other catchments.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ...errors import InputError, opt

__all__ = ["RunoffModel", "standardise_static", "LOG_STATIC"]

# attributes standardised in log space when all their values are positive (they span decades)
LOG_STATIC = ("area", "catchment_area", "length", "slope", "drainage_density")


def standardise_static(names: Sequence[str], values: np.ndarray | None,
                       stats: Mapping[str, Sequence[float]] | None = None) -> tuple[np.ndarray, dict[str, list[float]]]:
    """Standardised attributes [C, A] and their statistics ``name -> [log (0/1), mean, std]``.

    ``stats`` (a trained model's) is applied as it is; without it, the statistics come from ``values``.
    """
    names = list(names)
    if values is None or not names:
        return np.zeros((0 if values is None else np.shape(values)[0], 0)), {}
    values = np.asarray(values, dtype=np.float64).reshape(-1, len(names))
    if not np.isfinite(values).all():
        bad = [n for j, n in enumerate(names) if not np.isfinite(values[:, j]).all()]
        raise InputError(f"static attribute(s) {', '.join(bad)} have missing or non-finite values.", field=bad[0],
                         hint="Give every catchment a value, or leave the attribute out of "
                              f"{opt('train.static', '[]')}.")
    out = np.empty_like(values)
    found: dict[str, list[float]] = {}
    for j, name in enumerate(names):
        v = values[:, j]
        if stats is not None and name in stats:
            log, mean, std = stats[name]
        else:
            log = float(name in LOG_STATIC and bool((v > 0).all()))
            t = np.log(v) if log else v
            mean, std = float(t.mean()), float(t.std()) or 1.0
        if log and not (v > 0).all():
            raise InputError(f"static attribute '{name}' has values <= 0; the model standardises it in log space.",
                             field=name, hint="Give positive values on every catchment.")
        out[:, j] = ((np.log(v) if log else v) - mean) / std
        found[name] = [float(log), float(mean), float(std)]
    return out, found


class RunoffModel(torch.nn.Module):
    """Base of the runoff models (module docstring).

    Parameters
    ----------
    inputs : names of the F forcing variables, in the order of the forcings' last axis.
    n_catchments : C.
    static : float [C, A] catchment attributes (raw values), or None.
    static_names : names of the A attributes.
    static_stats : a trained model's standardisation (``name -> [log, mean, std]``); None: from ``static``.
    input_stats : ``name -> [mean, std]`` of each forcing over the training period, for models that standardise
        their inputs (LSTM, MC-LSTM's auxiliary inputs); None: mean 0, std 1.

    Attributes
    ----------
    kind : registry name ('gr4', 'lstm', 'mclstm').
    mass_conserving : the model's runoff + losses + storage change equals its mass input at every step.
    required : forcing variables the model cannot run without.
    """

    kind = "base"
    mass_conserving = False
    required: tuple[str, ...] = ()

    def __init__(self, inputs: Sequence[str], *, n_catchments: int, static: Any = None,
                 static_names: Sequence[str] = (),
                 static_stats: Mapping[str, Sequence[float]] | None = None,
                 input_stats: Mapping[str, Sequence[float]] | None = None) -> None:
        super().__init__()
        self.inputs = tuple(str(v) for v in inputs)
        missing = [v for v in self.required if v not in self.inputs]
        if missing:
            raise InputError(f"the '{self.kind}' runoff model needs the forcing(s) {', '.join(missing)}; it was given "
                             f"{', '.join(self.inputs) or 'none'}.", field="forcings",
                             hint=f"Give them, e.g. {opt('train.forcings', 'precipitation=P.nc')}.")
        self.static_names = tuple(str(s) for s in static_names)
        if static is None and self.static_names:
            raise InputError(f"static attributes {', '.join(self.static_names)} were named but not given.",
                             field="static")
        feats, stats = standardise_static(self.static_names, static, static_stats)
        if static is None:
            feats = np.zeros((int(n_catchments), 0))
        if feats.shape[0] != int(n_catchments):
            raise InputError(f"static attributes cover {feats.shape[0]:,} catchments; the model is built for "
                             f"{int(n_catchments):,}.", field="static")
        self.static_stats = stats
        self.register_buffer("static", torch.as_tensor(feats, dtype=torch.float64))
        stats_in = {v: list(input_stats[v]) if input_stats and v in input_stats else [0.0, 1.0] for v in self.inputs}
        self.input_stats = stats_in
        self.register_buffer("input_mean", torch.tensor([stats_in[v][0] for v in self.inputs], dtype=torch.float64))
        self.register_buffer("input_std", torch.tensor([max(stats_in[v][1], 1e-12) for v in self.inputs],
                                                       dtype=torch.float64))

    # -- what subclasses implement -------------------------------------------------------------------------
    def forward(self, forcings: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """Constructor keywords (JSON-ready) beyond inputs/static, to rebuild the model from a file."""
        return {}

    # -- shared ----------------------------------------------------------------------------------------------
    @property
    def n_catchments(self) -> int:
        return int(self.static.shape[0])

    def index_of(self, name: str) -> int:
        return self.inputs.index(name)

    def standardised(self, forcings: torch.Tensor) -> torch.Tensor:
        """Forcings [..., F] standardised with the training statistics."""
        mean = self.input_mean.to(forcings.dtype)
        std = self.input_std.to(forcings.dtype)
        return (forcings - mean) / std

    def check_forcings(self, forcings: torch.Tensor) -> None:
        if forcings.ndim != 4 or forcings.shape[-1] != len(self.inputs):
            raise InputError(f"forcings have shape {tuple(forcings.shape)}; the '{self.kind}' model takes [batch, "
                             f"catchments, time, {len(self.inputs)}] ({', '.join(self.inputs)}).", field="forcings")
        if forcings.shape[1] != self.static.shape[0]:
            raise InputError(f"forcings cover {forcings.shape[1]:,} catchments; the model's static attributes "
                             f"{self.static.shape[0]:,}.", field="forcings",
                             hint="Build the model on the same catchments as the forcings.")

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "inputs": list(self.inputs), "static": list(self.static_names),
                "mass_conserving": self.mass_conserving, "catchments": self.n_catchments,
                "weights": int(sum(p.numel() for p in self.parameters())), **self.config()}

    def spec(self) -> dict[str, Any]:
        """Everything needed to rebuild the model (with :func:`thalweg.runoff.models.load_runoff_model`)."""
        return {"kind": self.kind, "inputs": list(self.inputs), "static_names": list(self.static_names),
                "static_stats": self.static_stats, "input_stats": self.input_stats, "config": self.config()}


def softplus_inverse(y: float) -> float:
    """x with softplus(x) = y (y > 0)."""
    return y + math.log(-math.expm1(-y))
