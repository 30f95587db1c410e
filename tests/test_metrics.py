"""Metrics against hand-computed values, NaN masking, batching, torch and gradients."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from thalweg import metrics as m

OBS = np.array([1.0, 2.0, 3.0, 4.0])
SIM = np.array([2.0, 2.0, 3.0, 5.0])
# by hand: mean o 2.5, sum (o - 2.5)^2 = 5, errors 1 0 0 1; mean s 3, sum (s - 3)^2 = 6, cov sum = 5
R = 5 / math.sqrt(30)
ALPHA, BETA = math.sqrt(6 / 5), 3 / 2.5
HAND = {"nse": 1 - 2 / 5, "pbias": -100 * 2 / 10, "r2": 25 / 30,
        "kge": 1 - math.sqrt((R - 1) ** 2 + (ALPHA - 1) ** 2 + (BETA - 1) ** 2),
        "nse_star": (2 / 4) / (math.sqrt(5 / 4) + 0.1) ** 2, "fhv": 100 * (5 - 4) / 4}


@pytest.mark.parametrize("name", sorted(HAND))
def test_hand_computed_values(name):
    assert float(m.METRICS[name](SIM, OBS)) == pytest.approx(HAND[name], rel=1e-12)


def test_perfect_simulation():
    obs = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0])
    got = m.all_metrics(obs.copy(), obs)
    assert got["nse"] == 1.0 and got["kge"] == pytest.approx(1.0) and got["r2"] == pytest.approx(1.0)
    assert got["pbias"] == 0.0 and got["fhv"] == 0.0 and got["flv"] == 0.0 and got["nse_star"] == 0.0
    assert got["n"] == 8


def test_mean_of_observations_scores_zero_nse_and_scaling_shows_in_kge():
    obs = np.array([1.0, 2.0, 3.0, 4.0])
    assert float(m.nse(np.full(4, 2.5), obs)) == pytest.approx(0.0)
    # s = 2 o: r = 1, alpha = 2, beta = 2
    assert float(m.kge(2 * obs, obs)) == pytest.approx(1 - math.sqrt(2))


def test_flv_in_log_space():
    obs = np.arange(10.0, 0.0, -1.0)  # lowest 30 %: 3, 2, 1
    sim = np.array([10, 9, 8, 7, 6, 5, 4, 4, 2, 1.0])  # lowest 30 %: 4, 2, 1
    qol, qsl = math.log(6), math.log(8)  # sums of log q - log q_min
    assert float(m.flv(sim, obs)) == pytest.approx(-100 * (qsl - qol) / (qol + 1e-6), rel=1e-9)
    # FLV ignores a constant factor (log space, minus the minimum)
    assert float(m.flv(3 * obs, obs)) == pytest.approx(0.0, abs=1e-9)


def test_nan_observations_are_masked():
    obs = np.array([1.0, np.nan, 2.0, 3.0, np.nan, 4.0])
    sim = np.array([2.0, 99.0, 2.0, 3.0, -5.0, 5.0])
    for name, value in HAND.items():
        assert float(m.METRICS[name](sim, obs)) == pytest.approx(value, rel=1e-12), name
    assert m.all_metrics(sim, obs)["n"] == 4
    assert math.isnan(float(m.nse(sim, np.full(6, np.nan))))


def test_constant_observations_give_nan_not_infinity():
    assert math.isnan(float(m.nse(np.array([1.0, 2.0]), np.array([3.0, 3.0]))))
    assert math.isnan(float(m.kge(np.array([1.0, 2.0]), np.array([3.0, 3.0]))))


def test_reduces_over_the_last_axis():
    sim = np.stack([SIM, OBS, 2 * OBS])
    obs = np.stack([OBS, OBS, OBS])
    got = m.all_metrics(sim, obs)
    np.testing.assert_allclose(got["nse"], [HAND["nse"], 1.0, 1 - 30 / 5])
    np.testing.assert_allclose(got["pbias"], [HAND["pbias"], 0.0, -100.0])
    assert got["fhv"].shape == (3,) and got["n"].tolist() == [4, 4, 4]
    assert m.flv(sim[None], obs[None]).shape == (1, 3)


def test_torch_matches_numpy_and_gradients_skip_masked_steps():
    obs = np.array([1.0, np.nan, 2.0, 3.0, 4.0])
    sim = np.array([2.0, 7.0, 2.0, 3.0, 5.0])
    s = torch.tensor(sim, requires_grad=True)
    for name, fn in m.METRICS.items():
        value = fn(s, torch.tensor(obs))
        assert isinstance(value, torch.Tensor), name
        assert float(value.detach()) == pytest.approx(float(fn(sim, obs)), rel=1e-12), name
    loss = m.nse(s, torch.tensor(obs))
    loss.backward()
    # d NSE / d s_i = -2 (s_i - o_i) / sum (o - mean o)^2, zero where o is NaN
    expected = np.array([-2 * 1 / 5, 0.0, 0.0, 0.0, -2 * 1 / 5])
    np.testing.assert_allclose(s.grad.numpy(), expected, rtol=1e-12)
    assert torch.isfinite(s.grad).all()


def test_nse_star_with_given_std_and_sum_reduction():
    std = np.array([2.0])
    value = m.nse_star(SIM[None], OBS[None], std, reduction="sum")
    assert float(value[0]) == pytest.approx(2 / (2.0 + 0.1) ** 2)
    t = m.nse_star(torch.tensor(SIM[None]), torch.tensor(OBS[None]), std)
    assert float(t[0]) == pytest.approx(0.5 / 2.1 ** 2)
    with pytest.raises(ValueError, match="reduction"):
        m.nse_star(SIM, OBS, reduction="max")


def test_against_hydroeval():
    """NSE, KGE (and its r, alpha, beta) and percent bias equal hydroeval's, the common convention (its pbias:
    positive when the simulation is too dry), on random series; r2 is its r squared."""
    he = pytest.importorskip("hydroeval")
    rng = np.random.default_rng(7)
    for _ in range(20):
        obs = rng.gamma(2.0, 3.0, 200)
        sim = obs * rng.uniform(0.5, 1.5) + rng.normal(0.0, 1.0, 200)
        assert float(m.nse(sim, obs)) == pytest.approx(float(np.ravel(he.nse(sim, obs))[0]), rel=1e-10)
        kge, r, _alpha, _beta = np.ravel(he.kge(sim, obs))
        assert float(m.kge(sim, obs)) == pytest.approx(kge, rel=1e-10)
        assert float(m.r2(sim, obs)) == pytest.approx(r ** 2, rel=1e-10)
        assert float(m.pbias(sim, obs)) == pytest.approx(float(np.ravel(he.pbias(sim, obs))[0]), rel=1e-10)
    # the sign, said in words: too little water is a positive bias
    assert float(m.pbias(np.full(4, 1.0), np.full(4, 2.0))) == pytest.approx(50.0)


@pytest.mark.parametrize("name", ["nse", "kge", "r2", "pbias", "nse_star"])
def test_torch_gradients_are_finite_and_match_finite_differences(name):
    """Every ratio metric's gradient through sim, float64, against central differences of the numpy metric
    (KGE's denominators depend on sim: a NaN written as b * nan in an untaken branch once made them all NaN)."""
    rng = np.random.default_rng(3)
    obs = rng.gamma(2.0, 1.0, (2, 25))
    obs[1, [2, 7]] = np.nan
    sim0 = obs * rng.uniform(0.6, 1.4, obs.shape)
    sim0[np.isnan(sim0)] = 1.0
    fn = m.METRICS[name]
    s = torch.tensor(sim0, requires_grad=True)
    fn(s, torch.tensor(obs)).sum().backward()
    assert torch.isfinite(s.grad).all(), name
    h, numeric = 1e-6, np.zeros_like(sim0)
    for idx in np.ndindex(sim0.shape):
        up, down = sim0.copy(), sim0.copy()
        up[idx] += h
        down[idx] -= h
        numeric[idx] = (np.sum(fn(up, obs)) - np.sum(fn(down, obs))) / (2 * h)
    np.testing.assert_allclose(s.grad.numpy(), numeric, rtol=1e-5, atol=1e-7)
    assert (s.grad.numpy()[1, [2, 7]] == 0).all()  # masked steps get no gradient


def test_zero_denominator_gives_nan_value_and_no_nan_gradient_elsewhere():
    """Constant observations in one series: its KGE is NaN, but the other series' gradient stays finite."""
    obs = torch.tensor([[3.0, 3.0, 3.0], [1.0, 2.0, 4.0]], dtype=torch.float64)
    s = torch.tensor([[1.0, 2.0, 3.0], [1.5, 2.0, 3.0]], dtype=torch.float64, requires_grad=True)
    value = m.kge(s, obs)
    assert math.isnan(float(value[0])) and math.isfinite(float(value[1]))
    value[1].backward()
    assert torch.isfinite(s.grad).all() and (s.grad[0] == 0).all()
