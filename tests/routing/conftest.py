"""Fixtures of the routing tests."""
from __future__ import annotations

import pytest
from thalweg.network import scheidegger_network


@pytest.fixture(scope="session")
def mid_basin():
    """One basin of a few hundred reaches (engines whose CPU path is slow on the deep network)."""
    net = scheidegger_network(300, seed=5, single_basin=True)
    assert net.outlets.size == 1 and net.n_reaches >= 300
    return net
