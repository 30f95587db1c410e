"""Prior Muskingum parameters from reach attributes: the GEOGloWS v2 rule.

velocity = max(0.25, exp(0.16842 ln(A) - 4.68)) m/s with A the upstream drainage area in m^2;
k = length / velocity (s); x = 0.25.
"""
from __future__ import annotations

import numpy as np

from ..errors import NetworkError, format_ids
from ..network import RiverNetwork

__all__ = ["geoglows_velocity", "geoglows_muskingum"]


def geoglows_velocity(area_m2: np.ndarray) -> np.ndarray:
    area = np.asarray(area_m2, dtype=np.float64)
    return np.maximum(0.25, np.exp(0.16842 * np.log(area) - 4.68))


def geoglows_muskingum(network: RiverNetwork, x: float = 0.25) -> dict[str, np.ndarray]:
    """{'k': s, 'x': 1} per reach. Needs drainage area on every reach."""
    bad = ~(np.isfinite(network.area) & (network.area > 0))
    if bad.any():
        raise NetworkError(
            f"{int(bad.sum()):,} reaches have no drainage area, which the GEOGloWS rule for k needs: "
            f"{format_ids(network.ids[bad])}.", path=network.source.path, field=network.source.field("area"),
            ids=network.ids[bad].tolist(),
            hint="Map an area field, give a flow-accumulation raster (--area-raster), or give k with --k/--k-field.")
    k = network.length / geoglows_velocity(network.area)
    return {"k": k, "x": np.full(network.n_reaches, float(x))}
