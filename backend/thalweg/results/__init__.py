"""Results: :class:`Discharge` (end-of-step Q per reach) and its files.

``write_qout`` (RAPID/GEOGloWS Qout, step mean or end of step), ``write_q`` (river-route Q NetCDF, end of
step), ``write_zarr`` (river-route 3 zarr store), ``read_discharge`` (any of them back), ``summarize``
(per-reach statistics), ``write_summary_gpkg`` (a map layer, and gauges), ``write_hydrographs_csv`` (wide)
and ``write_hydrographs_long_csv`` (long); ``outputs.write_route_outputs`` writes a run's set together and
``params_export.export_params`` the routing parameters in RAPID's and river-route's layouts. All writers
are atomic.
"""
from .discharge import Discharge
from .reader import read_discharge
from .summary import SUMMARY_COLUMNS, exceedance_quantile, summarize
from .writers import (CONVENTIONS, ID_NAMES, write_hydrographs_csv, write_hydrographs_long_csv, write_q, write_qout,
                      write_summary_gpkg, write_zarr)

__all__ = ["Discharge", "read_discharge", "summarize", "exceedance_quantile", "SUMMARY_COLUMNS", "write_qout",
           "write_q", "write_zarr", "write_summary_gpkg", "write_hydrographs_csv", "write_hydrographs_long_csv",
           "CONVENTIONS", "ID_NAMES"]
