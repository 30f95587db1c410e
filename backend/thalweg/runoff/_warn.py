"""Warnings that point at the user's call, not at Thalweg's internals."""
from __future__ import annotations

import sys
import warnings

from ..errors import ThalwegWarning

__all__ = ["warn"]


def warn(message: str) -> None:
    """Issue a ThalwegWarning attributed to the first caller outside the thalweg package."""
    frame, level = sys._getframe(0), 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("thalweg."):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, ThalwegWarning, stacklevel=level)
