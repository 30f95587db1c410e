"""Thalweg: river routing (DiffRoute-style LTI routing over river-network trees) for GPU or CPU.

Data flows one way: hydrography -> network -> parameters -> routing -> results -> maps.
GIS readers and writers import their libraries lazily, so ``import thalweg`` needs only numpy and torch.
"""
from __future__ import annotations

__version__ = "0.1.0"

from .errors import (CycleError, DuplicateIdError, GeometryError, InputError, MissingValueError, NetworkError,
                     RunoffError, RunoffMismatchError, SchemaError, ThalwegError, ThalwegWarning, UnitError)
from .irf import SCHEMES, register_scheme
from .learning import CalibrationResult, calibrate
from .network import RiverNetwork, from_arrays
from .routing import route

__all__ = [
    "__version__",
    "RiverNetwork",
    "from_arrays",
    "read_network",
    "read_runoff",
    "route",
    "calibrate",
    "CalibrationResult",
    "SCHEMES",
    "register_scheme",
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
    "ThalwegWarning",
]


def read_network(*args, **kwargs):
    """See :func:`thalweg.hydrography.read_network` (imported lazily: it needs the GIS libraries)."""
    from .hydrography import read_network as _read

    return _read(*args, **kwargs)


def read_runoff(*args, **kwargs):
    """See :func:`thalweg.runoff.read_runoff` (imported lazily)."""
    from .runoff import read_runoff as _read

    return _read(*args, **kwargs)
