"""read_runoff: any runoff file -> :class:`Runoff` (m3/s step means, the network's reach order).

Formats (DATA.md section 2), chosen from the file:

- RAPID ``m3_riv(time, rivid)`` NetCDF: volumes per step, m3.
- river-route ``catchment_runoff(riverId, time)`` NetCDF: volumes (m3) or depths (m, mm, kg m-2) with
  ``catchment_area(riverId)`` in m2; also the older river-route ``volume`` / ``vlateral`` variables.
- river-route 2.x ``qlateral(time, river_id)`` NetCDF: m3/s (the unit is assumed when the file has none).
- Any NetCDF variable over (time, reach id) with a runoff unit (m3, m3 s-1, mm, kg m-2 s-1, ...).
- Gridded NetCDF (time, y, x) or GeoTIFF(s), aggregated to catchment polygons by area weights (weights.py).
- CSV / parquet tables, see :func:`read_table`.
- In memory: xarray Datasets and DataArrays laid out as the files above (dask-backed ones are computed a
  block of steps at a time), numpy arrays and torch tensors [reach, time] with ``dt``, and :class:`Runoff`.

Id, time and axis names come from :mod:`thalweg.names`; every path is checked by :mod:`thalweg._paths`
(regular files only); every source ends in the one aligner of :mod:`._align`.

Time stamps (stored as step STARTS in ``Runoff.time``):

- ``time_bnds`` (or the variable named by the time variable's ``bounds`` attribute) decides when present:
  the step is [bnds[0], bnds[1]].
- RAPID m3_riv without bounds: a stamp marks the step START. RAPID's own tools (RRR
  ``rrr_lsm_tot_add_cfc.py``) write ``time_bnds = [time, time + dt]``, and RAPID copies time and bounds
  into Qout.
- river-route catchment_runoff and qlateral: a stamp marks the step END. river-route labels the discharge of a step
  with the runoff's stamp and describes its routing as right-aligned ("runoff that occurred from 4 pm to
  5 pm" stamped 5 pm); so with our end-of-step discharge the stamps line up.
- Tables, other NetCDF variables, gridded files and GeoTIFF names: a stamp marks the step START (the
  pandas and CF habit for period data: '2020-01-01' is the day that starts then).
- ``time_label='start' | 'end'`` overrides the default of a format without bounds.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._files import HDF5_IO
from .._paths import check_input, describe_content, sniff
from ..errors import RunoffError, SchemaError, UnitError, format_ids, opt, render_options
from ..names import REACH_ID_NAMES, TIME_NAMES, as_ids, find_name
from ..units import parse_unit
from . import gridded, weights
from ._align import BLOCK_VALUES, Aligner, UnitInfo, align, classify_unit, runoff_from_array, to_m3s
from ._time import TIME_DTYPE, as_datetimes, cf_bounds, decode_cf_times, step_starts
from ._warn import warn
from .model import Runoff

__all__ = ["read_runoff", "read_table"]

_NETCDF = (".nc", ".nc4", ".netcdf", ".cdf", ".h5", ".hdf5")
_TABLE = (".csv", ".txt", ".parquet", ".pq")
_REACH_VARS = ("m3_riv", "catchment_runoff", "qlateral", "q_lateral", "volume", "vlateral", "runoff", "qlat",
               "lateral_inflow")
# river-route (catchment_runoff, 2.x qlateral) stamps a step at its end; RAPID and the rest at its start
_DEFAULT_LABEL = {"m3_riv": "start", "catchment_runoff": "end", "qlateral": "end"}
# units a format defines, for files that leave the attribute out
_DEFAULT_UNITS = {"m3_riv": "m3", "qlateral": "m3 s-1", "q_lateral": "m3 s-1"}
_FORMATS = {"m3_riv": "rapid_m3_riv", "catchment_runoff": "river_route_catchment_runoff",
            "qlateral": "river_route_qlateral", "q_lateral": "nwm_q_lateral"}
_IN_MEMORY = "in-memory runoff"  # what messages call runoff given as an array


def read_runoff(
    path: Any,
    network,
    *,
    variable: str | Sequence[str] | None = None,
    nan: str = "error",
    missing: str = "error",
    catchments: Any = None,
    catchment_layer: str | None = None,
    catchment_id_field: str | None = None,
    weights_cache: Any = None,
    units: str | None = None,
    time: Any = None,
    dt: float | None = None,
    time_label: str | None = None,
    layout: str | None = None,
    grid_crs: Any = None,
    ids: Sequence[int] | None = None,
) -> Runoff:
    """Read lateral runoff for every reach of ``network``.

    Parameters
    ----------
    path : what to read:

        - a NetCDF file (m3_riv, catchment_runoff, river-route 2.x qlateral, any (time, reach) variable, or a
          (time, y, x) grid), a CSV/parquet table, a GeoTIFF, a folder of GeoTIFFs or a glob ('runoff/*.tif');
        - an xarray Dataset or DataArray laid out as such a file (dask-backed too: read a block of steps at a
          time, never whole);
        - a numpy array or torch tensor [reach, time] (rows in ``network.ids`` order, or in ``ids`` order),
          with ``dt`` and optionally ``time``; m3/s unless ``units`` says otherwise;
        - a :class:`Runoff` (returned as it is when it already follows the network's reaches, else aligned).
    network : the RiverNetwork; rows of the result follow ``network.ids``.
    variable : the variable (NetCDF, Dataset) or value column (long tables) to read; for grids a list sums
        several (['RUNSF', 'RUNSB']). Found from the file when None.
    nan : 'error' (MissingValueError naming reaches and times) or 'zero' (NaN -> 0, warned).
    missing : 'error' (RunoffMismatchError naming the reaches without runoff) or 'zero' (warned).
    catchments : catchment polygons (file or GeoDataFrame), needed for gridded runoff.
    catchment_layer : the layer of ``catchments`` in a multi-layer file (None: the only polygon layer).
    catchment_id_field : the catchments' field holding reach ids (found when None).
    weights_cache : where the grid weight table is cached: None (beside the runoff file or files), False
        (nowhere), a folder (the workflow passes its output folder), or a .csv file.
    units : the runoff unit when the file has none (or to override it): m3, m3 s-1, m, mm, kg m-2,
        kg m-2 s-1, mm/h, ...
    time : dates of the steps of GeoTIFF input (one per band or file), overriding file names; for arrays, the
        start of the first step or of every step (default 1970-01-01).
    dt : step length, s, needed for arrays and for a single step without time bounds.
    time_label : 'start' or 'end': what a bare time stamp marks (defaults per format, module docstring).
    layout : 'wide' or 'long' for tables (found when None).
    grid_crs : CRS of a gridded file that does not carry one.
    ids : for arrays, the reach id of each row (default: the network's order).

    Returns
    -------
    Runoff : values float32 [N, T] m3/s, time = step starts (datetime64[ms]), dt in s, attrs recording what was
    done.

    Raises
    ------
    RunoffError, RunoffMismatchError, MissingValueError, UnitError, SchemaError
    """
    if catchments is not None and not _is_frame(catchments):  # checked even where unused: a typo must not pass
        check_input(catchments, what="catchment file", error=RunoffError, folder=True, field="catchments")
    runoff = _dispatch(path, network, variable=variable, nan=nan, missing=missing, catchments=catchments,
                       catchment_layer=catchment_layer, catchment_id_field=catchment_id_field,
                       weights_cache=weights_cache, units=units, time=time, dt=dt, time_label=time_label,
                       layout=layout, grid_crs=grid_crs, ids=ids)
    if catchments is not None and runoff.attrs.get("format") != "grid":
        name = runoff.source and Path(runoff.source).name or _IN_MEMORY
        warn(render_options(f"{name}: the runoff is given per reach, so the catchments are not used "
                            f"({opt('read_runoff.catchments')} is for gridded runoff); leave them out to silence "
                            f"this."))
    return runoff


def _is_frame(value: Any) -> bool:
    from ..hydrography.vector import is_frame

    return is_frame(value)


def _dispatch(path, network, *, variable, nan, missing, catchments, catchment_layer, catchment_id_field,
              weights_cache, units, time, dt, time_label, layout, grid_crs, ids) -> Runoff:
    if isinstance(path, Runoff):
        return _from_runoff(path, network, nan=nan, missing=missing)
    kind = _in_memory_kind(path)
    if kind == "xarray":
        return _read_xarray(path, network, variable=variable, nan=nan, missing=missing, catchments=catchments,
                            catchment_layer=catchment_layer, id_field=catchment_id_field, cache=weights_cache,
                            units=units, dt=dt, label=time_label, grid_crs=grid_crs)
    if kind == "array":
        if dt is None:
            raise RunoffError("runoff given as an array needs its step length.", path=None, field="dt",
                              hint=f"Give it with {opt('read_runoff.dt', 3600)} (seconds).")
        return runoff_from_array(path, network, ids=ids, dt=dt, time=time, units=units or "m3 s-1", nan=nan,
                                 missing=missing, field=None)
    path_text = str(path)
    p = Path(path_text)
    cat_options = dict(catchments=catchments, catchment_layer=catchment_layer, id_field=catchment_id_field,
                       cache=weights_cache)
    if gridded.is_geotiff(path_text):
        src = gridded.open_geotiffs(path_text, units=units, time=time, grid_crs=grid_crs)
        return _read_grid(src, path_text, network, nan=nan, missing=missing, dt=dt, label=time_label or "start",
                          **cat_options)
    p = check_input(p, what="runoff file", error=RunoffError)
    suffix = p.suffix.lower()
    if suffix in _TABLE:
        return read_table(p, network, units=units, layout=layout, value_column=variable, nan=nan, missing=missing,
                          dt=dt, time_label=time_label or "start")
    if suffix in _NETCDF or sniff(p) in ("netcdf", "hdf5"):
        return _read_netcdf(p, network, variable=variable, nan=nan, missing=missing, units=units, dt=dt,
                            label=time_label, grid_crs=grid_crs, **cat_options)
    raise RunoffError(f"cannot tell the format of '{p.name}' ({describe_content(p)}).", path=p,
                      hint="Use NetCDF (.nc), CSV, parquet or GeoTIFF (.tif) runoff.")


def _in_memory_kind(value: Any) -> str | None:
    """'xarray', 'array' (numpy, torch, lists of lists) or None (a path)."""
    if isinstance(value, (str, Path)):
        return None
    module = type(value).__module__ or ""
    if module.startswith("xarray"):
        return "xarray"
    if isinstance(value, np.ndarray) or module.startswith(("torch", "dask", "cupy")) or hasattr(value, "__array__"):
        return "array"
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], (list, tuple, np.ndarray)):
        return "array"
    return None


def _from_runoff(runoff: Runoff, network, *, nan: str, missing: str) -> Runoff:
    """A Runoff onto ``network``'s reaches: as it is when its rows already follow them, else aligned."""
    if runoff.ids.shape == network.ids.shape and np.array_equal(runoff.ids, network.ids):
        return runoff
    out, record = align(runoff.ids, runoff.values, network, path=runoff.source, field=None, time=runoff.time,
                        nan=nan, missing=missing)
    return Runoff(out, network.ids, runoff.time, runoff.dt, source=runoff.source, attrs={**runoff.attrs, **record})


# ---- NetCDF and xarray ----------------------------------------------------------------------------------
def _read_netcdf(path: Path, network, *, variable, nan, missing, catchments, catchment_layer, id_field, cache, units,
                 dt, label, grid_crs) -> Runoff:
    import xarray as xr

    content = sniff(path)
    if content not in ("netcdf", "hdf5"):
        raise RunoffError(f"the file is not NetCDF: it is {describe_content(path)}.", path=path,
                          hint="Give a NetCDF runoff file (classic or NetCDF-4), or name the file by its real "
                               "format (.csv, .parquet, .tif).")
    try:
        ds = xr.open_dataset(path, decode_times=False)
    except Exception as exc:  # the engines raise many types for unreadable files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunoffError(f"cannot open the file as NetCDF ({first}).", path=path,
                          hint="Check that the file is complete (not still being written) and not damaged.") from None
    with ds:
        return _read_dataset(ds, path, network, variable=variable, nan=nan, missing=missing, catchments=catchments,
                             catchment_layer=catchment_layer, id_field=id_field, cache=cache, units=units, dt=dt,
                             label=label, grid_crs=grid_crs)


def _read_xarray(obj, network, *, variable, **options) -> Runoff:
    """An xarray Dataset or DataArray, read as the NetCDF file it could be written to (lazily: a block of steps
    at a time, so dask-backed and file-backed arrays are never loaded whole)."""
    import xarray as xr

    if isinstance(obj, xr.DataArray):
        name = str(obj.name) if obj.name is not None else "runoff"
        if variable is not None and variable != name:
            raise SchemaError(f"the DataArray is named {name!r}, not {variable!r}.", field=name,
                              hint=f"Leave {opt('read_runoff.variable')} out for a DataArray.")
        obj, variable = obj.to_dataset(name=name), name
    return _read_dataset(obj, None, network, variable=variable, **options)


def _read_dataset(ds, path: Path | None, network, *, variable, nan, missing, catchments, catchment_layer, id_field,
                  cache, units, dt, label, grid_crs) -> Runoff:
    where = path if path is not None else None
    data_vars = ", ".join(map(str, ds.data_vars)) or "none"
    names = [variable] if isinstance(variable, str) else list(variable) if variable else None
    if names:
        absent = [n for n in names if n not in ds.data_vars]
        if absent:
            raise SchemaError(f"no variable {', '.join(absent)} (variables: {data_vars}).", path=where,
                              field=absent[0], hint=f"Name one of them with {opt('read_runoff.variable', 'NAME')}.")
    else:
        found = find_name(ds.data_vars, _REACH_VARS)
        grids = gridded.grid_variables(ds)
        if found is not None:
            names = [str(found)]
        elif len(grids) == 1:
            names = grids
        elif len(grids) > 1:
            raise SchemaError(f"several gridded variables could be the runoff: {', '.join(grids)}.", path=where,
                              hint=f"Name it with {opt('read_runoff.variable', grids[0])} (several, comma-separated, "
                                   f"are summed).")
        else:
            candidates = [str(v) for v, da in ds.data_vars.items() if da.ndim == 2]
            raise SchemaError(f"no runoff variable found (variables: {data_vars}; known names: "
                              f"{', '.join(_REACH_VARS)}).", path=where,
                              hint=f"Name the runoff variable with "
                                   f"{opt('read_runoff.variable', candidates[0] if candidates else 'NAME')}.")
    if names[0] in gridded.grid_variables(ds):
        src = gridded.open_netcdf_grid(ds, where, names, units=units, grid_crs=grid_crs)
        return _read_grid(src, str(path) if path else _IN_MEMORY, network, nan=nan, missing=missing,
                          catchments=catchments, catchment_layer=catchment_layer, id_field=id_field, cache=cache,
                          dt=dt, label=label or "start")
    if len(names) != 1:
        raise SchemaError("only gridded variables can be summed.", path=where, field=names[0])
    return _read_reach_variable(ds, where, network, names[0], nan=nan, missing=missing, units=units, dt=dt,
                                label=_label(names[0], label))


def _label(name: str, label: str | None) -> str:
    """What a bare time stamp of variable ``name`` marks: ``label``, else the format's default."""
    return label or _DEFAULT_LABEL.get(name.lower(), "start")


@dataclasses.dataclass
class _ReachLayout:
    """What a per-reach variable's numbers mean (everything but the numbers): the variable and its dimensions, the
    file's reach ids, step starts and length, the unit and the catchment area of each file row (depths)."""

    da: Any
    tdim: str
    rdim: str
    ids: np.ndarray  # int64 [M], the file's reach ids
    starts: np.ndarray
    step: float
    how: str
    info: UnitInfo
    area: np.ndarray | None  # m2 [M] where the unit is a depth
    area_from: str | None


def _reach_layout(ds, path: Path | None, network, name: str, *, units, dt, label) -> _ReachLayout:
    """The layout of the per-reach variable ``name`` of ``ds``, its numbers unread; SchemaError, UnitError and
    RunoffError (times) naming the variable."""
    da = ds[name]
    if da.ndim != 2:
        raise SchemaError(f"variable {name} has dimensions {da.dims}; expected (time, reach id).", path=path,
                          field=name)
    tdim = find_name(da.dims, TIME_NAMES)
    if tdim is None:
        raise SchemaError(f"variable {name} has no time dimension (dimensions {da.dims}; time names: "
                          f"{', '.join(TIME_NAMES)}).", path=path, field=name, hint="Name the time dimension 'time'.")
    rdim = next(d for d in da.dims if d != tdim)
    id_var = rdim if rdim in ds.variables else next(
        (v for v in ds.variables if str(v).lower() in REACH_ID_NAMES and ds[v].dims == (rdim,)), None)
    if id_var is None:
        raise SchemaError(f"dimension {rdim} of {name} has no reach-id variable.", path=path, field=str(rdim),
                          hint="Add a variable rivid (or river_id) holding the reach ids.")
    ids = as_ids(np.asarray(ds[id_var].values), path=path, field=str(id_var), error=SchemaError)
    tvar = ds[tdim]
    times = decode_cf_times(tvar.values, tvar.attrs.get("units"), tvar.attrs.get("calendar") or
                            tvar.encoding.get("calendar"), path=path, field=str(tdim))
    bounds = cf_bounds(ds, tdim, path)
    starts, step, how = step_starts(times, bounds=bounds, label=label, dt=dt, path=path, field=str(tdim))
    unit = units or da.attrs.get("units") or _DEFAULT_UNITS.get(name.lower())
    info = classify_unit(unit, variable=name, path=path)
    area = None
    area_from = None
    if info.needs_area:
        area_name = next((v for v in ("catchment_area", "area_sqm", "area") if v in ds.variables
                          and ds[v].dims == (rdim,)), None)
        if area_name is not None:
            area = np.asarray(ds[area_name].values, np.float64) * parse_unit(ds[area_name].attrs.get("units", "m2"),
                                                                              "area")
            area_from = area_name
        else:
            area, area_from = _network_area(network, ids), "network.catchment_area"
    return _ReachLayout(da, tdim, rdim, ids, starts, step, how, info, area, area_from)


def _read_reach_variable(ds, path: Path | None, network, name: str, *, nan, missing, units, dt, label) -> Runoff:
    lay = _reach_layout(ds, path, network, name, units=units, dt=dt, label=label)
    da, tdim, ids, starts, step, info, area = lay.da, lay.tdim, lay.ids, lay.starts, lay.step, lay.info, lay.area
    aligner = Aligner(ids, network, starts.size, path=path, field=name, nan=nan, missing=missing)
    time_first = da.dims[0] == tdim
    chunk = _block_steps(da, tdim, ids.size)
    for t0 in range(0, starts.size, chunk):
        # slice in the file's own order, transpose in memory: a lazily transposed slice makes xarray build a
        # vectorised index of every value (20 s for 2e7 values); computes one block of a dask array, no more
        with HDF5_IO:
            raw = np.asarray(da.isel({tdim: slice(t0, t0 + chunk)}).values)
        aligner.put(t0, to_m3s(raw.T if time_first else raw, info, step, area, ids=ids, path=path, variable=name))
    out, record = aligner.finish(starts)
    attrs = {"format": _FORMATS.get(name.lower(), "netcdf_reach"), "variable": name, "units": info.unit,
             "unit_kind": info.kind, "time_stamps": lay.how, **record}
    if lay.area_from:
        attrs["catchment_area"] = lay.area_from
    return Runoff(out, network.ids, starts, step, source=str(path) if path else None, attrs=attrs)


def _block_steps(da, tdim, n_rows: int) -> int:
    """Steps read at a time: about BLOCK_VALUES values (memory near the result's size), in whole time chunks of
    the file where it is chunked in time (an HDF5 or zarr chunk is then read once, not cut across two blocks)."""
    steps = max(1, int(BLOCK_VALUES // max(n_rows, 1)))
    on_disk = time_chunk(da, tdim)
    return max(on_disk, steps // on_disk * on_disk) if on_disk else steps


def time_chunk(da, tdim) -> int | None:
    """Steps per on-disk chunk of a file's (NetCDF/HDF5 or zarr) variable; None when it is not chunked in time."""
    sizes = da.encoding.get("chunksizes") or da.encoding.get("chunks") or da.encoding.get("preferred_chunks")
    if isinstance(sizes, dict):
        on_disk = sizes.get(tdim)
    elif sizes is not None and len(sizes) == da.ndim:
        on_disk = sizes[da.dims.index(tdim)]
    else:
        on_disk = None
    return int(on_disk) if isinstance(on_disk, (int, np.integer)) and 0 < on_disk < da.sizes[tdim] else None


def _network_area(network, ids: np.ndarray) -> np.ndarray | None:
    if network.catchment_area is None:
        return None
    area = np.full(ids.size, np.nan)
    known = np.isin(ids, network.ids)
    area[known] = network.catchment_area[network.index_of(ids[known])]
    area[~known] = 0.0  # rows for unknown reaches are dropped later; they must not fail the area check
    return area


# ---- gridded -------------------------------------------------------------------------------------------
def _read_grid(src: gridded.GridSource, path: str, network, *, nan, missing, catchments, catchment_layer, id_field,
               cache, dt, label) -> Runoff:
    try:
        if catchments is None:
            raise RunoffError("gridded runoff needs catchment polygons to aggregate it to reaches.", path=path,
                              hint=f"Give them with {opt('read_runoff.catchments', 'catchments.gpkg')} (a polygon "
                                   f"file with a reach-id field).")
        info = classify_unit(src.unit, variable=src.variable, path=path, allowed=("depth", "depth_rate"))
        starts, step, how = step_starts(src.times, bounds=src.bounds, label=label, dt=dt, path=path)
        cats = weights.load_catchments(catchments, id_field, network, layer=catchment_layer)
        table, record = weights.grid_weights(src.grid, cats, cache=cache, default_dir=src.home)
        # sum(depth * area) is a volume per step (depths) or a volume rate (depth rates)
        summed = UnitInfo("volume" if info.per_step else "discharge", info.factor, info.unit)
        ids = np.unique(table.reach_id)  # the order aggregate_blocks gives
        aligner = Aligner(ids, network, src.n_steps, path=path, field=src.variable, nan=nan, missing=missing)
        for t0, sums in weights.aggregate_blocks(table, src.read_block, src.n_steps):
            aligner.put(t0, to_m3s(sums, summed, step, None, ids=ids, path=path, variable=src.variable))
        out, aligned = aligner.finish(starts)
    finally:
        src.close()
    attrs = {"format": "grid", "variable": src.variable, "units": info.unit, "unit_kind": info.kind,
             "time_stamps": how, "grid_shape": list(src.grid.shape), "catchments": cats.source,
             "catchment_id_field": cats.id_field, "catchment_layer": cats.layer, "weights_key": table.key, **record,
             **aligned}
    return Runoff(out, network.ids, starts, step, source=None if path == _IN_MEMORY else path, attrs=attrs)


# ---- tables --------------------------------------------------------------------------------------------
_SUFFIX = re.compile(r"^\s*(?P<name>.*?)\s*\[(?P<unit>[^\]]+)\]\s*$")


def read_table(path: Any, network, *, units: str | None = None, layout: str | None = None,
               value_column: str | None = None, nan: str = "error", missing: str = "error", dt: float | None = None,
               time_label: str = "start") -> Runoff:
    """Runoff from a CSV or parquet table.

    Layouts
    -------
    wide : a time column (time, date, datetime, timestamp; or a parquet datetime index) and one column per
        reach named by its id: ``time,1001,1002``. A unit may follow each id in brackets (``1001 [mm]``) or
        after an underscore (``1001_m3``); all columns must share it.
    long : a time column, a reach-id column (rivid, river_id, reach_id, LINKNO, COMID, id, ... or the
        network's id field) and one value column (``value``, ``runoff``, or ``value_column``), optionally
        with a unit in brackets (``runoff [mm]``). Missing (time, reach) pairs are NaN.

    Units come from ``units`` or the column suffix (an error if they disagree). Depths use the network's
    catchment areas. Time stamps mark step starts unless ``time_label='end'``. ``path`` may also be a pandas
    DataFrame laid out the same way (a DatetimeIndex is the time column).
    """
    import pandas as pd

    if isinstance(path, pd.DataFrame):
        df, path = path, None
    else:
        path = check_input(path, what="runoff table", error=RunoffError)
        try:
            df = pd.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq") else pd.read_csv(path)
        except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RunoffError(f"cannot read the table ({first}).", path=path,
                              hint="Give a comma-separated CSV with a header line, or a parquet file.") from None
    if isinstance(df.index, pd.DatetimeIndex):
        df = df.reset_index(names="time")
    columns = [str(c) for c in df.columns]
    df.columns = columns
    tcol = find_name(columns, TIME_NAMES)
    if tcol is None:
        raise SchemaError(f"no time column (columns: {format_ids(columns, 6)}; time names: "
                          f"{', '.join(TIME_NAMES)}).", path=path, hint="Name the time column 'time'.")
    id_col = find_name([c for c in columns if c != tcol], REACH_ID_NAMES, also=(network.source.field("id"),))
    if layout is None:
        layout = "long" if id_col is not None else "wide"
    if layout not in ("wide", "long"):
        raise ValueError(f"layout must be 'wide' or 'long', not {layout!r}")
    times_raw = as_datetimes(df[tcol].to_numpy(), path=path, field=tcol)
    if layout == "wide":
        value_cols = [c for c in columns if c != tcol]
        parsed = [_split_unit(c) for c in value_cols]
        bad = [c for c, (name, _) in zip(value_cols, parsed) if not _is_int(name)]
        if bad:
            raise SchemaError(f"wide table columns must be reach ids; not ids: {format_ids(bad)}.", path=path,
                              field=bad[0], hint="Name each value column by its reach id, or use the long layout "
                                                 "(time, reach id, value).")
        ids = as_ids(np.array([name for name, _ in parsed], dtype=object), path=path, field=value_cols[0],
                     error=SchemaError, what="reach ids (column names)")
        unit = _one_unit([u for _, u in parsed], units, path)
        if np.unique(times_raw).size != times_raw.size:
            raise RunoffError("the time column repeats times.", path=path, field=tcol,
                              hint="Give one row per time in the wide layout.")
        order = np.argsort(times_raw, kind="stable")
        times = times_raw[order]
        raw = _numbers(df, value_cols, path)[order].T
        field = value_cols[0]
    else:
        if id_col is None:
            raise SchemaError(f"no reach-id column (columns: {format_ids(columns, 6)}).", path=path,
                              hint="Name it rivid, river_id, reach_id or id.")
        rest = [c for c in columns if c not in (tcol, id_col)]
        if value_column is not None:
            field = next((c for c in rest if c == value_column or _split_unit(c)[0] == value_column), None)
            if field is None:
                raise SchemaError(f"no column {value_column!r} (columns: {format_ids(rest, 6)}).", path=path,
                                  field=value_column)
        elif len(rest) == 1:
            field = rest[0]
        else:
            field = next((c for c in rest if _split_unit(c)[0].lower() in ("value", "runoff", "m3_riv", "volume",
                                                                            "qlat")), None)
            if field is None:
                raise SchemaError(f"several value columns ({format_ids(rest, 6)}).", path=path,
                                  hint=f"Name the value column with {opt('read_runoff.variable', rest[0])}.")
        unit = _one_unit([_split_unit(field)[1]], units, path)
        rid = as_ids(df[id_col].to_numpy(), path=path, field=id_col, error=SchemaError)
        times, t_index = np.unique(times_raw, return_inverse=True)
        ids, r_index = np.unique(rid, return_inverse=True)
        flat = r_index * times.size + t_index
        if np.unique(flat).size != flat.size:
            raise RunoffError("some (time, reach) pairs appear more than once.", path=path, field=id_col,
                              hint="Give one value per reach and time.")
        raw = np.full((ids.size, times.size), np.nan)
        raw[r_index, t_index] = _numbers(df, [field], path)[:, 0]
    starts, step, how = step_starts(times, label=time_label, dt=dt, path=path, field=tcol)
    info = classify_unit(unit, variable=field, path=path)
    area = _network_area(network, ids) if info.needs_area else None
    values = to_m3s(raw, info, step, area, ids=ids, path=path, variable=field)
    out, record = align(ids, values, network, path=path, field=field, time=starts, nan=nan, missing=missing)
    attrs = {"format": f"table_{layout}", "variable": field, "units": info.unit, "unit_kind": info.kind,
             "time_stamps": how, **record}
    return Runoff(out, network.ids, starts, step, source=str(path) if path else None, attrs=attrs)


def _numbers(df, columns: list[str], path: Path | None) -> np.ndarray:
    """Table columns as float64 [rows, columns] (empty cells NaN); SchemaError naming the first cell that holds
    text, with its row (1 = the first data row) and column."""
    import pandas as pd

    block = df[columns]
    try:
        return block.to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        pass
    for column in columns:
        parsed = pd.to_numeric(block[column], errors="coerce")
        bad = parsed.isna().to_numpy() & block[column].notna().to_numpy()
        if bad.any():
            rows = np.flatnonzero(bad)
            raise SchemaError(f"column {column} holds text where numbers are expected: {block[column].iloc[rows[0]]!r} "
                              f"in row {rows[0] + 1:,} ({rows.size:,} such cells, rows {format_ids(rows + 1)}).",
                              path=path, field=column,
                              hint="Fix those cells (an empty cell is a missing value), or remove the rows.")
    raise AssertionError("to_numpy failed but every column parses as numbers")


def _split_unit(column: str) -> tuple[str, str | None]:
    m = _SUFFIX.match(column)
    if m:
        return m.group("name"), m.group("unit")
    if "_" in column:
        name, tail = column.rsplit("_", 1)
        try:
            classify_unit(tail, variable=column)
            return name, tail
        except UnitError:
            pass
    return column, None


def _one_unit(found: list[str | None], given: str | None, path: Path) -> str | None:
    units = {" ".join(u.split()) for u in found if u}
    if len(units) > 1:
        raise UnitError(f"columns carry different units ({', '.join(sorted(units))}).", path=path,
                        hint="Use one unit for every column.")
    suffix = units.pop() if units else None
    if given and suffix and classify_unit(given, variable=None) != classify_unit(suffix, variable=None):
        raise UnitError(f"the unit '{given}' was given but the columns say '{suffix}'.", path=path,
                        hint=f"Leave {opt('read_runoff.units')} out, or fix the column names.")
    return given or suffix


def _is_int(text: str) -> bool:
    try:
        value = float(text)
    except ValueError:
        return False
    return np.isfinite(value) and value == round(value)


# ---- chunked reading (streaming in time: thalweg.scale.stream) -------------------------------------------
class RunoffChunks:
    """A per-reach runoff file (NetCDF, or a zarr store) opened lazily, read a time chunk at a time.

    ``read(a, b)`` is the :class:`Runoff` of steps a..b-1 as :func:`read_runoff` reads them (the same units,
    alignment, time and missing-value rules: it reads a time slice of the dataset through them), so a run in
    chunks sees exactly the values of one read. ``n_steps``, ``dt`` and ``time`` (step starts) describe the
    whole file; ``shape`` is (rows of the file's reach dimension, steps), from the header alone; ``time_chunk``
    the steps of one on-disk chunk (None when the file is not chunked in time).

    Where the values are read elsewhere (Dask workers, :mod:`thalweg.scale.distributed`): ``steps(a, b)`` gives a
    chunk's times without its values, ``rows()`` the file described for the readers (:mod:`._rows`), and
    ``judge`` words what their checks found as ``read(a, b)`` would.
    """

    def __init__(self, path: Any, network, **kwargs: Any) -> None:
        self.path, self.network, self.kwargs = Path(str(path)), network, dict(kwargs)
        self.ds = open_lazy(self.path)
        self.variable = self._variable()
        da = self.ds[self.variable]
        self.tdim = find_name(da.dims, TIME_NAMES)
        if da.ndim != 2 or self.tdim is None:
            raise SchemaError(f"variable {self.variable} has dimensions {da.dims}; streaming reads (time, reach id) "
                              f"variables.", path=self.path, field=self.variable)
        self.shape = (int(da.sizes[next(d for d in da.dims if d != self.tdim)]), int(da.sizes[self.tdim]))
        self.n_steps = self.shape[1]
        self.time_chunk = time_chunk(da, self.tdim)  # chunks of whole on-disk chunks are read once each
        self.dt = float(self.kwargs.get("dt") or 0.0) or None
        self.time = None

    def _variable(self) -> str:
        given = self.kwargs.get("variable")
        if isinstance(given, str):
            if given not in self.ds.data_vars:
                raise SchemaError(f"no variable {given} (variables: {', '.join(map(str, self.ds.data_vars))}).",
                                  path=self.path, field=given)
            return given
        found = find_name(self.ds.data_vars, _REACH_VARS)
        if found is None:
            raise SchemaError("no per-reach runoff variable to stream (gridded runoff and tables are read whole).",
                              path=self.path, hint=f"Name it with {opt('read_runoff.variable', 'NAME')}.")
        return str(found)

    def start(self) -> None:
        """Read the first step (or two): the step length and the whole time axis, checked chunk by chunk."""
        head = self.read(0, min(2, self.n_steps), check=False)
        self.dt = float(head.dt)
        step = np.timedelta64(int(round(self.dt * 1000)), "ms")
        self.time = head.time[0].astype("datetime64[ms]") + step * np.arange(self.n_steps)

    def read(self, a: int, b: int, *, check: bool = True) -> Runoff:
        runoff = self._named(read_runoff, self._part(a, b), self.network, **self._kwargs())
        if check:
            self._check_steps(a, b, runoff.time)
        return Runoff(runoff.values, runoff.ids, runoff.time, runoff.dt, source=str(self.path),
                      attrs=runoff.attrs)

    def steps(self, a: int, b: int) -> tuple[np.ndarray, float]:
        """The step starts (datetime64[ms]) and step length of steps a..b-1 as :meth:`read` gives them, checked
        the same way, from the time variable alone: the values are read elsewhere (:meth:`rows`)."""
        lay = self._named(self._layout, self._part(a, b))
        time = np.asarray(lay.starts).astype(TIME_DTYPE)
        self._check_steps(a, b, time)
        return time, lay.step

    def rows(self):
        """The file described for reading some reaches' rows elsewhere (a Dask worker): a ``_rows.ReachRows``,
        whose ``read`` gives what :meth:`read` gives of those rows, and whose findings :meth:`judge` words."""
        from ._rows import ReachRows

        lay = self._named(self._layout, self._part(0, min(1, self.n_steps)))
        known = np.isin(lay.ids, self.network.ids)
        column = np.full(self.network.n_reaches, -1, dtype=np.int64)
        column[self.network.index_of(lay.ids[known])] = np.flatnonzero(known)
        return ReachRows(path=str(self.path), variable=self.variable, tdim=str(lay.tdim), rdim=str(lay.rdim),
                         shape=self.shape, info=lay.info, area=lay.area, column=column,
                         nan=self.kwargs.get("nan", "error"))

    def judge(self, a: int, b: int, time: np.ndarray, found) -> None:
        """Word what the checks of steps a..b-1 found in pieces read apart (``found``: (positions of a piece's
        reaches in the network, the ``Aligner.findings`` of its ``ReachRows.read``) for pieces covering the
        network) as :meth:`read` of the whole chunk does: the same warnings, or the same error."""

        def word() -> None:
            ids = self._layout(self._part(a, a + 1)).ids  # the file's reach ids (a header read)
            aligner = Aligner(ids, self.network, int(b) - int(a), path=None, field=self.variable,
                              nan=self.kwargs.get("nan", "error"), missing=self.kwargs.get("missing", "error"))
            for reaches, findings in found:
                aligner.absorb(reaches, findings)
            aligner.finish(time)

        self._named(word)

    def _part(self, a: int, b: int):
        return self.ds.isel({self.tdim: slice(int(a), int(b))})

    def _kwargs(self) -> dict[str, Any]:
        kwargs = dict(self.kwargs)
        if self.dt is not None:
            kwargs["dt"] = self.dt
        return kwargs

    def _layout(self, part) -> _ReachLayout:
        """The layout :func:`read_runoff` finds in ``part`` (a time slice of the dataset)."""
        kwargs = self._kwargs()
        return _reach_layout(part, None, self.network, self.variable, units=kwargs.get("units"), dt=kwargs.get("dt"),
                             label=_label(self.variable, kwargs.get("time_label")))

    def _named(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)``, its runoff errors naming this file (they are raised reading a slice of it)."""
        try:
            return fn(*args, **kwargs)
        except (RunoffError, SchemaError, UnitError) as exc:
            if exc.path is None:
                exc.path = str(self.path)
            raise

    def _check_steps(self, a: int, b: int, time: np.ndarray) -> None:
        if self.time is None:
            return
        want = self.time[a:b]
        got = np.asarray(time).astype("datetime64[ms]")
        if got.shape != want.shape or not np.array_equal(got, want):
            k = int(np.flatnonzero(got != want)[0]) if got.shape == want.shape else 0
            raise RunoffError(f"the runoff's time steps are not evenly spaced: step {a + k + 1:,} starts at "
                              f"{got[k]}, not {want[k]}.", path=self.path, field=str(self.tdim),
                              hint="Resample the runoff to a regular step.")

    def close(self) -> None:
        self.ds.close()


def open_lazy(path: Any):
    """An xarray Dataset of a NetCDF file or zarr store, opened without reading its data (times not decoded)."""
    import xarray as xr

    p = Path(str(path))
    if p.suffix.lower() == ".zarr" or (p.is_dir() and ((p / ".zgroup").exists() or (p / "zarr.json").exists())):
        try:
            return xr.open_zarr(p, decode_times=False, consolidated=None)
        except Exception as exc:
            raise RunoffError(f"cannot open the zarr store ({str(exc).strip().splitlines()[0]}).", path=p) from None
    p = check_input(p, what="runoff file", error=RunoffError)
    try:
        return xr.open_dataset(p, decode_times=False)
    except Exception as exc:  # the engines raise many types for unreadable files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunoffError(f"cannot open the file as NetCDF ({first}).", path=p,
                          hint="Check that the file is complete (not still being written) and not damaged.") from None


def open_runoff_chunks(path: Any, network, **kwargs: Any) -> RunoffChunks:
    """A :class:`RunoffChunks` of ``path`` (``read_runoff``'s keywords); ``start()`` reads the time axis."""
    chunks = RunoffChunks(path, network, **kwargs)
    try:
        chunks.start()
    except BaseException:
        chunks.close()
        raise
    return chunks
