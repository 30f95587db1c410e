"""Scenario comparison: what changes, and the refusals of runs that cannot be compared."""
from __future__ import annotations

import numpy as np
import pytest

from thalweg.errors import InputError
from thalweg.params import geoglows_muskingum
from thalweg.results import Discharge
from thalweg.results.compare import compare, most_changed
from thalweg.routing import route

DT = 3600.0


def _run(net, runoff: np.ndarray) -> Discharge:
    q = route(net, runoff, geoglows_muskingum(net), "muskingum_substep", dt=DT).numpy()
    time = np.datetime64("2001-01-01T01", "ns") + np.arange(runoff.shape[1]) * np.timedelta64(1, "h")
    return Discharge(q, net.ids, time, DT)


def _downstream_of(net, reach: int) -> set[int]:
    out, r = set(), reach
    while r >= 0:
        out.add(r)
        r = int(net.downstream[r])
    return out


def test_doubling_runoff_of_one_reach_changes_exactly_the_reaches_below_it(small_network, rng):
    net = small_network
    runoff = rng.gamma(2.0, 1.0, size=(net.n_reaches, 240)).astype(np.float32)
    # a reach with something below it and something beside it
    reach = int(np.flatnonzero(net.downstream >= 0)[7])
    scenario = runoff.copy()
    scenario[reach] *= 2.0
    base, scen = _run(net, runoff), _run(net, scenario)
    for statistic in ("mean", "max"):
        frame = compare(base, scen, statistic=statistic)
        changed = set(np.flatnonzero(frame["difference"].to_numpy() != 0))
        assert changed == _downstream_of(net, reach), statistic
        assert (frame["difference"].to_numpy()[sorted(changed)] > 0).all()
    frame = compare(base, scen, statistic="mean")
    # linear routing: the mean of the changed reach grows by the mean of the added runoff
    np.testing.assert_allclose(frame.iloc[reach]["difference"], runoff[reach][:-48].mean(), rtol=0.2)
    top = most_changed(frame, n=3)
    assert top.index[0] == net.ids[reach]
    assert frame.attrs["statistic"] == "mean"


def test_reach_order_does_not_matter(small_network, rng):
    net = small_network
    runoff = rng.gamma(2.0, 1.0, size=(net.n_reaches, 48)).astype(np.float32)
    base = _run(net, runoff)
    perm = rng.permutation(net.n_reaches)
    shuffled = Discharge(base.values[perm], base.ids[perm], base.time, base.dt)
    frame = compare(base, shuffled)
    assert (frame["difference"] == 0).all() and frame.index.tolist() == base.ids.tolist()


def test_runs_on_different_networks_or_periods_are_refused(small_network, rng):
    net = small_network
    runoff = rng.gamma(2.0, 1.0, size=(net.n_reaches, 48)).astype(np.float32)
    base = _run(net, runoff)
    fewer = Discharge(base.values[:-2], base.ids[:-2], base.time, base.dt)
    with pytest.raises(InputError, match=r"different networks: 2 reaches only in a.nc") as err:
        compare(base, fewer, names=("a.nc", "b.nc"))
    assert sorted(err.value.ids) == sorted(base.ids[-2:].tolist())
    later = Discharge(base.values, base.ids, base.time + np.timedelta64(1, "D"), base.dt)
    with pytest.raises(InputError, match="different periods"):
        compare(base, later)
    shorter = Discharge(base.values[:, :24], base.ids, base.time[:24], base.dt)
    with pytest.raises(InputError, match=r"different periods.*48 steps.*24 steps"):
        compare(base, shorter)
    with pytest.raises(InputError, match="unknown statistic 'median'.*q100y"):
        compare(base, base, statistic="median")
