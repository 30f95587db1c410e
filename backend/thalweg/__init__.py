"""Thalweg: river routing (DiffRoute-style LTI routing over river-network trees) for GPU or CPU.

Data flows one way: hydrography -> network -> parameters -> routing -> results -> maps.

    import thalweg
    network = thalweg.read_network("rivers.gpkg")
    runoff = thalweg.read_runoff("runoff.nc", network)
    params, _ = thalweg.resolve_params(network, "muskingum_nonneg")
    discharge = thalweg.route(network, runoff, params)       # a Discharge: ids, times, to_xarray()

GIS readers and writers import their libraries lazily, so ``import thalweg`` needs only numpy and torch.
"""
from __future__ import annotations

__version__ = "0.1.0"

from .errors import (Cancelled, CycleError, DuplicateIdError, GeometryError, InputError, MissingValueError,
                     NetworkError, RunoffError, RunoffMismatchError, SchemaError, ThalwegError, ThalwegWarning,
                     UnitError)
from .hydrography import read_network
from .irf import SCHEMES, Parameter, Scheme, get_scheme, register_scheme
from .learning import CalibrationResult, calibrate
from .network import RiverNetwork, from_arrays
from .params import resolve_params
from .results import Discharge
from .routing import RoutingState, route
from .runoff import Runoff, read_runoff

__all__ = [
    "__version__",
    # reading, routing, calibrating
    "read_network",
    "read_runoff",
    "from_arrays",
    "resolve_params",
    "route",
    "calibrate",
    # the types users pass around
    "RiverNetwork",
    "Runoff",
    "Discharge",
    "RoutingState",
    "Scheme",
    "Parameter",
    "CalibrationResult",
    "SCHEMES",
    "get_scheme",
    "register_scheme",
    # errors and warnings
    "ThalwegError",
    "InputError",
    "SchemaError",
    "NetworkError",
    "CycleError",
    "DuplicateIdError",
    "GeometryError",
    "UnitError",
    "RunoffError",
    "RunoffMismatchError",
    "MissingValueError",
    "Cancelled",
    "ThalwegWarning",
]
