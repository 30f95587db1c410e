"""One module per schema of DATA.md section 1; each defines ``SCHEMA`` and is registered here, in the
order detection reports them. A new schema is a new module plus one line below."""
from __future__ import annotations

from .._schema import register_schema
from . import (geoglows, hydrofabric, hydrorivers, lines, merit, mizuroute, nhdplus, nwm, rapid, riverroute,
               riverroute2, thalweg)

for _module in (geoglows, hydrorivers, merit, nhdplus, nwm, hydrofabric, mizuroute, riverroute, riverroute2, thalweg,
                rapid, lines):
    register_schema(_module.SCHEMA, replace=True)

__all__ = ["geoglows", "hydrorivers", "merit", "nhdplus", "nwm", "hydrofabric", "mizuroute", "riverroute",
           "riverroute2", "thalweg", "rapid", "lines"]
