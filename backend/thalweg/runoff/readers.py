"""read_runoff: any runoff file -> :class:`Runoff` (m3/s step means, the network's reach order).

Formats (DATA.md section 2), chosen from the file:

- RAPID ``m3_riv(time, rivid)`` NetCDF: volumes per step, m3.
- river-route ``catchment_runoff(riverId, time)`` NetCDF: volumes (m3) or depths (m, mm, kg m-2) with
  ``catchment_area(riverId)`` in m2; also the older river-route ``volume`` / ``vlateral`` variables.
- Any NetCDF variable over (time, reach id) with a runoff unit (m3, m3 s-1, mm, kg m-2 s-1, ...).
- Gridded NetCDF (time, y, x) or GeoTIFF(s), aggregated to catchment polygons by area weights (weights.py).
- CSV / parquet tables, see :func:`read_table`.

Time stamps (stored as step STARTS in ``Runoff.time``):

- ``time_bnds`` (or the variable named by the time variable's ``bounds`` attribute) decides when present:
  the step is [bnds[0], bnds[1]].
- RAPID m3_riv without bounds: a stamp marks the step START. RAPID's own tools (RRR
  ``rrr_lsm_tot_add_cfc.py``) write ``time_bnds = [time, time + dt]``, and RAPID copies time and bounds
  into Qout.
- river-route catchment_runoff: a stamp marks the step END. river-route labels the discharge of a step
  with the runoff's stamp and describes its routing as right-aligned ("runoff that occurred from 4 pm to
  5 pm" stamped 5 pm); so with our end-of-step discharge the stamps line up.
- Tables, other NetCDF variables, gridded files and GeoTIFF names: a stamp marks the step START (the
  pandas and CF habit for period data: '2020-01-01' is the day that starts then).
- ``time_label='start' | 'end'`` overrides the default of a format without bounds.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RunoffError, SchemaError, UnitError, format_ids
from ..units import parse_unit
from . import gridded, weights
from ._align import Aligner, UnitInfo, align, classify_unit, to_m3s
from ._time import as_datetimes, cf_bounds, decode_cf_times, step_starts
from .model import Runoff

__all__ = ["read_runoff", "read_table", "ID_NAMES"]

ID_NAMES = ("rivid", "river_id", "riverid", "reach_id", "reachid", "linkno", "comid", "feature_id", "hyriv_id",
            "segid", "streamid", "id")
_NETCDF = (".nc", ".nc4", ".netcdf", ".cdf", ".h5", ".hdf5")
_TABLE = (".csv", ".txt", ".parquet", ".pq")
_REACH_VARS = ("m3_riv", "catchment_runoff", "volume", "vlateral", "runoff", "qlat", "lateral_inflow")
_DEFAULT_LABEL = {"m3_riv": "start", "catchment_runoff": "end"}
BLOCK_VALUES = 2e7  # values per time block read from a reach file (160 MB in float64)


def read_runoff(
    path: str | Path,
    network,
    *,
    variable: str | Sequence[str] | None = None,
    nan: str = "error",
    missing: str = "error",
    catchments: Any = None,
    catchment_id_field: str | None = None,
    weights_cache: Any = None,
    units: str | None = None,
    time: Sequence[Any] | None = None,
    dt: float | None = None,
    time_label: str | None = None,
    layout: str | None = None,
    grid_crs: Any = None,
) -> Runoff:
    """Read lateral runoff for every reach of ``network``.

    Parameters
    ----------
    path : a NetCDF file (m3_riv, catchment_runoff, any (time, reach) variable, or a (time, y, x) grid),
        a CSV/parquet table, a GeoTIFF, a folder of GeoTIFFs or a glob ('runoff/*.tif').
    network : the RiverNetwork; rows of the result follow ``network.ids``.
    variable : the variable (NetCDF) or value column (long tables) to read; for grids a list sums several
        (['RUNSF', 'RUNSB']). Found from the file when None.
    nan : 'error' (MissingValueError naming reaches and times) or 'zero' (NaN -> 0, warned).
    missing : 'error' (RunoffMismatchError naming the reaches without runoff) or 'zero' (warned).
    catchments : catchment polygons (file or GeoDataFrame), needed for gridded runoff.
    catchment_id_field : the catchments' field holding reach ids (found when None).
    weights_cache : where the grid weight table is cached: None (beside the runoff file or files), False
        (nowhere), a folder (the workflow passes its output folder), or a .csv file.
    units : the runoff unit when the file has none (or to override it): m3, m3 s-1, m, mm, kg m-2,
        kg m-2 s-1, mm/h, ...
    time : dates of the steps of GeoTIFF input (one per band or file), overriding file names.
    dt : step length, s, needed only for a single step without time bounds.
    time_label : 'start' or 'end': what a bare time stamp marks (defaults per format, module docstring).
    layout : 'wide' or 'long' for tables (found when None).
    grid_crs : CRS of a gridded file that does not carry one.

    Returns
    -------
    Runoff : values float32 [N, T] m3/s, time = step starts, dt in s, attrs recording what was done.

    Raises
    ------
    RunoffError, RunoffMismatchError, MissingValueError, UnitError, SchemaError
    """
    path_text = str(path)
    p = Path(path_text)
    suffix = p.suffix.lower()
    if gridded.is_geotiff(path_text):
        src = gridded.open_geotiffs(path_text, units=units, time=time, grid_crs=grid_crs)
        return _read_grid(src, path_text, network, nan=nan, missing=missing, catchments=catchments,
                          id_field=catchment_id_field, cache=weights_cache, dt=dt, label=time_label or "start")
    if not p.exists():
        raise RunoffError("the runoff file does not exist.", path=p, hint="Check the path.")
    if suffix in _TABLE:
        return read_table(p, network, units=units, layout=layout, value_column=variable, nan=nan, missing=missing,
                          dt=dt, time_label=time_label or "start")
    if suffix in _NETCDF or _looks_netcdf(p):
        return _read_netcdf(p, network, variable=variable, nan=nan, missing=missing, catchments=catchments,
                            id_field=catchment_id_field, cache=weights_cache, units=units, dt=dt,
                            label=time_label, grid_crs=grid_crs)
    raise RunoffError(f"cannot tell the format of '{p.name}'.", path=p,
                      hint="Use NetCDF (.nc), CSV, parquet or GeoTIFF (.tif) runoff.")


# ---- NetCDF -------------------------------------------------------------------------------------------
def _read_netcdf(path: Path, network, *, variable, nan, missing, catchments, id_field, cache, units, dt, label,
                 grid_crs) -> Runoff:
    import xarray as xr

    try:
        ds = xr.open_dataset(path, decode_times=False)
    except Exception as exc:  # the engines raise many types for unreadable files
        raise RunoffError(f"cannot open the file as NetCDF: {exc}", path=path) from None
    with ds:
        names = [variable] if isinstance(variable, str) else list(variable) if variable else None
        if names:
            absent = [n for n in names if n not in ds.data_vars]
            if absent:
                raise SchemaError(f"no variable {', '.join(absent)} (variables: {', '.join(map(str, ds.data_vars))}).",
                                  path=path, field=absent[0], hint="Pass variable= naming one of them.")
        else:
            found = next((n for n in _REACH_VARS if n in ds.data_vars), None)
            grids = gridded.grid_variables(ds)
            if found is not None:
                names = [found]
            elif len(grids) == 1:
                names = grids
            elif len(grids) > 1:
                raise SchemaError(f"several gridded variables could be the runoff: {', '.join(grids)}.", path=path,
                                  hint="Pass variable= (a list sums them, e.g. ['RUNSF', 'RUNSB']).")
            else:
                raise SchemaError(f"no runoff variable found (variables: {', '.join(map(str, ds.data_vars))}).",
                                  path=path, hint="Pass variable= naming the runoff variable.")
        if names[0] in gridded.grid_variables(ds):
            src = gridded.open_netcdf_grid(ds, path, names, units=units, grid_crs=grid_crs)
            return _read_grid(src, str(path), network, nan=nan, missing=missing, catchments=catchments,
                              id_field=id_field, cache=cache, dt=dt, label=label or "start")
        if len(names) != 1:
            raise SchemaError("only gridded variables can be summed.", path=path, field=names[0])
        return _read_reach_netcdf(ds, path, network, names[0], nan=nan, missing=missing, units=units, dt=dt,
                                  label=label or _DEFAULT_LABEL.get(names[0], "start"))


def _read_reach_netcdf(ds, path: Path, network, name: str, *, nan, missing, units, dt, label) -> Runoff:
    da = ds[name]
    if da.ndim != 2:
        raise SchemaError(f"variable {name} has dimensions {da.dims}; expected (time, reach id).", path=path,
                          field=name)
    tdim = gridded.find_dim(da.dims, gridded.TIME_NAMES)
    if tdim is None:
        raise SchemaError(f"variable {name} has no time dimension (dimensions {da.dims}).", path=path, field=name,
                          hint="Name the time dimension 'time'.")
    rdim = next(d for d in da.dims if d != tdim)
    id_var = rdim if rdim in ds.variables else next(
        (v for v in ds.variables if str(v).lower() in ID_NAMES and ds[v].dims == (rdim,)), None)
    if id_var is None:
        raise SchemaError(f"dimension {rdim} of {name} has no reach-id variable.", path=path, field=rdim,
                          hint="Add a variable rivid (or river_id) holding the reach ids.")
    ids = np.asarray(ds[id_var].values)
    if ids.dtype.kind == "f":
        if not np.all(np.isfinite(ids)) or np.any(ids != np.round(ids)):
            raise SchemaError("reach ids are not whole numbers.", path=path, field=str(id_var))
    ids = ids.astype(np.int64)
    tvar = ds[tdim]
    times = decode_cf_times(tvar.values, tvar.attrs.get("units"), tvar.attrs.get("calendar"), path=path,
                            field=str(tdim))
    bounds = cf_bounds(ds, tdim, path)
    starts, step, how = step_starts(times, bounds=bounds, label=label, dt=dt, path=path, field=str(tdim))
    unit = units or da.attrs.get("units")
    if unit is None and name == "m3_riv":
        unit = "m3"  # RAPID defines m3_riv as m3 per step; its tools always say so, others may not
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
    aligner = Aligner(ids, network, starts.size, path=path, field=name, nan=nan, missing=missing)
    chunk = max(1, int(BLOCK_VALUES // max(ids.size, 1)))  # time blocks keep memory near the result's size
    for t0 in range(0, starts.size, chunk):
        # a plain slice in the file's own order, transposed in memory: slicing a lazily transposed variable
        # sends xarray down its vectorised-indexer path (np.unique over every index: 30 s for 100k x 365)
        block = np.asarray(da.isel({tdim: slice(t0, t0 + chunk)}).values)
        raw = block.T if da.dims.index(tdim) == 0 else block
        aligner.put(t0, to_m3s(raw, info, step, area, ids=ids, path=path, variable=name))
    out, record = aligner.finish(starts)
    attrs = {"format": _format_name(name), "variable": name, "units": info.unit, "unit_kind": info.kind,
             "time_stamps": how, **record}
    if area_from:
        attrs["catchment_area"] = area_from
    return Runoff(out, network.ids, starts, step, source=str(path), attrs=attrs)


def _format_name(name: str) -> str:
    return {"m3_riv": "rapid_m3_riv", "catchment_runoff": "river_route_catchment_runoff"}.get(name, "netcdf_reach")


def _network_area(network, ids: np.ndarray) -> np.ndarray | None:
    if network.catchment_area is None:
        return None
    area = np.full(ids.size, np.nan)
    known = np.isin(ids, network.ids)
    area[known] = network.catchment_area[network.index_of(ids[known])]
    area[~known] = 0.0  # rows for unknown reaches are dropped later; they must not fail the area check
    return area


# ---- gridded -------------------------------------------------------------------------------------------
def _read_grid(src: gridded.GridSource, path: str, network, *, nan, missing, catchments, id_field, cache, dt,
               label) -> Runoff:
    try:
        if catchments is None:
            raise RunoffError("gridded runoff needs catchment polygons to aggregate it to reaches.", path=path,
                              hint="Pass catchments= (a polygon file with a reach-id field).")
        info = classify_unit(src.unit, variable=src.variable, path=path, allowed=("depth", "depth_rate"))
        starts, step, how = step_starts(src.times, bounds=src.bounds, label=label, dt=dt, path=path)
        cats = weights.load_catchments(catchments, id_field, network)
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
             "catchment_id_field": cats.id_field, "weights_key": table.key, **record, **aligned}
    return Runoff(out, network.ids, starts, step, source=path, attrs=attrs)


# ---- tables --------------------------------------------------------------------------------------------
_TIME_COLUMNS = ("time", "date", "datetime", "timestamp", "valid_time", "dates")
_SUFFIX = re.compile(r"^\s*(?P<name>.*?)\s*\[(?P<unit>[^\]]+)\]\s*$")


def read_table(path: str | Path, network, *, units: str | None = None, layout: str | None = None,
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
    catchment areas. Time stamps mark step starts unless ``time_label='end'``.
    """
    import pandas as pd

    path = Path(path)
    df = pd.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq") else pd.read_csv(path)
    if isinstance(df.index, pd.DatetimeIndex):
        df = df.reset_index(names="time")
    columns = [str(c) for c in df.columns]
    df.columns = columns
    tcol = next((c for c in columns if c.strip().lower() in _TIME_COLUMNS), None)
    if tcol is None:
        raise SchemaError(f"no time column (columns: {format_ids(columns, 6)}).", path=path,
                          hint="Name the time column 'time'.")
    net_id = (network.source.field("id") or "").lower()
    id_col = next((c for c in columns if c != tcol and (c.lower() in ID_NAMES or (net_id and c.lower() == net_id))),
                  None)
    if layout is None:
        layout = "long" if id_col is not None else "wide"
    if layout not in ("wide", "long"):
        raise ValueError(f"layout must be 'wide' or 'long', not {layout!r}")
    times_raw = as_datetimes(df[tcol].to_numpy(), path=path, field=tcol)
    if layout == "wide":
        value_cols = [c for c in columns if c != tcol]
        parsed = [_split_unit(c) for c in value_cols]
        try:
            ids = np.array([int(float(name)) for name, _ in parsed], dtype=np.int64)
        except ValueError:
            bad = [c for c, (name, _) in zip(value_cols, parsed) if not _is_int(name)]
            raise SchemaError(f"wide table columns must be reach ids; not ids: {format_ids(bad)}.", path=path,
                              field=bad[0], hint="Name each value column by its reach id, or use the long layout "
                                                 "(time, reach id, value).") from None
        unit = _one_unit([u for _, u in parsed], units, path)
        if np.unique(times_raw).size != times_raw.size:
            raise RunoffError("the time column repeats times.", path=path, field=tcol,
                              hint="Give one row per time in the wide layout.")
        order = np.argsort(times_raw, kind="stable")
        times = times_raw[order]
        raw = df[value_cols].to_numpy(dtype=np.float64)[order].T
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
                                  hint="Pass variable= naming the value column.")
        unit = _one_unit([_split_unit(field)[1]], units, path)
        rid = df[id_col].to_numpy()
        if not _is_int_array(rid):
            raise SchemaError("reach ids are not whole numbers.", path=path, field=id_col)
        rid = rid.astype(np.float64).astype(np.int64)
        times, t_index = np.unique(times_raw, return_inverse=True)
        ids, r_index = np.unique(rid, return_inverse=True)
        flat = r_index * times.size + t_index
        if np.unique(flat).size != flat.size:
            raise RunoffError("some (time, reach) pairs appear more than once.", path=path, field=id_col,
                              hint="Give one value per reach and time.")
        raw = np.full((ids.size, times.size), np.nan)
        raw[r_index, t_index] = df[field].to_numpy(dtype=np.float64)
    starts, step, how = step_starts(times, label=time_label, dt=dt, path=path, field=tcol)
    info = classify_unit(unit, variable=field, path=path)
    area = _network_area(network, ids) if info.needs_area else None
    values = to_m3s(raw, info, step, area, ids=ids, path=path, variable=field)
    out, record = align(ids, values, network, path=path, field=field, time=starts, nan=nan, missing=missing)
    attrs = {"format": f"table_{layout}", "variable": field, "units": info.unit, "unit_kind": info.kind,
             "time_stamps": how, **record}
    return Runoff(out, network.ids, starts, step, source=str(path), attrs=attrs)


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
        raise UnitError(f"units='{given}' was given but the columns say '{suffix}'.", path=path,
                        hint="Drop units= or fix the column names.")
    return given or suffix


def _is_int(text: str) -> bool:
    try:
        value = float(text)
    except ValueError:
        return False
    return np.isfinite(value) and value == round(value)


def _is_int_array(values: np.ndarray) -> bool:
    try:
        f = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return bool(np.all(np.isfinite(f)) and np.all(f == np.round(f)))


def _looks_netcdf(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return False
    return head[:3] == b"CDF" or head[:8] == b"\x89HDF\r\n\x1a\n"

