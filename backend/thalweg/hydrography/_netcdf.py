"""NetCDF tables (NWM ``Route_Link.nc``, mizuRoute topology) read through xarray.

A network table in NetCDF is a set of 1-D variables sharing one dimension (``feature_id`` in NWM,
``seg`` in mizuRoute). The main table is the dimension holding the most 1-D variables; variables
on other dimensions (mizuRoute's ``hru``) become side tables named after their dimension.
Character arrays (NWM ``gages``) come back as stripped strings.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .vector import LayerInfo, Table, _fail

__all__ = ["describe_netcdf", "read_netcdf"]


def _open(path: Path):
    import xarray as xr

    from .._paths import describe_content, sniff
    from ..errors import InputError

    if sniff(path) not in ("netcdf", "hdf5"):
        raise InputError(f"the file is not NetCDF: it is {describe_content(path)}.", path=path,
                         hint="Give a NetCDF network (NWM Route_Link.nc, mizuRoute topology), or name the file by "
                              "its real format (.gpkg, .csv, .parquet).")
    try:
        return xr.open_dataset(path, decode_times=False, mask_and_scale=True)
    except Exception as exc:  # xarray raises ValueError/OSError for files it cannot open
        raise _fail(path, exc) from None


def _by_dimension(ds) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for name, var in ds.variables.items():
        dims = var.dims
        if len(dims) == 1 or (len(dims) == 2 and var.dtype.kind in "SU"):
            groups.setdefault(dims[0], []).append(str(name))
    return groups


def _main_dimension(ds, groups: dict[str, list[str]]) -> str | None:
    if not groups:
        return None
    return max(groups, key=lambda d: (len(groups[d]), ds.sizes[d]))


def describe_netcdf(path: Path) -> LayerInfo:
    with _open(path) as ds:
        groups = _by_dimension(ds)
        dim = _main_dimension(ds, groups)
        columns = tuple(groups.get(dim, ())) if dim else ()
        n = int(ds.sizes[dim]) if dim else 0
    return LayerInfo(path=path, layer=None, columns=columns, geometry_type=None, crs=None, n=n)


def _values(var) -> np.ndarray:
    values = np.asarray(var.values)
    if values.dtype.kind == "S":
        if values.ndim == 2:  # undecoded char array: join the characters of each row
            values = values.view(f"S{values.shape[1]}").reshape(-1)
        values = np.char.strip(np.char.decode(values, "utf-8", errors="replace")).astype(object)
    elif values.dtype.kind == "U":
        values = np.char.strip(values).astype(object)
    return values


def read_netcdf(path: Path) -> Table:
    with _open(path) as ds:
        groups = _by_dimension(ds)
        dim = _main_dimension(ds, groups)
        if dim is None:
            return Table(columns={}, path=path, n_rows=0)
        tables = {}
        for d, names in groups.items():
            columns = {}
            for name in names:
                values = _values(ds[name])
                if values.ndim == 1 and values.dtype.kind in "iufbO":
                    columns[name] = values
            tables[d] = Table(columns=columns, path=path, layer=d, n_rows=int(ds.sizes[d]))
    main = tables.pop(dim)
    main.side = tables
    main.layer = None
    return main
