"""Per-reach tables (statistics, comparisons, exceedance) written as CSV or as a GeoPackage map layer."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .._files import atomic_path
from ..errors import GeometryError, InputError, NetworkError, format_ids, opt
from .writers import _describe_fields, _write_layer

__all__ = ["write_reach_table", "TABLE_FORMATS"]

TABLE_FORMATS = (".csv", ".gpkg")


def write_reach_table(path: str | Path, frame, *, network=None, layer: str | None = None,
                      units: dict[str, str] | None = None) -> Path:
    """Write ``frame`` (indexed by ``reach_id``) to ``path``: CSV, or a GeoPackage layer of the network's lines.

    Parameters
    ----------
    frame : pandas.DataFrame indexed by reach id; datetime columns are written as ISO 8601 UTC.
    network : the RiverNetwork whose geometry a GeoPackage needs (reaches of the network missing from the
        table get empty fields; table reaches missing from the network are an error).
    layer : the GeoPackage layer name (default: the file's stem).
    units : column -> unit, written as field aliases (``q100y [m3/s]``) in a GeoPackage.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TABLE_FORMATS:
        raise InputError(f"cannot write a table as '{path.name}': the name must end in .csv or .gpkg.",
                         path=path, hint="Name the output OUT.csv (a table) or OUT.gpkg (a map layer).")
    if suffix == ".csv":
        out = frame.copy()
        from pandas.api.types import is_datetime64_any_dtype

        for column in out.columns:
            if is_datetime64_any_dtype(out[column].dtype):  # (np.issubdtype refuses pandas' string dtype)
                values = out[column].to_numpy("datetime64[s]")
                out[column] = np.where(np.isnat(values), "", np.char.add(np.datetime_as_string(values, "s"), "Z"))
        with atomic_path(path) as tmp:
            out.reset_index().to_csv(tmp, index=False)
        return path
    if network is None or network.geometry is None:
        raise GeometryError("a GeoPackage map needs the network's reach lines.", path=path,
                            hint=f"Give the routed network with {opt('write_reach_table.network')} (its file "
                                 "holds the lines), or write a .csv table.")
    unknown = ~np.isin(frame.index.to_numpy(), network.ids)
    if unknown.any():
        bad = frame.index.to_numpy()[unknown]
        raise NetworkError(f"{bad.size:,} reaches of the table are not in the network: {format_ids(bad)}.",
                           path=network.source.path, ids=bad[:100].tolist(),
                           hint="Map with the network that was routed.")
    out = frame.reindex(network.ids)
    geometry = np.asarray(network.geometry.values if hasattr(network.geometry, "values") else network.geometry)
    columns = {"reach_id": network.ids, **{str(c): out[c].to_numpy() for c in out.columns}}
    # the summary layer's writer: GeoPackage 1.3, one arrow write, datetimes in UTC with Z
    name = layer or path.stem
    with atomic_path(path) as tmp:
        _write_layer(tmp, name, columns, geometry, network.crs, append=False)
        if units:
            _describe_fields(tmp, {name: {c: (f"{c} [{u}]", f"{c}, {u}") for c, u in units.items() if c in columns}})
    return path
