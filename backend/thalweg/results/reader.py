"""read_discharge: Qout (RAPID/GEOGloWS) or Q (river-route) NetCDF -> Discharge (end-of-step values)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .._paths import check_input
from ..errors import InputError, SchemaError, opt
from ..names import REACH_ID_NAMES, TIME_NAMES, as_ids, find_name
from ..runoff._time import cf_bounds, decode_cf_times, step_delta, step_starts
from ..runoff._warn import warn
from .discharge import Discharge

__all__ = ["read_discharge"]

_VARIABLES = ("Qout", "Q", "discharge", "streamflow")


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

    zarr = Path(path).suffix.lower() == ".zarr" or Path(path).is_dir()
    path = check_input(path, what="discharge zarr store" if zarr else "discharge file", error=InputError,
                       folder=zarr)
    opened = xr.open_zarr(path, decode_times=False) if zarr else xr.open_dataset(path, decode_times=False)
    with opened as ds:
        name = variable or next((v for v in _VARIABLES if v in ds.data_vars), None)
        if name is None or name not in ds.data_vars:
            found = ", ".join(map(str, ds.data_vars)) or "none"
            what = (f"no variable '{variable}'" if variable else
                    f"no discharge variable of a known name ({', '.join(_VARIABLES)})")
            raise SchemaError(f"{what}; its variables: {found}.", path=path, field=variable,
                              hint=f"Name the discharge variable with {opt('read_discharge.variable', 'NAME')}.")
        da = ds[name]
        if da.ndim != 2:
            raise SchemaError(f"{name} has dimensions {da.dims}; expected (time, reach).", path=path, field=name)
        tdim = find_name(da.dims, TIME_NAMES)
        if tdim is None:
            raise SchemaError(f"{name} has no time dimension (dimensions {da.dims}).", path=path, field=name)
        rdim = next(d for d in da.dims if d != tdim)
        id_name = rdim if rdim in ds.variables else next(
            (v for v in ds.variables if str(v).lower() in REACH_ID_NAMES and ds[v].dims == (rdim,)), None)
        if id_name is None:
            raise SchemaError(f"dimension {rdim} has no reach-id variable.", path=path, field=str(rdim))
        ids = as_ids(np.asarray(ds[id_name].values), path=path, field=str(id_name), error=SchemaError)
        values = np.asarray(da.transpose(rdim, tdim).values, dtype=np.float32)
        convention = _convention(ds, da, name)
        tvar = ds[tdim]
        times = decode_cf_times(tvar.values, tvar.attrs.get("units"), tvar.attrs.get("calendar"), path=path,
                                field=str(tdim))
        bounds = cf_bounds(ds, tdim, path)
        label = "start" if convention == "mean" else "end"
        if dt is None and times.size < 2 and bounds is None:
            dt = ds.attrs.get("thalweg_dt_seconds")
        starts, step, _ = step_starts(times, bounds=bounds, label=label, dt=dt, path=path, field=str(tdim))
        ends = starts + step_delta(step)
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

