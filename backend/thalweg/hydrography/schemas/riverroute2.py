"""river-route 2.x (Hales) ``params.parquet``: river_id -> downstream_river_id (-1), k [s], x; no lengths.

river-route 2.x keeps topology and Muskingum parameters in one table, rows in topological order; GEOGloWS v2
publishes its routing parameters in this layout.
"""
from __future__ import annotations

from .._schema import Schema

SCHEMA = Schema(
    name="riverroute2",
    title="river-route 2.x routing parameters (params.parquet)",
    fields={
        "id": ("river_id",),
        "downstream": ("downstream_river_id",),
        "muskingum_k": ("k",),
        "muskingum_x": ("x",),
    },
    units={"k": "s"},
    outlet_codes=(-1,),
    url="https://github.com/rileyhales/river-route",
)
