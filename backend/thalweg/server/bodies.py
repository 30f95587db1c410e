"""Request bodies (and documented responses) of the job service, as pydantic models.

Bodies are checked here for shape and type, so a wrong request gets a 422 that names the field at once;
what needs the data itself (cycles, ids missing from runoff, units of a file) is found by the job and
reported in its ``error``. Unknown keys are refused: a misspelt option must not be silently ignored.
Inline arrays follow Thalweg's conventions: SI inside, units named where a choice exists.
"""
from __future__ import annotations

import base64
import binascii
import datetime as _dt
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import dataclasses

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from ..config import CalibrateSettings, PlanningSettings, RouteSettings, TrainSettings, kind_of, options

__all__ = ["RouteJob", "CalibrateJob", "ExtractJob", "JobBody", "InlineNetwork", "InlineRunoff", "InlineGauge",
           "PackedArray", "JOB_KINDS", "SummarizeJob", "StatsJob", "CompareJob", "ExceedanceJob",
           "HydrographsJob", "TrainJob",
           "PLANNED_KINDS", "JobRecord", "Health", "SchemeInfo", "Hydrograph", "Snapshot", "Summary",
           "ErrorBody", "EXAMPLES", "InlineGeometry", "DetectBody", "Detection"]

JOB_KINDS = ("route", "extract", "calibrate", "summarize", "stats", "compare", "exceedance", "hydrographs",
             "train")
# named in the issue and the CLI's future, not in this backend yet: refused with a clear 422, never faked
PLANNED_KINDS: tuple[str, ...] = ()

INT64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
FINITE = Annotated[float, Field(allow_inf_nan=False)]
OPTIONAL_FINITE = Annotated[float | None, Field(allow_inf_nan=False)]
# datetime64[ns] spans 1678..2262; times outside cannot be represented by the results
_EARLIEST, _LATEST = _dt.datetime(1700, 1, 1), _dt.datetime(2250, 1, 1)
_MAX_DT = 366 * 86400.0


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def settings_fields(self) -> dict[str, Any]:
        """Setting name -> value of every field of this body derived from the settings model
        (``thalweg.config``), ready for ``RouteSettings(**...)``."""
        return {name: getattr(self, _ATTRS.get(name, name)) for name, (_, o) in options(CalibrateSettings).items()
                if o.server and _ATTRS.get(name, name) in type(self).model_fields}


def _body_message(key: str, exc: Exception) -> str:
    """A library error about body key ``key`` (``params.x`` when it names one parameter), for a 422."""
    field = getattr(exc, "field", None)
    where = f"{key}.{field}" if field and field != key else key
    from ..config import option_keys
    from ..errors import option_names, render_options

    text = getattr(exc, "message", str(exc)) + (f" {exc.hint}" if getattr(exc, "hint", None) else "")
    with option_names(option_keys(), "json"):  # hints name the body's keys
        return f"{where}: {render_options(text)}"


def _check_path(value: str, *, must_exist: bool = True) -> str:
    """An absolute path of an existing file or folder (the service's working folder is not the caller's)."""
    if "\x00" in value:
        raise ValueError("the path contains a NUL character")
    try:
        path = Path(value).expanduser()
    except RuntimeError:  # '~someone' for an unknown user
        raise ValueError(f"'{value}' starts with '~' but that home folder is unknown; give an absolute path") from None
    if not path.is_absolute():
        raise ValueError(f"'{value}' is a relative path; give an absolute path (the service does not share "
                         f"the caller's working folder)")
    try:
        exists = path.exists()
    except OSError as exc:  # name too long, permission denied on a parent, ...
        raise ValueError(f"'{value}' cannot be used: {exc.strerror or exc}") from None
    if must_exist and not exists:
        raise ValueError(f"'{value}' does not exist")
    return str(path)


PathStr = Annotated[str, Field(min_length=1, max_length=4096, description="absolute path on this machine")]


def _same_length(name: str, values: list | None, n: int) -> None:
    if values is not None and len(values) != n:
        raise ValueError(f"{name}: has {len(values):,} values but 'ids' has {n:,}; give one value per reach")


class InlineGeometry(_Body):
    """Reach lines as WKB (the QGIS plugin's layer geometries), so results can be mapped: base64 of the
    concatenated WKB blobs, ``sizes`` giving each reach's byte count in the order of 'ids'."""

    wkb: str = Field(description="base64 (standard alphabet, padded) of the concatenated WKB of every reach")
    sizes: list[Annotated[int, Field(ge=0, le=2**31)]] = Field(description="bytes of each reach's WKB (0: none)")
    crs: str | None = Field(None, max_length=20_000, description="CRS as WKT or an authority id (EPSG:2154)")

    @model_validator(mode="after")
    def _size(self) -> InlineGeometry:
        try:
            size = len(base64.b64decode(self.wkb, validate=True))
        except (binascii.Error, ValueError):
            raise ValueError("wkb: is not valid base64 (standard alphabet, with padding)") from None
        if size != sum(self.sizes):
            raise ValueError(f"wkb: holds {size:,} bytes but 'sizes' add up to {sum(self.sizes):,}")
        return self

    def to_shapely(self):
        """Shapely geometries, one per reach (None where a size is 0)."""
        import numpy as np
        import shapely

        raw = base64.b64decode(self.wkb)
        ends = np.cumsum(self.sizes)
        blobs = np.array([raw[e - n:e] if n else None for e, n in zip(ends.tolist(), self.sizes)], dtype=object)
        return shapely.from_wkb(blobs)


class InlineNetwork(_Body):
    """A river network as arrays, one value per reach, in any order (the plugin's layer rows)."""

    ids: list[INT64] = Field(min_length=1, description="reach ids (unique integers)")
    downstream_ids: list[INT64] = Field(description="id of the reach each reach drains to; an outlet code "
                                                    "(see outlet_codes) or an id not in 'ids' marks an outlet")
    length: list[FINITE] = Field(description="reach lengths, in length_unit (> 0)")
    length_unit: Literal["m", "km"] = "m"
    area: list[OPTIONAL_FINITE] | None = Field(
        None, description="upstream drainage area of each reach (null: unknown), in area_unit; "
                          "needed by the default parameters (GEOGloWS velocity rule)")
    area_unit: Literal["m2", "km2"] | None = Field(None, description="unit of 'area': required with 'area'")
    slope: list[OPTIONAL_FINITE] | None = Field(None, description="reach slope [m/m]")
    attrs: dict[Annotated[str, Field(min_length=1, max_length=100)], list[OPTIONAL_FINITE]] = Field(
        default_factory=dict, description="extra per-reach fields, SI (e.g. muskingum_k [s], muskingum_x [-]); "
                                          "scheme parameters can name them")
    outlet_codes: list[INT64] = Field(default_factory=lambda: [-1, 0], max_length=16)
    geometry: InlineGeometry | None = Field(None, description="reach lines, to map the results")

    @model_validator(mode="after")
    def _shapes(self) -> InlineNetwork:
        n = len(self.ids)
        _same_length("geometry.sizes", None if self.geometry is None else self.geometry.sizes, n)
        _same_length("downstream_ids", self.downstream_ids, n)
        _same_length("length", self.length, n)
        _same_length("area", self.area, n)
        _same_length("slope", self.slope, n)
        for name, values in self.attrs.items():
            _same_length(f"attrs.{name}", values, n)
        if self.area is not None and self.area_unit is None:
            raise ValueError("area_unit: is required with 'area'; say whether the areas are in 'm2' or 'km2'")
        return self


class PackedArray(_Body):
    """A numeric array as base64 of its little-endian bytes, row-major: about 4x smaller than JSON numbers
    and decoded at memory speed (``thalweg.client.pack`` makes one). NaN is a missing value."""

    dtype: Literal["float32", "float64"]
    shape: list[Annotated[int, Field(ge=1, le=10**9)]] = Field(min_length=2, max_length=2,
                                                               description="[rows, steps]")
    data: str = Field(description="base64 (standard alphabet, padded) of the array's bytes")

    @model_validator(mode="after")
    def _size(self) -> PackedArray:
        try:
            size = len(base64.b64decode(self.data, validate=True))
        except (binascii.Error, ValueError):
            raise ValueError("data: is not valid base64 (standard alphabet, with padding)") from None
        want = math.prod(self.shape) * (4 if self.dtype == "float32" else 8)
        if size != want:
            raise ValueError(f"data: holds {size:,} bytes but shape {self.shape} of {self.dtype} needs {want:,}")
        return self

    def to_numpy(self):
        import numpy as np

        raw = base64.b64decode(self.data)
        return np.frombuffer(raw, dtype="<f4" if self.dtype == "float32" else "<f8").reshape(self.shape)


class InlineRunoff(_Body):
    """Lateral runoff as a table [reach][step]: the mean rate over each step (ROUTING.md section 1)."""

    values: list[list[OPTIONAL_FINITE]] | PackedArray = Field(
        description="[reach][step] as nested lists or a packed array; rows in the order of 'ids' (default: the "
                    "network's reach order); null or NaN is a missing value, handled by the job's 'nan' policy")
    ids: list[INT64] | None = Field(None, description="reach id of each row (default: the network's order)")
    dt: Annotated[float, Field(gt=0, le=_MAX_DT, allow_inf_nan=False)] = Field(description="step length, s")
    start: _dt.datetime = Field(description="start of the first step (ISO 8601; UTC when no offset is given)")
    units: Literal["m3/s", "m3"] = Field("m3/s", description="m3/s: mean rate; m3: volume per step (divided "
                                                              "by dt)")

    @field_validator("start")
    @classmethod
    def _start(cls, value: _dt.datetime) -> _dt.datetime:
        if value.tzinfo is not None:
            value = value.astimezone(_dt.timezone.utc).replace(tzinfo=None)
        if not _EARLIEST <= value <= _LATEST:
            raise ValueError(f"{value.isoformat()} is outside the supported years "
                             f"{_EARLIEST.year}..{_LATEST.year}")
        return value

    @model_validator(mode="after")
    def _shapes(self) -> InlineRunoff:
        if isinstance(self.values, list):
            if not self.values or not self.values[0]:
                raise ValueError("values: the table is empty; give at least one step per reach")
            steps = len(self.values[0])
            bad = [i for i, row in enumerate(self.values) if len(row) != steps]
            if bad:
                raise ValueError(f"values: not a table: row 0 has {steps:,} steps but row {bad[0]} has "
                                 f"{len(self.values[bad[0]]):,} ({len(bad):,} rows differ); give every reach "
                                 f"the same number of steps")
        steps = self.n_steps
        if self.ids is not None and len(self.ids) != self.n_rows:
            raise ValueError(f"ids: has {len(self.ids):,} values but 'values' has {self.n_rows:,} rows; give "
                             f"one id per row")
        if self.dt * steps > (_LATEST - self.start).total_seconds():
            raise ValueError(f"values: {steps:,} steps of {self.dt:g} s from {self.start.isoformat()} end after "
                             f"{_LATEST.year}")
        return self

    @property
    def n_steps(self) -> int:
        return self.values.shape[1] if isinstance(self.values, PackedArray) else len(self.values[0])

    @property
    def n_rows(self) -> int:
        return self.values.shape[0] if isinstance(self.values, PackedArray) else len(self.values)


class InlineGauge(_Body):
    """A gauge on a reach, with its observed discharge at the end of each runoff step."""

    gauge_id: str = Field(min_length=1, max_length=100)
    reach_id: INT64
    name: str | None = Field(None, max_length=200)
    observed: list[OPTIONAL_FINITE] | None = Field(
        None, description="m3/s at the END of each runoff step (null: missing); one value per step")


# settings whose Python name would shadow pydantic's: the JSON key stays the setting's name
_ATTRS = {"schema": "network_schema"}


def _settings_field(name: str, f: dataclasses.Field, opt) -> tuple[Any, Any]:
    """(annotation, FieldInfo) of one setting in a job body: type, default, help, allowed values and bounds
    come from the settings model, so the CLI, the service and saved runs cannot disagree."""
    kind = kind_of(f)
    base = kind.rstrip("?")
    extra: dict[str, Any] = {"description": opt.help}
    ann: Any
    if base == "str":
        if opt.choices is not None:
            ann = Literal[tuple(opt.choices)]  # type: ignore[valid-type]
        elif opt.path:
            ann = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_check_path)]
        else:
            ann = Annotated[str, Field(max_length=200, pattern=opt.pattern)]
    elif base == "float":
        ann = Annotated[float, Field(gt=opt.gt, ge=opt.ge, le=opt.le, lt=opt.lt, allow_inf_nan=False)]
    elif base == "int":
        ann = Annotated[int, Field(gt=opt.gt, ge=opt.ge, le=opt.le, lt=opt.lt)]
    elif base == "list[float]":
        item = Annotated[float, Field(gt=opt.gt, ge=opt.ge, le=opt.le, lt=opt.lt, allow_inf_nan=False)]
        ann, extra["min_length"], extra["max_length"] = list[item], 1, 100
    elif base == "bool":
        ann = bool
    elif base == "list[int]":
        ann, extra["max_length"] = list[INT64], 10_000
    elif base == "list[str]":
        ann, extra["max_length"] = list[Annotated[str, Field(min_length=1, max_length=100)]], 1000
    elif base == "bounds":
        ann = dict[Annotated[str, Field(max_length=100)], Annotated[list[FINITE], Field(min_length=2, max_length=2)]]
    elif base == "dict[str, str]":
        ann = dict[Annotated[str, Field(max_length=100)], Annotated[str, Field(max_length=200)]]
    else:
        raise AssertionError(f"setting {name!r} of kind {kind!r} has no body type")
    if kind.endswith("?"):
        ann = ann | None
    if f.default_factory is not dataclasses.MISSING:
        extra["default_factory"] = f.default_factory
    else:
        extra["default"] = f.default
    if name in _ATTRS:
        extra["alias"] = name
    return ann, Field(**extra)


def _derived(model_name: str, base: type[BaseModel], cls: type, groups: set[str],
             doc: str | None = None) -> type[BaseModel]:
    """A body model with one field per setting of ``cls`` in ``groups`` that the service takes
    (``Option.server``), on top of ``base``."""
    fields = {_ATTRS.get(name, name): _settings_field(name, f, opt) for name, (f, opt) in options(cls).items()
              if opt.server and opt.group in groups and name not in base.model_fields}
    return create_model(model_name, __base__=base, __module__=__name__, __doc__=doc or base.__doc__, **fields)


_NetworkReading = _derived("_NetworkReading", _Body, RouteSettings, {"network reading"},
                           "How to read a network file (ignored for inline networks).")
_RouteSettingsBody = _derived("_RouteSettingsBody", _NetworkReading, RouteSettings,
                              {"routing", "runoff reading", "outputs"})


class RouteJob(_RouteSettingsBody):
    """Route runoff through a network (thalweg.workflow.run_route); outputs go to the job's folder."""


    kind: Literal["route"]
    label: str | None = Field(None, max_length=200, description="free text shown in job lists")
    network: PathStr | InlineNetwork = Field(description="path of a hydrography file, or an inline network")
    runoff: PathStr | InlineRunoff = Field(description="path of a runoff file, or inline runoff")
    name: str = Field("discharge", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$",
                      description="stem of the output files")
    params: dict[Annotated[str, Field(max_length=100)], FINITE | Annotated[str, Field(max_length=200)]] = Field(
        default_factory=dict, description="parameter -> constant (SI) or network field name; others from the "
                                          "network's fields or the GEOGloWS rule")
    gauges: PathStr | list[InlineGauge] | None = Field(
        None, max_length=10_000, description="CSV of gauges (gauge_id, reach id), or inline gauges")

    @field_validator("network", "runoff", "observed")
    @classmethod
    def _paths(cls, value: Any) -> Any:
        return _check_path(value) if isinstance(value, str) else value

    @field_validator("gauges")
    @classmethod
    def _gauge_path(cls, value: Any) -> Any:
        return _check_path(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> RouteJob:
        from ..errors import InputError
        from ..params.checks import check_constant, check_names

        try:  # the parameters' one set of rules (thalweg.params), as the CLI and the library apply them
            check_names(self.scheme, self.params)
            for key, value in self.params.items():
                if not isinstance(value, str):
                    check_constant(self.scheme, key, value)
        except InputError as exc:
            raise ValueError(_body_message("params", exc)) from None
        if self.observed is not None and not isinstance(self.gauges, str):
            raise ValueError("observed: a CSV of observations needs 'gauges' as a CSV path too; inline gauges carry "
                             "their own 'observed' values")
        net, runoff = self.network, self.runoff
        if isinstance(net, InlineNetwork) and isinstance(runoff, InlineRunoff) and runoff.ids is None \
                and runoff.n_rows != len(net.ids):
            raise ValueError(f"runoff.values: has {runoff.n_rows:,} rows but the network has {len(net.ids):,} "
                             f"reaches; give one row per reach in the network's order, or 'runoff.ids'")
        if isinstance(self.gauges, list):
            seen: set[str] = set()
            for g in self.gauges:
                if g.gauge_id in seen:
                    raise ValueError(f"gauges: gauge id '{g.gauge_id}' appears twice")
                seen.add(g.gauge_id)
                if g.observed is not None and isinstance(runoff, InlineRunoff) \
                        and len(g.observed) != runoff.n_steps:
                    raise ValueError(f"gauges.observed: gauge '{g.gauge_id}' has {len(g.observed):,} values but the "
                                     f"runoff has {runoff.n_steps:,} steps; give one value per step")
        return self


_CalibrateSettingsBody = _derived("_CalibrateSettingsBody", RouteJob, CalibrateSettings, {"calibration"})


class CalibrateJob(_CalibrateSettingsBody):
    """Fit routing parameters to observed discharge at gauges, then route with them
    (thalweg.workflow.run_calibrate); ``params`` are the prior. ``model`` 'zones' alone fits one multiplier per
    sub-basin as before; another model, or a fitting option (periods, held-out gauges, leave-one-out, loss,
    optimiser, early stopping, checkpoint), fits through thalweg.learning.run.run_fit. Outputs go to the job's
    folder."""

    kind: Literal["calibrate"]  # type: ignore[assignment]
    gauges: PathStr | list[InlineGauge] = Field(  # type: ignore[assignment]
        max_length=10_000, description="CSV of gauges (gauge_id, reach id) to calibrate at, or inline gauges with "
                                       "their observed values (one per runoff step)")
    observed: PathStr | None = Field(  # type: ignore[assignment]
        None, description="CSV of observed discharge (time at the end of each step, one column per gauge_id, "
                          "m3/s); required with a gauge CSV, not with inline gauges")
    # an absolute path whose folder exists (the file itself may not, yet): a later job of the same fit resumes it
    checkpoint: Annotated[str, Field(min_length=1, max_length=4096)] | None = Field(
        None, description=options(CalibrateSettings)["checkpoint"][1].help)

    @field_validator("checkpoint")
    @classmethod
    def _checkpoint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        path = Path(_check_path(value, must_exist=False))
        if not path.parent.is_dir():
            raise ValueError(f"the folder of '{value}' does not exist")
        if path.is_dir():
            raise ValueError(f"'{value}' is a folder; give a file name")
        return str(path)

    @model_validator(mode="after")
    def _calibrated(self) -> CalibrateJob:
        from ..config import check_model_options
        from ..errors import InputError
        from ..params.checks import check_bounds, check_calibrated

        try:
            check_calibrated(self.scheme, self.calibrate or None)
        except InputError as exc:
            raise ValueError(_body_message("calibrate", exc)) from None
        try:
            check_model_options(self.model, self.zones, self.attributes)
        except InputError as exc:
            raise ValueError(_body_message(exc.field or "model", exc)) from None
        try:
            check_bounds(self.scheme, self.bounds)
        except InputError as exc:
            raise ValueError(_body_message("bounds", exc)) from None
        if isinstance(self.runoff, InlineRunoff) and self.warmup >= self.runoff.n_steps:
            raise ValueError(f"warmup: {self.warmup:,} steps leave none of the runoff's {self.runoff.n_steps:,} "
                             f"steps to calibrate on")
        if isinstance(self.gauges, str):
            if self.observed is None:
                raise ValueError("observed: is required with a gauge CSV (or send inline gauges with their "
                                 "observed values)")
            return self
        bare = [g.gauge_id for g in self.gauges if g.observed is None]
        if bare:
            raise ValueError(f"gauges.observed: gauge(s) {', '.join(bare[:3])} have no observed values; a "
                             f"calibration needs them (one per runoff step, null where missing)")
        ids = [g.gauge_id for g in self.gauges]
        unknown = [g for g in self.validate_gauges if g not in ids]
        if unknown:
            raise ValueError(f"validate_gauges: {', '.join(unknown[:3])} are not among the gauges "
                             f"({', '.join(ids[:10])})")
        return self


class ExtractJob(_NetworkReading):
    """Read a network file: its summary, problems found, and a GeoPackage of its reaches."""

    kind: Literal["extract"]
    label: str | None = Field(None, max_length=200)
    network: PathStr | InlineNetwork = Field(description="path of a hydrography file, or an inline network "
                                                         "(the QGIS plugin's memory layers and selections)")
    write_gpkg: bool = Field(True, description="write reaches.gpkg (needs geometries)")

    @field_validator("network")
    @classmethod
    def _paths(cls, value: Any) -> Any:
        return _check_path(value) if isinstance(value, str) else value


class SummarizeJob(_NetworkReading):
    """Map a discharge file: per-reach statistics (mean, max, time of max, Q5/Q50/Q95) joined to the network's
    lines in a GeoPackage layer (thalweg.results.write_summary_gpkg)."""

    kind: Literal["summarize"]
    label: str | None = Field(None, max_length=200)
    network: PathStr | InlineNetwork = Field(description="hydrography file, or an inline network with geometry")
    discharge: PathStr = Field(description="discharge NetCDF (Thalweg, RAPID Qout, river-route Q)")
    name: str = Field("summary", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$", description="stem of the output")

    @field_validator("network", "discharge")
    @classmethod
    def _paths(cls, value: Any) -> Any:
        return _check_path(value) if isinstance(value, str) else value


# ---- the planners' jobs: thalweg stats | compare | exceed (thalweg.results.planning), and a report's gauges ----
# their options come from config.PlanningSettings, as the commands' flags do
_YEARS = Annotated[float, Field(gt=1, le=10_000, allow_inf_nan=False)]
_FrequencyBody = _derived("_FrequencyBody", _NetworkReading, PlanningSettings, {"discharge reading", "frequency"})


class _PlanningBody(_FrequencyBody):
    """Shared by the planners' jobs: the network to map on, and how annual statistics are fitted."""

    label: str | None = Field(None, max_length=200)
    network: PathStr | InlineNetwork = Field(description="hydrography file, or an inline network with geometry "
                                                         "(the table is written as a map layer of its lines)")
    name: str = Field("table", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$", description="stem of the output")

    @field_validator("network")
    @classmethod
    def _network_path(cls, value: Any) -> Any:
        return _check_path(value) if isinstance(value, str) else value

    def planning_settings(self) -> PlanningSettings:
        """The :class:`thalweg.config.PlanningSettings` of this body (the options it does not take: defaults)."""
        return PlanningSettings(**{name: getattr(self, name) for name in options(PlanningSettings)
                                   if name in type(self).model_fields})


class StatsJob(_derived("_StatsBody", _PlanningBody, PlanningSettings, {"stats"})):  # type: ignore[misc]
    """Flood-frequency flows (with bootstrap intervals), flow-duration quantiles, mean annual and 7-day low
    flows per reach of a discharge file (``thalweg stats``), as a map layer ``stats``; on a run too short for
    some of them, ``statistics='auto'`` computes the others and the result says what was skipped and why."""

    kind: Literal["stats"]
    discharge: PathStr = Field(description="discharge NetCDF (Thalweg, RAPID Qout, river-route Q)")

    @field_validator("discharge")
    @classmethod
    def _paths(cls, value: Any) -> Any:
        return _check_path(value)


class CompareJob(_derived("_CompareBody", _PlanningBody, PlanningSettings, {"compare"})):  # type: ignore[misc]
    """Per-reach change of a statistic from a baseline run to a scenario run on the same network and period
    (``thalweg compare``): a map layer ``change`` (baseline, scenario, difference, relative)."""

    kind: Literal["compare"]
    baseline: PathStr = Field(description="discharge file of the baseline run")
    scenario: PathStr = Field(description="discharge file of the scenario run")

    @field_validator("baseline", "scenario")
    @classmethod
    def _paths(cls, value: Any) -> Any:
        return _check_path(value)


class ExceedanceJob(_PlanningBody):
    """Where and when discharge exceeds a threshold (``thalweg exceed``): one value, a network field or each
    reach's flow of a return period; a map layer ``exceedance`` (first time, hours above, events, peak)."""

    kind: Literal["exceedance"]
    discharge: PathStr = Field(description="discharge NetCDF")
    threshold: FINITE | None = Field(None, description="one threshold for every reach, m3/s")
    threshold_field: str | None = Field(None, min_length=1, max_length=100,
                                        description="a numeric network field holding each reach's threshold, m3/s")
    return_period: _YEARS | None = Field(None, description="each reach's flow of this return period, years")

    @field_validator("discharge")
    @classmethod
    def _paths(cls, value: Any) -> Any:
        return _check_path(value)

    @model_validator(mode="after")
    def _one_rule(self) -> ExceedanceJob:
        given = [k for k in ("threshold", "threshold_field", "return_period") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of 'threshold' (m3/s), 'threshold_field' or 'return_period' "
                             f"(got {', '.join(given) or 'none'})")
        return self


class HydrographsJob(_NetworkReading):
    """Simulated (and observed) discharge at gauges with their metrics (NSE, KGE, PBIAS, ...), from a discharge
    file: the hydrograph page and the gauge table of a report (``hydrographs.json``)."""

    kind: Literal["hydrographs"]
    label: str | None = Field(None, max_length=200)
    network: PathStr | InlineNetwork = Field(description="the routed network (gauges name its reaches)")
    discharge: PathStr = Field(description="discharge NetCDF")
    gauges: PathStr = Field(description="CSV of gauges (gauge_id, reach id)")
    observed: PathStr | None = Field(None, description="CSV of observed discharge (end of step, m3/s)")

    @field_validator("network", "discharge", "gauges", "observed")
    @classmethod
    def _paths(cls, value: Any) -> Any:
        return _check_path(value) if isinstance(value, str) else value


_TrainSettingsBody = _derived("_TrainSettingsBody", _Body, TrainSettings, {"inputs", "training"})


class TrainJob(_TrainSettingsBody):
    """Train a runoff model (GR4, LSTM, MC-LSTM) through the routing on observed discharge at gauges
    (thalweg.learning.train_run.run_train, as ``thalweg train``); outputs go to the job's folder."""

    kind: Literal["train"]
    label: str | None = Field(None, max_length=200)
    network: PathStr = Field(description="hydrography file (catchment areas from its 'catchments' layer, or give "
                                         "catchments)")
    forcings: dict[Annotated[str, Field(min_length=1, max_length=100)], Annotated[str, Field(
        min_length=1, max_length=4096)]] = Field(min_length=1, max_length=32, description="forcing name -> file "
                                                                                          "(PATH or PATH:VARIABLE)")
    gauges: PathStr = Field(description="CSV of gauges (gauge_id, reach id) to train at")
    observed: PathStr = Field(description="CSV of observed discharge: time at the end of each step, one column "
                                          "per gauge_id, m3/s")  # type: ignore[assignment]
    name: str = Field("trained", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$", description="stem of the outputs")

    @field_validator("network", "gauges", "observed")
    @classmethod
    def _paths(cls, value: Any) -> Any:
        return _check_path(value)

    def train_settings(self, out_dir: str) -> TrainSettings:
        """The :class:`thalweg.config.TrainSettings` of this body, outputs into ``out_dir``."""
        values = {name: getattr(self, name) for name in options(TrainSettings) if name in type(self).model_fields
                  and name not in ("kind", "label")}
        return TrainSettings(**dict(values, forcings=dict(self.forcings), out_dir=out_dir))


PLANNING_KINDS = ("stats", "compare", "exceedance", "hydrographs")

JobBody = Annotated[RouteJob | ExtractJob | CalibrateJob | SummarizeJob | StatsJob | CompareJob | ExceedanceJob
                    | HydrographsJob | TrainJob, Field(discriminator="kind")]

EXAMPLES = {
    "inline": {"summary": "route inline arrays", "value": {
        "kind": "route", "label": "three reaches",
        "network": {"ids": [1, 2, 3], "downstream_ids": [3, 3, -1], "length": [1000.0, 1500.0, 2000.0],
                    "area": [10.0, 12.0, 30.0], "area_unit": "km2"},
        "runoff": {"values": [[1.0, 2.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]], "dt": 3600.0,
                   "start": "2020-01-01T00:00:00Z"},
        "gauges": [{"gauge_id": "G1", "reach_id": 3, "observed": [1.0, 2.5, None, 2.0]}]}},
    "files": {"summary": "route files", "value": {
        "kind": "route", "network": "/data/rivers.gpkg", "runoff": "/data/m3_riv.nc", "scheme": "muskingum_nonneg",
        "convention": "both"}},
    "extract": {"summary": "extract a network", "value": {"kind": "extract", "network": "/data/rivers.gpkg"}},
    "calibrate": {"summary": "calibrate at gauges", "value": {
        "kind": "calibrate", "network": "/data/rivers.gpkg", "runoff": "/data/m3_riv.nc",
        "gauges": "/data/gauges.csv", "observed": "/data/qobs.csv", "zones": "gauges", "iterations": 200}},
    "regression": {"summary": "learn parameters from reach attributes, with a validation period and a held-out "
                              "gauge", "value": {
        "kind": "calibrate", "network": "/data/rivers.gpkg", "runoff": "/data/m3_riv.nc",
        "gauges": "/data/gauges.csv", "observed": "/data/qobs.csv", "model": "regression",
        "attributes": ["length", "area"], "calibration": "2014-09-15/2014-11-14",
        "validation": "2014-11-15/2015-01-15", "validate_gauges": ["V3517010"], "warmup": 48,
        "optimiser": "lbfgs", "iterations": 50, "scheme": "muskingum"}},
}


# ---- responses (documented in the OpenAPI schema; built as plain dicts by the handlers) ----

class DetectBody(_Body):
    """Which hydrography schema a layer follows: a file (path, layer) or a layer's field names (QGIS memory
    layers), with optional sample values so the units of unnamed length/area fields can be guessed."""

    path: PathStr | None = Field(None, description="hydrography file (its field names are read, not its features)")
    layer: str | None = Field(None, max_length=200)
    columns: list[Annotated[str, Field(max_length=200)]] | None = Field(None, max_length=2000)
    values: dict[Annotated[str, Field(max_length=200)], list[OPTIONAL_FINITE]] = Field(
        default_factory=dict, description="field -> sample values (a few hundred rows) for unit guesses")
    fields: dict[Annotated[str, Field(max_length=100)], Annotated[str, Field(max_length=200)] | None] = Field(
        default_factory=dict, description="role -> field overrides (the user's choice in the panel; None drops a "
                                          "role); their units are guessed from names and sample values")

    @field_validator("path")
    @classmethod
    def _paths(cls, value: Any) -> Any:
        return _check_path(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one(self) -> DetectBody:
        if (self.path is None) == (self.columns is None):
            raise ValueError("give either 'path' (a file) or 'columns' (field names), not both or neither")
        return self


class Detection(BaseModel):
    schema_name: str | None = Field(alias="schema", description="detected schema (None: no schema fits)")
    title: str | None = None
    layer: str | None = None
    fields: dict[str, str] = Field(description="role -> field (id, downstream, length, area, ...)")
    units: dict[str, str | None] = Field(description="role -> unit of its field (None: not known)")
    reasons: list[str]
    columns: list[str]
    candidates: list[dict[str, Any]] = Field(description="schemas that fit in part: schema, title, score, fields")
    roles: list[str] = Field(description="roles a field can be mapped to")
    topology_from_geometry: bool = Field(description="the topology comes from the lines, not one downstream "
                                                     "id per row: the reader needs the geometries")
    geometry_type: str | None = None
    crs: str | None = None
    features: int | None = None
    problems: list[str]
    error: dict[str, Any] | None = None


class ErrorBody(BaseModel):
    error: str = Field(description="error class, e.g. ValidationError, CycleError, NotFound")
    message: str = Field(description="one readable line: what is wrong, where, and the fix")
    path: str | None = None
    layer: str | None = None
    field: str | None = None
    ids: list[Any] = Field(default_factory=list)
    hint: str | None = None


class Progress(BaseModel):
    fraction: float
    message: str


class JobRecord(BaseModel):
    id: str
    kind: str
    label: str | None = None
    state: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    progress: Progress
    cancel_requested: bool = False
    created: str
    started: str | None = None
    finished: str | None = None
    timings: dict[str, float] = Field(description="queued, run and stage durations, s")
    inputs: dict[str, Any] = Field(description="what was asked (paths, inline sizes, options)")
    outputs: dict[str, str] = Field(description="output kind -> absolute path (q, qout, gpkg, ...)")
    result: dict[str, Any] = Field(default_factory=dict, description="small results (summary, time range)")
    warnings: list[str] = Field(default_factory=list)
    error: dict[str, Any] | None = None
    folder: str


class Health(BaseModel):
    status: str
    version: str
    torch: str
    python: str
    device: dict[str, Any] = Field(description="type (cuda or cpu), name, memory_bytes, count")
    pid: int = Field(description="the service's process id")
    workers: dict[str, int | None] = Field(description="lane -> process id of its worker (null: not started)")
    jobs: dict[str, int] = Field(description="state -> number of jobs")


class SchemeInfo(BaseModel):
    name: str
    description: str
    uses_length: bool
    parameters: list[dict[str, Any]]


class Hydrograph(BaseModel):
    job_id: str
    reach_id: int
    units: str
    time: list[str] = Field(description="end of each step, ISO 8601, UTC")
    simulated: list[float | None]
    observed: list[float | None] | None = None
    gauge_id: str | None = None
    metrics: dict[str, float | None] | None = None


class Snapshot(BaseModel):
    job_id: str
    step: int
    time: str
    units: str
    reach_ids: list[int]
    values: list[float | None]


class Summary(BaseModel):
    job_id: str
    units: str
    columns: list[str]
    reach_ids: list[int]
    data: dict[str, list[Any]]
