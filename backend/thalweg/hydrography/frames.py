"""A RiverNetwork as a geopandas GeoDataFrame, in the layout of the 'thalweg' schema (read back by read_network)."""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["to_geodataframe"]


def to_geodataframe(network) -> Any:
    """The reaches of ``network`` as a GeoDataFrame, one row per reach in the network's order.

    Columns: ``reach_id``, ``downstream_id`` (-1 at outlets), ``length_m``, ``area_m2``, ``catchment_area_m2`` and
    ``slope`` when known, then every per-reach attribute under its own name (``muskingum_k`` in s, ...); the
    geometry is the network's lines (None where it has none), in ``network.crs``.
    ``thalweg.read_network(frame)`` reads it back into the same network.
    """
    import geopandas as gpd

    ds = network.downstream
    columns: dict[str, Any] = {
        "reach_id": network.ids,
        "downstream_id": np.where(ds >= 0, network.ids[np.clip(ds, 0, None)], -1),
        "length_m": network.length,
        "area_m2": network.area,
    }
    if network.catchment_area is not None:
        columns["catchment_area_m2"] = network.catchment_area
    if network.slope is not None:
        columns["slope"] = network.slope
    for name, values in network.attrs.items():
        arr = np.asarray(values)
        if name not in columns and arr.shape == (network.n_reaches,) and arr.dtype.kind in "iufbUO":
            columns[name] = arr
    geometry = (np.full(network.n_reaches, None, dtype=object) if network.geometry is None
                else np.asarray(network.geometry, dtype=object))
    return gpd.GeoDataFrame(columns, geometry=geometry, crs=network.crs)
