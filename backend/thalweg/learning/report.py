"""Reports of a fit: a JSON-ready record, a printed table, a PNG, and the parameter table joinable to the network."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from .._files import atomic_path
from ..network import RiverNetwork
from .fit import FitResult

__all__ = ["fit_record", "format_metrics", "plot_metrics", "write_parameter_table", "METRIC_NAMES"]

METRIC_NAMES = ("nse", "kge", "pbias")


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def fit_record(result: FitResult) -> dict[str, Any]:
    """Everything a fit reports, JSON-ready (non-finite numbers as null): settings, stop reason, losses,
    metrics before and after per gauge and period, history."""
    return _finite({"settings": result.settings, "stopped": result.stopped, "iterations": result.iterations,
                    "best_iteration": result.best_iteration, "loss": result.loss,
                    "validation_loss": result.validation_loss,
                    "metrics": {"before": result.metrics_before, "after": result.metrics_after},
                    "history": result.history})


def _rows(result: FitResult):
    for label, after in result.metrics_after.items():
        before = result.metrics_before[label]
        for period in ("calibration", "validation"):
            if after[period] is None:
                continue
            yield label, after["role"], period, before[period], after[period]


def format_metrics(result: FitResult) -> str:
    """A plain-text table: one row per gauge and period, NSE / KGE / bias (%) before -> after."""
    head = f"{'gauge':<14} {'role':<11} {'period':<11} {'n':>6}  {'NSE before':>10} {'after':>8}  " \
           f"{'KGE before':>10} {'after':>8}  {'PBIAS % before':>14} {'after':>8}"
    lines = [head, "-" * len(head)]
    for label, role, period, b, a in _rows(result):
        lines.append(f"{label:<14} {role:<11} {period:<11} {a['n']:>6}  {b['nse']:>10.4f} {a['nse']:>8.4f}  "
                     f"{b['kge']:>10.4f} {a['kge']:>8.4f}  {b['pbias']:>14.1f} {a['pbias']:>8.1f}")
    lines += _medians(result)
    lines.append(f"{result.settings['model']['kind']} model, loss {result.settings['loss']}: {result.loss:.5g} "
                 f"(iteration {result.best_iteration} of {result.iterations}, stopped: {result.stopped})")
    return "\n".join(lines)


def _medians(result: FitResult) -> list[str]:
    """Median NSE / KGE after the fit over the trained and the held-out gauges, per period (held-out gauges:
    skill at reaches the fit never saw, i.e. spatial validation); nothing with a single gauge per role."""
    lines = []
    for role, what in (("calibration", "trained gauges"), ("held-out", "held-out gauges (spatial validation)")):
        for period in ("calibration", "validation"):
            scores = [m[period] for m in result.metrics_after.values() if m["role"] == role and m[period]]
            nse = [s["nse"] for s in scores if math.isfinite(s["nse"])]
            kge = [s["kge"] for s in scores if math.isfinite(s["kge"])]
            if len(nse) > 1:
                lines.append(f"median over {len(nse)} {what}, {period} period: NSE {np.median(nse):.4f}, "
                             f"KGE {np.median(kge):.4f}")
    return lines


def plot_metrics(result: FitResult, path: str | Path, *, title: str = "") -> Path:
    """PNG: NSE, KGE and bias per gauge and period, before (hatched) and after (solid); and the loss history."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = list(_rows(result))
    fig, axes = plt.subplots(1, 4, figsize=(15, 0.45 * max(len(rows), 4) + 1.8))
    names = [f"{label} {period[:3]}" + (" (held out)" if role == "held-out" else "") for label, role, period, _, _
             in rows]
    y = np.arange(len(rows))
    colours = ["tab:blue" if period == "calibration" else "tab:orange" for _, _, period, _, _ in rows]
    for ax, metric, unit in zip(axes[:3], METRIC_NAMES, ("", "", " %")):
        before = [b[metric] for *_, b, _ in rows]
        after = [a[metric] for *_, a in rows]
        ax.barh(y + 0.2, before, height=0.38, color="white", edgecolor=colours, hatch="///", label="before")
        ax.barh(y - 0.2, after, height=0.38, color=colours, label="after")
        ax.set_yticks(y, names if ax is axes[0] else [""] * len(rows), fontsize=8)
        ax.invert_yaxis()
        ax.axvline(1.0 if metric != "pbias" else 0.0, color="k", lw=0.8)
        ax.set_title(f"{metric.upper()}{unit}", fontsize=10)
        low = min([v for v in before + after if math.isfinite(v)] + [0.0])
        left = max(low, -1.0) - 0.05 if metric != "pbias" else None
        if left is not None:
            ax.set_xlim(left, 1.05)
        for yy, b, a in zip(y, before, after):  # values, as bars below -1 are cut
            for offset, v in ((0.2, b), (-0.2, a)):
                if math.isfinite(v):
                    at = v if left is None else max(v, left)
                    ax.text(at, yy + offset, f" {v:.2f} " if metric != "pbias" else f" {v:+.0f} ", fontsize=7,
                            va="center", ha="left" if v >= 0 or (left is not None and v <= left) else "right")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower left", ncol=2, frameon=False)
    its = [h["iteration"] for h in result.history]
    if its:
        axes[3].semilogy(its, [max(h["loss"], 1e-12) for h in result.history], label="training")
        val = [h["validation_loss"] for h in result.history]
        if any(v is not None for v in val):
            axes[3].semilogy(its, [max(v, 1e-12) if v is not None else np.nan for v in val], label="validation")
        axes[3].axvline(result.best_iteration, color="k", lw=0.8, ls=":")
        axes[3].legend(fontsize=8)
    axes[3].set_title(f"loss ({result.settings['loss']})", fontsize=10)
    axes[3].set_xlabel("iteration")
    fig.suptitle(title or f"{result.settings['model']['kind']} model: blue calibration, orange validation period")
    fig.tight_layout(rect=(0, 0.04, 1, 1))  # room for the legend below
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return Path(path)


def write_parameter_table(path: str | Path, network: RiverNetwork, params: dict[str, np.ndarray]) -> Path:
    """CSV ``reach_id`` + every parameter (SI, 10 significant digits), one row per reach, written atomically."""
    import pandas as pd

    frame = pd.DataFrame({"reach_id": network.ids})
    for name, values in params.items():
        frame[name] = np.asarray(values, dtype=np.float64)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.10g")
    return Path(path)
