"""NWM ``Route_Link.nc``: link -> to (0), Length [m], MusK [s], MusX, So, order, gages (NetCDF)."""
from __future__ import annotations

from .._schema import Schema

SCHEMA = Schema(
    name="nwm",
    title="National Water Model Route_Link",
    fields={
        "id": ("link",),
        "downstream": ("to",),
        "length": ("Length",),
        "slope": ("So",),
        "muskingum_k": ("MusK",),
        "muskingum_x": ("MusX",),
        "stream_order": ("order",),
        "gauge_id": ("gages",),
    },
    units={"Length": "m", "MusK": "s"},
    outlet_codes=(0,),
    signature=("from", "n", "nCC", "ChSlp", "BtmWdth", "TopWdth", "TopWdthCC", "Kchan", "NHDWaterbodyComID",
               "ascendingIndex", "alt"),
    url="https://water.noaa.gov/about/nwm",
)
