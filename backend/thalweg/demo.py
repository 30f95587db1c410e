"""``thalweg demo``: the main job on the bundled sample basin (the Cance, France, 3 nested gauges).

network -> parameters (GEOGloWS rule) -> routing -> NetCDF (both conventions), GeoPackage, hydrograph CSV,
a PNG map of discharge and a PNG of the hydrographs against observations at the gauges, with metrics.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from .config import RouteSettings
from .errors import InputError

__all__ = ["sample_dir", "sample_settings", "run_demo"]


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


def run_demo(out_dir: Path, *, device: str = "auto", quiet: bool = False) -> dict:
    """Run the demo into ``out_dir``; returns the metrics per gauge (also written to metrics.json)."""
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
    atomic_write_text(out_dir / "metrics.json", json.dumps(scores, indent=2))
    for gid, s in scores.items():
        say(f"  gauge {gid}: NSE {s['nse']:.3f}  KGE {s['kge']:.3f}  PBIAS {_signed(s['pbias'], 1)} % "
            "(+: simulated too low)")
    for kind, path in {**result.outputs, "map": maps, "hydrograph_plot": hyd}.items():
        say(f"  {kind:<16} {path}")
    say(f"done in {time.perf_counter() - start:.1f} s -> {out_dir}")
    return scores
