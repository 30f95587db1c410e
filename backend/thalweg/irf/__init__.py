"""Impulse-response functions: the SCHEMES registry (name -> Scheme).

Add a scheme with :func:`register_scheme`; engines take any registered scheme unchanged.
"""
from __future__ import annotations

from ..errors import InputError
from . import hayami, lag, linear_storage, muskingum, nash
from .base import Compact, Kernels, Parameter, Recursion, Scheme, truncate

__all__ = ["SCHEMES", "Compact", "Kernels", "Parameter", "Recursion", "Scheme", "get_scheme", "register_scheme",
           "truncate"]

SCHEMES: dict[str, Scheme] = {}


def register_scheme(scheme: Scheme, *, replace: bool = False) -> Scheme:
    """Add ``scheme`` to the registry (a custom scheme is one Scheme object)."""
    if scheme.name in SCHEMES and not replace:
        raise ValueError(f"a scheme named '{scheme.name}' is registered already; pass replace=True")
    SCHEMES[scheme.name] = scheme
    return scheme


def get_scheme(name: str | Scheme) -> Scheme:
    """The Scheme registered as ``name`` (a Scheme is returned as it is); InputError listing the known names."""
    if isinstance(name, Scheme):
        return name
    try:
        return SCHEMES[name]
    except KeyError:
        raise InputError(f"unknown routing scheme '{name}'.",
                         hint=f"Choose one of: {', '.join(sorted(SCHEMES))}.") from None


for _module_scheme in (lag.SCHEME, linear_storage.SCHEME, nash.SCHEME, muskingum.SCHEME,
                       muskingum.SUBSTEPPED, muskingum.NONNEGATIVE, hayami.SCHEME):
    register_scheme(_module_scheme)
