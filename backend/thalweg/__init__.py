"""Thalweg: river routing (DiffRoute-style LTI routing over river-network trees) for GPU or CPU.

Data flows one way: hydrography -> network -> parameters -> routing -> results -> maps.
GIS readers and writers import their libraries lazily, so ``import thalweg`` needs only numpy and torch.
"""
from __future__ import annotations

__version__ = "0.1.0"

from .errors import (CycleError, DuplicateIdError, GeometryError, InputError, MissingValueError, NetworkError,
                     RunoffError, RunoffMismatchError, SchemaError, ThalwegError, ThalwegWarning, UnitError)

# torch-backed names load on first use (PEP 562), so that ``thalweg --version``/``--help`` start at once
_LAZY = {"SCHEMES": ".irf", "register_scheme": ".irf", "CalibrationResult": ".learning", "calibrate": ".learning",
         "RiverNetwork": ".network", "from_arrays": ".network", "route": ".routing"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'thalweg' has no attribute {name!r}")

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
