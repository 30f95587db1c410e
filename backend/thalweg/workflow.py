"""The routing run shared by the CLI and the server: read -> parameters -> route -> write.

One implementation: ``thalweg route`` and a server "route" job both call :func:`run_route`.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from ._files import atomic_write_text
from .config import CalibrateSettings, RouteSettings
from .errors import Cancelled, InputError
from .network import RiverNetwork
from .params import resolve_params

__all__ = ["RouteSettings", "CalibrateSettings", "RouteResult", "CalibrateRunResult", "run_route",
           "run_calibrate", "resolve_params"]

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]


@dataclasses.dataclass
class RouteResult:
    outputs: dict[str, Path]
    discharge: Any  # thalweg.results.Discharge
    network: RiverNetwork
    timings: dict[str, float]
    params_used: dict[str, str]
    gauges: Any = None  # thalweg.learning.Gauges or None


def _check(should_stop: Callable[[], bool] | None, stage: str) -> None:
    if should_stop is not None and should_stop():
        raise Cancelled(stage)


def _read_inputs(settings: RouteSettings, network: RiverNetwork | None, runoff: Any, report: Progress,
                 should_stop: Callable[[], bool] | None, timings: dict[str, float]) -> tuple[RiverNetwork, Any]:
    """The network and runoff named by ``settings`` (objects given replace reading), timed into ``timings``."""
    out_dir = Path(settings.out_dir)
    t0 = time.perf_counter()
    if network is None:
        from .hydrography import read_network

        report(0.0, f"reading network {Path(settings.network).name}")
        network = read_network(settings.network, schema=settings.schema, fields=settings.fields,
                               layer=settings.layer, check_area=settings.check_area)
    timings["read_network"] = time.perf_counter() - t0
    _check(should_stop, "reading runoff")

    t0 = time.perf_counter()
    if runoff is None:
        from .runoff import read_runoff

        report(0.05, f"reading runoff {Path(settings.runoff).name}")
        # gridded runoff caches its area-weight table beside the outputs
        runoff = read_runoff(settings.runoff, network, nan=settings.nan, missing=settings.missing,
                             catchments=settings.catchments, weights_cache=out_dir if settings.catchments else None)
    timings["read_runoff"] = time.perf_counter() - t0
    return network, runoff


def run_route(settings: RouteSettings, *, network: RiverNetwork | None = None, runoff: Any = None,
              progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
              params: Mapping[str, Any] | None = None, params_used: Mapping[str, str] | None = None) -> RouteResult:
    """Read the network and runoff, route, and write the outputs named by ``settings``.

    ``network``/``runoff`` objects replace reading the paths. ``params`` (name -> per-reach array [N], SI, every
    parameter of the scheme, e.g. calibrated values) replaces resolving ``settings.params``; ``params_used``
    then says where each came from. ``progress(fraction, message)`` is called as the
    run advances; ``should_stop()`` is polled at safe points and raises :class:`Cancelled` (nothing is written
    before the routing has finished, and every file is written atomically).
    """
    import torch

    from .routing import route

    report = progress or (lambda fraction, message: None)
    timings: dict[str, float] = {}
    out_dir = Path(settings.out_dir)

    network, runoff = _read_inputs(settings, network, runoff, report, should_stop, timings)
    _check(should_stop, "routing")

    if params is None:
        params, used = resolve_params(network, settings.scheme, settings.params)
    else:
        used = {name: "given per reach" for name in params} | dict(params_used or {})
    for name, origin in used.items():
        log.info("parameter %s: %s", name, origin)

    t0 = time.perf_counter()

    def level_progress(done: int, total: int) -> None:
        report(0.1 + 0.8 * done / max(total, 1), f"routing: level {done:,} of {total:,}")
        _check(should_stop, "writing outputs")

    with torch.no_grad():
        q = route(network, runoff.values, params, settings.scheme, dt=runoff.dt, engine=settings.engine,
                  device=settings.device, progress=level_progress)
    q = q.cpu().numpy()
    timings["route"] = time.perf_counter() - t0
    _check(should_stop, "writing outputs")

    from .results import Discharge, write_hydrographs_csv, write_q, write_qout, write_summary_gpkg

    from .routing.engines import resolve

    attrs = {"thalweg_version": __version__, "scheme": settings.scheme, "engine": resolve(settings.engine),
             "network": str(settings.network), "runoff": str(settings.runoff),
             "parameters": "; ".join(f"{k}: {v}" for k, v in used.items())}
    discharge = Discharge.from_routing(q, runoff, attrs)

    gauges = None
    if settings.gauges:
        from .learning import read_gauges

        gauges = read_gauges(settings.gauges, network, observed=settings.observed)

    t0 = time.perf_counter()
    report(0.92, "writing outputs")
    outputs: dict[str, Path] = {}
    if settings.convention in ("end", "both"):
        outputs["q"] = write_q(out_dir / f"{settings.name}.nc", discharge)
    if settings.convention in ("mean", "both"):
        suffix = "_Qout" if settings.convention == "both" else ""
        outputs["qout"] = write_qout(out_dir / f"{settings.name}{suffix}.nc", discharge, convention="mean")
    if settings.write_gpkg and network.geometry is not None:
        outputs["gpkg"] = write_summary_gpkg(out_dir / f"{settings.name}.gpkg", network, discharge)
    reaches = list(dict.fromkeys([*(gauges.reach_ids.tolist() if gauges is not None else []),
                                  *settings.hydrograph_reaches]))
    if reaches:
        outputs["hydrographs"] = write_hydrographs_csv(out_dir / f"{settings.name}_hydrographs.csv", discharge,
                                                       reaches)
    outputs["settings"] = atomic_write_text(out_dir / f"{settings.name}.settings.json", settings.to_json())
    timings["write"] = time.perf_counter() - t0
    report(1.0, "done")
    return RouteResult(outputs=outputs, discharge=discharge, network=network, timings=timings,
                       params_used=used, gauges=gauges)


@dataclasses.dataclass
class CalibrateRunResult:
    """What :func:`run_calibrate` did: the calibration, the calibrated routing and every file written."""

    outputs: dict[str, Path]
    calibration: Any  # thalweg.learning.CalibrationResult
    route: RouteResult
    gauges: Any  # thalweg.learning.Gauges
    timings: dict[str, float]
    prior_used: dict[str, str]


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def run_calibrate(settings: CalibrateSettings, *, network: RiverNetwork | None = None, runoff: Any = None,
                  progress: Progress | None = None,
                  should_stop: Callable[[], bool] | None = None) -> CalibrateRunResult:
    """Calibrate the scheme's travel-time parameters at the gauges, then route with them and write the outputs.

    Reads like :func:`run_route`; the prior is :func:`resolve_params` of ``settings.params``. Observations are
    matched to the routed discharge's time axis (end of each runoff step). Writes ``<name>_params.csv``
    (reach_id, zone, zone_gauge, every parameter), ``<name>_calibration.json`` (settings, multipliers per zone,
    metrics before and after per gauge, history) and the calibrated routing's outputs, each atomically and only
    once the calibration and routing have finished (a cancel leaves nothing).
    """
    from .learning import read_gauges
    from .learning.calibrate import calibrate

    if not isinstance(settings, CalibrateSettings):
        raise InputError("run_calibrate needs CalibrateSettings (with gauges, observed and the optimisation).")
    report = progress or (lambda fraction, message: None)
    timings: dict[str, float] = {}
    network, runoff = _read_inputs(settings, network, runoff, report, should_stop, timings)
    _check(should_stop, "calibration")
    prior, used = resolve_params(network, settings.scheme, settings.params)
    gauges = read_gauges(settings.gauges, network, observed=settings.observed)
    # the routed Q[:, t] is stamped at the end of runoff step t, as Discharge.from_routing does
    end = runoff.time + np.timedelta64(int(round(runoff.dt * 1e9)), "ns")
    observed = gauges.observed_on(end)
    if not np.isfinite(observed).any():
        raise InputError(f"no observation falls on the routed time steps ({end[0]} .. {end[-1]}, end of each "
                         f"{runoff.dt:g} s step); observations span {gauges.observed.index.min()} .. "
                         f"{gauges.observed.index.max()}.", path=settings.observed,
                         hint="Observed times must be the END of each runoff step, in UTC, over the runoff period.")

    t0 = time.perf_counter()
    try:
        result = calibrate(network, runoff.values, prior, settings.scheme, dt=runoff.dt,
                           gauge_reaches=gauges.reach_ids, observed=observed, parameters=settings.calibrate or None,
                           zones=settings.zones, iterations=settings.iterations,
                           learning_rate=settings.learning_rate, warmup=settings.warmup, engine=settings.engine,
                           device=settings.device,
                           progress=lambda f, m: report(0.1 + 0.75 * f, m), should_stop=should_stop,
                           gauge_names=[str(g) for g in gauges.ids])
    except InputError as exc:
        if exc.field != "observed":
            raise
        raise InputError(exc.message, path=settings.observed, ids=exc.ids, hint=exc.hint) from None
    timings["calibrate"] = time.perf_counter() - t0
    _check(should_stop, "routing with the calibrated parameters")

    notes = {name: f"calibrated: prior ({used[name]}) x zone multiplier" if name in result.calibrated else origin
             for name, origin in used.items()}
    routed = run_route(settings, network=network, runoff=runoff, params=result.params, params_used=notes,
                       progress=lambda f, m: report(0.85 + 0.15 * f, m), should_stop=should_stop)
    timings.update({k: v for k, v in routed.timings.items() if k not in timings})

    t0 = time.perf_counter()
    out_dir = Path(settings.out_dir)
    outputs = dict(routed.outputs)
    outputs["params"] = _write_params_csv(out_dir / f"{settings.name}_params.csv", network, result)
    outputs["calibration"] = atomic_write_text(out_dir / f"{settings.name}_calibration.json",
                                               json.dumps(_calibration_record(settings, result, gauges, used),
                                                          indent=2))
    timings["write"] = timings.get("write", 0.0) + time.perf_counter() - t0
    return CalibrateRunResult(outputs=outputs, calibration=result, route=routed, gauges=gauges, timings=timings,
                              prior_used=used)


def _write_params_csv(path: Path, network: RiverNetwork, result: Any) -> Path:
    import pandas as pd

    from ._files import atomic_path

    zone_gauge = np.where(result.zones >= 0, result.zone_gauges[np.clip(result.zones, 0, None)], -1)
    # empty where no gauge is downstream, or for the one zone of 'global'
    frame = pd.DataFrame({"reach_id": network.ids, "zone": result.zones,
                          "zone_gauge": pd.arrays.IntegerArray(zone_gauge.astype(np.int64), zone_gauge < 0)})
    for name, values in result.params.items():
        frame[name] = values
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.10g")
    return Path(path)


def _calibration_record(settings: CalibrateSettings, result: Any, gauges: Any,
                        prior_used: Mapping[str, str]) -> dict[str, Any]:
    counts = np.bincount(result.zones[result.zones >= 0], minlength=result.zone_gauges.size)
    zones = []
    for z, reach in enumerate(result.zone_gauges.tolist()):
        zones.append({"zone": z, "gauge_reach_id": None if reach < 0 else reach,
                      "gauge_ids": [str(g) for g, r in zip(gauges.ids, gauges.reach_ids) if reach in (-1, int(r))],
                      "reaches": int(counts[z]),
                      "multipliers": {name: float(m[z]) for name, m in result.multipliers.items()}})
    metrics = [{"gauge_id": str(g), "reach_id": int(r),
                "before": {k: _finite(v) for k, v in result.metrics_before[int(r)].items()},
                "after": {k: _finite(v) for k, v in result.metrics_after[int(r)].items()}}
               for g, r in zip(gauges.ids, gauges.reach_ids)]
    return {"thalweg_version": __version__, "settings": settings.to_dict(), "scheme": settings.scheme,
            "calibrated": list(result.calibrated), "prior": dict(prior_used), "zoning": settings.zones,
            "zones": zones, "uncalibrated_reaches": int((result.zones < 0).sum()), "metrics": metrics,
            "iterations": result.iterations, "converged": bool(result.converged), "loss": _finite(result.loss),
            "history": [{"iteration": h["iteration"], "loss": _finite(h["loss"])} for h in result.history]}
