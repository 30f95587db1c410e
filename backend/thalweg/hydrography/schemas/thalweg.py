"""Thalweg's own reach tables (``RiverNetwork.to_geodataframe()``, the service's reaches.gpkg): reach_id ->
downstream_id (-1), SI quantities named with their unit."""
from __future__ import annotations

from .._schema import Schema

SCHEMA = Schema(
    name="thalweg",
    title="Thalweg reach table",
    fields={
        "id": ("reach_id",),
        "downstream": ("downstream_id",),
        "length": ("length_m",),
        "area": ("area_m2", "area_km2"),
        "catchment_area": ("catchment_area_m2",),
        "slope": ("slope",),
        "muskingum_k": ("muskingum_k",),
        "muskingum_x": ("muskingum_x",),
        "stream_order": ("stream_order",),
        "gauge_id": ("gauge_id",),
    },
    units={"length_m": "m", "area_m2": "m2", "area_km2": "km2", "catchment_area_m2": "m2", "muskingum_k": "s"},
    outlet_codes=(-1,),
)
