"""Assertions that judge every reach, never an average (STYLE.md section 4)."""
from __future__ import annotations

import numpy as np

__all__ = ["max_relative_error", "assert_discharge_close"]


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def max_relative_error(actual, expected) -> np.ndarray:
    """Per-series max |actual - expected| / max |expected| over the last (time) axis; 0/0 counts as 0."""
    a, e = _np(actual), _np(expected)
    scale = np.abs(e).max(axis=-1)
    err = np.abs(a - e).max(axis=-1)
    return np.where(scale > 0, err / np.where(scale > 0, scale, 1.0), np.where(err > 0, np.inf, 0.0))


def assert_discharge_close(actual, expected, *, rtol: float = 1e-5, name: str = "Q", ids=None) -> None:
    """Fail naming the worst series (its reach id when ``ids`` is given) if any exceeds ``rtol``."""
    a, e = _np(actual), _np(expected)
    if a.shape != e.shape:
        raise AssertionError(f"{name}: shape {a.shape} != expected {e.shape}")
    if not np.isfinite(a).all():
        raise AssertionError(f"{name}: {int((~np.isfinite(a)).sum())} non-finite values")
    rel = max_relative_error(a, e)
    worst = np.unravel_index(np.argmax(rel), rel.shape)
    if rel[worst] > rtol:
        where = worst if ids is None else f"reach {np.asarray(ids)[worst[-1]]} (index {worst})"
        raise AssertionError(f"{name}: max relative error {rel[worst]:.3e} > {rtol:.1e} at {where}; "
                             f"{int((rel > rtol).sum())} series fail")
