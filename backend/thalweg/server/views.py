"""Results of a finished route job, shaped for the plugin: a hydrograph, a snapshot, per-reach statistics.

Discharge comes from memory for recent jobs and from the job's NetCDF file otherwise (after a restart),
so the answers are the same either way. Values are plain JSON: NaN becomes null.

Requests are answered from a thread pool, and HDF5 (under netCDF4) is not thread-safe: two reads at once
crash the process. So each job's discharge is read once (:meth:`JobManager.cached` lets concurrent first
requests wait for one load) and every read of a NetCDF file in the service process holds :data:`FILE_LOCK`;
answers from memory take no lock.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import threading
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field
from starlette.responses import Response

from ..errors import InputError, NetworkError, ThalwegError
from .jobs import Job, JobConflict, JobManager
from .tasks import iso_time, iso_times

__all__ = ["hydrograph", "snapshot", "snapshot_f32", "axes", "summary", "detect", "json_floats", "jsonable",
           "NotFoundError", "FILE_LOCK", "Axes", "F32_MEDIA_TYPE"]

UNITS = "m3/s"
F32_MEDIA_TYPE = "application/octet-stream"
# held by every NetCDF/HDF5 read in the service process (HDF5 is not thread-safe; see the module's note)
FILE_LOCK = threading.Lock()


class NotFoundError(Exception):
    """A thing inside a job (a reach) that does not exist; carries the ThalwegError's facts."""

    def __init__(self, error: ThalwegError) -> None:
        super().__init__(str(error))
        self.error = error


def json_floats(values: Any) -> list[float | None]:
    """A float array as a JSON list, NaN and infinities as null."""
    arr = np.asarray(values, dtype=np.float64).ravel()
    finite = np.isfinite(arr)
    out = arr.tolist()
    if not finite.all():
        for i in np.flatnonzero(~finite):
            out[i] = None
    return out


def _encoded(value: Any) -> bytes:
    """JSON bytes as FastAPI's JSONResponse writes them (compact, UTF-8, NaN refused)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def _encoded_list(values: list[Any], chunk: int = 8192) -> bytes:
    """:func:`_encoded` of a long list, a chunk at a time: the C encoder holds the GIL for a whole call, so one
    call on 100,000 floats (~0.2 s) would stall every other request; between chunks the others get their turn."""
    if len(values) <= chunk:
        return _encoded(values)
    return b"[" + b",".join(_encoded(values[i:i + chunk])[1:-1] for i in range(0, len(values), chunk)) + b"]"


def _times(manager: JobManager, job: Job, d) -> list[str]:
    """The job's step times as ISO strings, made once per job (every hydrograph carries them)."""
    return manager.cached(job, "times", lambda: iso_times(d.time))


def jsonable(value: Any) -> Any:
    """Nested dicts/lists with non-finite floats replaced by None and numpy scalars made plain."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _route_job(job: Job) -> None:
    if job.kind not in ("route", "calibrate"):
        raise JobConflict(f"job {job.id} is a '{job.kind}' job; hydrographs, snapshots and summaries come from "
                          f"'route' and 'calibrate' jobs.")
    if job.state != "succeeded":
        hint = {"queued": "wait until it has run", "running": f"wait until it has finished ({job.fraction:.0%} now)",
                "failed": "see its error", "cancelled": "submit it again"}[job.state]
        raise JobConflict(f"job {job.id} is {job.state}; results exist only for a succeeded job ({hint}).")


def _discharge(manager: JobManager, job: Job):
    _route_job(job)

    def load():
        from ..results import read_discharge

        path = job.outputs.get("q") or job.outputs.get("qout")
        if not path or not Path(path).exists():
            raise JobConflict(f"the discharge file of job {job.id} ({path or 'none recorded'}) is missing from "
                              f"the workspace; run the job again.")
        try:
            with FILE_LOCK:
                return read_discharge(path)
        except (OSError, RuntimeError, ValueError) as exc:  # netCDF4 reports damaged files with these
            raise JobConflict(f"the discharge file of job {job.id} ({path}) cannot be read: {exc}; run the job "
                              f"again.") from None

    return manager.cached(job, "discharge", load)


def _gauges(manager: JobManager, job: Job) -> list[dict[str, Any]]:
    def load():
        path = job.outputs.get("gauges")
        if not path:
            return []
        try:
            return json.loads(Path(path).read_text(encoding="utf-8"))["gauges"]
        except (OSError, ValueError, KeyError) as exc:
            raise JobConflict(f"the gauge file of job {job.id} ({path}) cannot be read: {exc}") from None

    return manager.cached(job, "gauges", load)


def hydrograph(manager: JobManager, job: Job, reach_id: int) -> dict[str, Any]:
    """Simulated discharge of one reach; observed values and metrics where a gauge sits on it."""
    d = _discharge(manager, job)
    try:
        row = d.index_of([reach_id])[0]
    except NetworkError as exc:
        raise NotFoundError(NetworkError(f"reach {reach_id} is not in the results of job {job.id} "
                                         f"({d.n_reaches:,} reaches).", field="reach", ids=[reach_id],
                                         hint="Use an id of the routed network.")) from exc
    sim = d.values[row]
    out: dict[str, Any] = {"job_id": job.id, "reach_id": int(reach_id), "units": UNITS,
                           "time": _times(manager, job, d), "simulated": json_floats(sim),
                           "observed": None, "gauge_id": None, "metrics": None}
    gauge = next((g for g in _gauges(manager, job) if int(g["reach_id"]) == int(reach_id)), None)
    if gauge is not None:
        out["gauge_id"] = gauge["gauge_id"]
        if gauge.get("observed") is not None:
            obs = np.array(gauge["observed"], dtype=np.float64)
            out["observed"] = json_floats(obs)
            if np.isfinite(obs).any():
                from ..metrics import all_metrics

                metrics = all_metrics(sim.astype(np.float64), obs)
                out["metrics"] = {k: (float(v) if v is not None and math.isfinite(float(v)) else None)
                                  for k, v in metrics.items()}
    return out


def _step_of(d, when: str) -> int:
    """A step index from ``when``: an integer (negative counts from the end) or an ISO 8601 time."""
    text = when.strip()
    try:
        step = int(text)
    except ValueError:
        step = None
    if step is not None:
        if not -d.n_steps <= step < d.n_steps:
            raise InputError(f"step {step} is outside the results' {d.n_steps:,} steps (0 .. {d.n_steps - 1}).",
                             field="time", hint="Give a step index in range or an ISO time.")
        return step % d.n_steps
    try:
        t = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"'{when[:64]}' is neither a step index nor an ISO 8601 time.", field="time",
                         hint="Use e.g. time=12 or time=2020-01-01T06:00:00.") from None
    if t.tzinfo is not None:
        t = t.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    if not _dt.datetime(1700, 1, 1) <= t <= _dt.datetime(2250, 1, 1):
        raise InputError(f"time {text[:64]} is outside the routed period {iso_time(d.time[0])} .. "
                         f"{iso_time(d.time[-1])}.", field="time", hint="Pick a time inside the routed period.")
    target = np.datetime64(t, "ns")
    half = np.timedelta64(int(round(d.dt * 5e8)), "ns")
    if target < d.time[0] - half or target > d.time[-1] + half:
        raise InputError(f"time {iso_time(target)} is outside the routed period: steps end from "
                         f"{iso_time(d.time[0])} to {iso_time(d.time[-1])}.", field="time",
                         hint="Pick a time inside the routed period.")
    return int(np.argmin(np.abs((d.time - target).astype(np.int64))))


def snapshot(manager: JobManager, job: Job, when: str) -> Response:
    """Discharge of every reach at the end of one step (for map animation), as JSON: ``{"job_id", "step",
    "time", "units", "reach_ids", "values"}``. The reach ids are encoded once per job and spliced in: they are
    half the work of each answer and the same in all of them."""
    d = _discharge(manager, job)
    step = _step_of(d, when)
    ids = manager.cached(job, "ids_json", lambda: _encoded_list(d.ids.tolist()))
    head = _encoded({"job_id": job.id, "step": step, "time": iso_time(d.time[step]), "units": UNITS})
    values = _encoded_list(json_floats(d.values[:, step]))
    body = b"".join((head[:-1], b',"reach_ids":', ids, b',"values":', values, b"}"))
    return Response(body, media_type="application/json")


def snapshot_f32(manager: JobManager, job: Job, when: str) -> Response:
    """:func:`snapshot` packed for animation: the values as little-endian float32 bytes [N] in the order of
    :func:`axes`' ``reach_ids`` (NaN stays NaN), the step, its time and the units in ``X-Thalweg-*`` headers.
    About 5 times smaller than the JSON answer and needs no parsing."""
    d = _discharge(manager, job)
    step = _step_of(d, when)
    body = np.ascontiguousarray(d.values[:, step], dtype="<f4").tobytes()
    return Response(body, media_type=F32_MEDIA_TYPE, headers={
        "X-Thalweg-Step": str(step), "X-Thalweg-Time": iso_time(d.time[step]), "X-Thalweg-Units": UNITS,
        "X-Thalweg-Reaches": str(d.n_reaches)})


class Axes(BaseModel):
    """What a packed snapshot's bytes mean: the reach of each value and the time of each step."""

    job_id: str
    units: str
    dt: float = Field(description="step length, s")
    reach_ids: list[int] = Field(description="reach id of each value of a snapshot, in order")
    time: list[str] = Field(description="end of each step, ISO 8601, UTC; snapshot?time= takes an index into it")


def axes(manager: JobManager, job: Job) -> dict[str, Any]:
    """The reach ids (in snapshot order) and the step times of a job's results: fetched once, then every
    snapshot?format=f32 is just values."""
    d = _discharge(manager, job)
    return {"job_id": job.id, "units": UNITS, "dt": float(d.dt), "reach_ids": d.ids.tolist(),
            "time": _times(manager, job, d)}


def summary(manager: JobManager, job: Job) -> Response:
    """Per-reach statistics (thalweg.results.summarize), column-wise: ``{"job_id", "units", "columns",
    "reach_ids", "data": {column: [...]}}``; computed and encoded once per job (megabytes for large networks)."""
    d = _discharge(manager, job)

    def load() -> bytes:
        from ..results import summarize

        frame = summarize(d)
        data: dict[str, list[Any]] = {}
        for column in frame.columns:
            values = frame[column].to_numpy()
            if values.dtype.kind == "M":
                data[column] = iso_times(values)
            elif values.dtype.kind in "iub":
                data[column] = values.tolist()
            else:
                data[column] = json_floats(values)
        return _encoded({"job_id": job.id, "units": UNITS, "columns": [str(c) for c in frame.columns],
                         "reach_ids": np.asarray(frame.index, dtype=np.int64).tolist(), "data": data})

    return Response(manager.cached(job, "summary_json", load), media_type="application/json")


def _unit(schema, role: str, field: str, values: list | None, source: str) -> tuple[str | None, str | None]:
    """(unit, problem) of a quantity field: the schema's unit, else a guess from its name and sample values."""
    import warnings

    from ..errors import ThalwegWarning
    from ..units import guess_area_unit, guess_length_unit

    known = schema.unit(field) if schema is not None else None
    if known:
        return known, None
    guess = guess_length_unit if role == "length" else guess_area_unit
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ThalwegWarning)
        unit = guess(field, [] if values is None else [np.nan if v is None else v for v in values], source=source)
    problem = next((str(w.message) for w in caught if issubclass(w.category, ThalwegWarning)), None)
    if problem is not None and not values:  # no name hint and no values: nothing to guess from
        return None, f"{source}: field {field} has no unit in its name; send sample values or name the unit."
    return unit, problem


def detect(body) -> dict[str, Any]:
    """The backend's schema detection for the plugin (one implementation: thalweg.hydrography's rules):
    detected schema, role -> field, units, candidate schemas and problems, for a file or a list of fields."""
    from ..hydrography import SCHEMAS, detect_schema
    from ..hydrography._schema import CORE_ROLES, STANDARD_ATTRS, match_columns
    from ..hydrography.vector import describe

    problems: list[str] = []
    error = None
    info = None
    match = None
    if body.path is not None:
        source = Path(body.path).name
        try:
            with FILE_LOCK:  # a NetCDF hydrography file is read through HDF5, which is not thread-safe
                info = describe(body.path, body.layer)
                columns = list(info.columns)
                match = detect_schema(body.path, body.layer)
        except ThalwegError as exc:
            error = exc.to_dict()
            problems.append(str(exc))
            columns = list(info.columns) if info is not None else []
    else:
        source = "layer"
        columns = list(body.columns or [])
        try:
            match = match_columns(columns, quiet=True)
        except ThalwegError as exc:  # several schemas fit equally well
            error = exc.to_dict()
            problems.append(str(exc))
        if match is None and error is None:
            problems.append(f"no known hydrography schema fits the fields ({', '.join(columns[:25]) or 'none'}); "
                            f"map the id and downstream fields, or the topology comes from the line geometry.")
    schema = SCHEMAS.get(match.name) if match is not None else None
    fields = dict(match.fields) if match is not None else {}
    for role, field in body.fields.items():  # the user's mapping wins, as in read_network(fields=...)
        if field is None:
            fields.pop(role, None)
        elif field not in columns:
            problems.append(f"{source}: there is no field {field} (for {role}); the fields are "
                            f"{', '.join(columns[:25])}.")
        else:
            fields[role] = field
    units: dict[str, str | None] = {}
    if fields:
        for role in ("length", "area", "catchment_area"):
            field = fields.get(role)
            if field:
                units[role], problem = _unit(schema, role, field, body.values.get(field), source)
                if problem:
                    problems.append(problem)
    candidates = sorted(({"schema": s.name, "title": s.title, "score": s.score(columns), "fields": s.find(columns)}
                         for s in SCHEMAS.values() if s.find(columns)), key=lambda c: -c["score"])
    roles = sorted(set(CORE_ROLES) | set(STANDARD_ATTRS))
    return {"schema": match.name if match else None, "title": schema.title if schema else None,
            "layer": (match.layer if match else None) or (info.layer if info else body.layer),
            "fields": fields, "units": units,
            "reasons": list(match.reasons) if match else [], "columns": columns, "candidates": candidates,
            "roles": roles, "topology_from_geometry": bool(schema is not None and schema.resolve is not None),
            "geometry_type": info.geometry_type if info else None, "crs": info.crs if info else None,
            "features": info.n if info else None, "problems": problems, "error": error}
