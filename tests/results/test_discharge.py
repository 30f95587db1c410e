"""Discharge: lookups, conversion, and wrapping routed output."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from thalweg.errors import InputError, NetworkError
from thalweg.network import from_arrays
from thalweg.results import Discharge
from thalweg.routing import route
from thalweg.runoff import Runoff

T0 = np.datetime64("2021-03-01T00:00", "ns")


def test_series_and_missing_ids(discharge):
    np.testing.assert_array_equal(discharge.series(30), [10, 30, 20, 50, 40])
    with pytest.raises(NetworkError, match=r"2 reach ids have no discharge: 99, 7") as err:
        discharge.index_of([10, 99, 7])
    assert err.value.ids == [99, 7]


def test_at_picks_the_step_ending_nearest(discharge):
    np.testing.assert_array_equal(discharge.at("2021-03-01T02:20"), discharge.values[:, 1])  # ends 02:00
    np.testing.assert_array_equal(discharge.at(np.datetime64("2021-03-01T05:00")), discharge.values[:, 4])
    np.testing.assert_array_equal(discharge.at("2021-03-01T00:10"), discharge.values[:, 0])  # inside step 1
    with pytest.raises(InputError, match=r"outside the routed period 2021-03-01T00:00:00(\.0+)? .. "
                                         r"2021-03-01T05:00:00(\.0+)?\."):
        discharge.at("2021-03-01T06:00")


def test_to_xarray(discharge):
    ds = discharge.to_xarray()
    assert ds["Q"].dims == ("reach", "time") and ds["Q"].attrs["units"] == "m3 s-1"
    np.testing.assert_array_equal(ds["reach"].values, [10, 20, 30])
    np.testing.assert_array_equal(ds["time"].values, discharge.time)
    assert ds.attrs["thalweg_time_convention"] == "end" and ds.attrs["scheme"] == "muskingum"


def test_from_routing_stamps_step_ends():
    net = from_arrays([1, 2], [2, -1], [1000.0, 1000.0])
    runoff = Runoff(np.ones((2, 4)), net.ids, T0 + np.arange(4) * np.timedelta64(1, "h"), 3600.0, source="r.nc")
    q = route(net, torch.as_tensor(runoff.values), {"k": 3600.0, "x": 0.2}, "muskingum", dt=runoff.dt)
    d = Discharge.from_routing(q[None], runoff, {"scheme": "muskingum"})
    np.testing.assert_array_equal(d.time, runoff.time + np.timedelta64(1, "h"))
    np.testing.assert_allclose(d.values, q.numpy())
    assert d.attrs == {"runoff": "r.nc", "scheme": "muskingum"} and d.values.dtype == np.float32
    with pytest.raises(AssertionError, match="does not match 2 reaches x 4 runoff steps"):
        Discharge.from_routing(np.ones((2, 3)), runoff)
    gauge = route(net, torch.as_tensor(runoff.values), {"k": 3600.0, "x": 0.2}, "muskingum", dt=runoff.dt, at=[2])
    g = Discharge.from_routing(gauge, runoff, ids=[2])
    np.testing.assert_array_equal(g.ids, [2])
    np.testing.assert_allclose(g.series(2), q.numpy()[1], rtol=1e-6)
