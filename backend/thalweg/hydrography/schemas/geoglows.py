"""GEOGloWS v2 streams (TDX-Hydro): LINKNO -> DSLINKNO (-1), lengths in m, areas in m^2, musk_k in s."""
from __future__ import annotations

from .._schema import Schema

SCHEMA = Schema(
    name="geoglows",
    title="GEOGloWS v2 streams (TDX-Hydro)",
    fields={
        "id": ("LINKNO",),
        "downstream": ("DSLINKNO",),
        "length": ("LengthGeodesicMeters",),
        "area": ("DSContArea",),
        "muskingum_k": ("musk_k",),
        "muskingum_x": ("musk_x",),
        "stream_order": ("strmOrder",),
    },
    units={"LengthGeodesicMeters": "m", "DSContArea": "m2", "musk_k": "s"},
    outlet_codes=(-1,),
    signature=("USLINKNO1", "USLINKNO2", "TopologicalOrder", "USContArea", "TDXHydroLinkNo"),
    url="https://geoglows.ecmwf.int",
)
