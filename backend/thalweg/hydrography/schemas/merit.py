"""MERIT-Basins (Lin et al. 2019): COMID -> NextDownID (0), lengthkm, uparea and unitarea in km / km^2."""
from __future__ import annotations

from .._schema import Schema

SCHEMA = Schema(
    name="merit",
    title="MERIT-Basins",
    fields={
        "id": ("COMID",),
        "downstream": ("NextDownID",),
        "length": ("lengthkm",),
        "area": ("uparea",),
        "catchment_area": ("unitarea",),
        "slope": ("slope",),
        "stream_order": ("order",),
    },
    units={"lengthkm": "km", "uparea": "km2", "unitarea": "km2"},
    outlet_codes=(0,),
    signature=("up1", "up2", "up3", "up4", "maxup", "strmDrop_t", "sinuosity", "lengthdir"),
    url="https://www.reachhydro.org/home/params/merit-basins",
)
