"""Result writers: RAPID/GEOGloWS Qout and river-route Q NetCDF, a GeoPackage summary layer, hydrograph CSV.

Every writer goes through ``thalweg._files.atomic_path``: a failing write leaves no file behind.

Time conventions (ROUTING.md section 1). Thalweg's Q[t] is the instantaneous discharge at the END of
step t. ``write_qout(convention="mean")`` writes RAPID's step mean, which with one routing sub-step per
output step is Q[t-1] (Q[-1] = the initial discharge, 0 for a cold start), stamped like RAPID at the step
START with ``time_bnds`` = [start, end] and ``cell_methods = "time: mean"``; the last end-of-step value,
which a mean file cannot hold, goes into ``Qfinal(rivid)`` (the quantity of RAPID's Qfinal file), so that
:func:`read_discharge` gives back exactly what was written. ``convention="end"`` writes Q[t] stamped at the
step END with ``cell_methods = "time: point"``. Both files carry ``thalweg_time_convention``.
"""
from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._files import atomic_path
from ..errors import GeometryError, NetworkError, format_ids
from ..runoff._time import encode_cf_times
from .discharge import Discharge
from .summary import summarize

__all__ = ["write_qout", "write_q", "write_summary_gpkg", "write_hydrographs_csv", "CONVENTIONS"]

CONVENTIONS = ("mean", "end")
_RESERVED = {"Conventions", "title", "institution", "source", "history", "references", "comment", "featureType",
             "thalweg_time_convention", "thalweg_dt_seconds", "thalweg_provenance"}


def _version() -> str:
    from .. import __version__

    return __version__


def _global_attrs(discharge: Discharge, convention: str, title: str) -> dict[str, Any]:
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    attrs: dict[str, Any] = {
        "Conventions": "CF-1.6", "featureType": "timeSeries", "title": title,
        "source": f"Thalweg {_version()}", "history": f"date created: {now}",
        "references": "ROUTING.md section 1 (time conventions)",
        "thalweg_time_convention": convention, "thalweg_dt_seconds": float(discharge.dt),
        # the exact provenance, restored by read_discharge; the plain copies below are for people
        "thalweg_provenance": json.dumps(discharge.attrs, default=_jsonable, sort_keys=True),
    }
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


def _time_vars(stamps: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> dict[str, Any]:
    import xarray as xr

    t, units = encode_cf_times(np.concatenate([stamps, starts, ends]))
    n = stamps.size
    time = xr.Variable(("time",), t[:n], {"standard_name": "time", "long_name": "time", "units": units,
                                          "axis": "T", "calendar": "standard", "bounds": "time_bnds"})
    bnds = xr.Variable(("time", "nv"), np.stack([t[n:2 * n], t[2 * n:]], axis=1))
    return {"time": time, "time_bnds": bnds}


def _write_netcdf(path: Any, ds) -> Path:
    encoding = {name: {"_FillValue": None} for name in ds.variables}
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, format="NETCDF4", engine="netcdf4", encoding=encoding)
    return Path(path)


def write_qout(path: str | Path, discharge: Discharge, convention: str = "mean", *,
               initial: np.ndarray | None = None, lat: Sequence[float] | None = None,
               lon: Sequence[float] | None = None) -> Path:
    """Write a RAPID/GEOGloWS ``Qout(time, rivid)`` float32 NetCDF (CF-1.6, units m3 s-1).

    Parameters
    ----------
    discharge : end-of-step discharge.
    convention : 'mean' (RAPID step means = Q[t-1], stamped at step starts, plus ``Qfinal``) or 'end'
        (Q[t] stamped at step ends).
    initial : [N] m3/s, discharge at the start of the first step for 'mean' (default 0: a cold start).
    lat, lon : [N] optional reach coordinates, degrees.
    """
    import xarray as xr

    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, not {convention!r}")
    q = discharge.values
    starts, ends = discharge.start_time, discharge.time
    ids = _id_array(discharge.ids)
    variables: dict[str, Any] = {}
    if convention == "mean":
        first = np.zeros(discharge.n_reaches, np.float32) if initial is None else np.asarray(initial, np.float32)
        if first.shape != (discharge.n_reaches,):
            raise AssertionError(f"initial has shape {first.shape}, expected ({discharge.n_reaches},)")
        values = np.concatenate([first[:, None], q[:, :-1]], axis=1) if discharge.n_steps else q
        stamps, cell = starts, "time: mean"
        long_name = "average river water discharge downstream of each river reach"
        variables["Qfinal"] = xr.Variable(
            ("rivid",), (q[:, -1] if discharge.n_steps else first).astype(np.float32),
            {"long_name": "instantaneous river water discharge downstream of each river reach at the end of the "
                          "last step", "units": "m3 s-1", "coordinates": "lon lat" if lat is not None else None})
    else:
        values, stamps, cell = q, ends, "time: point"
        long_name = "instantaneous river water discharge downstream of each river reach at the end of each step"
    qattrs = {"long_name": long_name, "units": "m3 s-1", "cell_methods": cell}
    if lat is not None and lon is not None:
        qattrs["coordinates"] = "lon lat"
    variables["Qout"] = xr.Variable(("time", "rivid"), np.ascontiguousarray(values.T, dtype=np.float32), qattrs)
    variables["rivid"] = xr.Variable(("rivid",), ids, {"long_name": "unique identifier for each river reach",
                                                       "units": "1", "cf_role": "timeseries_id"})
    variables.update(_time_vars(stamps, starts, ends))
    if lat is not None and lon is not None:
        variables["lat"] = xr.Variable(("rivid",), np.asarray(lat, np.float64),
                                       {"standard_name": "latitude", "units": "degrees_north", "axis": "Y"})
        variables["lon"] = xr.Variable(("rivid",), np.asarray(lon, np.float64),
                                       {"standard_name": "longitude", "units": "degrees_east", "axis": "X"})
    for var in variables.values():
        var.attrs = {k: v for k, v in var.attrs.items() if v is not None}
    ds = xr.Dataset(variables, attrs=_global_attrs(discharge, convention, "Thalweg routed discharge (RAPID Qout)"))
    return _write_netcdf(path, ds)


def write_q(path: str | Path, discharge: Discharge) -> Path:
    """Write a river-route style ``Q(riverId, time)`` float32 NetCDF of end-of-step discharge (m3 s-1)."""
    import xarray as xr

    variables: dict[str, Any] = {
        "Q": xr.Variable(("riverId", "time"), discharge.values.astype(np.float32),
                         {"long_name": "discharge at the downstream end of each river at the end of each step",
                          "standard_name": "water_volume_transport_in_river_channel", "units": "m3 s-1",
                          "cell_methods": "time: point"}),
        "riverId": xr.Variable(("riverId",), _id_array(discharge.ids),
                               {"long_name": "unique identifier for each river", "cf_role": "timeseries_id"}),
    }
    variables.update(_time_vars(discharge.time, discharge.start_time, discharge.time))
    ds = xr.Dataset(variables, attrs=_global_attrs(discharge, "end", "Thalweg routed discharge (river-route Q)"))
    return _write_netcdf(path, ds)


def write_summary_gpkg(path: str | Path, network, discharge: Discharge, layer: str = "discharge") -> Path:
    """A GeoPackage layer of reach lines with the summary statistics of :func:`summarize`.

    Fields: reach_id, downstream_id (-1 at outlets), length_m, area_km2 (upstream drainage area),
    mean, max, time_of_max, q05, q50, q95 (m3/s; q05 is exceeded 5 % of the time). Reaches of the network
    without discharge get empty statistics. The file holds this one layer (it is replaced atomically).
    """
    import geopandas as gpd

    if network.geometry is None:
        raise GeometryError("the network has no reach geometry to map.", path=network.source.path,
                            layer=network.source.layer,
                            hint="Read the network with keep_geometry=True, or write hydrographs instead.")
    unknown = ~np.isin(discharge.ids, network.ids)
    if unknown.any():
        bad = discharge.ids[unknown]
        raise NetworkError(f"{bad.size:,} reaches of the discharge are not in the network: {format_ids(bad)}.",
                           path=network.source.path, ids=bad.tolist(), hint="Map with the network that was routed.")
    stats = summarize(discharge).reindex(network.ids)
    ds_ids = np.where(network.downstream >= 0, network.ids[np.maximum(network.downstream, 0)], -1)
    geometry = network.geometry.values if hasattr(network.geometry, "values") else np.asarray(network.geometry)
    frame = gpd.GeoDataFrame({
        "reach_id": network.ids, "downstream_id": ds_ids.astype(np.int64),
        "length_m": network.length.astype(np.float64), "area_km2": network.area / 1e6,
        **{c: stats[c].to_numpy() for c in stats.columns}}, geometry=list(geometry), crs=network.crs)
    with atomic_path(path) as tmp:
        frame.to_file(tmp, layer=layer, driver="GPKG", engine="pyogrio")
    return Path(path)


def write_hydrographs_csv(path: str | Path, discharge: Discharge, reach_ids: Sequence[Any] | None = None) -> Path:
    """CSV with a ``time`` column (ISO 8601, the end of each step, UTC) and one column per reach (m3/s).

    reach_ids : the reaches to write, in that order (all when None); NetworkError naming absent ids.
    """
    import pandas as pd

    ids = discharge.ids if reach_ids is None else np.atleast_1d(np.asarray(reach_ids)).astype(np.int64)
    rows = discharge.index_of(ids)
    frame = pd.DataFrame({"time": np.datetime_as_string(discharge.time, unit="s")})
    for rid, row in zip(ids, rows):
        frame[str(int(rid))] = discharge.values[row]
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return Path(path)
