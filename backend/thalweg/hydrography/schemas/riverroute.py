"""river-route v3 (Hales): riverId -> nextRiverId (-1), muskingumK [s], muskingumX; no lengths."""
from __future__ import annotations

from .._schema import Schema

SCHEMA = Schema(
    name="riverroute",
    title="river-route v3 routing table",
    fields={
        "id": ("riverId",),
        "downstream": ("nextRiverId",),
        "muskingum_k": ("muskingumK",),
        "muskingum_x": ("muskingumX",),
    },
    units={"muskingumK": "s"},
    outlet_codes=(-1,),
    url="https://github.com/rileyhales/river-route",
)
