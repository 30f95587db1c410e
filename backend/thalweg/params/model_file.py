"""The trained regression model as a small JSON file, and its application to any network with the same attributes.

The file holds no code and no pickle: the format name and version, the Thalweg version, the scheme, the learned
parameters and their bounds, the prior's spec (how to rebuild the prior on another network), the attributes with
their standardisation, the MLP's layer widths and every weight (float64 written with Python's shortest round-trip
repr, so a loaded model gives the same numbers bit for bit).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._files import atomic_write_text
from ..errors import InputError, format_ids, opt
from ..network import RiverNetwork
from .models import RegressionModel, Standardisation, prior_params

__all__ = ["save_model", "load_model", "apply_model", "read_parameter_table", "is_parameter_table", "MODEL_FORMAT",
           "MODEL_VERSION"]

MODEL_FORMAT = "thalweg-parameter-model"
MODEL_VERSION = 1


def _plain(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def model_record(model: RegressionModel) -> dict[str, Any]:
    """The JSON-ready record of a regression model (what :func:`save_model` writes)."""
    from .. import __version__

    if not isinstance(model, RegressionModel):
        raise InputError(f"only a regression model can be saved as a model file (this one is '{model.kind}'); the "
                         f"other kinds are their parameter table.", field="model",
                         hint="Write the parameter table instead, or fit with "
                              f"{opt('build_model.kind', 'regression')}.")
    if model.prior_spec is None:
        raise InputError("this regression model was built on a prior given as arrays; a model file must say how to "
                         "rebuild the prior on another network.", field="prior",
                         hint=f"Build it with build_model(..., {opt('build_model.params', '{}')}) instead of prior=.")
    layers = [m for m in model.mlp if isinstance(m, torch.nn.Linear)]
    return {
        "format": MODEL_FORMAT, "version": MODEL_VERSION, "thalweg_version": __version__,
        "kind": model.kind, "scheme": model.scheme.name, "learned": list(model.learned),
        "bounds": {n: b.to_dict() for n, b in model.bounds.items()},
        "prior": {k: _plain(v) for k, v in model.prior_spec.items()},
        "attributes": [{"name": s.name, "log": s.log, "mean": s.mean, "std": s.std} for s in model.standardisation],
        "hidden": list(model.hidden), "activation": "tanh",
        "layers": [{"weight": layer.weight.detach().cpu().double().tolist(),
                    "bias": layer.bias.detach().cpu().double().tolist()} for layer in layers],
    }


def save_model(model: RegressionModel, path: str | Path) -> Path:
    """Write a trained regression model to ``path`` (JSON, atomically)."""
    return atomic_write_text(path, json.dumps(model_record(model), indent=1, allow_nan=False))


def _bad(path: Path, what: str) -> InputError:
    return InputError(f"not a Thalweg parameter model file: {what}.", path=path,
                      hint="Give a <name>_model.json (calibrate --model regression) or a <name>_params.csv (a "
                           "reach_id column and one column per parameter, as calibrate and train write).")


TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


def is_parameter_table(path: str | Path) -> bool:
    """True when ``path`` is a per-reach parameter table (CSV or parquet) rather than a JSON model file: by its
    suffix, else by a first line that is not JSON (``reach_id,k,x``)."""
    path = Path(path)
    if path.suffix.lower() in TABLE_SUFFIXES:
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(256).lstrip()
    except OSError:
        return False
    return bool(head) and not head.startswith(b"{") and b"," in head.split(b"\n", 1)[0]


def read_parameter_table(path: str | Path, network: RiverNetwork, scheme: str) -> dict[str, np.ndarray]:
    """Every parameter of ``scheme`` per reach of ``network`` (name -> float64 [N], SI) from a table with a
    ``reach_id`` column and one column per parameter: the ``<name>_params.csv`` that calibrate (any model) and
    train write. Other columns (zone, zone_gauge) are ignored; every reach must have a row, with values inside the
    parameter's bounds. InputError naming the file, the column or the reaches otherwise."""
    import pandas as pd

    from ..irf import get_scheme
    from .checks import check_values

    path = Path(path)
    sch = get_scheme(scheme)
    try:
        frame = pd.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq") else pd.read_csv(path)
    except (OSError, ValueError, ImportError) as exc:
        raise InputError(f"cannot read the parameter table: {exc}.", path=path,
                         hint="Give the <name>_params.csv that calibrate or train wrote.") from None
    if "reach_id" not in frame.columns:
        raise InputError(f"the parameter table has no reach_id column (columns: {', '.join(map(str, frame.columns))}).",
                         path=path, hint="Give a table with a reach_id column and one column per parameter.")
    missing = [p.name for p in sch.parameters if p.name not in frame.columns]
    if missing:
        raise InputError(f"the parameter table has no column {', '.join(missing)}, which the '{sch.name}' scheme "
                         f"needs (columns: {', '.join(map(str, frame.columns))}).", path=path, field=missing[0],
                         hint=f"Route with the scheme the table was fitted for ({opt('route.scheme')}).")
    ids = pd.to_numeric(frame["reach_id"], errors="coerce")
    if ids.isna().any() or ids.duplicated().any():
        bad = frame["reach_id"][ids.isna() | ids.duplicated(keep=False)].astype(str).unique()[:3]
        raise InputError(f"the parameter table's reach_id column has missing, non-numeric or repeated ids "
                         f"({', '.join(bad)}).", path=path, field="reach_id", hint="Give one row per reach.")
    ids = ids.to_numpy(np.int64)
    extra = np.setdiff1d(ids, network.ids)
    if extra.size:
        raise InputError(f"the parameter table lists {extra.size:,} reaches the network does not have: "
                         f"{format_ids(extra)}; it was written for another network.", path=path, field="reach_id",
                         ids=extra.tolist(), hint="Give the table of this network's calibration.")
    absent = np.setdiff1d(network.ids, ids)
    if absent.size:
        raise InputError(f"the parameter table has no row for {absent.size:,} of the network's reaches: "
                         f"{format_ids(absent)}.", path=path, field="reach_id", ids=absent.tolist(),
                         hint="Give a table with a row per reach of this network.")
    order = pd.Series(np.arange(ids.size), index=ids).loc[network.ids].to_numpy()
    out: dict[str, np.ndarray] = {}
    for p in sch.parameters:
        values = pd.to_numeric(frame[p.name], errors="coerce").to_numpy(np.float64)[order]
        try:
            check_values(network, p, values)
        except InputError as exc:
            raise InputError(exc.message, path=path, field=p.name, ids=exc.ids, hint=exc.hint) from None
        out[p.name] = values
    return out


def load_model(path: str | Path, network: RiverNetwork, *, prior: Any = None) -> RegressionModel:
    """The regression model saved at ``path``, applied to ``network`` (which needs the same attributes).

    ``prior`` (name -> [N]) replaces rebuilding the prior from the file's spec.
    """
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the parameter model: {exc}.", path=path) from None
    if not isinstance(record, dict) or record.get("format") != MODEL_FORMAT:
        raise _bad(path, f"its 'format' is {record.get('format') if isinstance(record, dict) else None!r}")
    if record.get("version") != MODEL_VERSION:
        raise InputError(f"the parameter model has version {record.get('version')}; this Thalweg reads version "
                         f"{MODEL_VERSION}.", path=path, hint="Re-train it with this version of Thalweg.")
    try:
        standardisation = [Standardisation(a["name"], bool(a["log"]), float(a["mean"]), float(a["std"]))
                           for a in record["attributes"]]
        bounds = {n: (float(b["lower"]), float(b["upper"])) for n, b in record["bounds"].items()}
        layers = record["layers"]
        learned, hidden, scheme = list(record["learned"]), [int(h) for h in record["hidden"]], record["scheme"]
        spec = dict(record["prior"])
    except (KeyError, TypeError, ValueError) as exc:
        raise _bad(path, f"entry {exc} is missing or malformed") from None
    if prior is None:
        prior = prior_params(network, scheme, spec)
    model = RegressionModel.from_network(network, scheme, prior, standardisation=standardisation, hidden=hidden,
                                         learn=learned, bounds=bounds, prior_spec=spec)
    linear = [m for m in model.mlp if isinstance(m, torch.nn.Linear)]
    if len(linear) != len(layers):
        raise _bad(path, f"it has {len(layers)} layers for hidden widths {hidden}")
    with torch.no_grad():
        for lin, saved in zip(linear, layers):
            weight = torch.as_tensor(saved["weight"], dtype=torch.float64)
            bias = torch.as_tensor(saved["bias"], dtype=torch.float64)
            if weight.shape != lin.weight.shape or bias.shape != lin.bias.shape:
                raise _bad(path, f"a layer has shape {tuple(weight.shape)}, expected {tuple(lin.weight.shape)}")
            if not (torch.isfinite(weight).all() and torch.isfinite(bias).all()):
                raise _bad(path, "it holds non-finite weights")
            lin.weight.copy_(weight)
            lin.bias.copy_(bias)
    return model


def apply_model(path: str | Path, network: RiverNetwork) -> dict[str, np.ndarray]:
    """Every parameter per reach (name -> float64 [N], SI) of the model at ``path`` on ``network``: what
    ``thalweg route --parameters MODEL`` routes with."""
    return load_model(path, network).table()
