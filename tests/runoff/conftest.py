"""Fixtures for runoff readers: a three-reach network and a writer of reach NetCDF files."""
from __future__ import annotations

import numpy as np
import pytest

from thalweg.network import Source, from_arrays

H3 = 3 * 3600


@pytest.fixture
def net3():
    """Reaches 10 and 20 drain to outlet 30; catchment areas 1, 2, 3 km^2."""
    return from_arrays([10, 20, 30], [30, 30, -1], [1000.0, 2000.0, 1500.0],
                       catchment_area=[1e6, 2e6, 3e6], source=Source(path="net.gpkg", fields={"id": "LINKNO"}))


def write_reach_nc(path, values, ids, seconds, *, var="m3_riv", units="m3", id_dim="rivid", layout=("time", "id"),
                   bounds=None, time_units="seconds since 2000-01-01 00:00:00", calendar=None, extra=None):
    """Write ``var`` with ``values`` [T, M] over (time, id_dim) (or (id_dim, time)) with a CF time axis."""
    import xarray as xr

    values = np.asarray(values, dtype="float32")
    dims = ("time", id_dim) if layout == ("time", "id") else (id_dim, "time")
    data = values if layout == ("time", "id") else values.T
    tattrs = {"units": time_units}
    if calendar:
        tattrs["calendar"] = calendar
    variables = {var: (dims, data, {} if units is None else {"units": units}),
                 id_dim: ((id_dim,), np.asarray(ids, dtype="int32")),
                 "time": (("time",), np.asarray(seconds, dtype="int64"), tattrs)}
    if bounds is not None:
        variables["time"][2]["bounds"] = "time_bnds"
        variables["time_bnds"] = (("time", "nv"), np.asarray(bounds, dtype="int64"))
    for name, value in (extra or {}).items():
        variables[name] = value
    xr.Dataset(variables).to_netcdf(path)
    return path


@pytest.fixture
def reach_nc():
    return write_reach_nc
