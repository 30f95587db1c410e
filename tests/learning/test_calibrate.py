"""Calibration by gradient descent recovers known travel-time factors on a synthetic basin."""
from __future__ import annotations

import numpy as np
import pytest

from thalweg import calibrate
from thalweg.errors import InputError
from thalweg.learning.calibrate import default_calibrated, gauge_zones
from thalweg.network import from_arrays
from thalweg.errors import Cancelled

from .conftest import DT, TRUE_FACTORS

pytestmark = pytest.mark.filterwarnings("ignore::thalweg.errors.ThalwegWarning")


def test_zones_are_the_sub_basins_between_gauges():
    # 1 -> 3 -> 5 <- 4 <- 2 ; 6 -> 7 (no gauge)
    ids = np.array([1, 2, 3, 4, 5, 6, 7])
    net = from_arrays(ids, np.array([3, 4, 5, 5, -1, 7, -1]), np.full(7, 1000.0))
    zones, positions = gauge_zones(net, net.index_of([5, 3]))
    by_id = dict(zip(ids.tolist(), zones.tolist()))
    assert by_id == {1: 1, 2: 0, 3: 1, 4: 0, 5: 0, 6: -1, 7: -1}
    assert net.ids[positions].tolist() == [5, 3]


def test_nested_gauges_recover_per_zone_factors(case):
    obs = case.observed()
    res = calibrate(case.network, case.runoff, case.prior, "muskingum", dt=DT, gauge_reaches=case.gauge_ids,
                    observed=obs, iterations=300)
    np.testing.assert_array_equal(res.zones, case.zones)
    assert res.zone_gauges.tolist() == case.network.ids[case.gauges].tolist()
    np.testing.assert_allclose(res.multipliers["k"], TRUE_FACTORS, rtol=0.03)
    for reach in case.network.ids[case.gauges].tolist():
        assert res.metrics_before[reach]["nse"] < 0.95, res.metrics_before
        assert res.metrics_after[reach]["nse"] > 0.999, res.metrics_after
    # every reach is calibrated here (the outlet is gauged); k follows prior x factor, x stays at its prior
    np.testing.assert_allclose(res.params["k"], case.k_true, rtol=0.03)
    np.testing.assert_array_equal(res.params["x"], 0.25)
    assert res.calibrated == ["k"] and res.iterations == len(res.history) <= 300
    losses = [h["loss"] for h in res.history]
    assert res.loss == min(losses) and losses[0] > 10 * res.loss
    assert res.converged == (res.iterations < 300)


def test_global_zone_recovers_one_factor(case):
    obs = case.observed(case.prior["k"] * 1.5)
    res = calibrate(case.network, case.runoff, case.prior, "muskingum", dt=DT, gauge_reaches=case.gauge_ids,
                    observed=obs, zones="global", iterations=200, learning_rate=0.05)
    assert res.multipliers["k"].shape == (1,) and res.zone_gauges.tolist() == [-1]
    assert (res.zones == 0).all()
    assert abs(res.multipliers["k"][0] - 1.5) < 0.03 * 1.5
    assert min(m["nse"] for m in res.metrics_after.values()) > 0.999


def test_ungauged_reaches_keep_their_prior(case):
    # gauge only the innermost sub-basin: every other reach has no gauge downstream
    inner = case.gauge_ids[2:]
    res = calibrate(case.network, case.runoff, case.prior, "muskingum", dt=DT, gauge_reaches=inner,
                    observed=case.observed()[2:], iterations=150)
    free = res.zones < 0
    assert free.sum() == (case.zones != 2).sum()
    np.testing.assert_array_equal(res.params["k"][free], case.prior["k"][free])
    assert abs(res.multipliers["k"][0] - TRUE_FACTORS[2]) < 0.03 * TRUE_FACTORS[2]


def test_bounds_clamp_the_calibrated_values(case):
    # observations routed with k at its upper bound (30 days) everywhere: the multiplier grows until the
    # clamp holds k at the bound, never beyond it
    upper = 30 * 86400.0
    res = calibrate(case.network, case.runoff, case.prior, "muskingum", dt=DT, gauge_reaches=case.gauge_ids[:1],
                    observed=case.observed(np.full(case.network.n_reaches, upper))[:1], zones="global",
                    iterations=80, learning_rate=0.5)
    k = res.params["k"]
    at_bound = np.isclose(k, upper, rtol=1e-12, atol=0)
    assert k.max() <= upper and at_bound.mean() > 0.5, (res.multipliers, np.percentile(k, [0, 50, 100]))
    assert res.multipliers["k"][0] > upper / case.prior["k"].max()


def test_should_stop_cancels(case):
    calls = []

    def stop():
        calls.append(1)
        return len(calls) > 3

    seen = []
    with pytest.raises(Cancelled, match="calibration iteration 4"):
        calibrate(case.network, case.runoff, case.prior, "muskingum", dt=DT, gauge_reaches=case.gauge_ids,
                  observed=case.observed(), iterations=50, should_stop=stop,
                  progress=lambda f, m: seen.append((f, m)))
    assert [round(f, 3) for f, _ in seen] == [0.02, 0.04, 0.06] and "1 - NSE" in seen[0][1]


def test_too_few_observations_names_the_gauge(case):
    obs = case.observed()
    obs[1, :] = np.nan
    obs[1, [3, 20, 50, 60, 70, 120, 200, 250, 300, 399]] = 1.0 + np.arange(10)  # 10 valid, 5 after step 100
    kwargs = {"gauge_reaches": case.gauge_ids, "observed": obs, "gauge_names": ["A", "B", "C"], "iterations": 2}
    calibrate(case.network, case.runoff, case.prior, "muskingum", dt=DT, **kwargs)  # 10 are enough
    with pytest.raises(InputError, match=r"gauge B \(reach \d+\) has 5 valid observations after the warm-up "
                                         r"of 100 steps; calibration needs at least 10") as info:
        calibrate(case.network, case.runoff, case.prior, "muskingum", dt=DT, warmup=100, **kwargs)
    assert info.value.ids == ["B"]
    obs = case.observed()
    obs[0, 5:] = np.nan
    reach = case.network.ids[case.gauges[0]]
    with pytest.raises(InputError, match=rf"the gauge on reach {reach} has 5 valid") as info:
        calibrate(case.network, case.runoff, case.prior, "muskingum", dt=DT, gauge_reaches=case.gauge_ids,
                  observed=obs)
    assert info.value.ids == [reach]


@pytest.mark.parametrize("kwargs, message", [
    ({"gauge_reaches": []}, "at least one gauge"),
    ({"observed": np.ones((2, 10))}, r"observed has shape \(2, 10\); expected \[3 gauges, 400 steps\]"),
    ({"parameters": ["k", "celerity"]}, "has no parameter celerity to calibrate"),
    ({"zones": "basins"}, "zones is 'basins'"),
    ({"warmup": 400}, "warmup must be"),
])
def test_invalid_inputs(case, kwargs, message):
    args = {"gauge_reaches": case.gauge_ids, "observed": case.observed()} | kwargs
    with pytest.raises(InputError, match=message):
        calibrate(case.network, case.runoff, case.prior, "muskingum", dt=DT, **args)


def test_constant_observations_are_refused(case):
    obs = case.observed()
    obs[2] = 3.0
    with pytest.raises(InputError, match="constant observations"):
        calibrate(case.network, case.runoff, case.prior, "muskingum", dt=DT, gauge_reaches=case.gauge_ids,
                  observed=obs)


def test_default_calibrated_parameters():
    assert default_calibrated("muskingum") == ["k"]
    assert default_calibrated("nash_cascade") == ["tau"]
    assert default_calibrated("hayami") == ["celerity"]
    assert default_calibrated("pure_lag") == ["lag"]


def test_gauge_reaches_are_reach_ids_like_route_at(case):
    """calibrate(gauge_reaches=) takes reach ids, as route(at=) does; positions that are not ids are refused."""
    from thalweg.errors import NetworkError

    positions = case.gauges
    assert not np.isin(positions, case.network.ids).all()  # these positions are not all ids of this network
    with pytest.raises(NetworkError, match="gauge reach ids"):
        calibrate(case.network, case.runoff, case.prior, "muskingum", dt=DT, gauge_reaches=positions,
                  observed=case.observed(), iterations=1)
    res = calibrate(case.network, case.runoff, case.prior, "muskingum", dt=DT, gauge_reaches=case.gauge_ids,
                    observed=case.observed(), iterations=1)
    assert sorted(res.metrics_before) == sorted(case.gauge_ids.tolist())


def test_all_nan_observations_say_so(case, tmp_path):
    """Issue 8 finding 12: all-NaN observations were reported as 'no observation falls on the routed time steps'."""
    from thalweg.learning import read_gauges

    ids = case.gauge_ids
    (tmp_path / "gauges.csv").write_text("gauge_id,reach_id\n" + "".join(f"G{i},{r}\n" for i, r in enumerate(ids)))
    rows = "".join(f"2020-01-01T{h:02d}:00:00," + ",".join(["", "NaN", "-999"][: len(ids)]) + "\n" for h in range(5))
    (tmp_path / "obs.csv").write_text("time," + ",".join(f"G{i}" for i in range(len(ids))) + "\n" + rows)
    with pytest.raises(InputError, match=r"the observations are all missing: every value of the 3 gauge column\(s\) "
                                         r"\(G0, G1, G2\) over 5 rows is empty, not a number, or negative"):
        read_gauges(tmp_path / "gauges.csv", case.network, observed=tmp_path / "obs.csv")


def test_learning_does_not_import_the_workflow():
    """learning -> workflow -> learning was a cycle: learning now takes its priors and checks from thalweg.params."""
    import subprocess
    import sys

    code = "import sys, thalweg.learning; assert 'thalweg.workflow' not in sys.modules, 'workflow imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
