"""Runoff inputs: files -> :class:`Runoff` (m3/s step means in the network's reach order).

``read_runoff`` reads RAPID m3_riv, river-route catchment_runoff, CSV/parquet tables and gridded
runoff (NetCDF, GeoTIFF) aggregated to catchments by area weights (``weights``).
"""
from .model import Runoff
from .readers import read_runoff, read_table

__all__ = ["Runoff", "read_runoff", "read_table"]
