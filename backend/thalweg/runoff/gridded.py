"""Gridded runoff sources: a NetCDF variable (time, y, x) through xarray, GeoTIFFs through rasterio.

Each opener returns a :class:`GridSource`: the grid, the raw time stamps, the unit, and a function that
reads a window of steps, so that ``weights.aggregate`` never holds more than a block in memory.
"""
from __future__ import annotations

import dataclasses
import glob
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._paths import check_input
from ..errors import RunoffError, UnitError, format_ids, opt
from ..names import TIME_NAMES, X_NAMES, Y_NAMES, find_name
from ._time import as_datetimes, cf_bounds, decode_cf_times
from .weights import Grid

__all__ = ["GridSource", "open_netcdf_grid", "open_geotiffs", "time_from_name", "is_geotiff", "find_dim"]
_TIF = (".tif", ".tiff", ".gtiff")


@dataclasses.dataclass
class GridSource:
    """A gridded runoff source.

    grid : the cells. times : datetime64[ms] [T] as stamped; bounds : [T, 2] or None.
    unit : the unit string found (None if the file has none). variable : what was read (for messages).
    home : the folder of the runoff file(s), where the weight cache goes by default.
    read_block(t0, t1, (r0, r1, c0, c1)) -> float [t1 - t0, r1 - r0, c1 - c0], NaN where nodata.
    """

    grid: Grid
    times: np.ndarray
    bounds: np.ndarray | None
    unit: str | None
    variable: str
    read_block: Callable[[int, int, tuple[int, int, int, int]], np.ndarray]
    close: Callable[[], None] = lambda: None
    home: Path | None = None  # the folder holding the runoff files: the default place of the weight cache

    @property
    def n_steps(self) -> int:
        return int(self.times.size)


def is_geotiff(path: Any) -> bool:
    """A folder, an existing .tif file, or a glob pattern (a path that does not exist but has * ? [)."""
    text = str(path)
    p = Path(text)
    if p.is_dir():
        return True
    if p.exists():
        return p.suffix.lower() in _TIF
    return any(c in text for c in "*?[")


# ---- NetCDF ---------------------------------------------------------------------------------------------
def find_dim(names: Sequence[str], candidates: Sequence[str]) -> str | None:
    """The first of ``names`` among ``candidates`` (thalweg.names lists), ignoring case."""
    return find_name(names, candidates)


def grid_variables(ds) -> list[str]:
    """Data variables of ``ds`` with a time, a y and an x dimension."""
    found = []
    for name, da in ds.data_vars.items():
        dims = da.dims
        if find_dim(dims, TIME_NAMES) and find_dim(dims, X_NAMES) and find_dim(dims, Y_NAMES):
            found.append(str(name))
    return found


def open_netcdf_grid(ds, path: Any, variables: Sequence[str], *, units: str | None, grid_crs: Any) -> GridSource:
    """A gridded NetCDF variable (or the sum of several, e.g. RUNSF + RUNSB) as a GridSource.

    ``ds`` is opened with ``decode_times=False``; the caller closes it.
    """
    first = ds[variables[0]]
    tdim, ydim, xdim = (find_dim(first.dims, n) for n in (TIME_NAMES, Y_NAMES, X_NAMES))
    extra = [d for d in first.dims if d not in (tdim, ydim, xdim)]
    if any(first.sizes[d] != 1 for d in extra):
        raise RunoffError(f"variable {variables[0]} has dimensions {first.dims}; only (time, y, x) can be "
                          f"aggregated.", path=path, field=variables[0],
                          hint="Select one member or level first (for example with xarray's isel).")
    unit_found = None
    for name in variables:
        da = ds[name]
        if set(d for d in da.dims if da.sizes[d] > 1) - {tdim, ydim, xdim}:
            raise RunoffError(f"variable {name} does not share the dimensions {first.dims}.", path=path, field=name)
        u = da.attrs.get("units")
        if unit_found is not None and u != unit_found:
            raise UnitError(f"variables {', '.join(variables)} have different units ({unit_found!r}, {u!r}).",
                            path=path, field=name, hint="Sum only variables in the same unit.")
        unit_found = u
    x = np.asarray(ds[xdim].values) if xdim in ds.variables else None
    y = np.asarray(ds[ydim].values) if ydim in ds.variables else None
    if x is None or y is None:
        raise RunoffError(f"the grid has no coordinate values for {xdim if x is None else ydim}.", path=path,
                          field=variables[0], hint="Add 1-D coordinate variables of the cell centres.")
    crs = grid_crs or _netcdf_crs(ds, first, xdim, ydim)
    if crs is None:
        raise RunoffError(f"cannot tell the grid's coordinate reference system (coordinates {xdim}, {ydim}).",
                          path=path, field=variables[0],
                          hint=f"Give it with {opt('read_runoff.grid_crs', 'EPSG:4326')}, or add a CF grid_mapping "
                               f"with crs_wkt.")
    grid = Grid.from_centres(x, y, crs, path=path)
    tvar = ds[tdim]
    times = decode_cf_times(tvar.values, tvar.attrs.get("units"), tvar.attrs.get("calendar"), path=path, field=tdim)
    bounds = cf_bounds(ds, tdim, path)
    arrays = [ds[name].squeeze([d for d in extra]).transpose(tdim, ydim, xdim) for name in variables]

    def read_block(t0: int, t1: int, window: tuple[int, int, int, int]) -> np.ndarray:
        r0, r1, c0, c1 = window
        total = None
        for da in arrays:
            part = np.asarray(da[t0:t1, r0:r1, c0:c1].values, dtype=np.float64)
            total = part if total is None else total + part
        return total

    return GridSource(grid, times, bounds, units or unit_found, "+".join(variables), read_block,
                      home=None if path is None else Path(str(path)).parent)  # in memory: no cache unless asked


def _netcdf_crs(ds, da, xdim: str, ydim: str) -> Any:
    name = da.attrs.get("grid_mapping")
    for var in ([name] if name else []) + ["crs", "spatial_ref"]:
        if var in ds.variables:
            attrs = ds[var].attrs
            for key in ("crs_wkt", "spatial_ref"):
                if attrs.get(key):
                    return attrs[key]
            if attrs.get("epsg_code"):
                return attrs["epsg_code"]
            if attrs.get("grid_mapping_name") == "latitude_longitude":
                return "EPSG:4326"
    if str(xdim).lower() in ("lon", "longitude", "long", "nav_lon") and str(ydim).lower() in (
            "lat", "latitude", "nav_lat"):
        return "EPSG:4326"
    return None


# ---- GeoTIFF ------------------------------------------------------------------------------------------
_ISO = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[T _](\d{2})(?::?(\d{2}))?(?::?(\d{2}))?)?")
_DIGITS = re.compile(r"(?<!\d)(\d{14}|\d{12}|\d{10}|\d{8})(?!\d)")


def time_from_name(name: str) -> np.datetime64 | None:
    """The date in a file name: '2014-09-15T01:00', 'rain_201409150100' (YYYYMMDD[HH[MM[SS]]]); the last one."""
    stem = Path(name).name
    for suffix in _TIF:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    found = list(_ISO.finditer(stem))
    if found:
        g = found[-1].groups()
        text = f"{g[0]}-{g[1]}-{g[2]}T{g[3] or '00'}:{g[4] or '00'}:{g[5] or '00'}"
    else:
        runs = _DIGITS.findall(stem)
        if not runs:
            return None
        d = runs[-1]
        text = f"{d[0:4]}-{d[4:6]}-{d[6:8]}T{d[8:10] or '00'}:{d[10:12] or '00'}:{d[12:14] or '00'}"
    try:
        return np.datetime64(text, "ms")
    except ValueError:
        return None


def _tif_files(path: Any) -> list[Path]:
    text = str(path)
    p = Path(text)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in _TIF)
    elif not p.exists() and any(c in text for c in "*?["):
        files = sorted(Path(f) for f in glob.glob(text))
    else:
        files = [p]
    if not files or not files[0].exists():
        raise RunoffError("no GeoTIFF files found.", path=path,
                          hint="Give a .tif file, a folder of .tif files, or a glob such as 'runoff/*.tif'.")
    return [check_input(f, what="GeoTIFF", error=RunoffError) for f in files]


def open_geotiffs(path: Any, *, units: str | None, time: Sequence[Any] | None, grid_crs: Any) -> GridSource:
    """One multi-band GeoTIFF (a band per step) or several single-band GeoTIFFs (a file per step).

    Times come from ``time`` when given, else from the file names (several files) or from band
    descriptions / a ``time`` tag per band (one file).
    """
    import rasterio
    from rasterio.windows import Window

    files = _tif_files(path)
    with rasterio.open(files[0]) as src:
        crs = grid_crs or (src.crs.to_wkt() if src.crs else None)
        if crs is None:
            raise RunoffError("the GeoTIFF has no coordinate reference system.", path=files[0],
                              hint=f"Give it with {opt('read_runoff.grid_crs', 'EPSG:4326')}.")
        grid = Grid.from_transform(src.transform, src.width, src.height, crs, path=files[0])
        profile = (src.transform, src.width, src.height, src.crs)
        n_bands = src.count
        unit = units or (src.units[0] if src.units and src.units[0] else None) or src.tags().get("units") \
            or src.tags(1).get("units")
        descriptions = list(src.descriptions)
        band_tags = [src.tags(b + 1).get("time") for b in range(n_bands)]
    if len(files) > 1:
        for f in files[1:]:
            with rasterio.open(f) as other:
                if (other.transform, other.width, other.height, other.crs) != profile:
                    raise RunoffError("this GeoTIFF's grid differs from the first file's "
                                      f"({files[0].name}).", path=f, hint="All files must share one grid.")
                if other.count != 1:
                    raise RunoffError(f"this GeoTIFF has {other.count} bands; a folder of files needs one band "
                                      f"per file.", path=f, hint="Split the bands, or give one multi-band file.")
        if time is None:
            stamps = [time_from_name(f.name) for f in files]
            bad = [f.name for f, s in zip(files, stamps) if s is None]
            if bad:
                raise RunoffError(f"cannot read a date in {len(bad):,} file names ({format_ids(bad)}).", path=path,
                                  hint=f"Name files with their date (runoff_20200101T0300.tif), or give the dates "
                                       f"with {opt('read_runoff.time', '[...]')}.")
            times = np.array(stamps, dtype="datetime64[ms]")
            order = np.argsort(times, kind="stable")
            files, times = [files[i] for i in order], times[order]
        else:
            times = _given_times(time, len(files), path)
    else:
        if time is not None:
            times = _given_times(time, n_bands, path)
        else:
            stamps = [_band_time(d, t) for d, t in zip(descriptions, band_tags)]
            if n_bands == 1 and stamps[0] is None:
                stamps = [time_from_name(files[0].name)]
            if any(s is None for s in stamps):
                raise RunoffError(f"cannot tell the time of the {n_bands} bands (no dates in band descriptions, "
                                  f"'time' tags or the file name).", path=files[0],
                                  hint=f"Give one date per band with {opt('read_runoff.time', '[...]')}.")
            times = np.array(stamps, dtype="datetime64[ms]")

    def _read(src, indexes, window) -> np.ndarray:
        r0, r1, c0, c1 = window
        data = src.read(indexes, window=Window(c0, r0, c1 - c0, r1 - r0), masked=True).astype(np.float64)
        out = np.ma.filled(data, np.nan)
        scales = np.array([src.scales[i - 1] for i in np.atleast_1d(indexes)], dtype=np.float64)
        offsets = np.array([src.offsets[i - 1] for i in np.atleast_1d(indexes)], dtype=np.float64)
        if np.any(scales != 1) or np.any(offsets != 0):
            out = out * scales[:, None, None] + offsets[:, None, None]
        return out

    if len(files) > 1:
        def read_block(t0: int, t1: int, window: tuple[int, int, int, int]) -> np.ndarray:
            parts = []
            for f in files[t0:t1]:
                with rasterio.open(f) as src:
                    parts.append(_read(src, [1], window)[0])
            return np.stack(parts)
        variable = f"{len(files)} GeoTIFF files"
        return GridSource(grid, times, None, unit, variable, read_block, home=files[0].parent)
    handle = rasterio.open(files[0])

    def read_single(t0: int, t1: int, window: tuple[int, int, int, int]) -> np.ndarray:
        return _read(handle, list(range(t0 + 1, t1 + 1)), window)

    return GridSource(grid, times, None, unit, f"{files[0].name} bands", read_single, handle.close,
                      home=files[0].parent)


def _band_time(description: str | None, tag: str | None) -> np.datetime64 | None:
    for text in (tag, description):
        if text:
            try:
                return as_datetimes([text])[0]
            except RunoffError:
                stamp = time_from_name(text)
                if stamp is not None:
                    return stamp
    return None


def _given_times(time: Sequence[Any], n: int, path: Any) -> np.ndarray:
    times = as_datetimes(list(time), path=path)
    if times.size != n:
        raise RunoffError(f"{times.size:,} dates were given for {n:,} steps (files or bands).", path=path,
                          field="time", hint="Give one date per step.")
    return times
