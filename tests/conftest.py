"""Shared fixtures: seeded synthetic networks built once per run; nothing is downloaded."""
from __future__ import annotations

import numpy as np
import pytest

from thalweg.network import scheidegger_network


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def deep_network():
    """One basin of >= 2,000 reaches with realistic depth (Scheidegger lattice)."""
    net = scheidegger_network(2500, seed=7, single_basin=True)
    assert net.n_reaches >= 2000 and net.outlets.size == 1
    return net


@pytest.fixture(scope="session")
def small_network():
    """A few hundred reaches in several basins."""
    return scheidegger_network(300, seed=11)
