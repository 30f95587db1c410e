"""mizuRoute network topology (NetCDF): segId -> downSegId (<= 0 outlet), length [m], slope; the HRUs
(``hruId``, ``hruSegId``, ``area`` [m^2] on the ``hru`` dimension) give each segment's catchment area,
which accumulates into the upstream drainage area."""
from __future__ import annotations

import warnings

import numpy as np

from ...errors import ThalwegWarning, format_ids
from .._context import Context
from .._schema import Schema, find_field
from ..vector import Table


def prepare(table: Table, ctx: Context) -> Table:
    """Sum the HRU areas of each segment into a per-segment ``area`` column (m^2)."""
    seg_field = find_field(table.names, "segId")
    for hru in table.side.values():
        to_seg, area = find_field(hru.names, "hruSegId"), find_field(hru.names, "area")
        if seg_field is None or to_seg is None or area is None:
            continue
        seg = np.asarray(table.columns[seg_field]).astype(np.int64)
        target = np.asarray(hru.columns[to_seg]).astype(np.int64)
        sorter = np.argsort(seg, kind="stable")
        where = np.clip(np.searchsorted(seg, target, sorter=sorter), 0, seg.size - 1)
        found = seg[sorter[where]] == target
        if (~found).any():
            warnings.warn(f"{ctx.path.name}: {int((~found).sum()):,} HRUs drain to segments that are not in segId "
                          f"({format_ids(np.unique(target[~found]))}); their area is ignored.",
                          ThalwegWarning, stacklevel=4)
        values = np.nan_to_num(np.asarray(hru.columns[area], dtype=float))
        summed = np.bincount(sorter[where[found]], weights=values[found], minlength=seg.size)
        columns = dict(table.columns)
        columns["area" if find_field(columns, "area") is None else "hru_area"] = summed
        return Table(columns=columns, geometry=table.geometry, crs=table.crs, path=table.path, layer=table.layer,
                     geometry_type=table.geometry_type, side=table.side, n_rows=table.n)
    return table


SCHEMA = Schema(
    name="mizuroute",
    title="mizuRoute network topology",
    fields={
        "id": ("segId",),
        "downstream": ("downSegId",),
        "length": ("length",),
        "slope": ("slope",),
        "catchment_area": ("area", "hru_area"),
    },
    units={"length": "m", "area": "m2", "hru_area": "m2"},
    outlet_codes=(0, -1, -9999),
    signature=("width", "man_n", "hruId", "hruSegId"),
    prepare=prepare,
    url="https://mizuroute.readthedocs.io",
)
