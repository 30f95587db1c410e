"""HydroRIVERS v1.0: HYRIV_ID -> NEXT_DOWN (0), LENGTH_KM, UPLAND_SKM and CATCH_SKM in km / km^2."""
from __future__ import annotations

from .._schema import Schema

SCHEMA = Schema(
    name="hydrorivers",
    title="HydroRIVERS v1.0",
    fields={
        "id": ("HYRIV_ID",),
        "downstream": ("NEXT_DOWN",),
        "length": ("LENGTH_KM",),
        "area": ("UPLAND_SKM",),
        "catchment_area": ("CATCH_SKM",),
        "stream_order": ("ORD_STRA",),
    },
    units={"LENGTH_KM": "km", "UPLAND_SKM": "km2", "CATCH_SKM": "km2"},
    outlet_codes=(0,),
    signature=("MAIN_RIV", "DIST_DN_KM", "DIST_UP_KM", "ORD_CLAS", "ORD_FLOW", "HYBAS_L12", "DIS_AV_CMS",
               "ENDORHEIC"),
    url="https://www.hydrosheds.org/products/hydrorivers",
)
