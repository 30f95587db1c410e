"""Fixtures for results: a small Discharge with known numbers."""
from __future__ import annotations

import numpy as np
import pytest

from thalweg.results import Discharge

T0 = np.datetime64("2021-03-01T00:00", "ns")
HOUR = np.timedelta64(3600, "s")


@pytest.fixture
def discharge() -> Discharge:
    """Reaches 10, 20, 30 over 5 hourly steps ending 01:00 .. 05:00."""
    values = np.array([[1.0, 3.0, 2.0, 5.0, 4.0],
                       [0.5, 0.25, 0.125, 0.0625, 0.03125],
                       [10.0, 30.0, 20.0, 50.0, 40.0]], dtype=np.float32)
    return Discharge(values, np.array([10, 20, 30]), T0 + HOUR * np.arange(1, 6), 3600.0,
                     {"scheme": "muskingum", "engine": "exact", "network": "net.gpkg", "n_levels": 2,
                      "params": {"x": 0.25}})
