"""Flow statistics for planners, against independent oracles (scipy's GEV, lmoments3's L-moments)."""
from __future__ import annotations

import numpy as np
import pytest

from thalweg.errors import InputError
from thalweg.results import Discharge
from thalweg.results.frequency import (annual_maxima, exceedance, fit_gev, fit_gumbel, flow_statistics, lmoments,
                                       return_period_flows)

scipy_stats = pytest.importorskip("scipy.stats")
DAY = 86400.0


def _daily(values: np.ndarray, start: str = "1950-10-01") -> Discharge:
    """Discharge [N, T] at daily steps; the first step ends one day after ``start``."""
    t = values.shape[1]
    time = np.datetime64(start, "ns") + np.arange(1, t + 1) * np.timedelta64(1, "D")
    return Discharge(values.astype(np.float32), np.arange(values.shape[0]) + 100, time, DAY)


def _gev_run(n_reaches: int, n_years: int, loc: float, scale: float, shape: float, seed: int):
    """Daily flows over ``n_years`` water years whose annual maxima are GEV draws (scipy's c = ``shape``)."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("1950-10-01", "D")
    end = np.datetime64(f"{1950 + n_years}-10-01", "D")
    t = int((end - start).astype(np.int64))
    q = rng.uniform(1.0, 2.0, size=(n_reaches, t))
    draws = scipy_stats.genextreme.rvs(shape, loc=loc, scale=scale, size=(n_reaches, n_years), random_state=rng)
    days = (start + np.arange(t)).astype("datetime64[D]")
    wy = (days.astype("datetime64[Y]").astype(int) + 1970) + ((days.astype("datetime64[M]").astype(int) % 12 + 1)
                                                               >= 10)
    for j, year in enumerate(range(1951, 1951 + n_years)):
        cols = np.flatnonzero(wy == year)
        pick = rng.choice(cols, size=n_reaches)
        q[np.arange(n_reaches), pick] = draws[:, j]
    return _daily(q), draws


def test_lmoments_match_lmoments3(rng):
    lm = pytest.importorskip("lmoments3")
    x = rng.gamma(2.0, 30.0, size=(5, 40))
    l1, l2, t3 = lmoments(x)
    for i in range(5):
        ref = lm.lmom_ratios(x[i], nmom=3)
        np.testing.assert_allclose([l1[i], l2[i], t3[i]], ref, rtol=1e-10)


def test_gev_fit_matches_lmoments3_and_recovers_parameters(rng):
    lm = pytest.importorskip("lmoments3.distr")
    x = scipy_stats.genextreme.rvs(0.1, loc=100.0, scale=30.0, size=(3, 2000), random_state=1)
    loc, scale, k = fit_gev(x)
    for i in range(3):
        ref = lm.gev.lmom_fit(x[i])  # {'c', 'loc', 'scale'}, scipy's sign of the shape
        assert abs(k[i] - ref["c"]) < 2e-3
        assert abs(loc[i] - ref["loc"]) / ref["loc"] < 1e-3 and abs(scale[i] - ref["scale"]) / ref["scale"] < 5e-3
    # 2,000 maxima: the parameters themselves within sampling error
    np.testing.assert_allclose(loc, 100.0, rtol=0.03)
    np.testing.assert_allclose(scale, 30.0, rtol=0.06)
    np.testing.assert_allclose(k, 0.1, atol=0.05)


def test_gumbel_fit_recovers_parameters():
    x = scipy_stats.gumbel_r.rvs(loc=50.0, scale=12.0, size=(2, 5000), random_state=3)
    loc, scale = fit_gumbel(x)
    np.testing.assert_allclose(loc, 50.0, rtol=0.02)
    np.testing.assert_allclose(scale, 12.0, rtol=0.04)


def test_water_years_and_annual_maxima():
    # 3 water years (Oct 1950 .. Sep 1953) plus a partial year: the partial one is left out
    d, _ = _gev_run(2, 3, 100.0, 30.0, 0.1, seed=0)
    extra = _daily(np.ones((2, 40)), start="1953-10-01")
    both = Discharge(np.concatenate([d.values, extra.values], axis=1), d.ids,
                     np.concatenate([d.time, extra.time]), DAY)
    am = annual_maxima(both)
    assert am.years.tolist() == [1951, 1952, 1953]
    expected = np.stack([d.values[:, :365].max(1), d.values[:, 365:731].max(1), d.values[:, 731:1096].max(1)], 1)
    np.testing.assert_array_equal(am.values, expected)
    # a stamp at midnight on 1 October closes the last day of the previous water year
    assert (am.when[:, 0] <= np.datetime64("1951-10-01T00:00", "ns")).all()
    cal = annual_maxima(both, water_year_start=1)
    assert cal.years.tolist() == [1951, 1952]  # the run ends on 1953-11-09: 1950 and 1953 are partial


def test_return_period_flows_within_sampling_error():
    loc, scale, shape = 100.0, 30.0, 0.1
    d, _ = _gev_run(40, 60, loc, scale, shape, seed=5)
    periods = (2, 10, 100)
    rp = return_period_flows(annual_maxima(d), periods, n_boot=300, confidence=0.9,
                             rng=np.random.default_rng(1))
    truth = scipy_stats.genextreme.ppf(1 - 1 / np.asarray(periods, float), shape, loc=loc, scale=scale)
    # 60 years: the median fitted flow of 40 reaches close to the truth, and the 90 % intervals cover it
    np.testing.assert_allclose(np.median(rp["flow"], axis=0), truth, rtol=0.06)
    covered = (rp["lower"] <= truth) & (truth <= rp["upper"])
    assert covered.mean(axis=0).min() >= 0.75, covered.mean(axis=0)
    assert (rp["lower"] <= rp["flow"]).all() and (rp["flow"] <= rp["upper"]).all()


def test_same_seed_same_numbers():
    d, _ = _gev_run(3, 12, 100.0, 30.0, 0.1, seed=2)
    a = flow_statistics(d, n_boot=50, rng=np.random.default_rng(7))
    b = flow_statistics(d, n_boot=50, rng=np.random.default_rng(7))
    assert a.equals(b)


def test_flow_statistics_columns_and_low_flows():
    d, _ = _gev_run(2, 12, 100.0, 30.0, 0.1, seed=4)
    # reach 0: a known 10-day dry spell at 0.25 m3/s in water year 1955
    q = d.values.copy()
    q[0, 1500:1510] = 0.25
    d = Discharge(q, d.ids, d.time, DAY)
    s = flow_statistics(d, return_periods=(2, 100), n_boot=20)
    assert {"mean_annual", "q05", "q50", "q95", "mam7", "min7", "q2y", "q2y_lo", "q2y_hi", "q100y"} <= set(s.columns)
    assert s.index.name == "reach_id" and s.index.tolist() == d.ids.tolist()
    assert s.loc[100, "min7"] == pytest.approx(0.25, rel=1e-6)
    assert s.loc[100, "q100y"] > s.loc[100, "q2y"] > s.loc[100, "q50"]
    assert s.attrs["years"] == list(range(1951, 1963))


def test_too_short_a_run_is_refused_with_the_years():
    d, _ = _gev_run(2, 4, 100.0, 30.0, 0.1, seed=0)
    with pytest.raises(InputError, match=r"the run \(steps ending 1950-10-02 00:00 .. 1954-10-01 00:00\) has 4 "
                                         r"complete water years; a GEV fit needs at least 10") as err:
        flow_statistics(d)
    assert "distribution='gumbel'" in str(err.value)
    with pytest.raises(InputError, match=r"GUMBEL fit needs at least 5"):
        flow_statistics(d, distribution="gumbel")
    hourly = Discharge(np.ones((1, 48)), [1], np.datetime64("2000-01-01T01", "ns") + np.arange(48)
                       * np.timedelta64(1, "h"), 3600.0)
    with pytest.raises(InputError, match="has 0 complete water years"):
        flow_statistics(hourly, distribution="gumbel")


def test_auto_computes_what_a_short_run_allows_and_says_why_the_rest_is_skipped():
    d, _ = _gev_run(2, 4, 100.0, 30.0, 0.1, seed=0)  # 4 complete water years: annual statistics, no GEV fit
    s = flow_statistics(d, statistics="auto", n_boot=0)
    assert "mean_annual" in s and "mam7" in s and "q2y" not in s
    [skip] = s.attrs["skipped"]
    assert skip["kind"] == "frequency" and skip["columns"].startswith("q2y, q5y")
    assert "a GEV fit needs at least 10 complete water years (water years October to September)" in skip["reason"]
    assert skip["reason"].endswith("has 4")
    g = flow_statistics(d, statistics="auto", distribution="gumbel", n_boot=0)
    assert "a GUMBEL fit needs at least 5" in g.attrs["skipped"][0]["reason"]
    # what auto computes equals the full table's columns on a run long enough for both
    long, _ = _gev_run(2, 12, 100.0, 30.0, 0.1, seed=1)
    full, auto = flow_statistics(long, n_boot=0), flow_statistics(long, n_boot=0, statistics="auto")
    assert auto.attrs["skipped"] == [] and list(auto.columns) == list(full.columns)
    np.testing.assert_array_equal(auto.to_numpy(), full.to_numpy())
    dur = flow_statistics(d, statistics="duration")
    assert list(dur.columns) == ["mean", "max", "q05", "q50", "q95", "min7"] and dur.attrs["skipped"] == []
    q = d.values.astype(np.float64)
    np.testing.assert_allclose(dur["mean"], q.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(dur["max"], q.max(axis=1), rtol=1e-7)
    np.testing.assert_allclose(dur["q50"], np.median(q, axis=1), rtol=1e-12)
    with pytest.raises(InputError, match=r"or statistics='auto' for the statistics this run allows"):
        flow_statistics(d, statistics="all")


def test_bad_options_name_the_keyword():
    d, _ = _gev_run(1, 12, 100.0, 30.0, 0.1, seed=0)
    with pytest.raises(InputError, match="unknown distribution 'weibull'.*distribution='gev'"):
        flow_statistics(d, distribution="weibull")
    with pytest.raises(InputError, match="return periods must be years greater than 1"):
        flow_statistics(d, return_periods=(0.5, 10))
    with pytest.raises(InputError, match="month 1..12"):
        flow_statistics(d, water_year_start=13)


def test_exceedance_spells():
    q = np.array([[0, 5, 6, 0, 0, 7, 0], [1, 1, 1, 1, 1, 1, 1]], dtype=float)
    time = np.datetime64("2000-01-01T01", "ns") + np.arange(7) * np.timedelta64(1, "h")
    d = Discharge(q, [10, 20], time, 3600.0)
    e = exceedance(d, 4.0)
    assert e.loc[10, "exceeded"] and not e.loc[20, "exceeded"]
    assert e.loc[10, "events"] == 2 and e.loc[10, "duration_h"] == 3.0
    assert e.loc[10, "first"] == time[1] and e["first"].isna().loc[20]
    assert e.loc[10, "peak_excess"] == 3.0
    per_reach = exceedance(d, np.array([10.0, 0.5]))
    assert not per_reach.loc[10, "exceeded"] and per_reach.loc[20, "duration_h"] == 7.0
    with pytest.raises(InputError, match="threshold has 3 values; the discharge has 2 reaches"):
        exceedance(d, np.ones(3))
