"""NextGen hydrofabric: flowpaths ``id`` ('wb-123') -> ``toid`` (a nexus, 'nex-124' / 'tnx-9') -> the nexus's
``toid`` (a flowpath). Nexus links come from the rows of the same table whose id is a nexus (a ``network``
table), or from the ``nexus`` / ``network`` layers of the same GeoPackage. String ids give their integer
part ('wb-123' -> 123). A ``flowpath-attributes`` layer (MusK, MusX, So, n, Length_m) is joined by id.
"""
from __future__ import annotations

import warnings

import numpy as np

from ...errors import SchemaError, ThalwegWarning, format_ids
from .._context import Context, Resolved, require
from .._schema import Schema, find_field
from ..catchments import integer_part
from ..vector import Table

_REACH_PREFIXES = ("wb", "fp", "")


def _split(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(prefix, integer part) of ids like 'wb-123'; numbers have prefix ''."""
    values = np.asarray(values)
    if values.dtype.kind in "iuf":
        return np.full(values.size, "", dtype=object), integer_part(values)
    import pandas as pd

    text = pd.Series(values, dtype="object").astype("string").str.strip()
    prefix = text.str.extract(r"^([A-Za-z_]*)", expand=False).fillna("").str.lower().str.rstrip("_")
    return prefix.to_numpy(dtype=object), integer_part(text.to_numpy(dtype=object))


def _canonical(values: np.ndarray) -> np.ndarray:
    """'wb-00123', 'WB_123' and 'wb-123' all become 'wb-123' (numbers: '-123' with an empty prefix)."""
    import pandas as pd

    prefix, number = _split(values)
    return (pd.Series(prefix, dtype="object") + "-" + pd.Series(number).astype(str)).to_numpy(dtype=object)


def prepare(table: Table, ctx: Context) -> Table:
    """Join the ``flowpath-attributes`` layer (routing parameters) onto the flowpaths by id."""
    attributes = ctx.read_layer("flowpath-attributes", "flowpath_attributes")
    id_field = find_field(table.names, "id")
    if attributes is None or id_field is None or table.layer == attributes.layer:
        return table
    key = find_field(attributes.names, "id")
    if key is None:
        return table
    _, mine = _split(table.columns[id_field])
    _, theirs = _split(attributes.columns[key])
    sorter = np.argsort(theirs, kind="stable")
    where = np.clip(np.searchsorted(theirs, mine, sorter=sorter), 0, max(theirs.size - 1, 0))
    found = theirs[sorter[where]] == mine if theirs.size else np.zeros(mine.size, bool)
    columns = dict(table.columns)
    for name, values in attributes.columns.items():
        if name == key or find_field(columns, name) is not None:
            continue
        picked = values[sorter[where]]
        if values.dtype.kind in "iuf":
            picked = np.where(found, picked.astype(float), np.nan)
        else:
            picked = np.where(found, picked, None).astype(object)
        columns[name] = picked
    return Table(columns=columns, geometry=table.geometry, crs=table.crs, path=table.path, layer=table.layer,
                 geometry_type=table.geometry_type, side=table.side, n_rows=table.n)


def _nexus_links(ctx: Context, ids: np.ndarray, toids: np.ndarray,
                 is_reach: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(nexus id, its toid) from nexus rows of this table and from the nexus/network layers."""
    keys, targets = [_canonical(ids[~is_reach])], [toids[~is_reach]]
    for layer in ("nexus", "network"):
        other = ctx.read_layer(layer)
        if other is None or other.layer == ctx.layer:
            continue
        f_id, f_to = find_field(other.names, "id"), find_field(other.names, "toid")
        if f_id is None or f_to is None:
            continue
        prefix, _ = _split(other.columns[f_id])
        nexus = ~np.isin(prefix, _REACH_PREFIXES)
        keys.append(_canonical(other.columns[f_id][nexus]))
        targets.append(np.asarray(other.columns[f_to])[nexus])
    return np.concatenate(keys), np.concatenate([np.asarray(t, dtype=object) for t in targets])


def resolve(ctx: Context) -> Resolved:
    import pandas as pd

    require(ctx, "id", "downstream")
    raw_ids, raw_to = np.asarray(ctx.column("id")), np.asarray(ctx.column("downstream"))
    prefix, number = _split(raw_ids)
    is_reach = np.isin(prefix, _REACH_PREFIXES)
    to_prefix, to_number = _split(raw_to)
    via_nexus = is_reach & ~np.isin(to_prefix, _REACH_PREFIXES)
    downstream = np.where(is_reach, to_number, 0)
    field = ctx.fields["downstream"]
    if via_nexus.any():
        keys, targets = _nexus_links(ctx, raw_ids, raw_to, is_reach)
        if not keys.size:
            raise SchemaError(f"{int(via_nexus.sum()):,} flowpaths drain into nexus ids "
                              f"({format_ids(raw_to[via_nexus])}) but the file has no nexus table to follow them "
                              f"to the next flowpath.",
                              path=ctx.path, layer=ctx.layer, field=field, ids=list(raw_to[via_nexus][:100]),
                              hint="Read the hydrofabric GeoPackage with its 'nexus' (or 'network') layer, or give a "
                                   "table whose toid holds flowpath ids.")
        index = pd.Index(keys)
        first = ~index.duplicated()
        index, targets = index[first], targets[first]
        at = index.get_indexer(_canonical(raw_to[via_nexus]))
        nexus_to = np.where(at >= 0, targets[np.maximum(at, 0)], None)
        t_prefix, t_number = _split(np.asarray(nexus_to, dtype=object))
        unknown = at < 0
        if unknown.any():
            warnings.warn(f"{ctx.path.name}: {int(unknown.sum()):,} nexus ids are not in the nexus table "
                          f"({format_ids(raw_to[via_nexus][unknown])}); their flowpaths are outlets.",
                          ThalwegWarning, stacklevel=4)
        downstream[via_nexus] = np.where(unknown | ~np.isin(t_prefix, _REACH_PREFIXES), 0, t_number)
        field = f"{field} -> nexus toid"
    rows = np.flatnonzero(is_reach)
    ids = number[rows]
    _, first = np.unique(ids, return_index=True)
    if first.size < rows.size:
        # a network table lists a flowpath once per original NHD flowline: keep its first row
        warnings.warn(f"{ctx.path.name}: {rows.size - first.size:,} rows repeat a flowpath id "
                      f"({format_ids(np.unique(ids[np.setdiff1d(np.arange(rows.size), first)]))}); the first row of "
                      f"each is kept.", ThalwegWarning, stacklevel=4)
        rows = rows[np.sort(first)]
    return Resolved(number[rows], downstream[rows], rows=rows, fields={"downstream": field}, outlet_codes=(0, -1))


SCHEMA = Schema(
    name="hydrofabric",
    title="NextGen hydrofabric",
    fields={
        "id": ("id",),
        "downstream": ("toid",),
        "length": ("lengthkm", "Length_m"),
        "area": ("tot_drainage_areasqkm",),
        "catchment_area": ("areasqkm",),
        "slope": ("So",),
        "muskingum_k": ("MusK",),
        "muskingum_x": ("MusX",),
        "stream_order": ("order",),
        "gauge_id": ("rl_gages", "gage"),
    },
    units={"lengthkm": "km", "Length_m": "m", "tot_drainage_areasqkm": "km2", "areasqkm": "km2", "MusK": "s"},
    outlet_codes=(0, -1),
    signature=("divide_id", "mainstem", "hydroseq", "has_divide", "has_flowline", "vpuid", "poi_id", "ds_id"),
    layers=("flowpaths",),
    prepare=prepare,
    resolve=resolve,
    url="https://lynker-spatial.s3-us-west-2.amazonaws.com/hydrofabric/",
)
