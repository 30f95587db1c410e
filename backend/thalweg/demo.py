"""``thalweg demo``: the main job on the bundled sample basin (the Cance, France, 3 nested gauges).

network -> parameters (GEOGloWS rule) -> routing -> NetCDF (both conventions), GeoPackage, hydrograph CSV,
a PNG map of discharge and a PNG of the hydrographs against observations at the gauges, with metrics.

Then (unless ``train=False``, ``thalweg demo --no-train``) the learned model: the sample's GR4 runoff model, its
parameters regressed on slope and drainage density, trained end to end with the routing on the three gauges over
the calibration period (:data:`CALIBRATION`), scored on the validation period (:data:`VALIDATION`), with a short
budget (:data:`TRAIN_ITERATIONS`) through :func:`thalweg.learning.train_run.run_train`, the code of
``thalweg train``. Its files (``cance_gr4_*``, as ``thalweg train --name cance_gr4``), a PNG of its hydrographs
beside the prior's and the observations, and NSE/KGE/PBIAS per gauge and period for the prior and the learned
model in ``metrics.json``.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from .config import RouteSettings, TrainSettings
from .errors import InputError

__all__ = ["sample_dir", "sample_settings", "sample_train_settings", "run_demo", "CALIBRATION", "VALIDATION",
           "TRAIN_ITERATIONS"]

CALIBRATION, VALIDATION = "2014-09-15/2014-11-14", "2014-11-15/2015-01-15"  # smash's split of the Cance
TRAIN_ITERATIONS = 40  # a demo's budget: about 0.5 s each on one laptop core; `thalweg train` takes 200 for the table


def sample_dir() -> Path:
    """The sample basin's folder: $THALWEG_RESOURCES/sample, or resources/sample of this source tree."""
    candidates = []
    if os.environ.get("THALWEG_RESOURCES"):
        candidates.append(Path(os.environ["THALWEG_RESOURCES"]) / "sample")
    candidates.append(Path(__file__).resolve().parents[2] / "resources" / "sample")
    for folder in candidates:
        if (folder / "cance_rivers.gpkg").exists():
            return folder
    raise InputError(f"the sample basin is not found (looked in {', '.join(str(c) for c in candidates)}).",
                     hint="Run from a Thalweg source checkout, or set THALWEG_RESOURCES to its resources/ folder.")


def sample_settings(out_dir: Path, device: str = "auto") -> RouteSettings:
    folder = sample_dir()
    return RouteSettings(
        network=str(folder / "cance_rivers.gpkg"), layer="rivers", runoff=str(folder / "cance_runoff.nc"),
        out_dir=str(out_dir), name="cance_discharge", scheme="muskingum_nonneg", convention="both",
        device=device, gauges=str(folder / "cance_gauges.csv"), observed=str(folder / "cance_qobs.csv"))


def sample_train_settings(out_dir: Path, device: str = "auto", iterations: int = TRAIN_ITERATIONS) -> TrainSettings:
    """The demo's training run: what ``thalweg train`` runs with the command of docs/training.md."""
    folder = sample_dir()
    forcings = str(folder / "cance_forcings.nc")
    return TrainSettings(
        network=str(folder / "cance_rivers.gpkg"), forcings={"precipitation": forcings, "pet": forcings},
        gauges=str(folder / "cance_gauges.csv"), observed=str(folder / "cance_qobs.csv"),
        static=["slope", "drainage_density"], static_file=forcings, out_dir=str(out_dir), name="cance_gr4",
        runoff_model="gr4", parameter_model="regression", mode="end-to-end", calibration=CALIBRATION,
        validation=VALIDATION, iterations=iterations, threads=1, device=device)


def run_demo(out_dir: Path, *, device: str = "auto", quiet: bool = False, train: bool = True,
             iterations: int = TRAIN_ITERATIONS) -> dict:
    """Run the demo into ``out_dir``; returns the metrics per gauge (also written to metrics.json).

    Each gauge's entry holds the prior routing's metrics over the whole run (``nse``, ``kge``, ...); with
    ``train``, also ``prior`` and ``learned``: period ('calibration', 'validation') -> nse, kge, pbias, n.
    """
    from . import metrics as m
    from ._files import atomic_write_text
    from .plots import _signed, plot_discharge_map, plot_hydrographs
    from .workflow import run_route

    say = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr))
    settings = sample_settings(out_dir, device)
    start = time.perf_counter()
    result = run_route(settings)
    d, net, gauges = result.discharge, result.network, result.gauges
    say(f"Cance sample basin: {net.n_reaches} reaches, {d.values.shape[1]:,} hourly steps, routed with "
        f"{settings.scheme} in {result.timings['route']:.2f} s")
    observed = gauges.observed_on(d.time)
    scores = {}
    for k, gid in enumerate(gauges.ids):
        sim = d.series(gauges.reach_ids[k])
        scores[str(gid)] = {name: float(np.asarray(value)) for name, value in m.all_metrics(sim, observed[k]).items()}
    outlet = int(np.argmax([net.area[p] for p in gauges.positions]))
    peak_t = int(np.argmax(d.series(gauges.reach_ids[outlet])))
    span = max(1, 12 * 3600 // int(d.dt))
    times = [max(0, peak_t - 2 * span), max(0, peak_t - span), peak_t]
    maps = plot_discharge_map(out_dir / "cance_discharge_map.png", net, d, times=times, gauges=gauges,
                              title="Cance: routed discharge (maximum, then the rise of the largest flood)")
    hyd = plot_hydrographs(out_dir / "cance_hydrographs.png", d, gauges, metrics=scores,
                           title="Cance: simulated vs observed discharge at the gauges")
    for gid, s in scores.items():
        say(f"  gauge {gid}: NSE {s['nse']:.3f}  KGE {s['kge']:.3f}  PBIAS {_signed(s['pbias'], 1)} % "
            "(+: simulated too low)")
    outputs = {**result.outputs, "map": maps, "hydrograph_plot": hyd}
    if train:
        outputs.update(_learned(out_dir, device, iterations, d, net, gauges, scores, say))
    atomic_write_text(out_dir / "metrics.json", json.dumps(scores, indent=2))
    outputs["metrics"] = out_dir / "metrics.json"
    for kind, path in outputs.items():
        say(f"  {kind:<16} {path}")
    say(f"done in {time.perf_counter() - start:.1f} s -> {out_dir}")
    return scores


def _period_scores(q: np.ndarray, obs: np.ndarray, time_end: np.ndarray) -> dict[str, dict[str, float]]:
    """nse, kge, pbias, n of one series over the calibration and the validation period."""
    from .learning.splits import period_mask, period_of
    from .metrics import kge, nse, pbias

    out = {}
    for label, text in (("calibration", CALIBRATION), ("validation", VALIDATION)):
        o = period_mask(obs[None], period_of(time_end, *text.split("/"), label=label))[0]
        out[label] = {"nse": float(nse(q, o)), "kge": float(kge(q, o)), "pbias": float(pbias(q, o)),
                      "n": int(np.isfinite(o).sum())}
    return out


def _learned(out_dir: Path, device: str, iterations: int, prior, net, gauges, scores: dict, say) -> dict[str, Path]:
    """Train the sample's GR4 model, route its runoff, score and plot it beside the prior (updates ``scores``)."""
    import warnings

    import pandas as pd

    from .errors import ThalwegWarning
    from .learning.train_run import run_train
    from .routing import route
    from .runoff import read_runoff

    settings = sample_train_settings(out_dir, device, iterations)
    say(f"training the GR4 runoff model (parameters regressed on slope and drainage density) end to end with the "
        f"routing, {iterations} iterations, calibration {CALIBRATION}, validation {VALIDATION} ...")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        run = run_train(settings)
        # what a user does next: route the written runoff with the written routing parameters
        runoff = read_runoff(run.outputs["runoff"], net)
        table = pd.read_csv(run.outputs["params"]).set_index("reach_id").loc[net.ids]
        params = {k: table[k].to_numpy(dtype=np.float64) for k in table.columns}
        learned = route(net, runoff, params, settings.scheme, device=device, at=gauges.reach_ids.tolist())
    res = run.result
    say(f"trained in {run.timings['train']:.1f} s (best iteration {res.best_iteration} of {res.iterations})")
    obs_prior, obs_learned = gauges.observed_on(prior.time), gauges.observed_on(learned.time)
    for k, gid in enumerate(gauges.ids):
        reach = gauges.reach_ids[k]
        scores[str(gid)]["prior"] = _period_scores(prior.series(reach), obs_prior[k], prior.time)
        scores[str(gid)]["learned"] = _period_scores(learned.series(reach), obs_learned[k], learned.time)
    say("  prior: the sample runoff (0.649 x P) routed with the GEOGloWS prior; learned: GR4 + routing trained")
    say(f"  {'gauge':<10} {'period':<12} {'prior NSE':>9} {'KGE':>6}   {'learned NSE':>11} {'KGE':>6}")
    for gid, s in scores.items():
        for period in ("calibration", "validation"):
            p, lrn = s["prior"][period], s["learned"][period]
            say(f"  {gid:<10} {period:<12} {p['nse']:>9.3f} {p['kge']:>6.3f}   {lrn['nse']:>11.3f} {lrn['kge']:>6.3f}")
    plot = _plot_learned(out_dir / "cance_learned_hydrographs.png", prior, learned, gauges, scores, iterations)
    return {**{f"trained_{k}": v for k, v in run.outputs.items()}, "learned_plot": plot}


def _plot_learned(path: Path, prior, learned, gauges, scores: dict, iterations: int) -> Path:
    """One panel per gauge: observed, the prior (sample runoff, GEOGloWS routing) and the learned GR4 model, the
    calibration and validation periods marked, both periods' NSE/KGE in the panel's title."""
    from ._files import atomic_path
    from .plots import _figure

    observed = gauges.observed_on(learned.time)
    n = len(gauges.ids)
    plt, fig = _figure(figsize=(11, 2.9 * n))
    split = np.datetime64(VALIDATION.split("/")[0], "ms")
    for k, (gid, name, reach) in enumerate(zip(gauges.ids, gauges.names, gauges.reach_ids)):
        ax = fig.add_subplot(n, 1, k + 1)
        ax.axvspan(learned.time[0], split, color="0.93", lw=0)
        ax.axvline(split, color="0.4", lw=0.8, ls="--")
        ax.plot(learned.time, observed[k], color="k", lw=1.0, label="observed")
        ax.plot(prior.time, prior.series(reach), color="tab:orange", lw=0.9, alpha=0.85,
                label="prior: sample runoff (0.649 x P), GEOGloWS routing")
        ax.plot(learned.time, learned.series(reach), color="tab:blue", lw=1.1,
                label=f"learned: GR4 (regression on slope, drainage density) + routing, end to end, "
                      f"{iterations} iterations")
        s = scores[str(gid)]

        def cell(block: dict, period: str) -> str:
            return f"NSE {block[period]['nse']:.2f} KGE {block[period]['kge']:.2f}"

        label = f"{gid}" + (f" {name}" if name != str(gid) else "") + f" (reach {reach})\nlearned: calibration " \
            f"{cell(s['learned'], 'calibration')}, validation {cell(s['learned'], 'validation')}     prior: " \
            f"calibration {cell(s['prior'], 'calibration')}, validation {cell(s['prior'], 'validation')}"
        ax.set_title(label, fontsize=8.5, loc="left")
        ax.set_ylabel("discharge [m$^3$/s]")
        ax.set_ylim(bottom=0)
        ax.set_xlim(learned.time[0], learned.time[-1])
        ax.grid(True, lw=0.3, alpha=0.5)
        top = ax.get_ylim()[1]
        ax.text(learned.time[0], top * 0.97, "  calibration", fontsize=8, va="top", color="0.3")
        ax.text(split, top * 0.97, "  validation", fontsize=8, va="top", color="0.3")
        if k == n - 1:
            ax.set_xlabel("time (UTC, end of each hourly step)")
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle("Cance: the learned runoff model against the prior and the observations (shaded: calibration)")
    fig.tight_layout(rect=(0, 0.03, 1, 1))  # room for the legend below
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)
