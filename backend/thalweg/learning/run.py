"""One fit of a parameter model at gauges, with its outputs: what ``thalweg calibrate --model KIND`` and a server
calibrate job run (they only turn their flags or JSON body into these keywords).

Writes, each atomically and only once the fit has finished (a cancel leaves nothing but the checkpoint):
``<name>_params.csv`` (reach_id + every parameter), ``<name>_fit.json`` (settings, metrics before and after per
gauge and period, history, and the leave-one-gauge-out scores when asked), ``<name>_fit.png``, and for
``regression`` ``<name>_model.json`` (the model file ``thalweg route --parameters`` applies).
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._files import atomic_write_text
from ..errors import InputError, opt
from ..network import RiverNetwork
from .fit import FitResult, fit, leave_one_gauge_out
from .splits import period_of

__all__ = ["FitRun", "run_fit", "write_fit_outputs", "leave_one_out_table"]


@dataclasses.dataclass
class FitRun:
    """What :func:`run_fit` did: the fit, the leave-one-gauge-out scores (or None), the printed table, the files."""

    result: FitResult
    leave_one_out: dict[str, dict[str, Any]] | None
    table: str
    outputs: dict[str, Path]


def _split(time_end: np.ndarray, value: Any, label: str):
    if value is None:
        return None
    if isinstance(value, str):
        if "/" not in value:
            raise InputError(f"{label} '{value}' is not START/END.", field=label,
                             hint=f"Write it as START/END, e.g. {opt('run_fit.' + label, '2014-09-15/2014-11-14')}.")
        value = value.split("/", 1)
    if len(value) == 2 and all(isinstance(v, str) for v in value):
        return period_of(time_end, value[0], value[1], label=label, what=label)
    return value  # a Period or step indices: fit checks them


def run_fit(network: RiverNetwork, runoff: Any, *, dt: float, time_end: np.ndarray, gauge_reaches: Sequence[int],
            observed: Any, gauge_names: Sequence[str] | None = None, model: str = "regression",
            scheme: str = "muskingum", params: Mapping[str, Any] | None = None, learn: Sequence[str] | None = None,
            bounds: Mapping[str, Sequence[float]] | None = None, attributes: Sequence[str] = ("length", "area"),
            hidden: Sequence[int] = (16, 16), seed: int = 0, prior_weight: float = 1e-3,
            smooth_weight: float = 1e-2, calibration: Any = None, validation: Any = None,
            validate_gauges: Sequence[str] = (), leave_one_out: bool = False, out_dir: str | Path | None = None,
            name: str = "calibrated", checkpoint: str | Path | None = None,
            progress: Callable[[float, str], None] | None = None, should_stop: Callable[[], bool] | None = None,
            zoning: str = "gauges", report_name: str = "fit", **fit_options: Any) -> FitRun:
    """Build the parameter model, fit it, score it, and write its outputs to ``out_dir`` (None: write nothing).

    Parameters
    ----------
    network, runoff, dt : the network (N reaches), runoff [N, T] m3/s, step s.
    time_end : datetime64 [T], the end of each step (to read dates of ``calibration`` / ``validation``).
    gauge_reaches, observed, gauge_names : reach ids [G], observations [G, T] m3/s, gauge ids [G].
    model : 'prior', 'zones', 'per-reach' or 'regression'; ``scheme``, ``params`` (the prior's spec), ``learn``,
        ``bounds``, ``attributes``, ``hidden``, ``seed``, ``prior_weight``, ``smooth_weight``, ``zoning`` as
        :func:`thalweg.params.models.build_model`.
    calibration, validation : 'START/END' dates (whole days), (start, end) step indices or Periods.
    validate_gauges : gauge ids (as in ``gauge_names``) held out of the training.
    leave_one_out : also fit once per gauge with it held out, and report those held-out scores.
    checkpoint : as :func:`thalweg.learning.fit.fit` (the leave-one-out fits are not checkpointed).
    out_dir, name, report_name : where :func:`write_fit_outputs` writes (``<name>_<report_name>.json``, ...).
    **fit_options : the rest of :func:`thalweg.learning.fit.fit`'s keywords (loss, optimiser, iterations, ...).
    """
    from ..params.checks import check_celerity
    from ..params.models import build_model
    from .report import format_metrics

    report = progress or (lambda fraction, message: None)
    gauge_reaches = [int(r) for r in gauge_reaches]
    names = [str(g) for g in (gauge_names if gauge_names is not None else gauge_reaches)]
    unknown = [g for g in validate_gauges if str(g) not in names]
    if unknown:
        raise InputError(f"validation gauge(s) {', '.join(map(str, unknown))} are not among the gauges "
                         f"({', '.join(names)}).", field="validate_gauges", ids=unknown,
                         hint=f"Name gauges of the gauge table, e.g. {opt('run_fit.validate_gauges', names[0])}.")
    held = [gauge_reaches[names.index(str(g))] for g in validate_gauges]
    cal, val = _split(time_end, calibration, "calibration"), _split(time_end, validation, "validation")

    def make(train: Sequence[int]):
        return build_model(model, network, scheme, params=params, learn=learn, bounds=bounds, gauges=list(train),
                           attributes=attributes, hidden=hidden, seed=seed, prior_weight=prior_weight,
                           smooth_weight=smooth_weight, zoning=zoning)

    share = 0.7 if leave_one_out else 1.0
    options = dict(dt=dt, observed=observed, calibration=cal, validation=val, gauge_names=names, **fit_options)
    result = fit(make([g for g in gauge_reaches if g not in held]), network, runoff, gauges=gauge_reaches,
                 validation_gauges=held, checkpoint=checkpoint, should_stop=should_stop,
                 progress=lambda f, m: report(share * f, m), **options)
    check_celerity(network, result.model.scheme, result.params, names=result.model.learned,
                   prior={n: result.model.prior_of(n) for n in result.model.learned})
    logo = None
    if leave_one_out:
        logo = leave_one_gauge_out(make, network, runoff, gauges=gauge_reaches, should_stop=should_stop,
                                   progress=lambda f, m: report(share + (1 - share) * f, f"leave-one-gauge-out: {m}"),
                                   **options)
    table = format_metrics(result) + leave_one_out_table(logo)
    run = FitRun(result=result, leave_one_out=logo, table=table, outputs={})
    if out_dir is not None:
        run.outputs = write_fit_outputs(run, network, out_dir, name, report_name=report_name)
    report(1.0, "done")
    return run


def leave_one_out_table(logo: Mapping[str, Mapping[str, Any]] | None) -> str:
    """The printed rows of the leave-one-gauge-out scores ('' without them)."""
    if not logo:
        return ""
    lines = ["", "leave-one-gauge-out (each gauge held out in turn, scored as if ungauged):",
             f"{'gauge':<14} {'period':<11} {'NSE':>8} {'KGE':>8} {'PBIAS %':>8}"]
    for label, m in logo.items():
        for period in ("calibration", "validation"):
            if m[period] is not None:
                s = m[period]
                lines.append(f"{label:<14} {period:<11} {s['nse']:>8.4f} {s['kge']:>8.4f} {s['pbias']:>8.1f}")
    return "\n".join(lines)


def write_fit_outputs(run: FitRun, network: RiverNetwork, out_dir: str | Path, name: str, *,
                      report_name: str = "fit", extra: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Write a fit's files into ``out_dir``, each atomically: ``<name>_params.csv`` (reach_id + every parameter),
    ``<name>_<report_name>.json`` (:func:`thalweg.learning.report.fit_record`, the leave-one-gauge-out scores, and
    ``extra``), ``<name>_<report_name>.png``, and for a regression model ``<name>_model.json``.

    Returns output kind ('params', 'report', 'plot', 'model') -> path.
    """
    from ..params.model_file import save_model
    from .report import _finite, fit_record, plot_metrics, write_parameter_table

    out = Path(out_dir)
    result = run.result
    kind = result.model.kind
    outputs: dict[str, Path] = {}
    outputs["params"] = write_parameter_table(out / f"{name}_params.csv", network, result.params)
    record = dict(fit_record(result), leave_one_gauge_out=_finite(run.leave_one_out), **dict(extra or {}))
    outputs["report"] = atomic_write_text(out / f"{name}_{report_name}.json",
                                          json.dumps(record, indent=1, default=_json_default, allow_nan=False))
    outputs["plot"] = plot_metrics(result, out / f"{name}_{report_name}.png", title=f"{kind} model, {name}")
    if kind == "regression":
        outputs["model"] = save_model(result.model, out / f"{name}_model.json")
    return outputs


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")
