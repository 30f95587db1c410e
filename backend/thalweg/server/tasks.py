"""What each job kind does: the bridge from a request body to the library (run_route, read_network).

Tasks run in a worker process (:mod:`.worker`), write only into ``ctx.out_dir`` (the job's staging folder)
and call ``ctx.check`` between stages so a cancel takes effect at the next safe point. The GIS stack is
imported inside the tasks, so a missing piece fails one job, not the service.
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from .._files import atomic_write_text
from .._paths import kind_of_mode
from ..errors import InputError
from .bodies import CalibrateJob, ExtractJob, InlineGauge, InlineNetwork, InlineRunoff, PackedArray, RouteJob
from .bodies import SummarizeJob
from .worker import JobContext, TaskResult

__all__ = ["TASKS", "LANES", "describe", "check_input_files", "iso_time", "iso_times", "network_from_inline",
           "runoff_from_inline", "GAUGES_FILE"]

GAUGES_FILE = "gauges.json"
# body fields that may hold the path of an input file or folder
PATH_FIELDS = ("network", "runoff", "gauges", "observed", "catchments", "area_raster")
STAT_TIMEOUT = 5.0  # s a path may take to answer stat() at submission (a stalled network mount never does)
INLINE_FIELDS = {"id": "ids", "downstream": "downstream_ids", "length": "length", "area": "area", "slope": "slope"}


def iso_time(t: Any) -> str:
    """``2020-01-01T03:00:00`` (UTC, naive as in the files; milliseconds shown when the step has them)."""
    return iso_times([np.datetime64(t, "ms")])[0]


def iso_times(values: Any) -> list[str | None]:
    """:func:`iso_time` of each of many times at once (a result's time axis, a summary column); NaT -> None."""
    t = np.asarray(values).astype("datetime64[ms]").ravel()
    whole = t.astype("datetime64[s]")
    out = np.where(t == whole, np.datetime_as_string(whole), np.datetime_as_string(t)).astype(object)
    out[np.isnat(t)] = None
    return out.tolist()


def _nan_array(values: list[Any]) -> np.ndarray:
    # numpy turns None into NaN for float arrays: the JSON null of a missing value
    return np.array(values, dtype=np.float64)


def network_from_inline(body: InlineNetwork, *, check_area: str = "error"):
    """A validated RiverNetwork from inline arrays (lengths and areas converted to SI)."""
    from ..network import from_arrays
    from ..network.model import Source
    from ..units import to_si

    source = Source(path=None, layer=None, schema="inline", fields=dict(INLINE_FIELDS))
    area = None if body.area is None else to_si(_nan_array(body.area), body.area_unit, "area")
    return from_arrays(
        np.asarray(body.ids, dtype=np.int64), np.asarray(body.downstream_ids, dtype=np.int64),
        to_si(body.length, body.length_unit, "length"), area,
        slope=None if body.slope is None else _nan_array(body.slope),
        attrs={name: _nan_array(values) for name, values in body.attrs.items()},
        outlet_codes=tuple(body.outlet_codes), source=source, check_area=check_area,
        geometry=None if body.geometry is None else body.geometry.to_shapely(),
        crs=None if body.geometry is None else body.geometry.crs)


def runoff_from_inline(body: InlineRunoff, network, *, nan: str = "error", missing: str = "error"):
    """A Runoff aligned to ``network`` from an inline table [reach][step] (m3/s, or m3 per step), through the one
    runoff aligner of the file readers (:func:`thalweg.runoff._align.runoff_from_array`)."""
    from ..runoff._align import runoff_from_array

    values = body.values.to_numpy() if isinstance(body.values, PackedArray) else _nan_array(body.values)
    return runoff_from_array(values, network, ids=body.ids, dt=body.dt, time=body.start.replace(tzinfo=None),
                             units="m3 s-1" if body.units == "m3/s" else "m3", nan=nan, missing=missing,
                             field="runoff.values", attrs={"inline": True})


def _stat(path: str, timeout: float) -> os.stat_result | None:
    """os.stat(path) in a helper thread, so a mount that stopped answering costs ``timeout`` s and not the
    caller's thread forever; None when it has not answered by then."""
    box: list[Any] = []

    def run() -> None:
        try:
            box.append(os.stat(path))
        except OSError as exc:
            box.append(exc)

    thread = threading.Thread(target=run, name="thalweg-stat", daemon=True)
    thread.start()
    thread.join(timeout)
    if not box:
        return None
    if isinstance(box[0], OSError):
        raise box[0]
    return box[0]


def check_input_files(body: RouteJob | ExtractJob | CalibrateJob, timeout: float = STAT_TIMEOUT) -> None:
    """Refuse input paths that reading would block on: named pipes, devices, sockets (a symlink counts as what
    it points to), and paths that do not answer within ``timeout`` s. Regular files and folders (a FileGDB, a
    shapefile folder) pass; a path that does not exist is left to the readers, which name it.

    Raises
    ------
    InputError naming the field and the full path.
    """
    for name in PATH_FIELDS:
        value = getattr(body, name, None)
        if not isinstance(value, str):
            continue
        try:
            st = _stat(value, timeout)
        except OSError:
            continue  # missing or unreadable: the readers say so with their own context
        if st is None:
            raise InputError(f"'{value}' did not answer within {timeout:g} s (a network mount that stopped "
                             f"answering?).", path=value, field=name,
                             hint="Check the mount, or copy the file to a local disk and give that path.")
        what = kind_of_mode(st.st_mode)
        if what not in ("file", "folder"):
            raise InputError(f"'{value}' is a {what}, not a regular file: reading it would block the job (and every "
                             f"job queued behind it) until something writes to it.", path=value, field=name,
                             hint="Give the path of a regular file (save the data to a file first).")


def describe(body: RouteJob | ExtractJob | CalibrateJob) -> dict[str, Any]:
    """What a job was asked to do, for its record (inline arrays summarised, never copied)."""
    skip = {"network", "runoff", "gauges", "kind", "label"}
    out: dict[str, Any] = body.model_dump(mode="json", by_alias=True, exclude=skip, exclude_none=True)
    net = body.network
    out["network"] = net if isinstance(net, str) else {"inline": True, "reaches": len(net.ids)}
    if isinstance(body, RouteJob):
        r = body.runoff
        out["runoff"] = r if isinstance(r, str) else {"inline": True, "rows": r.n_rows, "steps": r.n_steps,
                                                      "dt": r.dt, "start": r.start.isoformat(), "units": r.units}
        g = body.gauges
        if g is not None:
            out["gauges"] = g if isinstance(g, str) else [
                {"gauge_id": x.gauge_id, "reach_id": x.reach_id, "observed": x.observed is not None} for x in g]
    return out


def _inline_gauges(gauges: list[InlineGauge], network, n_steps: int) -> list[dict[str, Any]]:
    network.index_of([g.reach_id for g in gauges], what="gauge reach ids")  # NetworkError naming unknown ids
    out = []
    for g in gauges:
        if g.observed is not None and len(g.observed) != n_steps:
            raise InputError(f"gauge '{g.gauge_id}' has {len(g.observed):,} observed values but the runoff has "
                             f"{n_steps:,} steps.", field="gauges.observed", ids=[g.gauge_id],
                             hint="Give one value per runoff step (null where missing).")
        out.append({"gauge_id": g.gauge_id, "name": g.name or g.gauge_id, "reach_id": int(g.reach_id),
                    "observed": g.observed})
    return out


def _file_gauges(gauges, discharge) -> list[dict[str, Any]]:
    observed = gauges.observed_on(discharge.time)
    out = []
    for i, gauge_id in enumerate(gauges.ids):
        obs = None
        if observed is not None:
            row = observed[i]
            obs = [None if not np.isfinite(v) else float(v) for v in row]
        out.append({"gauge_id": str(gauge_id), "name": str(gauges.names[i]), "reach_id": int(gauges.reach_ids[i]),
                    "observed": obs})
    return out


def _inline_inputs(body: RouteJob, ctx: JobContext, timings: dict[str, float], *, next_stage: str,
                   need_network: bool = False) -> tuple[Any, Any]:
    """(network, runoff) objects for the workflow: inline ones built here; a network file is read here only when
    inline runoff rows (or inline gauges: ``need_network``) must be matched to its reaches, else the workflow
    reads the paths. None where the workflow reads the file."""
    t0 = time.perf_counter()
    network = runoff = None
    if isinstance(body.network, InlineNetwork):
        ctx.progress(0.0, f"building the network ({len(body.network.ids):,} reaches)")
        network = network_from_inline(body.network, check_area=body.check_area)
    elif isinstance(body.runoff, InlineRunoff) or need_network:
        from ..hydrography import read_network

        ctx.progress(0.0, f"reading network {Path(body.network).name}")
        from ..config import reading_kwargs

        network = read_network(body.network, **reading_kwargs(body.settings_fields(), "read_network"))
    timings["read_network"] = time.perf_counter() - t0
    ctx.check("reading runoff")
    if isinstance(body.runoff, InlineRunoff):
        t0 = time.perf_counter()
        ctx.progress(0.04, f"preparing runoff ({body.runoff.n_steps:,} steps)")
        runoff = runoff_from_inline(body.runoff, network, nan=body.nan, missing=body.missing)
        timings["read_runoff"] = time.perf_counter() - t0
        ctx.check(next_stage)
    return network, runoff


def _settings_fields(body: RouteJob, ctx: JobContext) -> dict[str, Any]:
    """The settings a route or calibrate body shares (inputs sent inline are recorded as 'inline')."""
    # every settings field of the body (derived from thalweg.config), then what the service decides
    given = {k: v for k, v in body.settings_fields().items()  # the callers set these themselves
             if k not in ("gauges", "hydrograph_reaches")}
    return dict(given, network=body.network if isinstance(body.network, str) else "inline",
                runoff=body.runoff if isinstance(body.runoff, str) else "inline",
                out_dir=str(ctx.out_dir), name=body.name, params=dict(body.params))


def _run_workflow(run, settings, network, runoff, ctx: JobContext, timings: dict[str, float]):
    """``run(settings, ...)`` (run_route or run_calibrate) with the job's progress and cancel; the workflow's
    timings are added to the stages this task timed itself."""
    res = run(settings, network=network, runoff=runoff, progress=ctx.progress, should_stop=ctx.should_stop)
    for key, value in res.timings.items():
        timings[key] = timings.get(key, 0.0) + value
    return res


def _discharge_result(d, body: RouteJob, params_used, gauges: list[dict[str, Any]]) -> dict[str, Any]:
    """The job record's result for routed discharge ``d``: its extent, the scheme, parameters and gauges."""
    return {"reaches": d.n_reaches, "steps": d.n_steps, "dt": d.dt,
            "first_time": iso_time(d.time[0]), "last_time": iso_time(d.time[-1]),
            "scheme": body.scheme, "params_used": dict(params_used),
            "gauges": [{k: g[k] for k in ("gauge_id", "name", "reach_id")} for g in gauges]}


def route_task(body: RouteJob, ctx: JobContext) -> TaskResult:
    """Route runoff through a network with :func:`thalweg.workflow.run_route`."""
    from ..config import RouteSettings
    from ..workflow import run_route

    timings: dict[str, float] = {}
    network, runoff = _inline_inputs(body, ctx, timings, next_stage="routing",
                                     need_network=isinstance(body.gauges, list))
    inline_gauges = None
    if isinstance(body.gauges, list) and runoff is not None:
        inline_gauges = _inline_gauges(body.gauges, network, runoff.n_steps)
    extra_reaches = [g.reach_id for g in body.gauges] if isinstance(body.gauges, list) else []
    settings = RouteSettings(**_settings_fields(body, ctx),
                             gauges=body.gauges if isinstance(body.gauges, str) else None,
                             hydrograph_reaches=list(dict.fromkeys([*body.hydrograph_reaches, *extra_reaches])))
    res = _run_workflow(run_route, settings, network, runoff, ctx, timings)
    d = res.discharge
    if isinstance(body.gauges, list):
        if inline_gauges is None:  # runoff came from a file: the step count is known only now
            inline_gauges = _inline_gauges(body.gauges, res.network, d.n_steps)
        gauges = inline_gauges
    elif res.gauges is not None:
        gauges = _file_gauges(res.gauges, d)
    else:
        gauges = []
    outputs = dict(res.outputs)
    if gauges:
        outputs["gauges"] = atomic_write_text(ctx.out_dir / GAUGES_FILE, json.dumps({"gauges": gauges}))
    result = _discharge_result(d, body, res.params_used, gauges)
    return TaskResult(outputs=outputs, result=result, timings=timings, cache={"discharge": d, "gauges": gauges})


def _runoff_file(body: CalibrateJob, network, ctx: JobContext, timings: dict[str, float]):
    """The runoff file of ``body`` read here (inline gauges' observations are per runoff step: the steps' times
    are needed before the workflow starts)."""
    from ..config import reading_kwargs
    from ..runoff import read_runoff

    t0 = time.perf_counter()
    ctx.progress(0.04, f"reading runoff {Path(body.runoff).name}")
    kwargs = reading_kwargs(body.settings_fields(), "read_runoff")
    kwargs["weights_cache"] = ctx.out_dir if body.catchments else None
    runoff = read_runoff(body.runoff, network, **kwargs)
    timings["read_runoff"] = time.perf_counter() - t0
    return runoff


def _fit_result(run, record: dict[str, Any]) -> dict[str, Any]:
    """The job record's result of a fitted parameter model: what was fitted, how it stopped, the losses, the
    metrics per gauge (role: calibration or held-out) and period, before and after, the leave-one-gauge-out
    scores (the numbers of the calibration JSON, JSON-safe)."""
    res = run.calibration
    before, after = record["metrics"]["before"], record["metrics"]["after"]
    metrics = [{"gauge_id": label, "reach_id": m["reach_id"], "role": m["role"],
                "before": {p: before[label][p] for p in ("calibration", "validation")},
                "after": {p: m[p] for p in ("calibration", "validation")}} for label, m in after.items()]
    return {"model": res.model.kind, "calibrated": list(res.model.learned), "iterations": res.iterations,
            "stopped": res.stopped, "converged": res.stopped == "converged", "best_iteration": res.best_iteration,
            "loss": record["loss"], "validation_loss": record["validation_loss"],
            "split": {"calibration": record["settings"]["calibration"],
                      "validation": record["settings"]["validation"]},
            "metrics": metrics, "leave_one_gauge_out": record["leave_one_gauge_out"]}


def calibrate_task(body: CalibrateJob, ctx: JobContext) -> TaskResult:
    """Fit parameters at gauges and route with them (:func:`thalweg.workflow.run_calibrate`): the zones
    calibration, or a parameter model through run_fit; gauges from a CSV or inline."""
    from ..config import CalibrateSettings
    from ..learning.gauges import gauges_from_arrays
    from ..workflow import run_calibrate

    timings: dict[str, float] = {}
    inline = isinstance(body.gauges, list)
    network, runoff = _inline_inputs(body, ctx, timings, next_stage="calibration", need_network=inline)
    gauges = None
    if inline:
        if runoff is None:
            runoff = _runoff_file(body, network, ctx, timings)
            ctx.check("calibration")
        rows = _inline_gauges(body.gauges, network, runoff.n_steps)
        gauges = gauges_from_arrays(network, [g["gauge_id"] for g in rows], [g["reach_id"] for g in rows],
                                    observed=[_nan_array(g["observed"]) for g in rows], time_end=runoff.end_time,
                                    names=[g["name"] for g in rows])
    fields = _settings_fields(body, ctx)
    if inline:
        fields["observed"] = "inline"
    settings = CalibrateSettings(**fields, gauges=body.gauges if not inline else "inline",
                                 hydrograph_reaches=list(body.hydrograph_reaches))
    res = run_calibrate(settings, network=network, runoff=runoff, progress=ctx.progress,
                        should_stop=ctx.should_stop, gauges=gauges)
    for key, value in res.timings.items():
        timings[key] = timings.get(key, 0.0) + value
    d = res.route.discharge
    gauge_rows = _file_gauges(res.gauges, d)
    outputs = dict(res.outputs)
    outputs["gauges"] = atomic_write_text(ctx.out_dir / GAUGES_FILE, json.dumps({"gauges": gauge_rows}))
    record = json.loads(Path(outputs["calibration"]).read_text())  # the same numbers as the file, JSON-safe
    result = _discharge_result(d, body, res.route.params_used, gauge_rows)
    if res.fit is not None:
        result |= _fit_result(res, record)
    else:
        cal = res.calibration
        result |= {"model": "zones", "calibrated": list(cal.calibrated), "iterations": cal.iterations,
                   "converged": bool(cal.converged), "loss": record["loss"], "zones": record["zones"],
                   "metrics": record["metrics"]}
    return TaskResult(outputs=outputs, result=result, timings=timings,
                      cache={"discharge": d, "gauges": gauge_rows})


def write_reaches_gpkg(path: Path, network, layer: str = "reaches") -> Path:
    """The network's reaches as a GeoPackage layer: ids, downstream ids, length, area, level, depth, outlet id
    and the network's extra attributes."""
    import geopandas as gpd

    from .._files import atomic_path

    ds = network.downstream
    columns: dict[str, Any] = {
        "reach_id": network.ids,
        "downstream_id": np.where(ds >= 0, network.ids[np.clip(ds, 0, None)], -1),
        "length_m": network.length,
        "area_km2": network.area / 1e6,
        "level": network.levels,
        "depth": network.depth,
        "outlet_id": network.ids[network.basin],
    }
    for name, values in network.attrs.items():
        arr = np.asarray(values)
        if name not in columns and arr.shape == (network.n_reaches,) and arr.dtype.kind in "iufbUO":
            columns[name] = arr
    frame = gpd.GeoDataFrame(columns, geometry=np.asarray(network.geometry, dtype=object), crs=network.crs)
    with atomic_path(path) as tmp:
        frame.to_file(tmp, layer=layer, driver="GPKG")
    return Path(path)


def extract_task(body: ExtractJob, ctx: JobContext) -> TaskResult:
    """Read a network file (:func:`thalweg.hydrography.read_network`): summary, problems, reaches.gpkg."""
    from ..hydrography import read_network

    t0 = time.perf_counter()
    if isinstance(body.network, InlineNetwork):  # the plugin's memory layers and selections
        ctx.progress(0.0, f"building the network ({len(body.network.ids):,} reaches)")
        return _extract_result(network_from_inline(body.network, check_area=body.check_area), body, ctx,
                               {"read_network": 0.0}, t0, "inline network")
    ctx.progress(0.0, f"reading {Path(body.network).name}")
    options = {"schema": body.network_schema, "fields": body.fields, "layer": body.layer,
               "length_unit": body.length_unit, "area_unit": body.area_unit, "area_raster": body.area_raster,
               "area_raster_unit": body.area_raster_unit, "tolerance": body.tolerance,
               "check_area": body.check_area, "keep_geometry": body.write_gpkg}
    network = read_network(body.network, **{k: v for k, v in options.items() if v is not None})
    return _extract_result(network, body, ctx, {}, t0, Path(body.network).name)


def _extract_result(network, body: ExtractJob, ctx: JobContext, timings: dict[str, float], t0: float,
                    name: str) -> TaskResult:
    import warnings

    from ..errors import ThalwegWarning

    timings["read_network"] = time.perf_counter() - t0
    ctx.check("writing reaches.gpkg")
    outputs: dict[str, Path] = {}
    if body.write_gpkg:
        if network.geometry is None:
            warnings.warn(f"{name} has no line geometries: reaches.gpkg was not written.",
                          ThalwegWarning, stacklevel=1)
        else:
            t0 = time.perf_counter()
            ctx.progress(0.7, "writing reaches.gpkg")
            outputs["gpkg"] = write_reaches_gpkg(ctx.out_dir / "reaches.gpkg", network)
            timings["write"] = time.perf_counter() - t0
    summary = network.summary()
    result = {"summary": json.loads(json.dumps(summary, default=str)), "attributes": sorted(network.attrs)}
    return TaskResult(outputs=outputs, result=result, timings=timings, cache={"network": network})


def summarize_task(body: SummarizeJob, ctx: JobContext) -> TaskResult:
    """Per-reach statistics of a discharge file on the network's lines (the plugin's thalweg:summarize)."""
    from ..hydrography import read_network
    from ..results import read_discharge
    from ..results.writers import write_summary_gpkg

    t0 = time.perf_counter()
    if isinstance(body.network, InlineNetwork):
        ctx.progress(0.0, f"building the network ({len(body.network.ids):,} reaches)")
        network = network_from_inline(body.network, check_area=body.check_area)
    else:
        ctx.progress(0.0, f"reading {Path(body.network).name}")
        network = read_network(body.network, schema=body.network_schema, fields=body.fields, layer=body.layer,
                               check_area=body.check_area)
    timings = {"read_network": time.perf_counter() - t0}
    ctx.check("reading discharge")
    t0 = time.perf_counter()
    ctx.progress(0.3, f"reading {Path(body.discharge).name}")
    d = read_discharge(body.discharge)
    timings["read_discharge"] = time.perf_counter() - t0
    ctx.check("writing the summary")
    t0 = time.perf_counter()
    ctx.progress(0.6, "writing the summary layer")
    gpkg = write_summary_gpkg(ctx.out_dir / f"{body.name}.gpkg", network, d)
    timings["write"] = time.perf_counter() - t0
    result = {"reaches": d.n_reaches, "steps": d.n_steps, "dt": d.dt, "first_time": iso_time(d.time[0]),
              "last_time": iso_time(d.time[-1])}
    return TaskResult(outputs={"gpkg": gpkg}, result=result, timings=timings)


def train_task(body, ctx: JobContext) -> TaskResult:
    """Train a runoff model through the routing (:func:`thalweg.learning.train_run.run_train`)."""
    from ..learning.train_run import run_train

    run = run_train(body.train_settings(str(ctx.out_dir)), progress=ctx.progress, should_stop=ctx.should_stop)
    record = json.loads(Path(run.outputs["report"]).read_text())  # the same numbers as the file, JSON-safe
    result = {"runoff_model": body.runoff_model, "mode": body.mode, "iterations": record["iterations"],
              "best_iteration": record["best_iteration"], "stopped": record["stopped"], "loss": record["loss"],
              "validation_loss": record["validation_loss"], "metrics": record["metrics"]}
    return TaskResult(outputs=dict(run.outputs), result=result, timings=dict(run.timings), cache={})


TASKS = {"route": route_task, "extract": extract_task, "calibrate": calibrate_task, "summarize": summarize_task,
         "train": train_task}
# one GPU job at a time: route and calibrate jobs share the compute lane; extraction (CPU, files) runs beside it
LANES = {"route": "compute", "extract": "io", "calibrate": "compute", "summarize": "io", "train": "compute"}

# the planners' job kinds (stats, compare, exceedance, hydrographs) live in their own module
from .planning import PLANNING_LANES, PLANNING_TASKS  # noqa: E402  (it uses this module's helpers)

TASKS.update(PLANNING_TASKS)
LANES.update(PLANNING_LANES)
