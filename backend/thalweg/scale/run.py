"""``thalweg route`` streamed: the settings' run through :func:`.stream.stream_route`.

:func:`wants_stream` decides (``--stream auto``: when the run's estimated peak memory, from the runoff file's
header, exceeds the budget ``--memory`` or the memory available; always with ``--stream always``, ``--resume``,
``--dask`` or ``--scheduler``; a zarr runoff store is always streamed). ``thalweg route`` asks it first;
:func:`thalweg.workflow.run_route` streams the runs that ask for it (the service's jobs, which need their
discharge in memory, never do by themselves); :func:`run_streaming` reads the network, checks the
outputs, resolves the parameters as :func:`thalweg.workflow.run_route` does, streams, and publishes the
discharge files, the hydrograph CSVs (read back from the written file) and the settings record as one set.
"""
from __future__ import annotations

import logging
import os
import shutil
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..errors import InputError, ThalwegWarning, opt, render_options

__all__ = ["run_streaming", "wants_stream", "checkpoint_folder"]

log = logging.getLogger(__name__)


def checkpoint_folder(settings) -> Path:
    """Where a streamed run keeps its checkpoint: ``.NAME.stream`` in the output folder."""
    return Path(settings.out_dir) / f".{settings.name}.stream"


def _header_shape(path: str) -> tuple[int, int] | None:
    """(reach rows, steps) of a per-reach runoff file from its header; None when it is not one."""
    from ..names import TIME_NAMES, find_name
    from ..runoff.readers import _REACH_VARS, open_lazy

    try:
        ds = open_lazy(path)
    except Exception:  # the reader reports a broken file properly
        return None
    with ds:
        name = find_name(ds.data_vars, _REACH_VARS)
        if name is None or ds[name].ndim != 2:
            return None
        da = ds[name]
        tdim = find_name(da.dims, TIME_NAMES)
        if tdim is None:
            return None
        return int(da.sizes[next(d for d in da.dims if d != tdim)]), int(da.sizes[tdim])


def _asks(settings) -> list[str]:
    """The flags of ``settings`` that ask for streaming (placeholders, in the order of the docs)."""
    return [flag for flag, on in ((opt("route.stream", "always"), settings.stream == "always"),
                                  (opt("route.resume"), settings.resume), (opt("route.dask"), settings.dask),
                                  (opt("route.scheduler"), bool(settings.scheduler)),
                                  (opt("route.chunk_steps", settings.chunk_steps), settings.chunk_steps > 0)) if on]


def _may_split(settings) -> bool:
    """Whether the settings make rivers split (known before the network is read)."""
    return bool(settings.links) or settings.bifurcations == "split"


_SPLIT_FIX = (f"Route it whole ({opt('route.stream', 'never')}, with {opt('route.memory', 'GB')} where it needs "
              f"more memory than is free), or keep the main paths only ({opt('route.bifurcations', 'main')}).")


def _refuse_splits(why: str) -> InputError:
    return InputError(f"{why}, and streaming in time chunks cannot route a network whose rivers split yet "
                      f"(a warm state across chunks).", hint=_SPLIT_FIX)


def _check_splits(settings, network) -> None:
    """Refuse a network with splits before anything starts (a Dask cluster, a checkpoint)."""
    splits = getattr(network, "splits", None)
    if splits is not None:
        k = len(splits.reach)
        raise _refuse_splits(f"{k:,} {'reach' if k == 1 else 'reaches'} of the network "
                             f"{'splits' if k == 1 else 'split'} ({opt('route.links')} or "
                             f"{opt('route.bifurcations', 'split')}, or fractions in the data)")


def wants_stream(settings, *, auto: bool = True) -> bool:
    """Whether the run of ``settings`` streams (module docstring); InputError where it must and cannot, and
    for options that would be ignored (``--gpus`` on a streamed run, ``--chunk-steps`` on one that is not).

    ``auto``: decide ``--stream auto`` by the memory estimate (the CLI does); without it only a run that asks
    for streaming streams (``run_route`` for the service, whose jobs need the discharge in memory)."""
    from .stream import budget_bytes, chunk_steps_for, routes_on_gpu, streamable

    asks = _asks(settings)
    gpus = getattr(settings, "gpus", 0)
    if not settings.worker_read and not (settings.dask or settings.scheduler):
        raise InputError(f"{opt('route.worker_read')} says how the workers of a Dask run get their runoff, and "
                         f"this run is not on Dask.",
                         hint=f"Leave out {opt('route.worker_read')}, or route on Dask ({opt('route.dask')} or "
                              f"{opt('route.scheduler', 'ADDRESS')}).")
    if gpus and (settings.dask or settings.scheduler):
        where = opt("route.dask") if settings.dask else opt("route.scheduler")
        raise InputError(f"{opt('route.gpus', gpus)} and {where} cannot be given together: each says where the "
                         f"run is routed (processes of this host, one per GPU, or Dask workers).",
                         hint="Leave out one of them.")
    if gpus and asks:
        raise InputError(f"{opt('route.gpus', gpus)} routes the whole run in memory over several processes; it "
                         f"cannot stream yet, so it cannot be given with {' or '.join(asks)} (docs/gpus.md).",
                         hint=f"Leave out {opt('route.gpus')} to stream on one device, or leave out "
                              f"{' and '.join(asks)} to route it whole over the GPUs.")
    if settings.stream == "never":
        if asks:
            raise InputError(f"{', '.join(asks)} {'stream' if len(asks) > 1 else 'streams'} the run; "
                             f"{'they' if len(asks) > 1 else 'it'} cannot be given with "
                             f"{opt('route.stream', 'never')}.",
                             hint=f"Leave out {opt('route.stream', 'never')}, or {' and '.join(asks)}.")
        return False
    runoff = str(settings.runoff)
    if not streamable(runoff):
        if asks:
            raise InputError("only per-reach runoff in a NetCDF file or a zarr store can be streamed.",
                             path=runoff, hint=f"Convert the runoff to NetCDF, or route it whole "
                                               f"({opt('route.stream', 'never')}).")
        return False
    if asks:
        if _may_split(settings):
            raise _refuse_splits(f"{' and '.join(asks)} {'stream' if len(asks) > 1 else 'streams'} the run")
        return True
    if not auto:
        return False
    if Path(runoff).suffix.lower() == ".zarr" or Path(runoff).is_dir():
        why = "the runoff is a zarr store (read lazily, so streamed)"
        stream = True
    else:
        shape = _header_shape(runoff)
        if shape is None:
            return False
        from ..workflow import estimate_memory

        budget = budget_bytes(settings.memory, gpu=not (settings.dask or settings.scheduler)
                              and routes_on_gpu(settings.device))
        if budget is None or estimate_memory(settings, *shape) <= budget:
            return False
        try:
            chunk_steps_for(*shape, budget)
        except InputError:
            return False  # not even one step fits: the memory guard refuses the run with its estimate and fixes
        gib = 2.0**30
        need = estimate_memory(settings, *shape) / gib
        why = (f"the run ({shape[0]:,} reaches x {shape[1]:,} steps, about {need:,.2f} GiB) does not fit the "
               f"memory budget ({budget / gib:,.2f} GiB), so {opt('route.stream', 'auto')} streams it")
        stream = True
    if stream and _may_split(settings):
        raise _refuse_splits(why)
    if stream and gpus:
        raise InputError(f"{why}; {opt('route.gpus', gpus)} routes the whole run in memory and cannot stream yet "
                         f"(docs/gpus.md).",
                         hint=f"Give {opt('route.stream', 'never')} (with {opt('route.memory', 'GB')} if the "
                              f"machine has the memory) to route it whole over the GPUs, or leave out "
                              f"{opt('route.gpus')} to stream it on one device.")
    return stream


def _router(settings, network, params, dt: float):
    import torch

    from .stream import LocalRouter

    if settings.dask or settings.scheduler:
        from .distributed import DaskRouter

        return DaskRouter(network, params, settings.scheme, dt=dt, address=settings.scheduler,
                          n_workers=settings.dask_workers, engine=settings.engine, device=settings.device,
                          dtype=torch.float32, read_on_workers=settings.worker_read)
    return LocalRouter(network, params, settings.scheme, dt=dt, engine=settings.engine, device=settings.device)


def run_streaming(settings, *, network=None, progress: Callable[[float, str], None] | None = None,
                  should_stop: Callable[[], bool] | None = None, params: Mapping[str, Any] | None = None,
                  params_used: Mapping[str, str] | None = None, overwrite: bool = True,
                  settings_file: str | os.PathLike | None = None):
    """The streamed :func:`thalweg.workflow.run_route`: the same checks and parameters, the discharge files
    written chunk by chunk, then published with ``NAME.settings.json``. Returns a ``RouteResult`` whose
    ``discharge`` is None (it is in the files); ``timings`` also hold reaches, steps and dt."""
    from .. import __version__
    from .._files import OutputSet, atomic_write_text
    from ..config import reading_kwargs
    from ..results.outputs import _DEFAULT_ID, _possible_members
    from ..results.outputs import discharge_reaches, hydrograph_reaches
    from ..results.outputs import output_paths as discharge_paths
    from ..runoff.readers import open_runoff_chunks
    from ..workflow import RouteResult, _read_network, _write, check_outputs, model_params, resolve_params
    from .stream import stream_route

    report = progress or (lambda fraction, message: None)
    timings: dict[str, float] = {}
    out_dir = Path(settings.out_dir)
    network = _read_network(settings, network, report, timings)
    _check_splits(settings, network)
    resuming = settings.resume and (checkpoint_folder(settings) / "journal.json").is_file()
    if settings.resume and not resuming:
        warnings.warn(render_options(f"{opt('route.resume')} found no checkpoint of an interrupted run "
                                     f"({checkpoint_folder(settings).resolve()}); starting from the first step."),
                      ThalwegWarning, stacklevel=1)
    # a checkpoint's run replaces the outputs it was started to write; otherwise existing ones need --overwrite
    check_outputs(settings, network, overwrite=overwrite or resuming, settings_file=settings_file)
    gauges = None
    if settings.gauges:
        from ..learning import read_gauges

        gauges = read_gauges(settings.gauges, network, observed=settings.observed)
    hydro = hydrograph_reaches(gauges, settings.hydrograph_reaches)
    if hydro:
        network.index_of(hydro, what=f"reach ids of {opt('route.hydrograph_reaches')}")
    if params is None and settings.parameters:
        params, used = model_params(settings, network)
    elif params is None:
        params, used = resolve_params(network, settings.scheme, settings.params)
    else:
        used = {name: "given per reach" for name in params} | dict(params_used or {})
    if settings.write_gpkg and network.geometry is not None:
        warnings.warn(render_options("a streamed run writes no GeoPackage summary (it needs every step of every "
                                     "reach at once); make one from the discharge file afterwards (thalweg "
                                     f"stats), or leave it out ({opt('route.write_gpkg')})."),
                      ThalwegWarning, stacklevel=1)
    from ..results.writers import reach_lonlat
    from ..routing.engines import resolve

    fmt_files = discharge_paths(out_dir, settings.name, _format(settings), settings.convention)
    ids = {kind: settings.id_name or _DEFAULT_ID[f] for kind, (_, f, _) in fmt_files.items()}
    filed = discharge_reaches(network, settings.discharge_at, hydro)
    where = reach_lonlat(network, network.ids if filed is None else filed)
    lat, lon = where if where is not None else (None, None)
    attrs = {"thalweg_version": __version__, "scheme": settings.scheme, "engine": resolve(settings.engine),
             "network": str(settings.network), "runoff": str(settings.runoff),
             "parameters": "; ".join(f"{k}: {v}" for k, v in used.items())}
    reading = reading_kwargs(settings.to_dict(), "read_runoff")
    reading.pop("catchments", None)
    report(0.05, f"opening runoff {Path(settings.runoff).name}")
    source = open_runoff_chunks(settings.runoff, network, **reading)
    # not in the checkpoint's key: what does not change the discharge (workers reading the runoff or the client
    # sending it give the same numbers, with the same pieces)
    skip = {"resume", "memory", "stream", "scheduler", "dask_workers", "worker_read", "write_gpkg", "observed"}
    key = {k: v for k, v in settings.to_dict().items() if k not in skip}
    key["router"] = "dask" if settings.dask or settings.scheduler else "local"
    try:
        router = _router(settings, network, params, source.dt)
        try:
            result = stream_route(network, source, params, settings.scheme, outputs=fmt_files,
                                  checkpoint=checkpoint_folder(settings), chunk_steps=settings.chunk_steps or None,
                                  memory=settings.memory, resume=settings.resume, key=key, router=router,
                                  id_names=ids, lat=lat, lon=lon, compression=settings.compression, attrs=attrs,
                                  progress=lambda f, m: report(0.05 + 0.9 * f, m), should_stop=should_stop,
                                  at=filed)
        finally:
            close = getattr(router, "close", None)
            if close is not None:
                close()
    finally:
        source.close()
    t0 = time.perf_counter()
    report(0.96, "publishing outputs")
    outputs: dict[str, Path] = {}

    def publish(_path: Path) -> Path:
        with OutputSet(out_dir, settings.name, _possible_members(out_dir, settings.name)) as out:
            for kind, (final, _, _) in fmt_files.items():
                os.replace(result.files[kind], out.path(final))
                outputs[kind] = final
            if hydro:  # read back from the written file: the few reaches' series, never the whole
                from ..results.writers import write_hydrographs_csv, write_hydrographs_long_csv

                series = _rows_of(out.staged[fmt_files[next(iter(fmt_files))][0]], fmt_files, hydro, result, attrs)
                path = out_dir / f"{settings.name}_hydrographs.csv"
                write_hydrographs_csv(out.path(path), series, hydro, gauges=gauges)
                outputs["hydrographs"] = path
                path = out_dir / f"{settings.name}_hydrographs_long.csv"
                write_hydrographs_long_csv(out.path(path), series, [int(r) for r in settings.hydrograph_reaches],
                                           gauges=gauges)
                outputs["hydrographs_long"] = path
            path = out_dir / f"{settings.name}.settings.json"
            atomic_write_text(out.path(path), settings.to_json())
            outputs["settings"] = path
        return _path

    main = next(iter(fmt_files.values()))[0]
    _write("discharge", main, publish)
    shutil.rmtree(result.checkpoint, ignore_errors=True)
    timings.update({"route": result.timings["route"], "read_runoff": result.timings["read"],
                    "write": result.timings["write"] + time.perf_counter() - t0, "wall": result.timings["wall"],
                    "reaches": float(result.n_reaches), "steps": float(result.n_steps), "dt": result.dt,
                    "chunk_steps": float(result.chunk_steps), "resumed_at": float(result.resumed_at)})
    report(1.0, "done")
    return RouteResult(outputs=outputs, discharge=None, network=network, timings=timings, params_used=used,
                       gauges=gauges)


def _rows_of(path: Path, files, reach_ids: list[int], result, attrs):
    """The end-of-step discharge of ``reach_ids`` from the main discharge file just written (a Discharge)."""
    import numpy as np
    import xarray as xr

    from ..results.discharge import Discharge
    from ..runoff.readers import open_lazy

    _, fmt, convention = next(iter(files.values()))
    with (xr.open_zarr(path, decode_times=False) if fmt == "zarr" else open_lazy(path)) as ds:
        name = "Qout" if fmt == "rapid" else "Q"
        da = ds[name]
        rid = next(d for d in da.dims if d != "time")
        ids = np.asarray(ds[rid].values).astype(np.int64)
        order = np.argsort(ids)
        rows = order[np.searchsorted(ids[order], np.asarray(reach_ids, np.int64))]
        values = np.asarray(da.isel({rid: rows}).transpose(rid, "time").values, np.float32)
        if fmt == "rapid" and convention == "mean":  # step means: Q[t] = Qout[t+1], the last from Qfinal
            final = np.asarray(ds["Qfinal"].isel({rid: rows}).values, np.float32)
            values = np.concatenate([values[:, 1:], final[:, None]], axis=1)
    step = np.timedelta64(int(round(result.dt * 1000)), "ms")
    ends = result.start.astype("datetime64[ms]") + step * np.arange(1, result.n_steps + 1)
    return Discharge(values, np.asarray(reach_ids, np.int64), ends, result.dt, dict(attrs))


def _format(settings) -> str:
    from ..results.outputs import output_format

    return output_format(Path(settings.out_dir) / f"{settings.name}{'.zarr' if settings.format == 'zarr' else '.nc'}",
                         settings.format, settings.convention)
