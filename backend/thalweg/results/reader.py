"""read_discharge: Qout (RAPID/GEOGloWS) or Q (river-route) NetCDF -> Discharge (end-of-step values)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, SchemaError
from ..runoff._time import cf_bounds, decode_cf_times, step_starts
from ..runoff._warn import warn
from ._cftime import as_times, decode_times, shift
from .discharge import Discharge

__all__ = ["read_discharge"]

_VARIABLES = ("Qout", "Q", "discharge", "streamflow")
_IDS = ("rivid", "river_id", "riverid", "reach_id", "feature_id", "comid", "linkno", "reach")
_TIMES = ("time", "valid_time", "t")


def read_discharge(path: str | Path, *, variable: str | None = None, dt: float | None = None) -> Discharge:
    """Read a discharge NetCDF (or zarr store) written by Thalweg, RAPID, GEOGloWS or river-route.

    The time convention comes from ``thalweg_time_convention``, else ``cell_methods`` ('time: mean' or
    'time: point'), else the variable (RAPID ``Qout``: mean, river-route ``Q``: end). Thalweg's mean files
    are turned back into end-of-step values exactly (Q[t] = Qout[t+1], the last from ``Qfinal``). A mean
    file from elsewhere keeps its step means, stamped at step ends, with a warning (``attrs['values']``
    says 'step mean').

    Parameters
    ----------
    variable : the discharge variable (found when None: Qout, Q, discharge, streamflow).
    dt : step length, s, needed only for a single-step file without time bounds.
    """
    import xarray as xr

    path = Path(path)
    if not path.exists():
        raise InputError("the discharge file does not exist.", path=path, hint="Check the path.")
    opened = xr.open_zarr(path, decode_times=False) if path.is_dir() or path.suffix.lower() == ".zarr" \
        else xr.open_dataset(path, decode_times=False)
    with opened as ds:
        name = variable or next((v for v in _VARIABLES if v in ds.data_vars), None)
        if name is None or name not in ds.data_vars:
            raise SchemaError(f"no discharge variable (variables: {', '.join(map(str, ds.data_vars))}).", path=path,
                              field=variable, hint="Pass variable= naming it.")
        da = ds[name]
        if da.ndim != 2:
            raise SchemaError(f"{name} has dimensions {da.dims}; expected (time, reach).", path=path, field=name)
        tdim = next((d for d in da.dims if str(d).lower() in _TIMES), None)
        if tdim is None:
            raise SchemaError(f"{name} has no time dimension (dimensions {da.dims}).", path=path, field=name)
        rdim = next(d for d in da.dims if d != tdim)
        id_name = rdim if rdim in ds.variables else next(
            (v for v in ds.variables if str(v).lower() in _IDS and ds[v].dims == (rdim,)), None)
        if id_name is None:
            raise SchemaError(f"dimension {rdim} has no reach-id variable.", path=path, field=str(rdim))
        ids = np.asarray(ds[id_name].values).astype(np.int64)
        values = np.asarray(da.transpose(rdim, tdim).values, dtype=np.float32)
        convention = _convention(ds, da, name)
        tvar = ds[tdim]
        label = "start" if convention == "mean" else "end"
        if dt is None and tvar.size < 2:
            dt = ds.attrs.get("thalweg_dt_seconds")
        starts, step = _step_starts(ds, tdim, label, dt, path)
        ends = shift(starts, step)
        attrs: dict[str, Any]
        if "thalweg_provenance" in ds.attrs:
            attrs = json.loads(ds.attrs["thalweg_provenance"])
        else:
            attrs = {"source": str(path), "file_convention": convention}
        if convention == "mean":
            if "Qfinal" in ds.variables and ds["Qfinal"].dims == (rdim,):
                final = np.asarray(ds["Qfinal"].values, dtype=np.float32)
                values = np.concatenate([values[:, 1:], final[:, None]], axis=1)
            else:
                warn(f"{path.name}: {name} holds step means (cell_methods 'time: mean') and no Qfinal; "
                              f"they are kept as step means and stamped at step ends (off by up to half a step "
                              f"from end-of-step discharge).")
                attrs["values"] = "step mean"
    return Discharge(values, ids, ends, step, attrs)


def _step_starts(ds, tdim, label: str, dt: float | None, path: Path) -> tuple[np.ndarray, float]:
    """Step starts and length. Dates beyond datetime64[ns] (Thalweg writes any date) are decoded here exactly;
    the rest goes through the runoff readers' rules (``runoff._time``), so both judge a time axis alike."""
    tvar = ds[tdim]
    units, calendar = tvar.attrs.get("units"), tvar.attrs.get("calendar")
    times = decode_times(tvar.values, units, calendar)
    bname = tvar.attrs.get("bounds")
    bounds = None
    if bname in ds.variables:
        bounds = decode_times(np.asarray(ds[bname].values).reshape(-1), ds[bname].attrs.get("units", units),
                              ds[bname].attrs.get("calendar", calendar))
    wide = [a for a in (times, bounds) if a is not None and np.datetime_data(a.dtype)[0] != "ns"]
    if not wide:
        times = decode_cf_times(tvar.values, units, calendar, path=path, field=str(tdim))
        starts, step, _ = step_starts(times, bounds=cf_bounds(ds, tdim, path), label=label, dt=dt, path=path,
                                      field=str(tdim))
        return starts, step
    # beyond 1678-2261: the same rules on microseconds (bounds decide; else a regular axis)
    if bounds is not None:
        b = bounds.reshape(-1, 2).astype("datetime64[us]")
        lengths = np.unique((b[:, 1] - b[:, 0]).astype(np.int64))
        if lengths.size != 1 or lengths[0] <= 0 or (b.shape[0] > 1 and (b[1:, 0] != b[:-1, 1]).any()):
            raise SchemaError("the time bounds are irregular or leave gaps.", path=path, field=str(bname))
        return as_times(b[:, 0]), lengths[0] / 1e6
    t = times.astype("datetime64[us]")
    diffs = np.unique(np.diff(t).astype(np.int64))
    if t.size >= 2 and (diffs.size != 1 or diffs[0] <= 0):
        raise SchemaError("the time axis is irregular.", path=path, field=str(tdim))
    step = diffs[0] / 1e6 if t.size >= 2 else float(dt or 0)
    if not step > 0:
        raise SchemaError("a single time step without bounds: its length is unknown.", path=path, field=str(tdim),
                          hint="Pass dt= (seconds).")
    return (as_times(t) if label == "start" else shift(t, -step)), float(step)


def _convention(ds, da, name: str) -> str:
    declared = ds.attrs.get("thalweg_time_convention") or da.attrs.get("thalweg_time_convention")
    if declared in ("mean", "end"):
        return declared
    methods = str(da.attrs.get("cell_methods", "")).replace(" ", "").lower()
    if "time:mean" in methods:
        return "mean"
    if "time:point" in methods:
        return "end"
    return "mean" if name == "Qout" else "end"

