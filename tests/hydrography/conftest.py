"""Fixtures of the hydrography tests: one small seeded network with real line geometry, built once."""
from __future__ import annotations

import numpy as np
import pytest

from thalweg.network import RiverNetwork, scheidegger_network


def downstream_ids(net: RiverNetwork) -> np.ndarray:
    """External downstream id of every reach, -1 at outlets."""
    return np.where(net.downstream >= 0, net.ids[np.maximum(net.downstream, 0)], -1)


def assert_same_topology(read: RiverNetwork, ids: np.ndarray, ds_ids: np.ndarray) -> np.ndarray:
    """``read`` holds exactly ``ids`` with downstream ids ``ds_ids`` (-1 or any value <= 0 = outlet).

    Returns the positions of ``ids`` in ``read``, to compare other arrays.
    """
    assert read.n_reaches == len(ids)
    order = read.index_of(ids)
    got = downstream_ids(read)[order]
    np.testing.assert_array_equal(got, np.where(np.asarray(ds_ids) > 0, ds_ids, -1))
    return order


@pytest.fixture(scope="session")
def net() -> RiverNetwork:
    """About 60 reaches in a few basins, lines in EPSG:3857 through 1 km cells."""
    network = scheidegger_network(60, seed=3, with_geometry=True)
    assert network.outlets.size > 1 and network.n_levels > 3
    return network


@pytest.fixture(scope="session")
def ds_ids(net) -> np.ndarray:
    return downstream_ids(net)


@pytest.fixture(scope="session")
def same_topology():
    """The assertion :func:`assert_same_topology` (a fixture: test folders are not packages)."""
    return assert_same_topology
