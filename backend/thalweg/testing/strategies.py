"""Hypothesis strategies for river networks (random trees with every reach draining to an outlet)."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

__all__ = ["downstream_arrays", "networks"]


@st.composite
def downstream_arrays(draw, min_reaches: int = 1, max_reaches: int = 60) -> np.ndarray:
    """Positional downstream index of a random forest: reach i drains to a reach of a higher position
    (or is an outlet), then the positions are shuffled so row order carries no topology."""
    n = draw(st.integers(min_reaches, max_reaches))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    ds = np.full(n, -1, dtype=np.int64)
    for i in range(n - 1):
        if rng.random() < 0.9:
            ds[i] = rng.integers(i + 1, n)
    perm = rng.permutation(n)
    inverse = np.empty(n, dtype=np.int64)
    inverse[perm] = np.arange(n)
    shuffled = np.full(n, -1, dtype=np.int64)
    shuffled[inverse] = np.where(ds >= 0, inverse[np.maximum(ds, 0)], -1)
    return shuffled


@st.composite
def networks(draw, min_reaches: int = 1, max_reaches: int = 60):
    from ..network import from_arrays

    ds = draw(downstream_arrays(min_reaches, max_reaches))
    n = ds.size
    ids = np.arange(100, 100 + n, dtype=np.int64) * 7
    return from_arrays(ids, np.where(ds >= 0, ids[np.maximum(ds, 0)], -1), np.full(n, 1000.0))
