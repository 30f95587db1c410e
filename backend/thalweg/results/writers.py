"""Result writers: RAPID/GEOGloWS Qout and river-route Q NetCDF, river-route 3 zarr, a GeoPackage summary
(reaches and gauges), hydrograph CSV (wide and long).

Every writer goes through ``thalweg._files.atomic_path``: a failing write leaves no file behind.

Time conventions (ROUTING.md section 1). Thalweg's Q[t] is the instantaneous discharge at the END of
step t. ``write_qout(convention="mean")`` writes RAPID's step mean, which with one routing sub-step per
output step is Q[t-1] (Q[-1] = the initial discharge, 0 for a cold start), stamped like RAPID at the step
START with ``time_bnds`` = [start, end] and ``cell_methods = "time: mean"``; the last end-of-step value,
which a mean file cannot hold, goes into ``Qfinal(rivid)`` (the quantity of RAPID's Qfinal file), so that
:func:`read_discharge` gives back exactly what was written. ``convention="end"`` writes Q[t] stamped at the
step END with ``cell_methods = "time: point"``. Both files carry ``thalweg_time_convention``.

NetCDF files follow CF-1.8 (checked in the tests with the IOOS compliance checker): numeric float64 time
with units and calendar (any date, see ``_cftime``), units on every coordinate, ``_FillValue`` on the
discharge, an unlimited time dimension, chunked and zlib-compressed (level 1, shuffled) data.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._files import HDF5_IO, atomic_path
from ..errors import GeometryError, InputError, NetworkError, format_ids, opt
from ._cftime import encode_times, iso_utc
from .discharge import Discharge
from .summary import summarize

__all__ = ["DischargeAppender", "write_qout", "write_q", "write_zarr", "write_summary_gpkg",
           "write_hydrographs_csv", "write_hydrographs_long_csv", "reach_points", "CONVENTIONS", "ID_NAMES",
           "SUMMARY_FIELDS"]

CONVENTIONS = ("mean", "end")
ID_NAMES = ("rivid", "riverId", "river_id")  # RAPID / GEOGloWS v1; river-route 1.x; GEOGloWS v2, river-route 2+
UNITS = "m3 s-1"
_RESERVED = {"Conventions", "title", "institution", "source", "history", "references", "comment", "featureType",
             "thalweg_time_convention", "thalweg_dt_seconds", "thalweg_provenance"}
_FILL = np.float32(np.nan)
# reaches x steps of one chunk (<= 4 MB): blocks of reaches over long spans of time, as river-route and GEOGloWS
# lay out their files, so that reading one reach's series touches few chunks
_CHUNK_REACHES, _CHUNK_STEPS = 512, 2048

# the summary layer's fields (names read by the plugin), alias with units, description
SUMMARY_FIELDS = {
    "reach_id": ("Reach id", "id of the reach (the network's id field)"),
    "downstream_id": ("Downstream reach id", "id of the reach downstream; -1 at an outlet"),
    "length_m": ("Length [m]", "reach length, m"),
    "area_km2": ("Drainage area [km2]", "upstream drainage area at the reach's downstream end, km2"),
    "mean": ("Mean discharge [m3/s]", "mean of the end-of-step discharge over the run, m3/s"),
    "max": ("Maximum discharge [m3/s]", "largest end-of-step discharge of the run, m3/s"),
    "time_of_max": ("Time of maximum [UTC]", "end of the step holding the maximum (the first if tied), UTC"),
    "q05": ("Q5, high flow [m3/s]", "discharge exceeded 5 % of the time (95th percentile), m3/s"),
    "q50": ("Q50, median [m3/s]", "median discharge (exceeded 50 % of the time), m3/s"),
    "q95": ("Q95, low flow [m3/s]", "discharge exceeded 95 % of the time (5th percentile), m3/s"),
}
_GAUGE_FIELDS = {
    "gauge_id": ("Gauge id", "id of the gauge (the gauge table's gauge_id)"),
    "gauge_name": ("Gauge name", "display name of the gauge"),
    **{k: v for k, v in SUMMARY_FIELDS.items() if k not in ("downstream_id", "length_m")},
}


# the scores of the gauges layer when observations were given (thalweg.metrics)
_SCORE_FIELDS = {
    "nse": ("NSE", "Nash-Sutcliffe efficiency of the simulated discharge against the observed (1: perfect)"),
    "kge": ("KGE", "Kling-Gupta efficiency (2009) against the observed (1: perfect)"),
    "pbias": ("PBIAS [%]", "percent bias, 100 (sum obs - sum sim) / sum obs (positive: too little water, "
                           "Moriasi et al. 2007)"),
    "n_obs": ("Observations", "steps with an observation, the scores' sample"),
}


def gauge_scores(discharge: Discharge, gauges: Any) -> dict[str, np.ndarray] | None:
    """NSE, KGE, PBIAS and the number of observed steps [G] of each gauge against its observations on the
    discharge's step ends (:func:`thalweg.results.planning.gauge_hydrographs`, whose metrics are
    :func:`thalweg.metrics.all_metrics`); NaN where a gauge has none; None without observations."""
    from .planning import gauge_hydrographs

    if gauges is None or gauges.observed is None:
        return None
    rows = gauge_hydrographs(discharge, gauges)
    out = {k: np.full(len(rows), np.nan) for k in ("nse", "kge", "pbias")}
    out["n_obs"] = np.zeros(len(rows), np.int64)
    for i, row in enumerate(rows):
        m = row["metrics"]
        if m is None:
            continue
        for k in ("nse", "kge", "pbias"):
            out[k][i] = np.nan if m.get(k) is None else m[k]
        out["n_obs"][i] = int(m["n"])
    return out


def _version() -> str:
    from .. import __version__

    return __version__


def _global_attrs(discharge: Discharge, convention: str, title: str, *, located: bool) -> dict[str, Any]:
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    attrs: dict[str, Any] = {
        "Conventions": "CF-1.8", "title": title, "institution": "Thalweg user",
        "source": f"Thalweg {_version()} river routing", "history": f"{now} created by Thalweg {_version()}",
        "references": "Thalweg ROUTING.md section 1 (time conventions)",
        "comment": ("Q is the instantaneous discharge at the end of each step" if convention == "end" else
                    "Qout is the mean discharge over each step; Qfinal the discharge at the end of the last step"),
        "thalweg_time_convention": convention, "thalweg_dt_seconds": float(discharge.dt),
        # the exact provenance, restored by read_discharge; the plain copies below are for people
        "thalweg_provenance": json.dumps(discharge.attrs, default=_jsonable, sort_keys=True),
    }
    if located:  # a CF discrete-sampling-geometry time series needs the stations' positions
        attrs["featureType"] = "timeSeries"
    for key, value in discharge.attrs.items():
        if key not in _RESERVED and isinstance(value, (str, int, float)) and not isinstance(value, bool) \
                and str(key).replace("_", "").isalnum():
            attrs[str(key)] = value
    return attrs


def _jsonable(value: Any) -> Any:
    """numpy scalars and arrays as their Python values, anything else as text."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _id_array(ids: np.ndarray) -> np.ndarray:
    info = np.iinfo(np.int32)
    return ids.astype(np.int32) if ids.size == 0 or (ids.min() >= info.min and ids.max() <= info.max) else ids


def _check_id_name(id_name: str, where: str) -> str:
    if id_name not in ID_NAMES:
        raise InputError(f"the reach-id dimension name '{id_name}' is not one Thalweg writes.",
                         hint=f"Use {opt(where + '.id_name', 'river_id')} with one of: {', '.join(ID_NAMES)}.")
    return id_name


@dataclasses.dataclass
class _Var:
    """One variable of a result file (dimensions, values, attributes): the layout, written to NetCDF by netCDF4
    (:func:`_write_netcdf`, no xarray: building xarray objects imports dask and distributed where they are
    installed, a second of a streamed run's start) and to zarr through xarray (:func:`_to_xarray`)."""

    dims: tuple[str, ...]
    data: np.ndarray
    attrs: dict[str, Any]


@dataclasses.dataclass
class _Layout:
    """A result file: its variables in file order, which of them are auxiliary coordinates (lat, lon: named by
    the ``coordinates`` attribute of the variables along their dimension), and the global attributes."""

    variables: dict[str, _Var]
    coords: list[str]
    attrs: dict[str, Any]


def _time_vars(stamps: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> dict[str, _Var]:
    n = stamps.size
    t, cf = encode_times(np.concatenate([stamps.astype(ends.dtype), starts.astype(ends.dtype), ends]))
    time = _Var(("time",), t[:n], {"standard_name": "time", "long_name": "time", "axis": "T", "bounds": "time_bnds",
                                   **cf})
    # CF: bounds inherit the time variable's units and calendar and carry no attributes of their own
    bnds = _Var(("time", "nv"), np.stack([t[n:2 * n], t[2 * n:]], axis=1), {})
    return {"time": time, "time_bnds": bnds}


def _locations(lat: Sequence[float] | None, lon: Sequence[float] | None, n: int, dim: str) -> dict[str, _Var]:
    """lat/lon of each reach (WGS 84 degrees) and the CF grid mapping that names the datum."""
    if lat is None and lon is None:
        return {}
    if lat is None or lon is None:
        raise InputError("give both lat and lon, or neither.", hint=f"Pass {opt('write_qout.lat')} and "
                                                                    f"{opt('write_qout.lon')} together.")
    la, lo = np.asarray(lat, np.float64), np.asarray(lon, np.float64)
    if la.shape != (n,) or lo.shape != (n,):
        raise AssertionError(f"lat {la.shape} / lon {lo.shape} do not match {n} reaches")
    return {
        "lat": _Var((dim,), la, {"standard_name": "latitude", "long_name": "latitude of the reach outlet",
                                        "units": "degrees_north", "axis": "Y"}),
        "lon": _Var((dim,), lo, {"standard_name": "longitude", "long_name": "longitude of the reach outlet",
                                        "units": "degrees_east", "axis": "X"}),
        "crs": _Var((), np.asarray(np.int32(0)), {
            "grid_mapping_name": "latitude_longitude", "semi_major_axis": 6378137.0,
            "inverse_flattening": 298.257223563, "longitude_of_prime_meridian": 0.0, "epsg_code": "EPSG:4326",
            "long_name": "WGS 84 (lat and lon)"}),
    }


def _chunk(size: int, most: int) -> int:
    """Chunk length <= ``most`` that splits ``size`` into equal chunks: HDF5 stores edge chunks whole, so 2,160
    steps in chunks of 2,048 would take the room of 4,096 (uncompressed files twice their size)."""
    count = max(1, -(-size // most))
    return max(1, -(-size // count))


def _encoding(layout: _Layout, data: Sequence[str], compression: int) -> dict[str, dict[str, Any]]:
    """netCDF4 ``createVariable`` options: the discharge float32, NaN-filled, chunked (and compressed); the
    others with no fill value, stored as netCDF's defaults store them."""
    if not (isinstance(compression, int) and 0 <= compression <= 9):
        raise ValueError(f"compression must be a zlib level 0..9, not {compression!r}")
    encoding: dict[str, dict[str, Any]] = {name: {"fill_value": None} for name in layout.variables}
    for name in data:
        var = layout.variables[name]
        chunks = tuple(_chunk(size, _CHUNK_STEPS if dim == "time" else _CHUNK_REACHES)
                       for dim, size in zip(var.dims, var.data.shape))
        encoding[name] = {"fill_value": _FILL, "chunksizes": chunks,
                          **({"zlib": True, "complevel": compression, "shuffle": True} if compression else {})}
    return encoding


def _write_netcdf(path: Any, layout: _Layout, data: Sequence[str], compression: int) -> Path:
    """A NETCDF4 file of ``layout`` through netCDF4, as xarray's ``to_netcdf`` lays it out: the unlimited time
    dimension first, then the others in order of appearance; variables in order, the discharge (``data``)
    float32 with a NaN ``_FillValue``, chunked and optionally zlib-compressed; ``coordinates`` naming lat and
    lon on the variables along their dimension; the global attributes."""
    import netCDF4

    encoding = _encoding(layout, data, compression)
    dims: dict[str, int | None] = {"time": None}
    for var in layout.variables.values():
        for dim, size in zip(var.dims, var.data.shape):
            dims.setdefault(dim, int(size))
    along = {layout.variables[c].dims for c in layout.coords}
    with atomic_path(path) as tmp, HDF5_IO, DischargeAppender._lock():
        with netCDF4.Dataset(tmp, "w", format="NETCDF4") as ds:
            for dim, size in dims.items():
                ds.createDimension(dim, size)
            for name, var in layout.variables.items():
                data_array = np.asarray(var.data)
                nc = ds.createVariable(name, data_array.dtype, var.dims, **encoding[name])
                nc.set_auto_maskandscale(False)
                if name in data:  # whole chunks, written once: straight to the file, not through a chunk cache
                    nc.set_var_chunk_cache(size=0, nelems=0, preemption=0.75)
                attrs = dict(var.attrs)
                if name not in layout.coords and name not in dims and any(
                        set(d) <= set(var.dims) for d in along):
                    attrs["coordinates"] = " ".join(layout.coords)
                for key, value in attrs.items():
                    nc.setncattr(key, value)
                if data_array.ndim == 0:
                    nc.assignValue(data_array)
                elif data_array.size:
                    nc[tuple(slice(0, size) for size in data_array.shape)] = data_array
            ds.setncatts(layout.attrs)
    return Path(path)


def _to_xarray(layout: _Layout):
    """The layout as an xarray Dataset (the zarr writers)."""
    import xarray as xr

    variables = {name: xr.Variable(v.dims, v.data, v.attrs) for name, v in layout.variables.items()
                 if name not in layout.coords}
    coords = {name: xr.Variable(layout.variables[name].dims, layout.variables[name].data,
                                layout.variables[name].attrs) for name in layout.coords}
    return xr.Dataset(variables, coords=coords, attrs=layout.attrs)


def write_qout(path: str | Path, discharge: Discharge, convention: str = "mean", *,
               initial: np.ndarray | None = None, lat: Sequence[float] | None = None,
               lon: Sequence[float] | None = None, id_name: str = "rivid", compression: int = 1) -> Path:
    """Write a RAPID/GEOGloWS ``Qout(time, rivid)`` float32 NetCDF (CF-1.8, units m3 s-1).

    Parameters
    ----------
    discharge : end-of-step discharge.
    convention : 'mean' (RAPID step means = Q[t-1], stamped at step starts, plus ``Qfinal``) or 'end'
        (Q[t] stamped at step ends).
    initial : [N] m3/s, discharge at the start of the first step for 'mean' (default 0: a cold start).
    lat, lon : [N] optional reach outlet coordinates, degrees (WGS 84); written with a ``crs`` grid mapping.
    id_name : the reach-id dimension and variable: 'rivid' (RAPID, read by RAPIDpy), or 'river_id' / 'riverId'.
    compression : zlib level of the discharge (0: none). Level 1 with shuffling saves ~20-30 % on discharge
        (float mantissas compress little) and costs ~10x the write time of an uncompressed file.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, not {convention!r}")
    rid = _check_id_name(id_name, "write_qout")
    q = discharge.values
    starts, ends = discharge.start_time, discharge.time
    located = _locations(lat, lon, discharge.n_reaches, rid)
    extra = {"grid_mapping": "crs"} if located else {}
    variables: dict[str, Any] = {}
    data = ["Qout"]
    if convention == "mean":
        first = np.zeros(discharge.n_reaches, np.float32) if initial is None else np.asarray(initial, np.float32)
        if first.shape != (discharge.n_reaches,):
            raise AssertionError(f"initial has shape {first.shape}, expected ({discharge.n_reaches},)")
        # Qout is (time, rivid): build the shifted series transposed in place (one copy of [N, T], not three)
        values = np.empty((discharge.n_steps, discharge.n_reaches), np.float32)
        if discharge.n_steps:
            values[0] = first
            values[1:] = q[:, :-1].T
        stamps, cell = starts, "time: mean"
        long_name = "average river water discharge downstream of each river reach"
        variables["Qfinal"] = _Var(
            (rid,), (q[:, -1] if discharge.n_steps else first).astype(np.float32),
            {"long_name": "instantaneous river water discharge downstream of each river reach at the end of the "
                          "last step", "standard_name": "water_volume_transport_in_river_channel", "units": UNITS,
             **extra})
        data.append("Qfinal")
    else:
        values, stamps, cell = np.ascontiguousarray(q.T, dtype=np.float32), ends, "time: point"
        long_name = "instantaneous river water discharge downstream of each river reach at the end of each step"
    variables["Qout"] = _Var(("time", rid), values,
                             {"long_name": long_name, "standard_name": "water_volume_transport_in_river_channel",
                              "units": UNITS, "cell_methods": cell, **extra})
    variables[rid] = _Var((rid,), _id_array(discharge.ids),
                          {"long_name": "unique identifier for each river reach", "units": "1",
                           "cf_role": "timeseries_id"})
    variables.update(_time_vars(stamps, starts, ends))
    layout = _with_locations(variables, located, _global_attrs(discharge, convention,
                                                               "Thalweg routed discharge (RAPID Qout)",
                                                               located=bool(located)))
    return _write_netcdf(path, layout, data, compression)


def _with_locations(variables: dict[str, _Var], located: dict[str, _Var], attrs: dict[str, Any]) -> _Layout:
    """The file's layout: ``variables``, then the grid mapping and the lat/lon coordinates where given."""
    coords = [name for name in ("lat", "lon") if name in located]
    variables = {**variables, **{k: v for k, v in located.items() if k == "crs"},
                 **{name: located[name] for name in coords}}
    return _Layout(variables, coords, attrs)


def _q_layout(discharge: Discharge, rid: str, lat=None, lon=None, *, cf_ids: bool = True) -> _Layout:
    located = _locations(lat, lon, discharge.n_reaches, rid)
    extra = {"grid_mapping": "crs"} if located else {}
    variables: dict[str, _Var] = {
        "Q": _Var((rid, "time"), np.asarray(discharge.values, np.float32),  # no copy
                  {"long_name": "discharge at the downstream end of each river at the end of each step",
                   "standard_name": "water_volume_transport_in_river_channel", "units": UNITS,
                   "cell_methods": "time: point", **extra}),
        rid: _Var((rid,), discharge.ids if not cf_ids else _id_array(discharge.ids),
                  {"long_name": "unique identifier for each river", "units": "1", "cf_role": "timeseries_id"}),
    }
    variables.update(_time_vars(discharge.time, discharge.start_time, discharge.time))
    return _with_locations(variables, located, _global_attrs(discharge, "end",
                                                             "Thalweg routed discharge (river-route Q)",
                                                             located=bool(located)))


def write_q(path: str | Path, discharge: Discharge, *, id_name: str = "riverId", lat: Sequence[float] | None = None,
            lon: Sequence[float] | None = None, compression: int = 1) -> Path:
    """Write a river-route style ``Q(riverId, time)`` float32 NetCDF of end-of-step discharge (m3 s-1, CF-1.8).

    id_name : the reach-id dimension: 'riverId' (river-route 1.x, the default), 'river_id' (river-route 2+,
        GEOGloWS v2: ``ds.sel(river_id=...)``) or 'rivid'.
    lat, lon : [N] optional reach outlet coordinates, degrees (WGS 84).
    compression : zlib level (0: none), as :func:`write_qout`.
    """
    layout = _q_layout(discharge, _check_id_name(id_name, "write_q"), lat, lon)
    return _write_netcdf(path, layout, ["Q"], compression)


def write_zarr(path: str | Path, discharge: Discharge, *, id_name: str = "river_id",
               lat: Sequence[float] | None = None, lon: Sequence[float] | None = None) -> Path:
    """Write a river-route 3 style zarr store: ``Q(river_id, time)`` float32 end-of-step discharge (m3 s-1).

    The layout river-route 3 and GEOGloWS v2 retrospective data use: one ``Q`` array chunked by blocks of
    rivers over the whole period, ``river_id`` (int64) and numeric CF ``time``, consolidated metadata
    (``xarray.open_zarr`` opens it). The store is a folder, replaced as a whole (atomically).
    """
    ds = _to_xarray(_q_layout(discharge, _check_id_name(id_name, "write_zarr"), lat, lon, cf_ids=False))
    n, t = discharge.values.shape
    encoding = {name: {} for name in ds.variables}
    encoding["Q"] = {"chunks": (max(1, min(n, 500)), max(1, t)), "_FillValue": _FILL}
    import warnings

    with atomic_path(path) as tmp, warnings.catch_warnings():
        # zarr 3 warns that consolidated metadata is not in the v3 spec: river-route 3 writes it all the same
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        ds.to_zarr(tmp, mode="w", consolidated=True, encoding=encoding)
    return Path(path)


def reach_points(network, positions: np.ndarray | None = None) -> np.ndarray:
    """The downstream end (last vertex) of each reach's line, in the network's CRS: shapely points [N].

    Discharge is given at the downstream end of a reach, so that is where a reach's point value sits.
    """
    import shapely

    geoms = np.asarray(network.geometry.values if hasattr(network.geometry, "values") else network.geometry)
    if positions is not None:
        geoms = geoms[np.asarray(positions)]
    lines = shapely.get_geometry(geoms, -1)  # last part of a multi-line, the line itself otherwise
    lines = np.where(shapely.get_type_id(geoms) == 5, lines, geoms)
    return shapely.get_point(lines, -1)


def reach_lonlat(network, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """WGS 84 latitude and longitude [N] of the downstream end of the reaches ``ids``; None without geometry/CRS."""
    if network.geometry is None or network.crs is None:
        return None  # (before importing shapely: a network read without geometry never needs it)
    import shapely

    points = reach_points(network, network.index_of(ids))
    xy = shapely.get_coordinates(points)
    if xy.shape[0] != points.size:
        return None  # empty geometries: no position to give
    from pyproj import CRS, Transformer

    source = CRS.from_user_input(network.crs)
    if source.to_epsg() == 4326 or (source.is_geographic and source.name == "WGS 84"):
        return xy[:, 1].copy(), xy[:, 0].copy()
    to_wgs84 = Transformer.from_crs(source, "EPSG:4326", always_xy=True)
    lon, lat = to_wgs84.transform(xy[:, 0], xy[:, 1])
    return np.asarray(lat, np.float64), np.asarray(lon, np.float64)


def _arrow_columns(columns: dict[str, np.ndarray]):
    """pyarrow arrays: datetimes as UTC timestamps (GeoPackage wants the Z), NaN/NaT as NULL."""
    import pyarrow as pa

    out = {}
    for name, values in columns.items():
        values = np.asarray(values)
        if values.dtype.kind == "M":
            arr = pa.array(values.astype("datetime64[ms]"), mask=np.isnat(values)).cast(pa.timestamp("ms", tz="UTC"))
        elif values.dtype.kind == "f":
            arr = pa.array(values.astype(np.float64), mask=~np.isfinite(values))
        elif values.dtype.kind in "iu":
            arr = pa.array(values.astype(np.int64))
        elif values.dtype.kind == "b":  # a GeoPackage boolean (integer 0/1), never the text 'False'
            arr = pa.array(values)
        else:
            arr = pa.array(values.astype(str))
        out[name] = arr
    return out


def _write_layer(path: Path, layer: str, columns: dict[str, np.ndarray], geometry: np.ndarray, crs: Any,
                 *, append: bool) -> None:
    """One layer written in one go through GDAL's arrow interface (WKB geometries, no per-feature loop)."""
    import pyarrow as pa
    import pyogrio
    import shapely

    table = pa.table({**_arrow_columns(columns), "geom": pa.array(shapely.to_wkb(geometry), pa.binary())})
    names = {0: "Point", 1: "LineString", 4: "MultiPoint", 5: "MultiLineString"}
    kinds = set(shapely.get_type_id(geometry[~shapely.is_missing(geometry)]).tolist()) if geometry.size else set()
    gtype = names.get(kinds.pop(), "Unknown") if len(kinds) == 1 else "Unknown"
    pyogrio.write_arrow(table, path, layer=layer, driver="GPKG", geometry_name="geom", geometry_type=gtype,
                        crs=None if crs is None else _crs_text(crs), append=append,
                        dataset_options=None if append else {"VERSION": "1.3"},
                        layer_options={"FID": "fid", "SPATIAL_INDEX": "YES"})


def _crs_text(crs: Any) -> str:
    from pyproj import CRS

    return CRS.from_user_input(crs).to_wkt()


def _describe_fields(path: Path, fields: dict[str, dict[str, tuple[str, str]]]) -> None:
    """Field aliases with units (GeoPackage schema extension, gpkg_data_columns): QGIS shows them as aliases."""
    import sqlite3

    con = sqlite3.connect(path)
    try:
        con.execute("CREATE TABLE IF NOT EXISTS gpkg_data_columns (table_name TEXT NOT NULL, column_name TEXT NOT "
                    "NULL, name TEXT, title TEXT, description TEXT, mime_type TEXT, constraint_name TEXT, "
                    "CONSTRAINT pk_gdc PRIMARY KEY (table_name, column_name), CONSTRAINT gdc_tn UNIQUE "
                    "(table_name, name))")
        con.execute("CREATE TABLE IF NOT EXISTS gpkg_extensions (table_name TEXT, column_name TEXT, extension_name "
                    "TEXT NOT NULL, definition TEXT NOT NULL, scope TEXT NOT NULL, CONSTRAINT ge_tce UNIQUE "
                    "(table_name, column_name, extension_name))")
        con.execute("INSERT OR IGNORE INTO gpkg_extensions VALUES ('gpkg_data_columns', NULL, 'gpkg_schema', "
                    "'http://www.geopackage.org/spec/#extension_schema', 'read-write')")
        con.executemany("INSERT OR REPLACE INTO gpkg_data_columns (table_name, column_name, name, title, description)"
                        " VALUES (?, ?, ?, ?, ?)",
                        [(table, column, alias, alias, description)
                         for table, described in fields.items() for column, (alias, description) in described.items()])
        con.commit()
    finally:
        con.close()


def _embed_style(path: Path, layer: str, qml: str, name: str) -> None:
    """The layer's default style in ``layer_styles`` (the table QGIS reads and writes), registered as attributes."""
    import sqlite3

    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    con = sqlite3.connect(path)
    try:
        con.execute('CREATE TABLE IF NOT EXISTS layer_styles (id INTEGER PRIMARY KEY AUTOINCREMENT, f_table_catalog '
                    'TEXT(256), f_table_schema TEXT(256), f_table_name TEXT(256), f_geometry_column TEXT(256), '
                    'styleName TEXT(30), styleQML TEXT, styleSLD TEXT, useAsDefault BOOLEAN, description TEXT, '
                    'owner TEXT(30), ui TEXT(30), update_time DATETIME DEFAULT '
                    "(strftime('%Y-%m-%dT%H:%M:%fZ','now')))")
        con.execute("INSERT OR IGNORE INTO gpkg_contents (table_name, data_type, identifier, description, "
                    "last_change) VALUES ('layer_styles', 'attributes', 'layer_styles', 'QGIS layer styles', ?)",
                    (now,))
        con.execute("INSERT INTO layer_styles (f_table_catalog, f_table_schema, f_table_name, f_geometry_column, "
                    "styleName, styleQML, styleSLD, useAsDefault, description, owner, ui, update_time) VALUES "
                    "('', '', ?, 'geom', ?, ?, '', 1, ?, '', NULL, ?)",
                    (layer, name, qml, "Thalweg default: colour and width by mean discharge (m3/s)", now))
        con.commit()
    finally:
        con.close()


def summary_style() -> str:
    """The summary layer's default QGIS style (resources/styles/discharge_summary.qml), as text."""
    folder = Path(__file__).resolve().parents[1] / "_resources"
    return (folder / "discharge_summary.qml").read_text(encoding="utf-8")


def write_summary_gpkg(path: str | Path, network, discharge: Discharge, layer: str = "discharge", *,
                       gauges: Any = None, stats: Any = None, style: bool = True) -> Path:
    """A GeoPackage (version 1.3) of reach lines with the summary statistics of :func:`summarize`.

    Fields (aliases with units in ``gpkg_data_columns``, see ``SUMMARY_FIELDS``): reach_id, downstream_id
    (-1 at outlets), length_m, area_km2 (upstream drainage area), mean, max, time_of_max (UTC), q05, q50,
    q95 (m3/s; q05 is exceeded 5 % of the time). Reaches of the network without discharge get empty statistics.
    With ``gauges`` (thalweg.learning.Gauges), a ``gauges`` point layer at the downstream end of each gauge's
    reach holds gauge_id, gauge_name, reach_id, area_km2 and the reach's statistics. ``style`` embeds the
    default QGIS style (``layer_styles``: colour and width by mean discharge). ``stats``: a :func:`summarize`
    result to reuse. The file is replaced atomically.
    """
    if network.geometry is None:
        raise GeometryError("the network has no reach geometry to map.", path=network.source.path,
                            layer=network.source.layer,
                            hint=f"Read the network with {opt('read_network.keep_geometry', True)}, or write "
                                 f"hydrographs instead.")
    unknown = ~np.isin(discharge.ids, network.ids)
    if unknown.any():
        bad = discharge.ids[unknown]
        raise NetworkError(f"{bad.size:,} reaches of the discharge are not in the network: {format_ids(bad)}.",
                           path=network.source.path, ids=bad.tolist(), hint="Map with the network that was routed.")
    stats = summarize(discharge) if stats is None else stats
    stats = stats.reindex(network.ids)
    ds_ids = np.where(network.downstream >= 0, network.ids[np.maximum(network.downstream, 0)], -1)
    geometry = np.asarray(network.geometry.values if hasattr(network.geometry, "values") else network.geometry)
    columns = {"reach_id": network.ids, "downstream_id": ds_ids.astype(np.int64),
               "length_m": network.length.astype(np.float64), "area_km2": network.area / 1e6,
               **{c: stats[c].to_numpy() for c in stats.columns}}
    described = {layer: SUMMARY_FIELDS}
    with atomic_path(path) as tmp:
        _write_layer(tmp, layer, columns, geometry, network.crs, append=False)
        if gauges is not None and len(gauges.ids):
            pos = np.asarray(gauges.positions)
            at = stats.loc[network.ids[pos]]
            gcols = {"gauge_id": np.asarray(gauges.ids).astype(str), "gauge_name": np.asarray(gauges.names).astype(str),
                     "reach_id": network.ids[pos], "area_km2": network.area[pos] / 1e6,
                     **{c: at[c].to_numpy() for c in stats.columns}}
            scores = gauge_scores(discharge, gauges)
            if scores is not None:
                gcols.update(scores)
            _write_layer(tmp, "gauges", gcols, reach_points(network, pos), network.crs, append=True)
            described["gauges"] = {**_GAUGE_FIELDS, **(_SCORE_FIELDS if scores is not None else {})}
        _describe_fields(tmp, described)
        if style:
            _embed_style(tmp, layer, summary_style(), "Thalweg mean discharge")
    return Path(path)


def _csv_rows(discharge: Discharge, reach_ids: Sequence[Any] | None) -> tuple[np.ndarray, np.ndarray]:
    ids = discharge.ids if reach_ids is None else np.atleast_1d(np.asarray(reach_ids)).astype(np.int64)
    return ids, discharge.index_of(ids)


def write_hydrographs_csv(path: str | Path, discharge: Discharge, reach_ids: Sequence[Any] | None = None, *,
                          gauges: Any = None) -> Path:
    """Wide CSV: ``time`` (ISO 8601 UTC with Z, the END of each step) and one column per series, m3/s.

    Without gauges, one column per reach headed by its id and the unit: ``time,30 [m3/s],10 [m3/s]``.
    With ``gauges`` (thalweg.learning.Gauges), each gauge's column is headed by its gauge id (``G1 [m3/s]``),
    followed, when the gauges carry observations, by the observed series (``G1 observed [m3/s]``, empty where
    none); the ``reach_ids`` not on a gauge follow as ``reach 10 [m3/s]`` (the long CSV has both ids).
    reach_ids : the reaches to write, in that order (all when None); NetworkError naming absent ids.
    """
    import pandas as pd

    frame = pd.DataFrame({"time": iso_utc(discharge.time)})
    if gauges is None:
        ids, rows = _csv_rows(discharge, reach_ids)
        wide = pd.DataFrame(discharge.values[rows].T, columns=[f"{int(r)} [m3/s]" for r in ids])
    else:
        on_gauge = {int(r) for r in gauges.reach_ids}
        extra = [int(r) for r in dict.fromkeys(np.atleast_1d(np.asarray(
            discharge.ids if reach_ids is None else reach_ids, dtype=np.int64)).tolist()) if int(r) not in on_gauge]
        observed = gauges.observed_on(discharge.time)
        g_rows = discharge.index_of([int(r) for r in gauges.reach_ids]) if len(gauges.ids) else []
        columns: dict[str, np.ndarray] = {}
        for i, gid in enumerate(gauges.ids):
            columns[f"{gid} [m3/s]"] = discharge.values[g_rows[i]]
            if observed is not None:
                columns[f"{gid} observed [m3/s]"] = observed[i]
        if extra:
            for r, row in zip(extra, discharge.index_of(extra)):
                columns[f"reach {r} [m3/s]"] = discharge.values[row]
        wide = pd.DataFrame(columns)
    frame = pd.concat([frame, wide], axis=1)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return Path(path)


def write_hydrographs_long_csv(path: str | Path, discharge: Discharge, reach_ids: Sequence[Any] | None = None, *,
                               gauges: Any = None) -> Path:
    """Long ("tidy") CSV: one row per reach (or gauge) and step: reach_id, gauge_id, time_utc, q, units; with
    gauges that carry observations, an ``observed`` column after ``q`` (m3/s; empty where none or off a gauge).

    Each gauge gets its reach's series under its gauge_id; ``reach_ids`` not on a gauge get an empty gauge_id.
    time_utc is the end of each step (ISO 8601 with Z), q the end-of-step discharge, units 'm3/s'.
    """
    import pandas as pd

    pairs: list[tuple[int, str]] = []
    if gauges is not None:
        pairs += [(int(r), str(g)) for g, r in zip(gauges.ids, gauges.reach_ids)]
    on_gauge = {r for r, _ in pairs}
    extra = [] if reach_ids is None and pairs else (discharge.ids if reach_ids is None else reach_ids)
    pairs += [(int(r), "") for r in dict.fromkeys(np.atleast_1d(np.asarray(extra)).astype(np.int64).tolist())
              if int(r) not in on_gauge]
    ids = np.array([r for r, _ in pairs], np.int64)
    rows = discharge.index_of(ids) if ids.size else np.array([], np.int64)
    t = discharge.n_steps
    frame = pd.DataFrame({"reach_id": np.repeat(ids, t), "gauge_id": np.repeat([g for _, g in pairs], t),
                          "time_utc": np.tile(iso_utc(discharge.time), ids.size),
                          "q": discharge.values[rows].reshape(-1)})
    observed = None if gauges is None else gauges.observed_on(discharge.time)
    if observed is not None:
        n_g = len(gauges.ids)
        frame["observed"] = np.concatenate([observed.reshape(-1), np.full((ids.size - n_g) * t, np.nan)])
    frame["units"] = "m3/s"
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return Path(path)


# ---- incremental writing (streaming in time: thalweg.scale.stream) -------------------------------------
def _cf_offsets(times: np.ndarray, units: str) -> np.ndarray:
    """datetime64 stamps as float64 offsets in a file's CF ``units`` ('seconds since 1970-01-01 00:00:00')."""
    name, _, ref = units.partition(" since ")
    unit = {"seconds": "s", "milliseconds": "ms", "microseconds": "us", "nanoseconds": "ns"}[name.strip()]
    origin = np.datetime64(ref.strip().replace(" ", "T"), unit)
    return (np.asarray(times).astype(f"datetime64[{unit}]") - origin).astype(np.int64).astype(np.float64)


class DischargeAppender:
    """One discharge file (river-route ``Q`` or RAPID ``Qout`` NetCDF, or a zarr store) written a time chunk at a
    time, in the layout and metadata of :func:`write_q`, :func:`write_qout` and :func:`write_zarr`.

    ``write(a, chunk, initial)`` writes the :class:`Discharge` of steps a..a+t-1: the first chunk (a = 0) is
    written by the one-shot writer; later ones go into the file at their steps (NetCDF: index-addressed, so
    writing a chunk again writes the same bytes; zarr: appended, after :meth:`truncate` to the steps a resumed
    run keeps). ``initial`` is the discharge at the end of the step before ``a`` (RAPID step means need it).
    """

    def __init__(self, path: str | Path, fmt: str, convention: str, *, id_name: str, lat=None, lon=None,
                 compression: int = 1) -> None:
        self.path, self.fmt, self.convention = Path(path), fmt, convention
        self.id_name, self.lat, self.lon, self.compression = id_name, lat, lon, compression

    def steps(self) -> int:
        """Steps the file holds now (0 when it does not exist)."""
        if not self.path.exists():
            return 0
        if self.fmt == "zarr":
            import zarr

            return int(zarr.open_group(str(self.path), mode="r")["time"].shape[0])
        import netCDF4

        with HDF5_IO, self._lock(), netCDF4.Dataset(self.path) as ds:
            return len(ds.dimensions["time"])

    @staticmethod
    def _lock():
        from xarray.backends.netCDF4_ import NETCDF4_PYTHON_LOCK  # netCDF4/HDF5 are not thread-safe

        return NETCDF4_PYTHON_LOCK

    def truncate(self, steps: int) -> None:
        """Keep the first ``steps`` steps of a zarr store (a resumed run rewrites the rest); NetCDF needs none."""
        if self.fmt != "zarr" or not self.path.exists():
            return
        import zarr

        group = zarr.open_group(str(self.path), mode="r+")
        for name in ("Q", "time", "time_bnds"):
            if name in group:
                arr = group[name]
                axis = 1 if name == "Q" else 0
                shape = list(arr.shape)
                if shape[axis] > steps:
                    shape[axis] = steps
                    arr.resize(tuple(shape))
        import warnings

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Consolidated metadata")
            zarr.consolidate_metadata(str(self.path))

    def write(self, start: int, chunk: Discharge, initial: np.ndarray | None = None) -> None:
        if start == 0:
            if self.fmt == "rapid":
                write_qout(self.path, chunk, self.convention, initial=initial, lat=self.lat, lon=self.lon,
                           id_name=self.id_name, compression=self.compression)
            elif self.fmt == "zarr":
                write_zarr(self.path, chunk, id_name=self.id_name, lat=self.lat, lon=self.lon)
            else:
                write_q(self.path, chunk, id_name=self.id_name, lat=self.lat, lon=self.lon,
                        compression=self.compression)
            return
        if self.fmt == "zarr":
            self._append_zarr(start, chunk)
        else:
            self._put_netcdf(start, chunk, initial)

    def _put_netcdf(self, a: int, chunk: Discharge, initial: np.ndarray | None) -> None:
        import netCDF4

        b = a + chunk.n_steps
        q = np.asarray(chunk.values, np.float32)
        with HDF5_IO, self._lock(), netCDF4.Dataset(self.path, "a") as ds:
            # a chunk covers whole HDF5 chunks (its steps are the file's time chunk): without a chunk cache they go
            # from the array to the file, not through the cache first (a third less time; the same bytes)
            ds["Qout" if self.fmt == "rapid" else "Q"].set_var_chunk_cache(size=0, nelems=0, preemption=0.75)
            units = ds["time"].units
            ends, starts = chunk.time, chunk.start_time
            if self.fmt == "rapid" and self.convention == "mean":
                first = np.zeros(chunk.n_reaches, np.float32) if initial is None else np.asarray(initial, np.float32)
                values = np.empty((chunk.n_steps, chunk.n_reaches), np.float32)
                values[0] = first
                values[1:] = q[:, :-1].T
                ds["Qout"][a:b, :] = values
                ds["Qfinal"][:] = q[:, -1]
                stamps = starts
            elif self.fmt == "rapid":
                ds["Qout"][a:b, :] = q.T
                stamps = ends
            else:
                ds["Q"][:, a:b] = q
                stamps = ends
            ds["time"][a:b] = _cf_offsets(stamps, units)
            ds["time_bnds"][a:b, :] = np.stack([_cf_offsets(starts, units), _cf_offsets(ends, units)], axis=1)

    def _append_zarr(self, a: int, chunk: Discharge) -> None:
        import warnings

        import zarr

        have = self.steps()
        if have != a:
            raise AssertionError(f"zarr store holds {have} steps; the chunk starts at {a}")
        group = zarr.open_group(str(self.path), mode="r")
        units = group["time"].attrs["units"]
        ds = _to_xarray(_q_layout(chunk, self.id_name, self.lat, self.lon, cf_ids=False))
        ds = ds[["Q", "time_bnds"]].drop_vars([c for c in ("lat", "lon") if c in ds.coords])
        ds = ds.assign_coords(time=("time", _cf_offsets(chunk.time, units), ds["time"].attrs))
        ds["time_bnds"] = (("time", "nv"), np.stack([_cf_offsets(chunk.start_time, units),
                                                    _cf_offsets(chunk.time, units)], axis=1))
        for name in ds.variables:
            ds[name].attrs = {}
            ds[name].encoding = {}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
            ds.to_zarr(self.path, append_dim="time", consolidated=True)
