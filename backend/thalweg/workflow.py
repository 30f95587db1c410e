"""The routing run shared by the CLI and the server: read -> parameters -> route -> write.

One implementation: ``thalweg route`` and a server "route" job both call :func:`run_route`.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from ._files import atomic_write_text
from .config import CalibrateSettings, RouteSettings, options, reading_kwargs
from .errors import Cancelled, InputError, OutputError, format_ids, opt
from .network import RiverNetwork
from .params import resolve_params

__all__ = ["RouteSettings", "CalibrateSettings", "RouteResult", "CalibrateRunResult", "run_route",
           "run_calibrate", "resolve_params", "output_paths", "check_inputs", "check_outputs", "check_output_folder",
           "estimate_memory", "check_memory", "network_problems"]

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


def _reader(function: Callable, settings: RouteSettings, name: str) -> dict[str, Any]:
    """The keywords the settings give ``function`` (read_network or read_runoff); a reading option this version of
    the library does not take is refused by name, not passed to fail as a TypeError."""
    kwargs = reading_kwargs(dataclasses.asdict(settings), name)
    accepted = inspect.signature(function).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
        return kwargs  # a wrapper: the function itself will say
    for keyword in kwargs:
        if keyword not in accepted:
            raise InputError(f"this version of Thalweg's {name} does not take the option {opt(name + '.' + keyword)}.",
                             hint="Leave it out, or update Thalweg.")
    return kwargs


def _read_network(settings: RouteSettings, network: RiverNetwork | None, report: Progress,
                  timings: dict[str, float]) -> RiverNetwork:
    """The network named by ``settings`` (a given one replaces reading), its time in ``timings['read_network']``;
    shared by whole and streamed runs."""
    t0 = time.perf_counter()
    if network is None:
        from .hydrography import read_network

        report(0.0, f"reading network {Path(settings.network).name}")
        network = read_network(settings.network, **_reader(read_network, settings, "read_network"))
    timings["read_network"] = time.perf_counter() - t0
    return network


def _read_inputs(settings: RouteSettings, network: RiverNetwork | None, runoff: Any, report: Progress,
                 should_stop: Callable[[], bool] | None, timings: dict[str, float],
                 before_runoff: Callable[[RiverNetwork], None] | None = None) -> tuple[RiverNetwork, Any]:
    """The network and runoff named by ``settings`` (objects given replace reading), timed into ``timings``.

    ``before_runoff(network)`` runs between the two (the output checks, which need the network's geometry)."""
    out_dir = Path(settings.out_dir)
    network = _read_network(settings, network, report, timings)
    if before_runoff is not None:
        before_runoff(network)
    _check(should_stop, "reading runoff")

    t0 = time.perf_counter()
    if runoff is None:
        from .runoff import read_runoff

        report(0.05, f"reading runoff {Path(settings.runoff).name}")
        kwargs = _reader(read_runoff, settings, "read_runoff")
        # gridded runoff caches its area-weight table beside the outputs
        kwargs["weights_cache"] = out_dir if settings.catchments else None
        runoff = read_runoff(settings.runoff, network, **kwargs)
    timings["read_runoff"] = time.perf_counter() - t0
    return network, runoff


# ---- guards: everything a run can check before it writes (or even reads) anything ----

def _input_paths(settings: RouteSettings, settings_file: str | os.PathLike | None = None) -> dict[str, Path]:
    """Setting name -> path of every input file the settings name."""
    paths = {name: Path(getattr(settings, name)) for name, (_, o) in options(type(settings)).items()
             if (o.path or name in ("network", "runoff")) and getattr(settings, name)}
    paths = {k: v for k, v in paths.items() if str(v) != "inline"}  # the service's inline inputs
    if settings_file:
        paths["settings"] = Path(settings_file)
    return paths


def _os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def check_inputs(settings: RouteSettings, given: tuple[str, ...] = ()) -> None:
    """Every input path of ``settings`` exists and can be read; InputError naming the option and the fix.

    Options that only matter for some inputs (``catchments`` for gridded runoff, ``observed``) are checked too,
    so that a mistyped path is never silently ignored. ``given``: inputs passed as objects (their paths are not
    read: 'network', 'runoff').
    """
    for name, path in _input_paths(settings).items():
        if name in given:
            continue
        where = opt(f"route.{name}") if name not in ("network", "runoff") else f"the {name} file"
        try:
            path.stat()
        except FileNotFoundError:
            raise InputError(f"{where} does not exist.", path=path, field=None,
                             hint=f"Check the path (looked in {path.parent.absolute()}).") from None
        except PermissionError:
            raise InputError(f"{where} cannot be reached: permission denied on a folder of its path.", path=path,
                             hint=f"Give yourself read access to {path.parent} (ls -ld, chmod), or copy the file "
                                  f"elsewhere.") from None
        except OSError as exc:
            raise InputError(f"{where} cannot be used: {_os_reason(exc)}.", path=path, hint="Check the path.") from None
        if not os.access(path, os.R_OK) or (path.is_dir() and not os.access(path, os.X_OK)):
            raise InputError(f"{where} cannot be read: permission denied.", path=path,
                             hint=f"Give yourself read access to {path} (ls -l, chmod).")


def _name_max(folder: Path) -> int:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return 255


def check_output_folder(folder: Path, *, flag: str = "-o") -> None:
    """``folder`` is (or can be made) a writable folder: InputError with the path and the fix, naming ``flag``."""
    folder = Path(folder)
    probe = folder
    while True:
        try:
            if probe.exists():
                break
        except OSError as exc:  # name too long, permission denied on a parent
            raise OutputError(f"the output folder cannot be used: {_os_reason(exc)}.", path=folder,
                              hint=f"Give {flag} a shorter path or one you can write.") from None
        if probe == probe.parent:
            break
        probe = probe.parent
    if not probe.is_dir():
        what = "the output folder" if probe == folder else f"the output folder's parent {probe}"
        raise OutputError(f"{what} is a file, not a folder.", path=folder,
                          hint=f"Give {flag} a folder (not below a file), or move the file away.")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"the output folder {probe} is read-only for you.", path=folder,
                          hint=f"Give {flag} a folder you can write, or change its permissions (chmod u+w).")


def output_paths(settings: RouteSettings, network: RiverNetwork | None = None) -> dict[str, Path]:
    """Output kind -> path of every file a run of ``settings`` writes (the GeoPackage only when ``network``, if
    given, has geometry): the one list the writing, the overwrite and the input checks share."""
    from .results.outputs import output_format
    from .results.outputs import output_paths as discharge_paths

    out_dir, name = Path(settings.out_dir), settings.name
    fmt = output_format(out_dir / f"{name}{'.zarr' if settings.format == 'zarr' else '.nc'}", settings.format,
                        settings.convention)
    paths = {kind: path for kind, (path, _, _) in discharge_paths(out_dir, name, fmt, settings.convention).items()}
    if settings.write_gpkg and (network is None or network.geometry is not None):
        paths["gpkg"] = out_dir / f"{name}.gpkg"
    if settings.gauges or settings.hydrograph_reaches:
        paths["hydrographs"] = out_dir / f"{name}_hydrographs.csv"
        paths["hydrographs_long"] = out_dir / f"{name}_hydrographs_long.csv"
    if isinstance(settings, CalibrateSettings):
        paths["params"] = out_dir / f"{name}_params.csv"
        paths["calibration"] = out_dir / f"{name}_calibration.json"
        if settings.fits_model():
            paths["plot"] = out_dir / f"{name}_calibration.png"
            if settings.model == "regression":
                paths["model"] = out_dir / f"{name}_model.json"
    paths["settings"] = out_dir / f"{name}.settings.json"
    return paths


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def check_outputs(settings: RouteSettings, network: RiverNetwork | None = None, *, overwrite: bool = True,
                  settings_file: str | os.PathLike | None = None) -> dict[str, Path]:
    """Refuse, before anything is written, outputs that cannot or must not be written.

    An output (the main file or one beside it) that is an input is always refused; one that exists is refused
    unless ``overwrite``; a folder in its place, a folder below a file, a read-only folder and a name too long
    are refused with the path and the fix. ``settings_file`` (the file the settings were read from) may be
    replaced by the new run's settings. Returns :func:`output_paths`.
    """
    paths = output_paths(settings, network)
    check_output_folder(Path(settings.out_dir))
    inputs = _input_paths(settings)
    name_max = _name_max(Path(settings.out_dir))
    for kind, path in paths.items():
        for name, source in inputs.items():
            if _same_file(path, source) or os.path.abspath(path) == os.path.abspath(source):
                raise OutputError(f"the {kind} output would replace the {name} input.", path=path,
                                  hint=f"Give {opt('route.out_dir', 'OUT.nc')} another name or folder.")
        # the atomic writer's temporary name (.<stem>.XXXXXXXX.part<suffix>) is 15 characters longer
        if len(os.fsencode(path.name)) + 15 > name_max:
            raise OutputError(f"the output file name is {len(os.fsencode(path.name)):,} bytes long; this file "
                              f"system takes at most {name_max - 15:,} here.", path=path,
                              hint=f"Give {opt('route.out_dir', 'OUT.nc')} a shorter name.")
        example = "OUT.zarr" if path.suffix.lower() == ".zarr" else "OUT.nc"
        if path.is_dir() and not (path.suffix.lower() == ".zarr" and _is_zarr_store(path)):
            # a zarr store is a folder: it is replaced as a whole (written beside, swapped in) like a file
            raise OutputError(f"the {kind} output is a folder{' that is not a zarr store' * (example == 'OUT.zarr')}.",
                              path=path, hint=f"Give {opt('route.out_dir', example)} another name, or remove the "
                                              f"folder.")
        if path.exists() and not overwrite and not (settings_file and _same_file(path, Path(settings_file))):
            raise OutputError(f"the {kind} output exists; it is not replaced without {opt('route.overwrite')}.",
                              path=path, hint=f"Give {opt('route.overwrite')} to replace it, or another "
                                              f"{opt('route.out_dir', example)}.")
    return paths


def _is_zarr_store(path: Path) -> bool:
    """Whether the folder ``path`` is a zarr store (v2 or v3 metadata at its top), or an empty folder."""
    return any((path / name).exists() for name in (".zgroup", ".zattrs", ".zarray", "zarr.json")) or \
        not any(path.iterdir())


def network_problems(network: RiverNetwork) -> list[str]:
    """What reading accepts but routing with the default parameters does not: reaches without a length or a
    drainage area (NaN or not positive), each as one line with the count and the first ids."""
    problems = []
    for what, values, need in (("length", network.length, "the default parameters and length-based schemes"),
                               ("drainage area", network.area, "the default parameters (GEOGloWS rule)")):
        bad = ~(np.isfinite(values) & (values > 0))
        if bad.any():
            problems.append(f"{int(bad.sum()):,} of {network.n_reaches:,} reaches have no {what} (NaN or <= 0): "
                            f"{format_ids(network.ids[bad])}; {need} need it.")
    return problems


# peak memory of a run: a fixed part plus multiples of its runoff array (N x T float32), measured with
# scripts/bench_cli_route.py and tests/test_workflow.py (re-measured after the readers went block by block and the
# summary by blocks of reaches): 200k x 2,160 hourly, --convention both with the GeoPackage, peaked at 7.3 GiB for
# a 1.65 GiB runoff array (4.2 times it, start-up included); 20k x 1,000: 0.2 GiB above start-up (2.5 times). So:
# a fixed part (at most 20 times the array), reading (runoff blocks + the aligned array: 3), then
# runoff + discharge + the engine's work (2.5) plus the largest writer: a RAPID Qout (a shifted, transposed
# copy: 2), a river-route Q (1) or the GeoPackage summary (blocks of reaches: 1.5). Re-measure when a reader or
# writer changes.
_MEMORY_FIXED = 200 * 2**20
_MEMORY_READ, _MEMORY_BASE, _MEMORY_Q, _MEMORY_QOUT, _MEMORY_SUMMARY = 3.0, 2.5, 1.0, 2.0, 1.5


def estimate_memory(settings: RouteSettings, n_reaches: int, n_steps: int, *, reading: bool = True) -> int:
    """Estimated peak memory of reading (unless not ``reading``: the runoff is read), routing ``n_reaches`` x
    ``n_steps`` with ``settings`` and writing its outputs, bytes."""
    writer = max(_MEMORY_QOUT if settings.convention != "end" else _MEMORY_Q,
                 _MEMORY_SUMMARY if settings.write_gpkg else 0.0)
    factor = max(_MEMORY_READ if reading else 0.0, _MEMORY_BASE + writer)
    array = 4 * n_reaches * n_steps
    return int(min(_MEMORY_FIXED, 20 * array) + array * factor)


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _runoff_steps(path: str) -> int | None:
    """The number of time steps of a NetCDF runoff file, from its header (nothing else is read); None when the
    file is not NetCDF or has no recognisable time dimension."""
    from ._paths import kind_of

    # only a regular file is opened: a named pipe would block the header read (the readers refuse it by name)
    if Path(path).suffix.lower() not in (".nc", ".nc4", ".netcdf") or kind_of(Path(path)) != "file":
        return None
    try:
        import netCDF4

        with netCDF4.Dataset(path) as ds:
            dims = ds.dimensions
            for name in ("time", "Time", "TIME", "t"):
                if name in dims:
                    return len(dims[name])
            unlimited = [d for d in dims.values() if d.isunlimited()]
            return len(unlimited[0]) if unlimited else None
    except Exception:  # the reader reports a broken file properly; the guard only skips its early look
        return None


def check_memory(settings: RouteSettings, n_reaches: int, n_steps: int, *, held: int | None = None) -> None:
    """Refuse a run whose estimated peak memory exceeds the budget (``settings.memory`` GB, else the memory
    available now plus ``held``, bytes the run already holds), with the estimate and the fix. Called before the
    runoff is read (shape from the file's header) and again before routing (``held``: the runoff read)."""
    need = estimate_memory(settings, n_reaches, n_steps, reading=held is None)
    if settings.memory is not None:
        budget, source = int(settings.memory * 1e9), f"the budget {opt('route.memory', f'{settings.memory:g}')}"
    else:
        available = _available_memory()
        if available is None:
            return
        budget, source = available + (held or 0), "the memory available"
    if need <= budget:
        return
    gib = 2.0**30
    share = max(1, int(n_steps * budget / need))
    raise InputError(f"routing {n_reaches:,} reaches x {n_steps:,} steps needs about {need / gib:,.1f} GiB at its "
                     f"peak (runoff {4 * n_reaches * n_steps / gib:,.1f} GiB), more than {source} "
                     f"({budget / gib:,.1f} GiB).",
                     hint=f"Route a shorter period (about {share:,} steps at a time), leave out the GeoPackage "
                          f"({opt('route.write_gpkg')}) or the second convention, or set "
                          f"{opt('route.memory', f'{math.ceil(need / 1e9):d}')} to go ahead on a machine that has "
                          f"it.")


def _write(kind: str, path: Path, writer: Callable[..., Path], *args: Any) -> Path:
    """``writer(path, *args)``, with a failure to write turned into one line naming the file and the fix."""
    try:
        return writer(path, *args)
    except OSError as exc:
        reason = _os_reason(exc)
    except RuntimeError as exc:  # netCDF4/HDF5 report I/O failures as RuntimeError("NetCDF: HDF error")
        if not str(exc).startswith("NetCDF:"):
            raise
        reason = str(exc)
    full = " (the disk is full)" if "No space" in reason or "HDF error" in reason else ""
    raise OutputError(f"cannot write the {kind} output: {reason}{full}.", path=path,
                      hint="Free space or fix permissions in that folder, or give "
                           f"{opt('route.out_dir', 'OUT.nc')} elsewhere; nothing half-written was left.") from None


def model_params(settings: RouteSettings, network: RiverNetwork) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Every reach's parameters from the parameter model file ``settings.parameters`` (``--parameters MODEL``: a
    ``<name>_model.json``, or a per-reach ``<name>_params.csv`` table), and where they came from; InputError when
    the model is for another scheme or constants are given too."""
    import json

    from .params.model_file import apply_model, is_parameter_table, read_parameter_table

    path = Path(settings.parameters)
    if settings.params:
        given = ", ".join(sorted(settings.params))
        raise InputError(f"parameters are given twice: by {path.name} and as {given}.", path=path,
                         hint=f"Leave out {given} to route with the file's values, or leave out "
                              f"{opt('route.parameters')} to route with {given}.")
    if is_parameter_table(path):
        params = read_parameter_table(path, network, settings.scheme)
        return params, {name: f"parameter table {path.name}" for name in params}
    try:
        scheme = json.loads(path.read_text(encoding="utf-8")).get("scheme")
    except (OSError, ValueError, AttributeError):
        scheme = None  # apply_model says what is wrong with the file
    if scheme is not None and scheme != settings.scheme:
        raise InputError(f"the parameter model is for the scheme '{scheme}', not '{settings.scheme}'.", path=path,
                         hint=f"Route with {opt('route.scheme', scheme)}.")
    params = apply_model(path, network)
    return params, {name: f"parameter model {path.name}" for name in params}


def run_route(settings: RouteSettings, *, network: RiverNetwork | None = None, runoff: Any = None,
              progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
              params: Mapping[str, Any] | None = None, params_used: Mapping[str, str] | None = None,
              overwrite: bool = True, settings_file: str | os.PathLike | None = None,
              checked: bool = False, gauges: Any = None) -> RouteResult:
    """Read the network and runoff, route, and write the outputs named by ``settings``.

    ``network``/``runoff`` objects replace reading the paths. ``params`` (name -> per-reach array [N], SI, every
    parameter of the scheme, e.g. calibrated values) replaces resolving ``settings.params``; ``params_used``
    then says where each came from. ``progress(fraction, message)`` is called as the
    run advances; ``should_stop()`` is polled at safe points and raises :class:`Cancelled` (nothing is written
    before the routing has finished, and every file is written atomically).

    Every option is checked before anything is written: inputs exist and can be read (:func:`check_inputs`),
    outputs can be written and replace no input (nor, without ``overwrite``, an existing file:
    :func:`check_outputs`; ``settings_file`` is the file the settings came from), gauges and hydrograph reaches
    are in the network, and the estimated peak memory fits (:func:`check_memory`). ``checked``: the caller
    (run_calibrate) has done the input and output checks. ``gauges`` (a :class:`thalweg.learning.Gauges`)
    replaces reading ``settings.gauges``.
    """
    import torch

    from .routing import route

    report = progress or (lambda fraction, message: None)
    timings: dict[str, float] = {}
    out_dir = Path(settings.out_dir)
    paths: dict[str, Path] = output_paths(settings)  # a bad format or convention fails before any reading

    def check_outputs_of(net: RiverNetwork) -> None:
        paths.update(check_outputs(settings, net, overwrite=overwrite or checked, settings_file=settings_file))
        steps = None if checked or runoff is not None else _runoff_steps(settings.runoff)
        if steps:
            check_memory(settings, net.n_reaches, steps)

    if not checked:
        check_inputs(settings, given=tuple(name for name, obj in (("network", network), ("runoff", runoff))
                                           if obj is not None))
    from .results.outputs import check_discharge_at, discharge_reaches, hydrograph_reaches

    check_discharge_at(settings.discharge_at,
                       bool(settings.gauges or settings.hydrograph_reaches) or gauges is not None)
    # ---- streaming in time (thalweg.scale, docs/scale.md): runs that ask for it (--stream always, --resume, Dask) ----
    if runoff is None and not checked:
        from .scale.run import run_streaming, wants_stream

        if wants_stream(settings, auto=False):
            return run_streaming(settings, network=network, progress=report, should_stop=should_stop, params=params,
                                 params_used=params_used, overwrite=overwrite, settings_file=settings_file)
    # ---- end of streaming ----
    network, runoff = _read_inputs(settings, network, runoff, report, should_stop, timings,
                                   before_runoff=check_outputs_of)

    if gauges is None and settings.gauges:
        from .learning import read_gauges

        gauges = read_gauges(settings.gauges, network, observed=settings.observed)
    if settings.hydrograph_reaches:
        network.index_of(settings.hydrograph_reaches, what=f"reach ids of {opt('route.hydrograph_reaches')}")
    filed = discharge_reaches(network, settings.discharge_at, hydrograph_reaches(gauges, settings.hydrograph_reaches))
    if params is None and settings.parameters:
        params, used = model_params(settings, network)
    elif params is None:
        params, used = resolve_params(network, settings.scheme, settings.params)
    else:
        used = {name: "given per reach" for name in params} | dict(params_used or {})
    for name, origin in used.items():
        log.info("parameter %s: %s", name, origin)
    if not checked:
        check_memory(settings, *runoff.values.shape, held=int(runoff.values.nbytes))
    _check(should_stop, "routing")

    t0 = time.perf_counter()

    def level_progress(done: int, total: int) -> None:
        report(0.3 + 0.4 * done / max(total, 1), "routing")
        _check(should_stop, "writing outputs")

    report(0.3, "routing")
    with torch.no_grad():
        if settings.gpus:  # one process per GPU (or CPU processes: thalweg.distributed says so), same discharge
            from .distributed import route as route_over_processes

            q = route_over_processes(network, runoff.values, params, settings.scheme, dt=runoff.dt,
                                     world_size=settings.gpus, device=settings.device, engine=settings.engine)
        else:
            q = route(network, runoff.values, params, settings.scheme, dt=runoff.dt, engine=settings.engine,
                      device=settings.device, progress=level_progress).cpu().numpy()
    timings["route"] = time.perf_counter() - t0
    _check(should_stop, "writing outputs")

    from .results import Discharge

    from .routing.engines import resolve

    attrs = {"thalweg_version": __version__, "scheme": settings.scheme, "engine": resolve(settings.engine),
             "network": str(settings.network), "runoff": str(settings.runoff),
             "parameters": "; ".join(f"{k}: {v}" for k, v in used.items())}
    discharge = Discharge.from_routing(q, runoff, attrs)

    t0 = time.perf_counter()
    report(0.7, "writing outputs")
    from .results.outputs import write_route_outputs

    # the whole set is published together (or nothing is); the overwrite and input checks used the same paths
    outputs = _write("discharge", paths.get("q", paths.get("qout")), lambda _: write_route_outputs(
        out_dir, settings.name, discharge, network, convention=settings.convention, fmt=settings.format,
        id_name=settings.id_name, gpkg=settings.write_gpkg, gauges=gauges, reaches=settings.hydrograph_reaches,
        texts={"settings": (f"{settings.name}.settings.json", settings.to_json())},
        progress=lambda f, m: report(0.7 + 0.3 * f, m), compression=settings.compression, discharge_at=filed))
    timings["write"] = time.perf_counter() - t0
    report(1.0, "done")
    return RouteResult(outputs=outputs, discharge=discharge, network=network, timings=timings,
                       params_used=used, gauges=gauges)


@dataclasses.dataclass
class CalibrateRunResult:
    """What :func:`run_calibrate` did: the calibration, the calibrated routing and every file written."""

    outputs: dict[str, Path]
    calibration: Any  # thalweg.learning.CalibrationResult, or a fit's thalweg.learning.fit.FitResult
    route: RouteResult
    gauges: Any  # thalweg.learning.Gauges
    timings: dict[str, float]
    prior_used: dict[str, str]
    fit: Any = None  # thalweg.learning.run.FitRun when the run fitted a parameter model (settings.fits_model())


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def run_calibrate(settings: CalibrateSettings, *, network: RiverNetwork | None = None, runoff: Any = None,
                  progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
                  overwrite: bool = True, settings_file: str | os.PathLike | None = None,
                  gauges: Any = None) -> CalibrateRunResult:
    """Calibrate the scheme's travel-time parameters at the gauges, then route with them and write the outputs.

    With ``settings.fits_model()`` (a model other than zones, or a fitting setting: periods, held-out gauges,
    leave-one-out, loss, optimiser, early stopping, checkpoint) the fit is :func:`thalweg.learning.run.run_fit`'s
    and the outputs are its files (``<name>_params.csv``, ``<name>_calibration.json`` and ``.png``,
    ``<name>_model.json`` for regression) beside the calibrated routing's; otherwise the zones calibration below.
    ``gauges`` (a :class:`thalweg.learning.Gauges` with observations) replaces reading ``settings.gauges`` and
    ``settings.observed`` (the service's inline gauges).

    Reads like :func:`run_route`; the prior is :func:`resolve_params` of ``settings.params``. Observations are
    matched to the routed discharge's time axis (end of each runoff step). Writes ``<name>_params.csv``
    (reach_id, zone, zone_gauge, every parameter), ``<name>_calibration.json`` (settings, multipliers per zone,
    metrics before and after per gauge, history) and the calibrated routing's outputs, each atomically and only
    once the calibration and routing have finished (a cancel leaves nothing). The inputs, outputs
    (``overwrite``, ``settings_file``: as :func:`run_route`) and memory are checked before the calibration starts.
    """
    from .learning import read_gauges
    from .learning.calibrate import calibrate

    if not isinstance(settings, CalibrateSettings):
        raise InputError("run_calibrate needs CalibrateSettings (with gauges, observed and the optimisation).")
    report = progress or (lambda fraction, message: None)
    timings: dict[str, float] = {}
    check_inputs(settings, given=tuple(name for name, obj in (("network", network), ("runoff", runoff))
                                       if obj is not None))

    def before_runoff(net: RiverNetwork) -> None:
        check_outputs(settings, net, overwrite=overwrite, settings_file=settings_file)
        steps = None if runoff is not None else _runoff_steps(settings.runoff)
        if steps:
            check_memory(settings, net.n_reaches, steps)

    network, runoff = _read_inputs(settings, network, runoff, report, should_stop, timings,
                                   before_runoff=before_runoff)
    if settings.hydrograph_reaches:
        network.index_of(settings.hydrograph_reaches, what=f"reach ids of {opt('route.hydrograph_reaches')}")
    check_memory(settings, *runoff.values.shape, held=int(runoff.values.nbytes))
    _check(should_stop, "calibration")
    prior, used = resolve_params(network, settings.scheme, settings.params)
    if gauges is None:
        gauges = read_gauges(settings.gauges, network, observed=settings.observed)
    # the routed Q[:, t] is stamped at the end of runoff step t, as Discharge.from_routing does
    end = runoff.end_time
    observed = gauges.observed_on(end)
    if observed is None:
        raise InputError("the gauges carry no observed discharge, so there is nothing to calibrate on.",
                         field="observed", hint=f"Give {opt('route.observed', 'qobs.csv')} or observed values "
                                                "per gauge.")
    if not np.isfinite(observed).any():
        raise InputError(f"no observation falls on the routed time steps ({end[0]} .. {end[-1]}, end of each "
                         f"{runoff.dt:g} s step); observations span {gauges.observed.index.min()} .. "
                         f"{gauges.observed.index.max()}.", path=settings.observed,
                         hint="Observed times must be the END of each runoff step, in UTC, over the runoff period.")

    if settings.fits_model():
        return _run_fit(settings, network, runoff, gauges, observed, used, report, should_stop, timings)
    t0 = time.perf_counter()
    try:
        result = calibrate(network, runoff.values, prior, settings.scheme, dt=runoff.dt,
                           gauge_reaches=gauges.reach_ids, observed=observed, parameters=settings.calibrate or None,
                           zones=settings.zones, iterations=settings.iterations,
                           learning_rate=0.05 if settings.learning_rate is None else settings.learning_rate,
                           warmup=settings.warmup, engine=settings.engine,
                           device=settings.device,
                           progress=lambda f, m: report(0.1 + 0.75 * f, m), should_stop=should_stop,
                           gauge_names=[str(g) for g in gauges.ids])
    except InputError as exc:
        if exc.field != "observed":
            raise
        raise InputError(exc.message, path=settings.observed, ids=exc.ids, hint=exc.hint) from None
    timings["calibrate"] = time.perf_counter() - t0
    from .params.checks import check_celerity

    check_celerity(network, settings.scheme, result.params, names=result.calibrated, what="calibrated", prior=prior)
    _check(should_stop, "routing with the calibrated parameters")

    notes = {name: f"calibrated: prior ({used[name]}) x zone multiplier" if name in result.calibrated else origin
             for name, origin in used.items()}
    routed = run_route(settings, network=network, runoff=runoff, params=result.params, params_used=notes,
                       progress=lambda f, m: report(0.85 + 0.15 * f, m), should_stop=should_stop, checked=True,
                       gauges=gauges)
    timings.update({k: v for k, v in routed.timings.items() if k not in timings})

    t0 = time.perf_counter()
    out_dir = Path(settings.out_dir)
    outputs = dict(routed.outputs)
    record = json.dumps(_calibration_record(settings, result, gauges, used), indent=2)
    outputs["params"] = _write("params", out_dir / f"{settings.name}_params.csv", _write_params_csv, network, result)
    outputs["calibration"] = _write("calibration", out_dir / f"{settings.name}_calibration.json", atomic_write_text,
                                    record)
    timings["write"] = timings.get("write", 0.0) + time.perf_counter() - t0
    return CalibrateRunResult(outputs=outputs, calibration=result, route=routed, gauges=gauges, timings=timings,
                              prior_used=used)


def _run_fit(settings: CalibrateSettings, network: RiverNetwork, runoff: Any, gauges: Any, observed: np.ndarray,
             used: Mapping[str, str], report: Progress, should_stop: Callable[[], bool] | None,
             timings: dict[str, float]) -> CalibrateRunResult:
    """run_calibrate's fit of a parameter model (:func:`thalweg.learning.run.run_fit`), the routing with it, and
    the fit's files, written once the routing has succeeded."""
    from .learning.run import run_fit, write_fit_outputs
    from .params.models import DEFAULT_ATTRIBUTES

    t0 = time.perf_counter()
    try:
        fitted = run_fit(
            network, runoff.values, dt=runoff.dt, time_end=runoff.end_time, gauge_reaches=gauges.reach_ids,
            observed=observed, gauge_names=[str(g) for g in gauges.ids], model=settings.model,
            scheme=settings.scheme, params=settings.params, learn=settings.calibrate or None,
            bounds={name: tuple(pair) for name, pair in settings.bounds.items()} or None,
            attributes=tuple(settings.attributes) or DEFAULT_ATTRIBUTES, seed=settings.seed,
            prior_weight=settings.prior_weight, smooth_weight=settings.smooth_weight, zoning=settings.zones,
            calibration=settings.calibration, validation=settings.validation,
            validate_gauges=list(settings.validate_gauges), leave_one_out=settings.leave_one_out,
            checkpoint=settings.checkpoint, checkpoint_every=settings.checkpoint_every, warmup=settings.warmup,
            loss=settings.loss, optimiser=settings.optimiser, iterations=settings.iterations,
            learning_rate=settings.learning_rate, weight_decay=settings.weight_decay,
            early_stopping=settings.early_stopping, engine=settings.engine, device=settings.device,
            progress=lambda f, m: report(0.1 + 0.75 * f, m), should_stop=should_stop)
    except InputError as exc:
        if exc.field != "observed" or settings.observed == "inline":
            raise
        raise InputError(exc.message, path=settings.observed, ids=exc.ids, hint=exc.hint) from None
    timings["calibrate"] = time.perf_counter() - t0
    _check(should_stop, "routing with the fitted parameters")
    result = fitted.result
    held = {str(g) for g in settings.validate_gauges} & {str(g) for g in gauges.ids}
    trained = f"{len(gauges.ids) - len(held)} gauge(s)" + (f", {len(held)} held out" if held else "")
    notes = {name: f"{settings.model} model fitted at {trained} (prior: {origin})"
             if name in result.model.learned else origin for name, origin in used.items()}
    routed = run_route(settings, network=network, runoff=runoff, params=result.params, params_used=notes,
                       progress=lambda f, m: report(0.85 + 0.15 * f, m), should_stop=should_stop, checked=True,
                       gauges=gauges)
    timings.update({k: v for k, v in routed.timings.items() if k not in timings})
    t0 = time.perf_counter()
    files = _write("calibration", Path(settings.out_dir) / f"{settings.name}_calibration.json",
                   lambda _: write_fit_outputs(fitted, network, settings.out_dir, settings.name,
                                               report_name="calibration",
                                               extra={"thalweg_version": __version__, "prior": dict(used),
                                                      "run_settings": settings.to_dict()}))
    fitted.outputs = files
    outputs = dict(routed.outputs)
    outputs.update({"calibration" if kind == "report" else kind: path for kind, path in files.items()})
    timings["write"] = timings.get("write", 0.0) + time.perf_counter() - t0
    return CalibrateRunResult(outputs=outputs, calibration=result, route=routed, gauges=gauges, timings=timings,
                              prior_used=dict(used), fit=fitted)


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
