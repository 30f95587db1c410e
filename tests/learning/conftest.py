"""A synthetic calibration case: a single basin, nested gauges, and 'observations' routed with known factors."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from thalweg.learning.calibrate import gauge_zones
from thalweg.network import RiverNetwork, scheidegger_network
from thalweg.params import geoglows_muskingum
from thalweg.routing import route

DT = 3600.0
STEPS = 400
START = np.datetime64("2020-01-01T00:00:00", "ns")
TRUE_FACTORS = (1.8, 0.6, 1.3)  # K multiplier of the zone of each gauge, outlet first


@dataclasses.dataclass
class Case:
    network: RiverNetwork
    runoff: np.ndarray  # [N, T] m3/s
    prior: dict  # GEOGloWS k [N], x
    gauges: np.ndarray  # positions [G], outlet first, each nested in the one before
    zones: np.ndarray  # zone of each reach (index into gauges)
    k_true: np.ndarray  # [N] s

    @property
    def gauge_ids(self) -> np.ndarray:
        """Reach ids [G] of the gauges (what calibrate's gauge_reaches takes)."""
        return self.network.ids[self.gauges]

    def observed(self, k=None) -> np.ndarray:
        """Discharge [G, T] at the gauges routed with ``k`` (default the true k)."""
        k = self.k_true if k is None else k
        ids = self.network.ids[self.gauges]
        return route(self.network, self.runoff, {"k": k, "x": 0.25}, "muskingum", dt=DT, at=ids,
                     engine="exact").numpy().astype(np.float64)


def storm_runoff(net: RiverNetwork, steps: int = STEPS, seed: int = 4) -> np.ndarray:
    """Runoff [N, T] m3/s: gamma noise and three storms of different sizes moving over the basin."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps)
    values = rng.gamma(2.0, 0.05, (net.n_reaches, steps))
    for centre, width, height in ((0.2, 0.03, 4.0), (0.5, 0.06, 2.0), (0.75, 0.02, 5.0)):
        pulse = height * np.exp(-0.5 * ((t - centre * steps) / (width * steps)) ** 2)
        values += pulse * rng.uniform(0.1, 1.0, (net.n_reaches, 1))
    return values.astype(np.float32)


def nested_gauges(net: RiverNetwork) -> np.ndarray:
    """Outlet, the largest reach draining 60..200 reaches, and the largest inside it draining 25..60."""
    nup = net.n_upstream
    outlet = int(net.outlets[0])
    inner = np.flatnonzero((nup >= 60) & (nup <= 200))
    second = int(inner[np.argmax(nup[inner])])
    # reaches upstream of the second gauge: those whose zone (with the two gauges) is the second's
    zones2, _ = gauge_zones(net, [outlet, second])
    above = np.flatnonzero((zones2 == 1) & (nup >= 25) & (nup <= 60))
    third = int(above[np.argmax(nup[above])])
    return np.array([outlet, second, third])


@pytest.fixture(scope="session")
def case() -> Case:
    net = scheidegger_network(300, seed=5, single_basin=True)
    gauges = nested_gauges(net)
    zones, _ = gauge_zones(net, gauges)
    prior = geoglows_muskingum(net)
    k_true = prior["k"] * np.asarray(TRUE_FACTORS)[zones]
    return Case(net, storm_runoff(net), prior, gauges, zones, k_true)
