"""The planners' job kinds: ``stats``, ``compare``, ``exceedance`` (the CLI's ``thalweg stats|compare|exceed``)
and ``hydrographs`` (a report's gauges), each a map layer or a JSON file in the job's folder.

Registered in :mod:`.tasks` (``TASKS``/``LANES``); the tables come from :mod:`thalweg.results.planning`, as the
CLI's do, so both give the same numbers and messages.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .._files import atomic_write_text
from .bodies import CompareJob, ExceedanceJob, HydrographsJob, InlineNetwork, StatsJob
from .worker import JobContext, TaskResult

__all__ = ["PLANNING_TASKS", "PLANNING_LANES", "HYDROGRAPHS_FILE"]

HYDROGRAPHS_FILE = "hydrographs.json"
_TOP = 10


def _network(body, ctx: JobContext, timings: dict[str, float], *, keep_geometry: bool = True):
    from ..config import reading_kwargs
    from ..hydrography import read_network
    from .tasks import network_from_inline

    t0 = time.perf_counter()
    if isinstance(body.network, InlineNetwork):
        ctx.progress(0.0, f"building the network ({len(body.network.ids):,} reaches)")
        network = network_from_inline(body.network, check_area=body.check_area)
    else:
        ctx.progress(0.0, f"reading {Path(body.network).name}")
        network = read_network(body.network, **reading_kwargs(body.settings_fields(), "read_network"))
    timings["read_network"] = time.perf_counter() - t0
    return network


def _discharge(path: str, ctx: JobContext, timings: dict[str, float], fraction: float, variable: str | None):
    from ..results import read_discharge

    ctx.check("reading discharge")
    t0 = time.perf_counter()
    ctx.progress(fraction, f"reading {Path(path).name}")
    d = read_discharge(path, variable=variable)
    timings["read_discharge"] = timings.get("read_discharge", 0.0) + time.perf_counter() - t0
    return d


def _write(frame, table: str, body, network, ctx: JobContext, timings: dict[str, float]) -> Path:
    from ..results.planning import LAYERS, units_of
    from ..results.tables import write_reach_table

    ctx.check("writing the map layer")
    t0 = time.perf_counter()
    ctx.progress(0.9, f"writing the {LAYERS[table]} layer")
    path = write_reach_table(ctx.out_dir / f"{body.name}.gpkg", frame, network=network, layer=LAYERS[table],
                             units=units_of(table, frame))
    timings["write"] = time.perf_counter() - t0
    return path


def _period(d) -> dict[str, Any]:
    from .tasks import iso_time

    return {"reaches": d.n_reaches, "steps": d.n_steps, "dt": d.dt, "first_time": iso_time(d.time[0]),
            "last_time": iso_time(d.time[-1])}


def _in_body_terms(task):
    """``task`` with its hints naming the job body's keys (``"return_periods": ...``), as the CLI names flags."""
    import functools

    @functools.wraps(task)
    def run(body, ctx: JobContext) -> TaskResult:
        from ..config import PlanningSettings, option_keys
        from ..errors import ThalwegError, option_names, render_options

        with option_names({**option_keys(), **option_keys(PlanningSettings)}, "json"):
            try:
                return task(body, ctx)
            except ThalwegError as exc:
                exc.message, exc.hint = render_options(exc.message), exc.hint and render_options(exc.hint)
                raise
    return run


@_in_body_terms
def stats_task(body: StatsJob, ctx: JobContext) -> TaskResult:
    """Flood frequency, flow-duration quantiles and low flows per reach
    (:func:`~thalweg.results.planning.stats_table`); ``result['skipped']``: what a short run could not give."""
    from ..results.planning import LAYERS, stats_table

    settings = body.planning_settings()
    timings: dict[str, float] = {}
    network = _network(body, ctx, timings)
    d = _discharge(body.discharge, ctx, timings, 0.2, settings.variable)
    ctx.check("fitting the annual maxima")
    t0 = time.perf_counter()
    ctx.progress(0.4, f"fitting {settings.distribution.upper()} to the annual maxima ({settings.bootstrap} "
                      f"resamples)")
    frame = stats_table(d, return_periods=settings.return_periods, distribution=settings.distribution,
                        water_year_start=settings.water_year_start, n_boot=settings.bootstrap,
                        confidence=settings.confidence, seed=settings.seed, statistics=settings.statistics)
    timings["statistics"] = time.perf_counter() - t0
    gpkg = _write(frame, "stats", body, network, ctx, timings)
    result = _period(d) | {"layer": LAYERS["stats"], "method": frame.attrs["method"], "years": frame.attrs["years"],
                           "columns": [str(c) for c in frame.columns], "skipped": frame.attrs["skipped"]}
    return TaskResult(outputs={"gpkg": gpkg}, result=result, timings=timings)


@_in_body_terms
def compare_task(body: CompareJob, ctx: JobContext) -> TaskResult:
    """Scenario minus baseline of one statistic per reach (:func:`~thalweg.results.planning.compare_table`)."""
    import numpy as np

    from ..results.compare import most_changed
    from ..results.planning import LAYERS, compare_table, run_names

    settings = body.planning_settings()
    timings: dict[str, float] = {}
    network = _network(body, ctx, timings)
    base = _discharge(body.baseline, ctx, timings, 0.2, settings.variable)
    scen = _discharge(body.scenario, ctx, timings, 0.3, settings.variable)
    ctx.check("comparing")
    t0 = time.perf_counter()
    ctx.progress(0.5, f"comparing {settings.statistic}")
    names = run_names(body.baseline, body.scenario)
    frame = compare_table(base, scen, statistic=settings.statistic, distribution=settings.distribution,
                          water_year_start=settings.water_year_start, names=names)
    timings["compare"] = time.perf_counter() - t0
    gpkg = _write(frame, "compare", body, network, ctx, timings)

    def plain(v):
        return float(v) if np.isfinite(v) else None

    top = [{"reach_id": int(rid), **{k: plain(row[k]) for k in ("baseline", "scenario", "difference", "relative")}}
           for rid, row in most_changed(frame, n=settings.top).iterrows()]
    result = _period(base) | {"layer": LAYERS["compare"], "statistic": settings.statistic,
                              "changed": int((frame["difference"] != 0).sum()), "top": top,
                              "baseline": names[0], "scenario": names[1]}
    return TaskResult(outputs={"gpkg": gpkg}, result=result, timings=timings)


@_in_body_terms
def exceedance_task(body: ExceedanceJob, ctx: JobContext) -> TaskResult:
    """Where and when discharge exceeds the threshold (:func:`~thalweg.results.planning.exceedance_table`)."""
    from ..results.planning import LAYERS, exceedance_table

    settings = body.planning_settings()
    timings: dict[str, float] = {}
    network = _network(body, ctx, timings)
    d = _discharge(body.discharge, ctx, timings, 0.2, settings.variable)
    ctx.check("finding exceedances")
    t0 = time.perf_counter()
    ctx.progress(0.5, "finding exceedances")
    frame, what = exceedance_table(d, network=network, threshold=body.threshold, field=body.threshold_field,
                                   return_period=body.return_period, distribution=settings.distribution,
                                   water_year_start=settings.water_year_start)
    timings["exceedance"] = time.perf_counter() - t0
    gpkg = _write(frame, "exceedance", body, network, ctx, timings)
    result = _period(d) | {"layer": LAYERS["exceedance"], "threshold": what,
                           "exceeded": int(frame["exceeded"].sum())}
    return TaskResult(outputs={"gpkg": gpkg}, result=result, timings=timings)


def hydrographs_task(body: HydrographsJob, ctx: JobContext) -> TaskResult:
    """Hydrographs and metrics at the gauges of a discharge file (:func:`~thalweg.results.planning.gauge_hydrographs`),
    as ``hydrographs.json``: ``{"units", "time": [ISO end of step], "gauges": [{gauge_id, name, reach_id,
    simulated, observed, metrics, peak, mean}]}``."""
    from ..learning import read_gauges
    from ..results.planning import gauge_hydrographs
    from .tasks import iso_times
    from .views import json_floats, jsonable

    timings: dict[str, float] = {}
    network = _network(body, ctx, timings)
    d = _discharge(body.discharge, ctx, timings, 0.3, None)
    ctx.check("reading gauges")
    t0 = time.perf_counter()
    gauges = read_gauges(body.gauges, network, observed=body.observed)
    rows = gauge_hydrographs(d, gauges)
    timings["gauges"] = time.perf_counter() - t0
    for row in rows:
        row["simulated"] = json_floats(row["simulated"])
        row["observed"] = None if row["observed"] is None else json_floats(row["observed"])
    doc = jsonable({"units": "m3/s", "time": iso_times(d.time), "gauges": rows})
    path = atomic_write_text(ctx.out_dir / HYDROGRAPHS_FILE, json.dumps(doc, allow_nan=False))
    keys = ("gauge_id", "name", "reach_id", "metrics")
    result = _period(d) | {"gauges": [{k: r[k] for k in keys} for r in doc["gauges"]]}
    return TaskResult(outputs={"hydrographs": path}, result=result, timings=timings)


PLANNING_TASKS = {"stats": stats_task, "compare": compare_task, "exceedance": exceedance_task,
                  "hydrographs": hydrographs_task}
PLANNING_LANES = {kind: "io" for kind in PLANNING_TASKS}  # CPU work on files: beside the compute lane
