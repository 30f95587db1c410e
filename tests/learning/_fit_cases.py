"""Synthetic cases for the fit tests: runoff with storms, and a 'true' parameter rule of reach attributes."""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from thalweg.network import RiverNetwork, from_arrays, scheidegger_network
from thalweg.routing import route


def storms(net: RiverNetwork, steps: int, seed: int = 0, n_storms: int = 5) -> np.ndarray:
    """Runoff [N, T] m3/s: gamma noise plus storms of random size, timing and spatial spread."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps)
    area_km2 = np.maximum(net.catchment_area if net.catchment_area is not None else net.area, 1e6) / 1e6
    values = rng.gamma(2.0, 0.02, (net.n_reaches, steps))
    for centre in np.sort(rng.uniform(0.05, 0.8, n_storms)) * steps:
        width = rng.uniform(0.01, 0.04) * steps
        values += rng.uniform(0.5, 3.0) * np.exp(-0.5 * ((t - centre) / width) ** 2) * \
            rng.uniform(0.1, 1.0, (net.n_reaches, 1))
    return values * area_km2[:, None] * 0.05


def true_velocity(area: np.ndarray) -> np.ndarray:
    """The 'true' wave velocity, m/s: 0.3 (A / 1 km2)^0.2, unlike the GEOGloWS prior's."""
    return 0.3 * (area / 1e6) ** 0.2


def true_k(net: RiverNetwork) -> np.ndarray:
    """k = length / true_velocity(area), s."""
    return net.length / true_velocity(net.area)


def with_slope(net: RiverNetwork, seed: int = 0) -> RiverNetwork:
    """The network with a synthetic slope field: 0.02 (A / 1 km2)^-0.35 m/m times log-normal noise (sd 0.5)."""
    rng = np.random.default_rng(seed)
    slope = 0.02 * (net.area / 1e6) ** -0.35 * np.exp(rng.normal(0.0, 0.5, net.n_reaches))
    ds_ids = np.where(net.downstream >= 0, net.ids[np.maximum(net.downstream, 0)], -1)
    return from_arrays(net.ids, ds_ids, net.length, net.area, slope=slope, catchment_area=net.catchment_area,
                       source=net.source)


def true_x(net: RiverNetwork) -> np.ndarray:
    """x = 0.05 + 0.4 sigmoid(2 (log10 slope + 2.5)): steep reaches attenuate less."""
    return 0.05 + 0.4 / (1.0 + np.exp(-2.0 * (np.log10(net.slope) + 2.5)))


def observe(net: RiverNetwork, runoff: np.ndarray, params: dict, gauges, dt: float,
            scheme: str = "muskingum") -> np.ndarray:
    """Discharge [G, T] at the gauges' reach ids, routed in float64."""
    return route(net, runoff, params, scheme, dt=dt, at=list(gauges), dtype=torch.float64,
                 engine="exact").cpu().numpy()


@dataclasses.dataclass
class Basin:
    network: RiverNetwork
    runoff: np.ndarray


def basin(n: int, seed: int, steps: int, *, cell_size: float = 1000.0, single: bool = True) -> Basin:
    net = scheidegger_network(n, seed=seed, single_basin=single, cell_size=cell_size)
    return Basin(net, storms(net, steps, seed=seed))
