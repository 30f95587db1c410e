"""Results: :class:`Discharge` (end-of-step Q per reach) and its files.

``write_qout`` (RAPID/GEOGloWS Qout, step mean or end of step), ``write_q`` (river-route Q, end of
step), ``read_discharge`` (either back), ``summarize`` (per-reach statistics), ``write_summary_gpkg``
(a map layer) and ``write_hydrographs_csv``. All writers are atomic.
"""
from .discharge import Discharge
from .reader import read_discharge
from .summary import SUMMARY_COLUMNS, exceedance_quantile, summarize
from .writers import CONVENTIONS, write_hydrographs_csv, write_q, write_qout, write_summary_gpkg

__all__ = ["Discharge", "read_discharge", "summarize", "exceedance_quantile", "SUMMARY_COLUMNS", "write_qout",
           "write_q", "write_summary_gpkg", "write_hydrographs_csv", "CONVENTIONS"]
