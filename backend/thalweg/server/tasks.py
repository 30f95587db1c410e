"""What each job kind does: the bridge from a request body to the library (run_route, read_network).

Tasks run in a worker process (:mod:`.worker`), write only into ``ctx.out_dir`` (the job's staging folder)
and call ``ctx.check`` between stages so a cancel takes effect at the next safe point. The GIS stack is
imported inside the tasks, so a missing piece fails one job, not the service.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from .._files import atomic_write_text
from ..errors import InputError, MissingValueError, RunoffError, RunoffMismatchError, format_ids
from .bodies import CalibrateJob, ExtractJob, InlineGauge, InlineNetwork, InlineRunoff, PackedArray, RouteJob
from .worker import JobContext, TaskResult

__all__ = ["TASKS", "LANES", "describe", "iso_time", "network_from_inline", "runoff_from_inline", "GAUGES_FILE"]

GAUGES_FILE = "gauges.json"
INLINE_FIELDS = {"id": "ids", "downstream": "downstream_ids", "length": "length", "area": "area", "slope": "slope"}


def iso_time(t: Any) -> str:
    """``2020-01-01T03:00:00`` (UTC, naive as in the files; milliseconds shown when the step has them)."""
    t = np.datetime64(t, "ms")
    return str(t.astype("datetime64[s]")) if t == t.astype("datetime64[s]") else str(t)


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
        outlet_codes=tuple(body.outlet_codes), source=source, check_area=check_area)


def runoff_from_inline(body: InlineRunoff, network, *, nan: str = "error", missing: str = "error"):
    """A Runoff aligned to ``network`` from an inline table [reach][step] (m3/s, or m3 per step)."""
    from ..runoff import Runoff

    values = body.values.to_numpy().astype(np.float64) if isinstance(body.values, PackedArray) \
        else _nan_array(body.values)
    if body.units == "m3":
        values = values / body.dt
    if body.ids is None:
        if values.shape[0] != network.n_reaches:
            raise RunoffMismatchError(
                f"runoff has {values.shape[0]:,} rows but the network has {network.n_reaches:,} reaches.",
                field="runoff.values", hint="Give one row per reach in the network's order, or give 'runoff.ids'.")
        rows = np.arange(network.n_reaches)
    else:
        ids = np.asarray(body.ids, dtype=np.int64)
        unique, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            twice = unique[counts > 1]
            raise RunoffError(f"{twice.size:,} reach ids appear more than once in runoff.ids: {format_ids(twice)}.",
                              field="runoff.ids", ids=twice.tolist(), hint="Give each reach one row.")
        order = np.argsort(ids)
        pos = np.clip(np.searchsorted(ids[order], network.ids), 0, ids.size - 1)
        found = ids[order][pos] == network.ids
        absent = network.ids[~found]
        if absent.size and missing != "zero":
            raise RunoffMismatchError(
                f"runoff covers {int(found.sum()):,} of the network's {network.n_reaches:,} reaches; missing: "
                f"{format_ids(absent)}.", field="runoff.ids", ids=absent.tolist(),
                hint="Give a row for every reach of the network, or set missing='zero'.")
        extra = ids.size - int(found.sum())
        if extra or absent.size:
            import warnings

            from ..errors import ThalwegWarning

            if extra:
                warnings.warn(f"runoff: {extra:,} rows are for reaches not in the network; they were ignored.",
                              ThalwegWarning, stacklevel=2)
            if absent.size:
                warnings.warn(f"runoff: {absent.size:,} reaches have no row ({format_ids(absent)}); they get no "
                              f"runoff (missing='zero').", ThalwegWarning, stacklevel=2)
        # a row of zeros after the last one stands for the reaches without runoff
        values = np.vstack([values, np.zeros((1, values.shape[1]))])
        rows = np.where(found, order[pos], values.shape[0] - 1)
    values = values[rows]
    bad = ~np.isfinite(values)
    if bad.any():
        reaches = network.ids[bad.any(axis=1)]
        if nan != "zero":
            raise MissingValueError(
                f"runoff has {int(bad.sum()):,} missing values in {reaches.size:,} reaches: {format_ids(reaches)}.",
                field="runoff.values", ids=reaches.tolist(), hint="Fill them, or set nan='zero' to route them as 0.")
        values = np.where(bad, 0.0, values)
    start = np.datetime64(body.start.replace(tzinfo=None), "ns")
    step = np.timedelta64(int(round(body.dt * 1e9)), "ns")
    time_axis = start + step * np.arange(values.shape[1])
    return Runoff(values=values.astype(np.float32), ids=network.ids.copy(), time=time_axis, dt=body.dt,
                  source=None, attrs={"inline": True, "units": body.units, "nan": nan})


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
             if k not in ("gauges", "hydrograph_reaches", "iterations", "learning_rate", "zones", "warmup",
                          "calibrate")}
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


def calibrate_task(body: CalibrateJob, ctx: JobContext) -> TaskResult:
    """Calibrate parameters at gauges and route with them (:func:`thalweg.workflow.run_calibrate`)."""
    from ..config import CalibrateSettings
    from ..workflow import run_calibrate

    timings: dict[str, float] = {}
    network, runoff = _inline_inputs(body, ctx, timings, next_stage="calibration")
    settings = CalibrateSettings(**_settings_fields(body, ctx), gauges=body.gauges,
                                 hydrograph_reaches=list(body.hydrograph_reaches), iterations=body.iterations,
                                 learning_rate=body.learning_rate, zones=body.zones, warmup=body.warmup,
                                 calibrate=list(body.calibrate))
    run = _run_workflow(run_calibrate, settings, network, runoff, ctx, timings)
    res, d = run.calibration, run.route.discharge
    gauges = _file_gauges(run.gauges, d)
    outputs = dict(run.outputs)
    outputs["gauges"] = atomic_write_text(ctx.out_dir / GAUGES_FILE, json.dumps({"gauges": gauges}))
    record = json.loads(Path(outputs["calibration"]).read_text())  # the same numbers as the file, JSON-safe
    result = _discharge_result(d, body, run.route.params_used, gauges) | {
        "calibrated": list(res.calibrated), "iterations": res.iterations, "converged": bool(res.converged),
        "loss": record["loss"], "zones": record["zones"], "metrics": record["metrics"]}
    return TaskResult(outputs=outputs, result=result, timings=timings, cache={"discharge": d, "gauges": gauges})


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
    import warnings

    from ..errors import ThalwegWarning
    from ..hydrography import read_network

    t0 = time.perf_counter()
    ctx.progress(0.0, f"reading {Path(body.network).name}")
    options = {"schema": body.network_schema, "fields": body.fields, "layer": body.layer,
               "length_unit": body.length_unit, "area_unit": body.area_unit, "area_raster": body.area_raster,
               "area_raster_unit": body.area_raster_unit, "tolerance": body.tolerance,
               "check_area": body.check_area, "keep_geometry": body.write_gpkg}
    network = read_network(body.network, **{k: v for k, v in options.items() if v is not None})
    timings = {"read_network": time.perf_counter() - t0}
    ctx.check("writing reaches.gpkg")
    outputs: dict[str, Path] = {}
    if body.write_gpkg:
        if network.geometry is None:
            warnings.warn(f"{Path(body.network).name} has no line geometries: reaches.gpkg was not written.",
                          ThalwegWarning, stacklevel=1)
        else:
            t0 = time.perf_counter()
            ctx.progress(0.7, "writing reaches.gpkg")
            outputs["gpkg"] = write_reaches_gpkg(ctx.out_dir / "reaches.gpkg", network)
            timings["write"] = time.perf_counter() - t0
    summary = network.summary()
    result = {"summary": json.loads(json.dumps(summary, default=str)), "attributes": sorted(network.attrs)}
    return TaskResult(outputs=outputs, result=result, timings=timings, cache={"network": network})


TASKS = {"route": route_task, "extract": extract_task, "calibrate": calibrate_task}
# one GPU job at a time: route and calibrate jobs share the compute lane; extraction (CPU, files) runs beside it
LANES = {"route": "compute", "extract": "io", "calibrate": "compute"}
