"""Runoff models: forcings per catchment -> runoff depth per step, differentiable, with state in and out.

One interface (:class:`RunoffModel`, ``runoff, state = model(forcings [B, C, T, F], state)``), one file per model:

- ``gr4``: GR4 in its hourly form, parameters per catchment from a parameter model (uniform, per catchment, or a
  regression of static attributes);
- ``lstm``: an LSTM with static attributes at every step and a linear head (neuralhydrology's CudaLSTM);
- ``mclstm``: the mass-conserving LSTM of paper 004 (precipitation conserved, a sink storage for ET).

A trained model is saved with :func:`save_runoff_model` (a ``torch.save`` file of plain tensors and JSON-like
values, read back with ``weights_only=True``) and rebuilt with :func:`load_runoff_model`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..._files import atomic_path
from ...errors import InputError, opt
from .base import RunoffModel, standardise_static
from .gr4 import GR4, GR4_PARAMETERS
from .lstm import LSTMRunoff
from .mclstm import MCLSTM
from .parameters import PARAMETER_MODELS, CatchmentParameters, ParameterSpec

__all__ = ["RunoffModel", "GR4", "LSTMRunoff", "MCLSTM", "RUNOFF_MODELS", "build_runoff_model", "save_runoff_model",
           "load_runoff_model", "GR4_PARAMETERS", "PARAMETER_MODELS", "CatchmentParameters", "ParameterSpec",
           "standardise_static", "MODEL_FILE_VERSION"]

RUNOFF_MODELS: dict[str, type[RunoffModel]] = {"gr4": GR4, "lstm": LSTMRunoff, "mclstm": MCLSTM}
MODEL_FILE_VERSION = 1


def build_runoff_model(kind: str, inputs: Sequence[str], *, n_catchments: int | None = None, static: Any = None,
                       static_names: Sequence[str] = (), **options: Any) -> RunoffModel:
    """A runoff model of ``kind`` ('gr4', 'lstm', 'mclstm') for C catchments.

    ``static`` [C, A] (raw values) and ``static_names`` [A] give the attributes; ``n_catchments`` is needed
    without them. ``options`` go to the model's constructor (``hidden``, ``seed``, ``parameter_model``, ...);
    an option the model does not take is refused with those it does.
    """
    import inspect

    if kind not in RUNOFF_MODELS:
        raise InputError(f"unknown runoff model '{kind}'.", field="runoff_model",
                         hint=f"Use one of: {', '.join(RUNOFF_MODELS)}, e.g. {opt('train.runoff_model', 'gr4')}.")
    cls = RUNOFF_MODELS[kind]
    own = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "inputs", "kwargs")]
    shared = ("static_stats", "input_stats")
    unknown = sorted(k for k in options if k not in own and k not in shared)
    if unknown:
        raise InputError(f"the '{kind}' runoff model takes no option(s) {', '.join(unknown)}.", field=unknown[0],
                         hint=f"Its options are: {', '.join(o for o in own if o != 'n_catchments')}.")
    if n_catchments is None:
        if static is None:
            raise InputError("the number of catchments is needed when no static attributes are given.",
                             field="n_catchments")
        n_catchments = int(len(static))
    return cls(inputs, n_catchments=int(n_catchments), static=static, static_names=static_names, **options)


def save_runoff_model(path: str | Path, model: RunoffModel, *, extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``model`` (spec and weights) and ``extra`` (JSON-like: routing parameters, settings) atomically."""
    payload = {"version": MODEL_FILE_VERSION, "spec": model.spec(), "n_catchments": model.n_catchments,
               "state": {k: v.detach().cpu() for k, v in
                                                              model.state_dict().items()},
               "extra": dict(extra or {})}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_runoff_model(path: str | Path) -> tuple[RunoffModel, dict[str, Any]]:
    """The model saved at ``path`` on the catchments it was trained on, and its ``extra``."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError("the runoff model file does not exist.", path=path,
                         hint=f"Train one with thalweg train, or give another {opt('route.runoff_model')}.") from None
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise InputError(f"cannot read the runoff model file: {exc}.", path=path,
                         hint="Give a file written by thalweg train.") from None
    if not isinstance(payload, dict) or payload.get("version") != MODEL_FILE_VERSION:
        raise InputError("this is not a runoff model file of this Thalweg version.", path=path,
                         hint="Retrain the model with thalweg train.")
    spec = payload["spec"]
    n, names = int(payload["n_catchments"]), list(spec["static_names"])
    # built on placeholder attributes (standardised to 0): the saved buffer holds the standardised ones
    model = build_runoff_model(spec["kind"], spec["inputs"], n_catchments=n,
                               static=np.zeros((n, len(names))) if names else None, static_names=names,
                               static_stats={s: [0.0, 0.0, 1.0] for s in names}, input_stats=spec["input_stats"],
                               **spec["config"])
    model.static_stats = spec["static_stats"]
    model.load_state_dict(payload["state"])
    return model, dict(payload["extra"])
