"""One typed settings model for the CLI, the server's job bodies and saved runs.

Each setting is a field of :class:`RouteSettings` (or :class:`CalibrateSettings`) whose metadata, an
:class:`Option`, holds its help, allowed values, bounds, command-line flag, the library keyword it becomes
(``read_runoff.units``) and its JSON key: the one place for all of these. ``thalweg.cli`` builds its options
from it, ``thalweg.server.bodies`` derives the settings fields of route and calibrate job bodies from it, and
:func:`option_keys` gives the keyword -> JSON key table the service's hints use (``errors.option_names``; the
CLI builds its keyword -> flag table from its parser, ``cli.option_table``).

Unknown keys fail with the list of known ones; the resolved settings are saved beside the outputs
(``<name>.settings.json``) and read back by ``thalweg route --settings FILE``.
Library functions never read settings: only ``cli``, ``server`` and ``workflow`` do. Importing this module
imports neither torch nor the GIS libraries (``thalweg --help`` stays fast): scheme and engine names are
looked up when first needed.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import InputError, opt

__all__ = ["RouteSettings", "CalibrateSettings", "PlanningSettings", "Option", "Choices", "options", "option_keys",
           "reading_kwargs", "kind_of", "check_model_options", "check_known_keys",
           "CONVENTIONS", "NAN_POLICIES", "AREA_POLICIES", "ZONINGS", "TIME_LABELS", "LAYOUTS", "DEVICE_PATTERN"]

CONVENTIONS = ("end", "mean", "both")
NAN_POLICIES = ("error", "zero")
AREA_POLICIES = ("error", "warn", "ignore")
ZONINGS = ("gauges", "global")
TIME_LABELS = ("start", "end")
LAYOUTS = ("wide", "long")
DEVICE_PATTERN = r"^(auto|cpu|cuda(:[0-9]{1,2})?)$"
BIFURCATIONS = ("main", "split")  # thalweg.network.links.BIFURCATIONS (not imported: this module stays light)
# ---- memory budget of a run without --memory (thalweg.scale.stream.budget_bytes) ----
# On the CPU a quarter of the machine's physical memory (the JVM's default heap rule), or the memory available when
# that is less (a GPU run keeps the memory available): ``--stream auto`` streams a run whose estimated whole-run peak
# exceeds it, and a streamed run's chunks fit it (larger chunks only cost memory: 100,000 reaches x 8,784 steps
# streamed faster in 1,536-step chunks than in 2,928-step ones).
DEFAULT_MEMORY_FRACTION = 0.25


def physical_memory() -> int | None:
    """The machine's physical memory in bytes, None where the system does not say (the budget above, the CPU
    engine's buffer pool)."""
    import os

    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
# ---- end of the memory budget ----


class Choices(Sequence):
    """Allowed values looked up when first used (scheme and engine names live beside torch code)."""

    def __init__(self, load: Callable[[], Sequence[str]], what: str) -> None:
        self._load, self.what, self._values = load, what, None

    def _get(self) -> tuple[str, ...]:
        if self._values is None:
            self._values = tuple(self._load())
        return self._values

    def __getitem__(self, i):
        return self._get()[i]

    def __len__(self) -> int:
        return len(self._get())

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __contains__(self, value: object) -> bool:
        return value in self._get()

    def __repr__(self) -> str:
        return f"Choices({self.what})"


def _schemes() -> list[str]:
    from .irf import SCHEMES

    return sorted(SCHEMES)


def _engines() -> tuple[str, ...]:
    from .routing import ENGINES

    return tuple(ENGINES)


def _formats() -> tuple[str, ...]:
    from .results.outputs import FORMATS

    return FORMATS


def _id_names() -> tuple[str, ...]:
    from .results.writers import ID_NAMES

    return ID_NAMES


SCHEME_CHOICES = Choices(_schemes, "routing schemes: thalweg schemes lists them")
ENGINE_CHOICES = Choices(_engines, "routing engines")
FORMAT_CHOICES = Choices(_formats, "discharge file formats")
ID_NAME_CHOICES = Choices(_id_names, "reach-id dimension names")
DISCHARGE_AT = ("all", "outlets", "gauges")  # results.outputs.discharge_reaches gives each its reaches


def _models() -> tuple[str, ...]:
    from .params.models import MODELS

    return MODELS


def _losses() -> tuple[str, ...]:
    from .learning.losses import LOSSES

    return tuple(LOSSES)


def _optimisers() -> tuple[str, ...]:
    from .learning.fit import OPTIMISERS

    return OPTIMISERS


MODEL_CHOICES = Choices(_models, "parameter models")
LOSS_CHOICES = Choices(_losses, "training losses")
OPTIMISER_CHOICES = Choices(_optimisers, "optimisers")
PERIOD_PATTERN = r"^[0-9][0-9T:.+ -]*/[0-9][0-9T:.+ -]*$"


@dataclasses.dataclass(frozen=True)
class Option:
    """How one setting shows to people: help, allowed values, flag, library keyword, JSON key.

    Attributes
    ----------
    help : one line, shown by ``--help`` and in the service's OpenAPI schema.
    group : the help section ('inputs', 'routing', 'network reading', 'runoff reading', 'outputs',
        'calibration').
    flag : the command-line flag; None: given another way (positional, ``-o``, ``--param``, ...).
    keyword : the library keyword the setting is passed as (``read_runoff.units``), for hints.
    choices : allowed values (a tuple, or :class:`Choices` looked up lazily).
    gt, ge, le, lt : bounds of a number (greater than, at least, at most, less than); of each item of a list.
    pattern : regular expression a string must match.
    path : the value is a file path (checked to exist by the service).
    server : part of the service's route/calibrate job bodies as derived (False: the body defines its own field,
        e.g. inline networks, or the service sets it).
    json_key : the JSON key where it differs from the setting's name.
    metavar : the value's name in ``--help``.
    aliases : other library keywords the setting becomes (``fit.loss`` beside ``run_fit.loss``), so that hints
        written with either name the flag or JSON key.
    negatable : a true/false setting on by default whose ``flag`` (``--no-X``, the form hints name) comes with its
        positive form ``--X`` (argparse's BooleanOptionalAction), which turns it back on over a settings file.
    """

    help: str
    group: str = "routing"
    flag: str | None = None
    keyword: str | None = None
    choices: Sequence[str] | None = None
    gt: float | None = None
    ge: float | None = None
    le: float | None = None
    lt: float | None = None
    pattern: str | None = None
    path: bool = False
    server: bool = True
    json_key: str | None = None
    metavar: str | None = None
    aliases: tuple[str, ...] = ()
    negatable: bool = False


def _setting(default: Any = dataclasses.MISSING, help: str = "", **option: Any) -> Any:
    meta = {"option": Option(help=help, **option)}
    if isinstance(default, (list, dict)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


# the kind of each annotation used below: what a value must be, checked in one place (_check_types)
_KINDS = {"str": "str", "str | None": "str?", "float | None": "float?", "float": "float", "int": "int",
          "list[float] | None": "list[float]?",
          "int | None": "int?", "bool": "bool", "list[int]": "list[int]", "list[str]": "list[str]",
          "dict[str, Any]": "params", "dict[str, str] | None": "dict[str, str]?", "dict[str, list[float]]": "bounds"}


def kind_of(f: dataclasses.Field) -> str:
    """'str', 'str?', 'float?', 'float', 'int', 'int?', 'bool', 'list[int]', 'list[str]', 'params',
    'dict[str, str]?', 'bounds' (name -> [lower, upper])."""
    return _KINDS[f.type if isinstance(f.type, str) else f.type.__name__]


@dataclasses.dataclass
class RouteSettings:
    """Everything a routing run needs (each field's metadata: its :class:`Option`; ``--help`` shows them).

    ``params`` maps a parameter name to a constant (float, SI) or the name of a network attribute/field (str);
    parameters not given come from the network (``muskingum_k``/``muskingum_x`` fields) or the GEOGloWS prior
    (travel time = length / velocity(area)). Outputs: ``<out_dir>/<name>.nc`` (and ``<name>_Qout.nc``,
    ``<name>.gpkg``, ``<name>_hydrographs.csv``, ``<name>.settings.json``).
    """

    network: str = _setting(help="hydrography file (GeoPackage, Shapefile, parquet, GeoJSON, CSV, NetCDF)",
                            group="inputs", server=False, metavar="NETWORK")
    runoff: str = _setting(help="runoff file (RAPID m3_riv, river-route catchment_runoff, CSV/parquet, grid)",
                           group="inputs", server=False, metavar="RUNOFF")
    out_dir: str = _setting(".", "folder for the outputs", group="outputs", server=False)
    name: str = _setting("discharge", "stem of the output files", group="outputs", server=False)
    scheme: str = _setting("muskingum_nonneg", "routing scheme (thalweg schemes lists them)", flag="--scheme",
                           keyword="route.scheme", choices=SCHEME_CHOICES, metavar="SCHEME")
    params: dict[str, Any] = _setting({}, "parameter -> constant (SI) or network field name", flag=None,
                                      keyword="route.params", server=False)
    parameters: str | None = _setting(None, "a parameter model file (JSON, a trained regression model): every "
                                            "reach's parameters from its attributes, on this or another network; "
                                            "or a per-reach table (CSV/parquet: reach_id + a column per "
                                            "parameter, the _params.csv calibrate and train write)",
                                      flag="--parameters", keyword="route.parameters", path=True, metavar="MODEL")
    engine: str = _setting("auto", "routing engine: exact (each reach's filter in topological order), closure "
                                   "(DiffRoute's transitive closure), fft (portable torch), auto (the fastest "
                                   "for the device)", flag="--engine", keyword="route.engine",
                           choices=ENGINE_CHOICES, metavar="ENGINE")
    device: str = _setting("auto", "cpu, cuda, cuda:N or auto (a GPU when there is one)", flag="--device",
                           keyword="route.device", pattern=DEVICE_PATTERN, metavar="DEVICE")
    memory: float | None = _setting(None, "memory budget of the run, GB (default on the CPU: a quarter of the "
                                          "physical memory, or the memory available when less; on a GPU: the "
                                          "memory available); a run whose estimated peak exceeds it streams or "
                                          "is refused before routing",
                                    flag="--memory", keyword="route.memory", gt=0.0, metavar="GB")
    # several GPUs of one host (thalweg.distributed, docs/gpus.md)
    gpus: int = _setting(0, "route over N processes of this host, one per GPU, whole basins spread by work (NCCL), "
                            "discharge bit-identical to one process; N CPU processes (gloo) when torch sees no GPU; "
                            "0: one process", flag="--gpus", keyword="route.gpus", ge=0, le=64, server=False,
                         metavar="N")
    convention: str = _setting("end", "end: river-route Q at step ends; mean: RAPID Qout step means; both",
                               group="outputs", flag="--convention", keyword="route.convention",
                               choices=CONVENTIONS)
    # network reading (thalweg.hydrography.read_network)
    schema: str | None = _setting(None, "hydrography schema (default: detected), e.g. geoglows, hydrorivers, merit",
                                  group="network reading", flag="--schema", keyword="read_network.schema")
    fields: dict[str, str] | None = _setting(None, "role -> field name overrides (id, downstream, length, area, "
                                                   "...)", group="network reading", keyword="read_network.fields")
    layer: str | None = _setting(None, "layer of a multi-layer network file (GeoPackage)", group="network reading",
                                 flag="--layer", keyword="read_network.layer")
    length_unit: str | None = _setting(None, "unit of the length field, e.g. m or km (default: the schema's or "
                                             "guessed)", group="network reading", flag="--length-unit",
                                       keyword="read_network.length_unit", metavar="UNIT")
    area_unit: str | None = _setting(None, "unit of the area field, e.g. m2 or km2", group="network reading",
                                     flag="--area-unit", keyword="read_network.area_unit", metavar="UNIT")
    area_raster: str | None = _setting(None, "flow-accumulation raster sampled at each reach's downstream end, "
                                             "for drainage areas", group="network reading", flag="--area-raster",
                                       keyword="read_network.area_raster", path=True, metavar="RASTER")
    area_raster_unit: str | None = _setting(None, "unit of the raster: cells, m2 or km2",
                                            group="network reading", flag="--area-raster-unit",
                                            keyword="read_network.area_raster_unit", metavar="UNIT")
    tolerance: float | None = _setting(None, "end-point snapping tolerance for topology from geometry, in the "
                                             "layer's units", group="network reading", flag="--tolerance",
                                       keyword="read_network.tolerance", gt=0.0, metavar="DIST")
    check_area: str = _setting("error", "drainage area decreasing downstream: error, warn or ignore",
                               group="network reading", flag="--check-area", keyword="read_network.check_area",
                               choices=AREA_POLICIES)
    # rivers that split (network.links): bifurcations and a link table
    bifurcations: str | None = _setting(None, "reaches whose outflow splits: split (route every branch; fractions "
                                              "from the data, else by drainage area) or main (keep the main path); "
                                              "default: split when the data gives fractions, else main, saying so",
                                        group="network reading", flag="--bifurcations",
                                        keyword="read_network.bifurcations", choices=BIFURCATIONS)
    links: str | None = _setting(None, "CSV or parquet table of downstream links (from_id, to_id, fraction) "
                                       "overriding the downstream field for the reaches it lists; several rows "
                                       "for a reach make it split", group="network reading", flag="--links",
                                 keyword="read_network.links", path=True, metavar="FILE")
    # runoff reading (thalweg.runoff.read_runoff)
    variable: str | None = _setting(None, "runoff variable (NetCDF) or value column (long table) to read "
                                          "(default: found)", group="runoff reading", flag="--variable",
                                    keyword="read_runoff.variable", metavar="NAME")
    runoff_units: str | None = _setting(None, "runoff unit when the file has none (or to override it): m3, "
                                              "m3 s-1, m, mm, kg m-2, mm/h, ...", group="runoff reading",
                                        flag="--runoff-units", keyword="read_runoff.units", metavar="UNIT")
    time_label: str | None = _setting(None, "what a bare runoff time stamp marks: start or end of its step "
                                            "(default: per format)", group="runoff reading", flag="--time-label",
                                      keyword="read_runoff.time_label", choices=TIME_LABELS)
    runoff_dt: float | None = _setting(None, "runoff step length, s (only for a single step without time "
                                             "bounds)", group="runoff reading", flag="--runoff-dt",
                                       keyword="read_runoff.dt", gt=0.0, le=366 * 86400.0, metavar="SECONDS")
    runoff_layout: str | None = _setting(None, "layout of a runoff table: wide or long (default: found)",
                                         group="runoff reading", flag="--runoff-layout",
                                         keyword="read_runoff.layout", choices=LAYOUTS)
    grid_crs: str | None = _setting(None, "CRS of gridded runoff that does not carry one, e.g. EPSG:4326",
                                    group="runoff reading", flag="--grid-crs", keyword="read_runoff.grid_crs",
                                    metavar="CRS")
    nan: str = _setting("error", "missing (NaN) runoff values: error or zero", group="runoff reading", flag="--nan",
                        keyword="read_runoff.nan", choices=NAN_POLICIES)
    missing: str = _setting("error", "network reaches absent from the runoff: error or zero",
                            group="runoff reading", flag="--missing", keyword="read_runoff.missing",
                            choices=NAN_POLICIES)
    catchments: str | None = _setting(None, "catchment polygons (id field = reach id), for gridded runoff",
                                      group="runoff reading", flag="--catchments", keyword="read_runoff.catchments",
                                      path=True, metavar="FILE")
    catchment_layer: str | None = _setting(None, "layer of a multi-layer catchments file (GeoPackage)",
                                           group="runoff reading", flag="--catchment-layer",
                                           keyword="read_runoff.catchment_layer", metavar="LAYER")
    catchment_id_field: str | None = _setting(None, "field of the catchments holding reach ids (default: found)",
                                              group="runoff reading", flag="--catchment-id-field",
                                              keyword="read_runoff.catchment_id_field", metavar="FIELD")
    # outputs
    gauges: str | None = _setting(None, "CSV of gauges (gauge_id, reach id): hydrographs are written there",
                                  group="outputs", flag="--gauges", keyword="route.gauges", path=True,
                                  server=False, metavar="CSV")
    observed: str | None = _setting(None, "CSV of observed discharge (time at the end of each step + one column "
                                          "per gauge_id); needs --gauges", group="outputs", flag="--observed",
                                    keyword="route.observed", path=True, metavar="CSV")
    write_gpkg: bool = _setting(True, "the GeoPackage summary layer <name>.gpkg (needs geometries): written by "
                                      "default; --no-gpkg (write_gpkg false) leaves it out", group="outputs",
                                flag="--no-gpkg", keyword="route.write_gpkg")
    hydrograph_reaches: list[int] = _setting([], "more reach ids whose hydrographs go to the CSV",
                                             group="outputs", flag="--hydrograph",
                                             keyword="route.hydrograph_reaches", metavar="REACH_ID")
    format: str = _setting("auto", "discharge file format: auto (by the name: .zarr -> river-route 3 zarr, a name "
                                   "holding Qout -> RAPID Qout, else river-route Q), river-route, rapid or zarr",
                           group="outputs", flag="--format", keyword="route.format", choices=FORMAT_CHOICES,
                           metavar="FORMAT")
    id_name: str | None = _setting(None, "name of the reach-id dimension of discharge files: rivid (RAPID), "
                                         "riverId (river-route 1.x) or river_id (GEOGloWS v2, river-route 2+); "
                                         "default: the format's own", group="outputs", flag="--river-id-name",
                                   keyword="route.id_name", choices=ID_NAME_CHOICES, metavar="NAME")
    discharge_at: str = _setting("all", "reaches the discharge file holds: all; outlets (each basin's last reach, "
                                        "with the --gauges and --hydrograph reaches); gauges (those reaches only). "
                                        "A global run's outlets are kilobytes a step where all reaches are "
                                        "gigabytes", group="outputs", flag="--discharge-at",
                                 keyword="route.discharge_at", choices=DISCHARGE_AT, metavar="WHICH")
    compression: int = _setting(0, "zlib level of NetCDF discharge files, 0 (none: the fastest to write and read; "
                                   "default) to 9; 1 gives about half the size at several times the write time",
                                group="outputs", flag="--compression", keyword="route.compression", ge=0, le=9,
                                metavar="LEVEL")
    # ---- streaming in time and workers (thalweg.scale, docs/scale.md); the CLI's: service jobs route in memory ----
    stream: str = _setting("auto", "stream the runoff in time chunks, writing as it goes: auto (when the run "
                                   "would not fit the memory budget --memory), always, never",
                           flag="--stream", keyword="route.stream", choices=("auto", "always", "never"), server=False)
    chunk_steps: int = _setting(0, "steps per time chunk when streaming (0: as many as the memory budget holds)",
                                flag="--chunk-steps", keyword="route.chunk_steps", ge=0, le=10**9, metavar="STEPS",
                                server=False)
    resume: bool = _setting(False, "continue an interrupted streamed run from its last completed chunk (the "
                                   "result equals an uninterrupted run bit for bit)", flag="--resume",
                            keyword="route.resume", server=False)
    scheduler: str | None = _setting(None, "Dask scheduler address (tcp://HOST:8786): route basin partitions and "
                                           "time chunks on its workers (streams)", flag="--scheduler",
                                     keyword="route.scheduler", metavar="ADDRESS", server=False)
    dask: bool = _setting(False, "route basin partitions on a local Dask cluster (dask.distributed LocalCluster; "
                                 "streams)", flag="--dask", keyword="route.dask", server=False)
    dask_workers: int = _setting(2, "workers of the local Dask cluster of --dask", flag="--dask-workers",
                                 keyword="route.dask_workers", ge=1, le=1024, metavar="N", server=False)
    worker_read: bool = _setting(True, "Dask workers read their own rows of the runoff file (default; every worker "
                                       "needs the file at the same path, e.g. on a shared file system); "
                                       "--no-worker-read: this process reads it and sends each worker its rows",
                                 flag="--no-worker-read", keyword="route.worker_read",
                                 aliases=("DaskRouter.read_on_workers",), negatable=True, server=False)
    # ---- end of streaming ----

    def __post_init__(self) -> None:
        _check_types(self)
        if self.observed and not self.gauges:
            raise InputError("observed discharge was given without a gauge table, so it would be ignored.",
                             field="observed", hint=f"Give {opt('route.gauges', 'gauges.csv')} (gauge_id and the "
                                                    f"reach id each gauge sits on) with it.")
        from .params.checks import check_constant, check_names

        check_names(self.scheme, self.params)  # the parameters' one set of rules (thalweg.params)
        for key, value in self.params.items():
            if not isinstance(value, str):
                check_constant(self.scheme, key, value)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RouteSettings:
        """Settings from a mapping (a saved settings.json); unknown or missing keys fail with the list."""
        check_known_keys(cls, data)
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                   and f.name not in data]
        if missing:
            raise InputError(f"missing setting(s) {', '.join(missing)}.")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def read_file(cls, path: str | Path) -> dict[str, Any]:
        """The mapping a settings file holds (a JSON object), or InputError naming the file."""
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise InputError("the settings file does not exist.", path=path, hint="Check the path.") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read the settings: {exc}.", path=path,
                             hint="Give a settings.json that a run wrote (a JSON object).") from None
        if not isinstance(data, dict):
            raise InputError(f"the settings file holds a JSON {type(data).__name__}, not an object.", path=path,
                             hint="Give a settings.json that a run wrote.")
        check_known_keys(cls, data, path=path)
        return data

    @classmethod
    def load(cls, path: str | Path) -> RouteSettings:
        data = cls.read_file(path)
        try:
            return cls.from_dict(data)
        except InputError as exc:
            raise InputError(exc.message, path=path, hint=exc.hint) from None


# held-out gauges: one setting, one flag for calibrate and train (and their job bodies)
_VALIDATE_GAUGES = dict(help="a gauge id held out of the training and scored as if ungauged (spatial validation); "
                             "repeatable or comma-separated", flag="--validate-gauges",
                        keyword="run_fit.validate_gauges", aliases=("fit.validation_gauges", "train.validate_gauges"),
                        metavar="GAUGE_ID")


@dataclasses.dataclass
class CalibrateSettings(RouteSettings):
    """A calibration run: the routing settings (the prior and the outputs) plus the optimisation.

    ``gauges`` and ``observed`` are required. Outputs: ``<name>_params.csv``, ``<name>_calibration.json`` and the
    calibrated routing's outputs (as :class:`RouteSettings`; ``<name>.settings.json`` holds these settings); a fit
    through ``run_fit`` (:meth:`fits_model`) adds ``<name>_calibration.png`` and, for ``regression``,
    ``<name>_model.json``. ``calibrate`` empty: the parameters in s or m/s (k, tau, lag, celerity) for zones, every
    parameter of the scheme for per-reach and regression.
    """

    iterations: int = _setting(200, "most gradient steps (fewer when the loss stops improving)",
                               group="calibration", flag="--iterations", keyword="calibrate.iterations", ge=1,
                               le=100_000, metavar="N")
    learning_rate: float | None = _setting(None, "the optimiser's step (default: 0.05 for zones with Adam, on the "
                                                 "log-multipliers; 0.02 for Adam on the other models, on the "
                                                 "bounded scale; 1 for L-BFGS)", group="calibration",
                                           flag="--learning-rate", keyword="calibrate.learning_rate",
                                           aliases=("fit.learning_rate",), gt=0.0, le=10.0, metavar="RATE")
    zones: str = _setting("gauges", "gauges: one multiplier per sub-basin between gauges; global: one for all "
                                    "reaches", group="calibration", flag="--zones", keyword="calibrate.zones",
                          choices=ZONINGS)
    warmup: int = _setting(0, "first runoff steps left out of the loss and metrics", group="calibration",
                           flag="--warmup", keyword="calibrate.warmup", ge=0, le=10**8, metavar="STEPS")
    calibrate: list[str] = _setting([], "a parameter to calibrate; repeatable (default: those in s or m/s: k, "
                                        "tau, lag, celerity)", group="calibration", flag="--calibrate",
                                    keyword="calibrate.parameters", aliases=("build_model.learn",),
                                    metavar="PARAM")
    # parameter models and their fitting (thalweg.learning.run.run_fit): any model but zones, or zones with any
    # of the settings below changed from its default, fits through run_fit; zones alone calibrates as before
    model: str = _setting("zones", "parameter model: zones (a multiplier per sub-basin between gauges), per-reach "
                                   "(a value per reach, kept near the prior), regression (a small network of reach "
                                   "attributes, saved as <name>_model.json for route --parameters), prior (nothing "
                                   "fitted: the prior's scores)", group="calibration", flag="--model",
                          keyword="run_fit.model", aliases=("build_model.kind",), choices=MODEL_CHOICES,
                          metavar="MODEL")
    attributes: list[str] = _setting([], "regression: a numeric network field the parameters depend on; "
                                         "repeatable (default: length and area; also slope or any numeric field)",
                                     group="calibration", flag="--attribute", keyword="run_fit.attributes",
                                     aliases=("build_model.attributes",), metavar="FIELD")
    bounds: dict[str, list[float]] = _setting({}, "narrower bounds of a learned parameter, NAME=LOW:HIGH in SI "
                                                  "(e.g. k=3600:172800 keeps k within 1 h and 2 days); repeatable "
                                                  "(default: the scheme's physical bounds)", group="calibration",
                                              flag="--bound", keyword="run_fit.bounds",
                                              aliases=("build_model.bounds",), metavar="NAME=LOW:HIGH")
    seed: int = _setting(0, "seed of the regression network's initial weights (the same seed, the same numbers)",
                         group="calibration", flag="--seed", keyword="run_fit.seed", ge=0, le=2**31 - 1,
                         metavar="N")
    prior_weight: float = _setting(1e-3, "per-reach: weight of the penalty on log(p / prior)", group="calibration",
                                   flag="--prior-weight", keyword="run_fit.prior_weight", ge=0.0, le=1e6,
                                   metavar="W")
    smooth_weight: float = _setting(1e-2, "per-reach: weight of the penalty on that departure's differences "
                                          "between neighbouring reaches", group="calibration",
                                    flag="--smooth-weight", keyword="run_fit.smooth_weight", ge=0.0, le=1e6,
                                    metavar="W")
    calibration: str | None = _setting(None, "calibration period START/END (UTC dates or times of step ends; a "
                                             "date is its whole day); default: every step before the validation "
                                             "period", group="calibration", flag="--calibration",
                                       keyword="run_fit.calibration", aliases=("fit.calibration",),
                                       pattern=PERIOD_PATTERN, metavar="START/END")
    validation: str | None = _setting(None, "validation period START/END: scored, never trained on",
                                      group="calibration", flag="--validation", keyword="run_fit.validation",
                                      aliases=("fit.validation",), pattern=PERIOD_PATTERN, metavar="START/END")
    validate_gauges: list[str] = _setting([], **_VALIDATE_GAUGES, group="calibration")
    leave_one_out: bool = _setting(False, "also fit once per gauge with that gauge held out, and report its scores "
                                          "(transfer to ungauged reaches)", group="calibration",
                                   flag="--leave-one-out", keyword="run_fit.leave_one_out")
    loss: str = _setting("nse", "training loss: nse (1 - NSE), kge (1 - KGE), nse_star (NSE*, each gauge scaled by "
                                "its own spread), log_nse (NSE of log flows: low flows)", group="calibration",
                         flag="--loss", keyword="run_fit.loss", aliases=("fit.loss",), choices=LOSS_CHOICES,
                         metavar="LOSS")
    optimiser: str = _setting("adam", "adam or lbfgs (L-BFGS: far fewer iterations on smooth problems)",
                              group="calibration", flag="--optimiser", keyword="run_fit.optimiser",
                              aliases=("fit.optimiser",), choices=OPTIMISER_CHOICES, metavar="NAME")
    weight_decay: float = _setting(0.0, "Adam's weight decay (L2 on the regression network's weights)",
                                   group="calibration", flag="--weight-decay", keyword="run_fit.weight_decay",
                                   aliases=("fit.weight_decay",), ge=0.0, le=10.0, metavar="W")
    early_stopping: int | None = _setting(None, "stop after N iterations without a better validation loss, and "
                                                "keep the best validation state (needs a validation period or "
                                                "held-out gauges)", group="calibration", flag="--early-stopping",
                                          keyword="run_fit.early_stopping", aliases=("fit.early_stopping",),
                                          ge=1, le=100_000, metavar="N")
    checkpoint: str | None = _setting(None, "checkpoint file, written on cancel and at every checkpoint interval; "
                                            "an existing one of the same fit is resumed (to the same numbers as "
                                            "an uninterrupted fit)", group="calibration",
                                      flag="--checkpoint", keyword="run_fit.checkpoint",
                                      aliases=("fit.checkpoint",), metavar="FILE")
    checkpoint_every: int = _setting(10, "checkpoint interval, iterations", group="calibration",
                                     flag="--checkpoint-every", keyword="run_fit.checkpoint_every", ge=1,
                                     le=100_000, metavar="N")

    def fits_model(self) -> bool:
        """True when this run fits through :func:`thalweg.learning.run.run_fit` (any model but zones, or zones
        with a fitting setting changed); False: the zones calibration of :func:`thalweg.learning.calibrate`."""
        fitting = [n for n, (_, o) in options(CalibrateSettings).items()
                   if o.keyword and o.keyword.startswith("run_fit.") and n not in ("model", "attributes", "seed",
                                                                                   "prior_weight", "smooth_weight",
                                                                                   "checkpoint_every")]
        defaults = {f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
                    for f in dataclasses.fields(self)}
        return self.model != "zones" or any(getattr(self, n) != defaults[n] for n in fitting)

    def __post_init__(self) -> None:
        super().__post_init__()
        from .params.checks import check_calibrated

        if not self.gauges or not self.observed:
            absent = " and ".join(n for n in ("gauges", "observed") if not getattr(self, n))
            raise InputError(f"calibration needs gauges and observed discharge; setting(s) {absent} missing.",
                             field=absent.split(" ")[0],
                             hint="Give a gauge table (gauge_id, reach id) and a CSV of observed discharge "
                                  "(time + one column per gauge_id).")
        from .params.checks import check_bounds

        check_calibrated(self.scheme, self.calibrate or None)
        check_model_options(self.model, self.zones, self.attributes)
        check_bounds(self.scheme, self.bounds)


def check_model_options(model: str, zones: str, attributes: Sequence[str]) -> None:
    """Settings that only one parameter model takes, refused with the others (CLI, settings files, job bodies)."""
    if zones != "gauges" and model not in ("zones", "prior"):
        raise InputError(f"zones '{zones}' is for the zones model; the '{model}' model has no zones.",
                         field="zones", hint=f"Leave {opt('calibrate.zones')} out, or use "
                                             f"{opt('run_fit.model', 'zones')}.")
    if attributes and model != "regression":
        raise InputError(f"attributes are for the regression model, not '{model}'.", field="attributes",
                         hint=f"Use {opt('run_fit.model', 'regression')}, or leave {opt('run_fit.attributes')} out.")


# ---- training a runoff model through the routing (thalweg train, server job 'train') ------------------------
TRAIN_MODES = ("end-to-end", "two-step", "runoff")
RUNOFF_MODEL_KINDS = ("gr4", "lstm", "mclstm")
RUNOFF_PARAMETER_MODELS = ("uniform", "per-catchment", "regression")
ROUTING_MODEL_KINDS = ("prior", "zones", "per-reach", "regression")
TRAIN_LOSSES = ("nse", "kge", "nse_star", "log_nse")


@dataclasses.dataclass
class TrainSettings:
    """A training run (``thalweg train``): a runoff model fitted through the routing to discharge at gauges.

    ``forcings`` maps a variable name (precipitation, pet, ...) to a file (``PATH`` or ``PATH:VARIABLE``) that
    :func:`thalweg.runoff.read_runoff` reads (depths or depth rates per catchment, or grids with ``catchments``).
    Outputs in ``out_dir``: ``<name>_runoff_model.pt`` (the trained model), ``<name>_train.json`` (settings,
    metrics per gauge and period, history), ``<name>_train.png``, ``<name>_params.csv`` (routing parameters per
    reach) and ``<name>_runoff.nc`` (the learned lateral runoff, river-route catchment_runoff, m3 per step).
    """

    network: str = _setting(help="hydrography file", group="inputs", server=False, metavar="NETWORK")
    forcings: dict[str, str] | None = _setting(None, "forcing name -> file (PATH or PATH:VARIABLE)",
                                               group="inputs", keyword="train.forcings", server=False)
    gauges: str | None = _setting(None, "CSV of gauges (gauge_id, reach id)", group="inputs", flag="--gauges",
                                  keyword="train.gauges", path=True, server=False, metavar="CSV")
    observed: str | None = _setting(None, "CSV of observed discharge (time at the end of each step + one column "
                                          "per gauge_id)", group="inputs", flag="--observed",
                                    keyword="train.observed", path=True, metavar="CSV")
    catchments: str | None = _setting(None, "catchment polygons (catchment areas; grids of forcings); default: the "
                                            "network file's 'catchments' layer when it has one", group="inputs",
                                      flag="--catchments", keyword="read_network.catchments", path=True,
                                      metavar="FILE")
    catchment_layer: str | None = _setting(None, "layer of a multi-layer catchments file", group="inputs",
                                           flag="--catchment-layer", keyword="read_network.catchment_layer",
                                           metavar="LAYER")
    static: list[str] = _setting([], "a static catchment attribute (descriptor); repeatable", group="inputs",
                                 flag="--static", keyword="train.static", metavar="NAME")
    static_file: str | None = _setting(None, "file holding the static attributes (NetCDF over reach ids, or a "
                                             "table with a reach-id column); default: the network's fields",
                                       group="inputs", flag="--static-file", keyword="train.static_file",
                                       path=True, metavar="FILE")
    out_dir: str = _setting(".", "folder for the outputs", group="outputs", server=False)
    name: str = _setting("trained", "stem of the output files", group="outputs", server=False)
    runoff_model: str = _setting("gr4", "runoff model: gr4 (conceptual, hourly GR4), lstm, mclstm "
                                        "(mass-conserving LSTM)", group="training", flag="--runoff-model",
                                 keyword="train.runoff_model", choices=RUNOFF_MODEL_KINDS)
    parameter_model: str = _setting("uniform", "gr4's parameters: uniform, per-catchment, or regression (of the "
                                               "static attributes)", group="training", flag="--parameter-model",
                                    keyword="train.parameter_model", choices=RUNOFF_PARAMETER_MODELS)
    hidden: list[int] = _setting([], "hidden width: lstm/mclstm state size (one value), or the gr4 regression's "
                                     "hidden layers (none: multi-linear); repeatable", group="training",
                                 flag="--hidden", keyword="train.hidden", metavar="N")
    mode: str = _setting("end-to-end", "end-to-end (runoff model and routing together), two-step (runoff model "
                                       "with the routing prior, then the routing), runoff (routing prior only)",
                         group="training", flag="--mode", keyword="train.mode", choices=TRAIN_MODES)
    routing_model: str = _setting("zones", "routing parameter model learned with the runoff model",
                                  group="training", flag="--routing-model", keyword="train.routing_model",
                                  choices=ROUTING_MODEL_KINDS)
    scheme: str = _setting("muskingum_nonneg", "routing scheme", group="training", flag="--scheme",
                           keyword="train.scheme", choices=SCHEME_CHOICES, metavar="SCHEME")
    loss: str = _setting("nse", "training loss", group="training", flag="--loss", keyword="train.loss",
                         choices=TRAIN_LOSSES)
    iterations: int = _setting(100, "runoff-model iterations", group="training", flag="--iterations",
                               keyword="train.iterations", ge=0, le=1_000_000, metavar="N")
    routing_iterations: int = _setting(0, "two-step: iterations of the routing step (0: as --iterations)",
                                       group="training", flag="--routing-iterations",
                                       keyword="train.routing_iterations", ge=0, le=1_000_000, metavar="N")
    learning_rate: float | None = _setting(None, "the runoff model's Adam step (default per model)",
                                           group="training", flag="--learning-rate", keyword="train.learning_rate",
                                           gt=0.0, le=10.0, metavar="RATE")
    routing_learning_rate: float = _setting(0.02, "the routing model's Adam step", group="training",
                                            flag="--routing-learning-rate", keyword="train.routing_learning_rate",
                                            gt=0.0, le=10.0, metavar="RATE")
    window: int = _setting(0, "sequence models: train on random windows of this many steps (0: whole period)",
                           group="training", flag="--window", keyword="train.window", ge=0, metavar="STEPS")
    spinup: int = _setting(0, "steps run before each window, left out of its loss", group="training",
                           flag="--spinup", keyword="train.spinup", ge=0, metavar="STEPS")
    batch: int = _setting(4, "windows per iteration", group="training", flag="--batch", keyword="train.batch",
                          ge=1, le=100_000, metavar="N")
    seed: int = _setting(0, "seed of the model initialisation and the window draws", group="training",
                         flag="--seed", keyword="train.seed", ge=0, metavar="N")
    calibration: str | None = _setting(None, "calibration period START/END (dates, whole days)", group="training",
                                       flag="--calibration", keyword="train.calibration", metavar="START/END")
    validation: str | None = _setting(None, "validation period START/END", group="training", flag="--validation",
                                      keyword="train.validation", metavar="START/END")
    validate_gauges: list[str] = _setting([], **_VALIDATE_GAUGES, group="training")
    warmup: int = _setting(0, "first steps left out of every loss and metric", group="training", flag="--warmup",
                           keyword="train.warmup", ge=0, metavar="STEPS")
    checkpoint: str | None = _setting(None, "checkpoint file: saved while training, resumed when it exists",
                                      group="training", flag="--checkpoint", keyword="train.checkpoint",
                                      metavar="FILE")
    engine: str = _setting("auto", "routing engine", group="training", flag="--engine", keyword="train.engine",
                           choices=ENGINE_CHOICES, metavar="ENGINE")
    device: str = _setting("auto", "cpu, cuda, cuda:N or auto", group="training", flag="--device",
                           keyword="train.device", pattern=DEVICE_PATTERN, metavar="DEVICE")
    threads: int = _setting(1, "CPU threads of torch while training (the models step through time on small "
                               "tensors: one thread is usually fastest)", group="training", flag="--threads",
                            keyword="train.threads", ge=1, le=1024, metavar="N")

    def __post_init__(self) -> None:
        _check_types(self)
        if not self.forcings:
            raise InputError("training needs forcings; none were given.", field="forcings",
                             hint=f"Give e.g. {opt('train.forcings', 'precipitation=P.nc')}.")
        if not self.gauges or not self.observed:
            raise InputError("training needs gauges and observed discharge.", field="gauges",
                             hint=f"Give {opt('train.gauges', 'gauges.csv')} and {opt('train.observed', 'q.csv')}.")
        if self.runoff_model in ("lstm", "mclstm") and len(self.hidden) > 1:
            raise InputError(f"the {self.runoff_model} takes one hidden width (got {self.hidden}).", field="hidden",
                             hint=f"Give it once, e.g. {opt('train.hidden', '16')}.")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainSettings:
        check_known_keys(cls, data)
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---- the planners' commands (thalweg stats | compare | exceed; service jobs stats, compare, exceedance) ----------
STATISTICS = ("auto", "all", "duration")  # thalweg.results.frequency.STATISTICS (not imported: numpy)
COMPARE_STATISTIC = r"^(mean|max|q05|q50|q95|mean_annual|mam7|min7|q[0-9]+(\.[0-9]+)?y)$"


def _distributions() -> tuple[str, ...]:
    from .results.frequency import DISTRIBUTIONS

    return DISTRIBUTIONS


DISTRIBUTION_CHOICES = Choices(_distributions, "annual-maximum distributions")


@dataclasses.dataclass
class PlanningSettings:
    """The options of the planners' tables (``thalweg stats|compare|exceed`` and the service's ``stats``,
    ``compare`` and ``exceedance`` jobs): each field's :class:`Option` makes the command's flag and the job
    body's key. Groups: 'discharge reading' and 'frequency' (every command), 'stats', 'compare'."""

    variable: str | None = _setting(None, "discharge variable of the file(s) (default: found: Qout, Q, discharge, "
                                          "streamflow)", group="discharge reading", flag="--variable",
                                    keyword="read_discharge.variable", metavar="NAME")
    distribution: str = _setting("gev", "annual-maximum distribution, fitted by L-moments (gumbel needs fewer "
                                        "years)", group="frequency", flag="--distribution",
                                 keyword="flow_statistics.distribution",
                                 aliases=("return_period_flows.distribution", "compare.distribution"),
                                 choices=DISTRIBUTION_CHOICES)
    water_year_start: int = _setting(10, "month the water year starts in, 1-12 (10: October; 1: calendar years)",
                                     group="frequency", flag="--water-year-start",
                                     keyword="flow_statistics.water_year_start", ge=1, le=12, metavar="MONTH")
    statistics: str = _setting("auto", "which statistics: auto (what the run allows; those needing more complete "
                                       "water years are skipped, saying so), all (refused when the run is too "
                                       "short for one), duration (mean, max, q05/q50/q95, min7: no years needed)",
                               group="stats", flag="--statistics", keyword="flow_statistics.statistics",
                               choices=STATISTICS)
    return_periods: list[float] | None = _setting(None, "return periods, years (default: 2 5 10 20 50 100); given, "
                                                        "their flows are asked for (refused on too short a run)",
                                                  group="stats", flag="--return-periods",
                                                  keyword="return_period_flows.return_periods", gt=1.0,
                                                  le=10_000.0, metavar="YEARS")
    bootstrap: int = _setting(200, "bootstrap resamples for the confidence intervals (0: none)", group="stats",
                              flag="--bootstrap", keyword="return_period_flows.n_boot", ge=0, le=10_000,
                              metavar="N")
    confidence: float = _setting(0.9, "confidence level of the intervals", group="stats", flag="--confidence",
                                 keyword="return_period_flows.confidence", gt=0.0, lt=1.0, metavar="LEVEL")
    seed: int = _setting(0, "seed of the bootstrap (the same seed, the same numbers)", group="stats",
                         flag="--seed", keyword="stats_table.seed", ge=0, le=2**32 - 1, metavar="N")
    statistic: str = _setting("mean", "mean, max, q05, q50, q95, mean_annual, mam7, min7, or q{T}y (e.g. q100y)",
                              group="compare", flag="--statistic", keyword="compare.statistic",
                              pattern=COMPARE_STATISTIC, metavar="STATISTIC")
    top: int = _setting(10, "the N most changed reaches listed", group="compare", flag="--top",
                        keyword="compare.top", ge=0, le=1000, metavar="N")

    def __post_init__(self) -> None:
        _check_types(self)

    def explicit_periods(self) -> bool:
        """True when return periods were given: their flows are then asked for."""
        return self.return_periods is not None
# ---- end of the planners' commands ----


def check_known_keys(cls: type, data: Mapping[str, Any], *, path: str | Path | None = None) -> None:
    """InputError naming each key of ``data`` that is no setting of ``cls`` (route, calibrate, train), the file
    it came from, and the known settings closest to it (difflib): the one check of settings files and mappings."""
    import difflib

    known = sorted(f.name for f in dataclasses.fields(cls))
    unknown = sorted(str(k) for k in set(data) - set(known))
    if not unknown:
        return
    close = {k: difflib.get_close_matches(k, known, n=3, cutoff=0.6) for k in unknown}
    near = "; ".join(f"'{k}': did you mean {' or '.join(close[k])}?" for k in unknown if close[k])
    what = {"RouteSettings": "route", "CalibrateSettings": "calibrate", "TrainSettings": "train"}.get(cls.__name__,
                                                                                                     cls.__name__)
    raise InputError(f"unknown setting(s) {', '.join(unknown)} in the {what} settings.", path=path,
                     hint=(f"{near} " if near else "") + f"Known settings: {', '.join(known)}.")


def options(cls: type = CalibrateSettings) -> dict[str, tuple[dataclasses.Field, Option]]:
    """Setting name -> (dataclass field, :class:`Option`) of every setting of ``cls``, in declaration order."""
    return {f.name: (f, f.metadata["option"]) for f in dataclasses.fields(cls) if "option" in f.metadata}


def option_keys(cls: type = CalibrateSettings) -> dict[str, str]:
    """Library keyword -> JSON key of the service's job bodies (``read_runoff.units`` -> ``runoff_units``)."""
    table: dict[str, str] = {}
    for name, (_, o) in options(cls).items():
        if name == "out_dir":  # the service picks each job's folder
            continue
        key = o.json_key or name
        for keyword in (o.keyword, *o.aliases):
            if keyword:
                table[keyword] = key
        table[f"route.{name}"] = key
    return table


def _bad(name: str, value: Any, want: str, hint: str | None = None) -> InputError:
    return InputError(f"setting '{name}' is {value!r}; it must be {want}.", field=name, hint=hint)


def _number(value: Any, integer: bool) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if integer else isinstance(value, (int, float))


def _check_types(settings: RouteSettings) -> None:
    """Every setting's type, allowed values, bounds and pattern, from its :class:`Option` (the one check)."""
    for f in dataclasses.fields(settings):
        o = f.metadata.get("option")
        if o is None:
            continue
        value, kind, name = getattr(settings, f.name), kind_of(f), f.name
        if value is None and kind.endswith("?"):
            continue
        base = kind.rstrip("?")
        if base == "str":
            if not isinstance(value, str):
                raise _bad(name, value, "text")
            if o.choices is not None and value not in o.choices:
                raise InputError(f"setting '{name}' is '{value}'.", field=name,
                                 hint=f"Use one of: {', '.join(o.choices)}.")
            if o.pattern and not re.fullmatch(o.pattern, value):
                raise InputError(f"setting '{name}' is '{value}'.", field=name,
                                 hint=f"Use {o.help.split(' (')[0]}.")
        elif base in ("float", "int"):
            if not _number(value, base == "int") or (base == "float" and not math.isfinite(value)):
                raise _bad(name, value, "a whole number" if base == "int" else "a finite number")
            _check_bounds(name, value, o)
        elif base == "bool":
            if not isinstance(value, bool):
                raise _bad(name, value, "true or false")
        elif base == "list[float]":
            if not isinstance(value, list) or not value or not all(
                    _number(v, False) and math.isfinite(v) for v in value):
                raise _bad(name, value, "a list of numbers")
            for v in value:
                _check_bounds(name, v, o)
        elif base in ("list[int]", "list[str]"):
            item_ok = (lambda v: _number(v, True)) if base == "list[int]" else (lambda v: isinstance(v, str))
            if not isinstance(value, list) or not all(item_ok(v) for v in value):
                raise _bad(name, value, "a list of reach ids" if base == "list[int]" else "a list of names")
        elif base == "bounds":
            pairs = isinstance(value, dict) and all(
                isinstance(k, str) and isinstance(v, (list, tuple)) and len(v) == 2
                and all(_number(x, False) for x in v) for k, v in value.items())
            if not pairs:
                raise _bad(name, value, "an object of parameter -> [lower, upper]")
        elif base in ("params", "dict[str, str]"):
            if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
                raise _bad(name, value, "an object of names")
            if base == "dict[str, str]" and not all(isinstance(v, str) for v in value.values()):
                raise _bad(name, value, "an object of role -> field name")


def _check_bounds(name: str, value: float, o: Option) -> None:
    for bound, ok, word in ((o.gt, lambda v, b: v > b, "above"), (o.ge, lambda v, b: v >= b, "at least"),
                            (o.le, lambda v, b: v <= b, "at most"), (o.lt, lambda v, b: v < b, "below")):
        if bound is not None and not ok(value, bound):
            raise _bad(name, value, f"{word} {bound:g}")


def reading_kwargs(values: Mapping[str, Any], function: str) -> dict[str, Any]:
    """The keywords of ``function`` ('read_network' or 'read_runoff') that the setting ``values`` give.

    Every setting whose :attr:`Option.keyword` is ``<function>.<keyword>`` is passed under that keyword, so that
    a reading option added to the model reaches the library without another list; None is left out (the
    library's default).
    """
    out: dict[str, Any] = {}
    for name, (_, o) in options(CalibrateSettings).items():
        if o.keyword and o.keyword.startswith(function + ".") and values.get(name) is not None:
            out[o.keyword.split(".", 1)[1]] = values[name]
    return out
