"""Forcings of runoff models: per-catchment depths per step (precipitation, PET, ...) and static attributes.

Every forcing is read by :func:`thalweg.runoff.read_runoff`, so it takes every runoff format (NetCDF reach
variables, CSV/parquet tables, NetCDF or GeoTIFF grids aggregated to the catchments with the area weights), its
units (mm, m, kg m-2 per step; mm/h, kg m-2 s-1, m s-1 rates) and time conventions; the volume per step it gives is
turned back into a depth per step over each reach's catchment (mm). Each forcing is then put on one step: a
coarser forcing is spread evenly over the finer steps it covers (daily PET over 24 hours), a finer one summed; the
series is cut to the span every forcing covers (and the routing's ``time``/``dt`` when given).

Static attributes (descriptors) come from the network's own reach attributes (length, area, catchment_area, slope
or any numeric field) or from a file: a NetCDF with variables over the reach-id dimension, or a CSV/parquet table
with a reach-id column.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, RunoffError, SchemaError, format_ids, opt

__all__ = ["Forcings", "read_forcings", "read_static", "DEPTH_UNIT"]

DEPTH_UNIT = "mm"


@dataclasses.dataclass(frozen=True, eq=False)
class Forcings:
    """Forcings per catchment (one catchment per reach, in the network's reach order).

    Attributes
    ----------
    values : float32 [N, T, F], mm per step.
    names : the F variable names.
    ids : int64 [N], reach ids (``network.ids``).
    time : datetime64[ms] [T], the START of each step.
    dt : step length, s.
    sources : name -> what was read (path, variable, unit, original step).
    """

    values: np.ndarray
    names: tuple[str, ...]
    ids: np.ndarray
    time: np.ndarray
    dt: float
    sources: dict[str, dict[str, Any]]

    @property
    def n_steps(self) -> int:
        return int(self.values.shape[1])

    @property
    def end_time(self) -> np.ndarray:
        return self.time + np.timedelta64(int(round(self.dt * 1000)), "ms")

    def variable(self, name: str) -> np.ndarray:
        """[N, T] mm per step of forcing ``name``."""
        if name not in self.names:
            raise InputError(f"no forcing '{name}' (have {', '.join(self.names)}).", field="forcings")
        return self.values[..., self.names.index(name)]

    def window(self, start: int, end: int) -> Forcings:
        return dataclasses.replace(self, values=self.values[:, start:end], time=self.time[start:end])

    def __repr__(self) -> str:
        return (f"<Forcings {', '.join(self.names)}: {self.values.shape[0]:,} catchments x {self.n_steps:,} steps "
                f"of {self.dt:g} s from {self.time[0] if self.n_steps else '-'}>")


def _split_source(name: str, source: Any) -> tuple[Any, str | None, str | None]:
    """(path, variable, units) of a forcing given as a path, 'path:variable' or a mapping."""
    if isinstance(source, Mapping):
        return source.get("path"), source.get("variable"), source.get("units")
    if isinstance(source, (str, Path)):
        text = str(source)
        # 'file.nc:var' (a drive letter 'C:\\...' is no variable)
        head, sep, tail = text.rpartition(":")
        if sep and head and len(head) > 1 and "/" not in tail and "\\" not in tail and not Path(text).exists():
            return head, tail, None
        return text, None, None
    return source, None, None


def read_forcings(sources: Mapping[str, Any], network, *, dt: float | None = None, time: Any = None,
                  n_steps: int | None = None, units: Mapping[str, str] | None = None, catchments: Any = None,
                  catchment_layer: str | None = None, nan: str = "error", weights_cache: Any = None) -> Forcings:
    """Read forcings for every catchment of ``network``.

    Parameters
    ----------
    sources : name -> path (a runoff-like file: NetCDF, table, GeoTIFF(s), grid), 'path:variable', or
        ``{"path", "variable", "units"}``; the variable defaults to the name when the file holds it.
    network : the RiverNetwork, with catchment areas (depths per catchment need them).
    dt : the step to put every forcing on, s (default: the finest forcing's).
    time : the start of the first step to begin at (e.g. the routing's runoff); default: the first step every
        forcing covers. With ``n_steps``, the series must cover that many steps from there.
    units : name -> unit, for files without one (mm, mm/h, kg m-2 s-1, m, ...).
    catchments, catchment_layer, weights_cache : for gridded forcings, as :func:`read_runoff`.
    nan : 'error' or 'zero', as :func:`read_runoff`.

    Returns
    -------
    Forcings
    """
    from .readers import read_runoff

    if not sources:
        raise InputError("no forcings were given.", field="forcings",
                         hint=f"Give at least precipitation, e.g. {opt('train.forcings', 'precipitation=P.nc')}.")
    if network.catchment_area is None:
        raise InputError("forcings are depths over each reach's catchment, and the network has no catchment areas.",
                         path=network.source.path, field="catchment_area",
                         hint=f"Read the network with its catchments ({opt('read_network.catchments', 'c.gpkg')}) "
                              "or a catchment-area field.")
    area = np.asarray(network.catchment_area, dtype=np.float64)
    read: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}
    info: dict[str, dict[str, Any]] = {}
    for name, source in sources.items():
        path, variable, unit = _split_source(name, source)
        unit = unit or (units or {}).get(name)
        r = _read_one(read_runoff, path, network, variable, name, unit=unit, nan=nan, catchments=catchments,
                      catchment_layer=catchment_layer, weights_cache=weights_cache)
        if r.attrs.get("unit_kind") not in ("depth", "depth_rate"):
            raise InputError(f"forcing '{name}' is in '{r.attrs.get('units')}', a {r.attrs.get('unit_kind')}; "
                             f"forcings are depths (mm, m, kg m-2 per step) or depth rates (mm/h, kg m-2 s-1).",
                             path=r.source, field=r.attrs.get("variable"),
                             hint=f"Give the forcing's unit, e.g. {opt('train.forcing_units', 'precipitation=mm')}.")
        with np.errstate(divide="ignore", invalid="ignore"):
            depth = r.values.astype(np.float64) * r.dt / area[:, None] * 1e3  # m3/s over the step -> mm
        depth[area <= 0] = 0.0
        read[name] = (depth, r.time.astype("datetime64[ms]"), float(r.dt))
        info[name] = {"path": r.source, "variable": r.attrs.get("variable"), "units": r.attrs.get("units"),
                      "dt": float(r.dt), "start": str(r.time[0]), "steps": int(r.n_steps)}

    step = float(dt) if dt is not None else min(v[2] for v in read.values())
    ms = int(round(step * 1000))
    t0 = max(v[1][0] for v in read.values())
    t1 = min(v[1][-1] + np.timedelta64(int(round(v[2] * 1000)), "ms") for v in read.values())
    if time is not None:
        t0 = np.datetime64(time, "ms")
    count = int((t1 - t0) // np.timedelta64(ms, "ms"))
    if n_steps is not None:
        if count < n_steps:
            raise RunoffError(f"the forcings cover {max(count, 0):,} steps of {step:g} s from {t0}; {n_steps:,} are "
                              f"needed (to {t0 + n_steps * np.timedelta64(ms, 'ms')}).", field="forcings",
                              hint="Give forcings over the whole routing period.")
        count = int(n_steps)
    if count <= 0:
        spans = "; ".join(f"{n}: {v[1][0]} .. {v[1][-1]}" for n, v in read.items())
        raise RunoffError(f"the forcings share no step ({spans}).", field="forcings",
                          hint="Give forcings over a common period.")
    starts = t0 + np.arange(count) * np.timedelta64(ms, "ms")
    out = np.empty((network.n_reaches, count, len(read)), dtype=np.float32)
    for j, (name, (depth, times, src_dt)) in enumerate(read.items()):
        out[..., j] = _resample(depth, times, src_dt, starts, step, name=name, path=info[name]["path"])
    return Forcings(out, tuple(read), network.ids.copy(), starts, step, info)


def _read_one(read_runoff, path, network, variable, name, *, unit, nan, catchments, catchment_layer, weights_cache):
    """One forcing through read_runoff: the variable named like the forcing when the file holds it (else the
    file's only one); catchments only for a grid (read_runoff warns when they are given for reach series)."""
    from ..errors import ThalwegError

    def read(var, polygons):
        return read_runoff(path, network, variable=var, units=unit, nan=nan, catchments=polygons,
                           catchment_layer=catchment_layer if polygons is not None else None,
                           weights_cache=weights_cache)

    for var in ([variable] if variable is not None else [name, None]):
        try:
            try:
                return read(var, None)
            except RunoffError as exc:
                if catchments is None or "catchment polygons" not in str(exc):
                    raise
                return read(var, catchments)
        except ThalwegError as exc:
            if variable is not None and isinstance(exc, SchemaError) and exc.field == variable:
                # the variable named after the path is absent: say it in the forcing's own syntax, which every
                # surface takes (--forcing NAME=PATH:VARIABLE, sources={NAME: 'PATH:VARIABLE'}, a job body)
                raise SchemaError(f"forcing '{name}': {exc.message}", path=exc.path, field=exc.field, ids=exc.ids,
                                  hint=f"Name one of them after the file, as {name}'s source '{path}:VARIABLE' "
                                       f"(or give the path alone when the file holds a variable named '{name}' "
                                       f"or only one).") from None
            if var is None or variable is not None:
                raise
    raise AssertionError("unreachable")


def _resample(depth: np.ndarray, times: np.ndarray, src_dt: float, starts: np.ndarray, step: float, *,
              name: str, path: Any) -> np.ndarray:
    """Depths [N, T_src] on steps of ``src_dt`` from ``times`` -> depths [N, len(starts)] on ``step``."""
    src_ms, ms = int(round(src_dt * 1000)), int(round(step * 1000))
    offset = (starts[0] - times[0]).astype(np.int64)
    if src_ms == ms:
        if offset % ms:
            raise RunoffError(f"forcing '{name}''s steps start at {times[0]}, off the grid of the others "
                              f"({starts[0]}).", path=path, hint="Give forcings whose steps line up.")
        i0 = offset // ms
        return depth[:, i0:i0 + starts.size]
    if src_ms > ms:
        if src_ms % ms:
            raise RunoffError(f"forcing '{name}' has steps of {src_dt:g} s, not a multiple of {step:g} s.", path=path,
                              hint="Give forcings whose steps divide one another.")
        k = src_ms // ms
        index = (starts - times[0]).astype(np.int64) // src_ms
        if ((starts - times[0]).astype(np.int64) % ms).any():
            raise RunoffError(f"forcing '{name}''s steps are off the grid of the others.", path=path)
        return depth[:, index] / k  # spread evenly over the finer steps
    if ms % src_ms:
        raise RunoffError(f"forcing '{name}' has steps of {src_dt:g} s; {step:g} s is not a multiple of it.", path=path,
                          hint="Give forcings whose steps divide one another.")
    k = ms // src_ms
    if offset % src_ms:
        raise RunoffError(f"forcing '{name}''s steps are off the grid of the others.", path=path)
    i0 = offset // src_ms
    block = depth[:, i0:i0 + starts.size * k]
    return block.reshape(depth.shape[0], starts.size, k).sum(-1)


def read_static(names: Sequence[str], network, path: Any = None) -> np.ndarray:
    """Static attributes [N, A] per catchment, from ``path`` (NetCDF variables over the reach-id dimension, or a
    CSV/parquet table with a reach-id column) where it holds them, else from the network's reach attributes
    (:func:`thalweg.params.models.attribute_values`)."""
    from ..params.models import attribute_values

    names = list(names)
    if not names:
        return np.zeros((network.n_reaches, 0))
    table = _static_table(path, network) if path is not None else {}
    cols = []
    for name in names:
        if name in table:
            cols.append(table[name])
        else:
            cols.append(attribute_values(network, name))
    return np.column_stack(cols).astype(np.float64)


def _static_table(path: Any, network) -> dict[str, np.ndarray]:
    from ..names import REACH_ID_NAMES, find_name

    path = Path(path)
    out: dict[str, np.ndarray] = {}
    if path.suffix.lower() in (".nc", ".nc4", ".cdf"):
        import xarray as xr

        with xr.open_dataset(path) as ds:
            dim = find_name(list(ds.dims), REACH_ID_NAMES)
            if dim is None:
                raise SchemaError(f"no reach-id dimension among {', '.join(map(str, ds.dims))}.", path=path,
                                  hint="Name it riverId (or rivid, river_id).")
            ids = np.asarray(ds[dim].values).astype(np.int64)
            for name, da in ds.data_vars.items():
                if da.dims == (dim,) and np.issubdtype(da.dtype, np.number):
                    out[str(name)] = np.asarray(da.values, dtype=np.float64)
    else:
        import pandas as pd

        frame = pd.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq") else pd.read_csv(path)
        col = find_name(frame.columns, REACH_ID_NAMES)
        if col is None:
            raise SchemaError(f"the attribute table has no reach-id column ({', '.join(REACH_ID_NAMES)}).",
                              path=path, hint="Add a reach_id column.")
        ids = frame[col].to_numpy().astype(np.int64)
        for name in frame.columns:
            if name != col and np.issubdtype(frame[name].dtype, np.number):
                out[str(name)] = frame[name].to_numpy(dtype=np.float64)
    missing = np.setdiff1d(network.ids, ids)
    if missing.size and out:
        raise InputError(f"the attribute file lacks {missing.size:,} reaches of the network: {format_ids(missing)}.",
                         path=path, ids=missing.tolist(), hint="Give attributes for every reach.")
    order = {int(i): k for k, i in enumerate(ids)}
    take = np.array([order[int(i)] for i in network.ids]) if out else np.zeros(0, dtype=np.int64)
    return {name: v[take] for name, v in out.items()}
