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

# the real functions and types, loaded on first use (PEP 562) so that ``thalweg --version``/``--help`` start at
# once without torch; ``thalweg.route`` is then the function itself (its signature and docstring)
_LAZY = {"read_network": ".hydrography", "SCHEMES": ".irf", "Parameter": ".irf", "Scheme": ".irf",
         "get_scheme": ".irf", "register_scheme": ".irf", "CalibrationResult": ".learning", "calibrate": ".learning",
         "RiverNetwork": ".network", "from_arrays": ".network", "resolve_params": ".params",
         "Discharge": ".results", "RoutingState": ".routing", "route": ".routing", "Runoff": ".runoff",
         "read_runoff": ".runoff"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'thalweg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

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
