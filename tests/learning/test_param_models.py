"""Parameter models: every kind gives every parameter of every scheme, within bounds, starting at the prior."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from thalweg.errors import InputError
from thalweg.irf import SCHEMES
from thalweg.learning.calibrate import gauge_zones
from thalweg.network import from_arrays, scheidegger_network
from thalweg.params.model_file import load_model, save_model
from thalweg.params.models import Bound, PerReachModel, build_model, prior_params

LEARNING = ("zones", "per-reach", "regression")


@pytest.fixture(scope="module")
def net():
    return scheidegger_network(40, seed=2, single_basin=True)


def _gauges(net):
    return [int(net.ids[net.outlets[0]]), int(net.ids[np.argsort(net.n_upstream)[-6]])]


def _push(model, size: float) -> None:
    """Move every weight of the model far from its start (offsets of order ``size`` on the logit scale)."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(size * torch.randn(p.shape, generator=gen, dtype=p.dtype))


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
@pytest.mark.parametrize("kind", LEARNING)
def test_starts_at_the_prior_and_stays_in_bounds(net, scheme, kind):
    model = build_model(kind, net, scheme, gauges=_gauges(net), learn=list(SCHEMES[scheme].parameter_names))
    prior = prior_params(net, scheme)
    start = model.table()
    assert set(start) == set(SCHEMES[scheme].parameter_names)
    for name, values in start.items():
        assert values.shape == (net.n_reaches,)
        np.testing.assert_allclose(values, prior[name], rtol=1e-12, atol=0, err_msg=name)
    spec = {p.name: p for p in SCHEMES[scheme].parameters}
    for size in (3.0, 300.0):  # moderate, then saturating offsets
        _push(model, size)
        values = model()
        for name, v in values.items():
            assert torch.isfinite(v).all()
            assert (v >= spec[name].lower).all() and (v <= spec[name].upper).all(), (name, size)
        if size == 3.0:
            moved = [n for n in spec if not torch.allclose(values[n], torch.as_tensor(prior[n]))]
            assert sorted(moved) == sorted(model.learned)


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
@pytest.mark.parametrize("kind", LEARNING)
def test_gradients_reach_every_weight(net, scheme, kind):
    model = build_model(kind, net, scheme, gauges=_gauges(net))
    _push(model, 0.3)  # off the regression's zero last layer, so that every layer gets a gradient
    total = sum(v.sum() / v.detach().abs().mean() for v in model().values())
    total.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_muskingum_x_bounded_to_half_even_at_saturation(net):
    model = build_model("regression", net, "muskingum")
    with torch.no_grad():
        model.mlp[-1].bias.fill_(1e6)
    values = model.table()
    assert values["x"].max() == 0.5 and values["k"].max() == 30 * 86400.0
    with torch.no_grad():
        model.mlp[-1].bias.fill_(-1e6)
    values = model.table()
    assert values["x"].min() == 0.0 and values["k"].min() == pytest.approx(0.1, rel=1e-14)


def test_bound_is_a_log_multiplier_near_the_lower_bound():
    bound = Bound("k", 0.1, 30 * 86400.0, "log")
    k = torch.tensor([60.0, 3600.0], dtype=torch.float64)
    z = bound.to_free(k)
    np.testing.assert_allclose(bound.from_free(z).numpy(), k.numpy(), rtol=1e-13)
    # d log k / d z = log(upper / lower) * u (1 - u): the slope the learning rate acts on
    u = (torch.log(k) - np.log(0.1)) / np.log(30 * 86400.0 / 0.1)
    zz = z.clone().requires_grad_()
    torch.log(bound.from_free(zz)).sum().backward()
    np.testing.assert_allclose(zz.grad.numpy(), (np.log(30 * 86400.0 / 0.1) * u * (1 - u)).numpy(), rtol=1e-10)


def test_narrower_bounds_apply_and_wider_ones_are_refused(net):
    model = build_model("per-reach", net, params={"k": 3600.0}, bounds={"k": (1800.0, 7200.0)})
    _push(model, 50.0)
    k = model.table()["k"]
    assert float(k.min()) >= 1800.0 and float(k.max()) <= 7200.0
    with pytest.raises(InputError, match=r"bounds of 'x' are \[0, 0.7\].*inside.*\[0, 0.5\]"):
        build_model("per-reach", net, bounds={"x": (0.0, 0.7)})


def test_zones_model_uses_calibrate_zones(net):
    gauges = _gauges(net)
    model = build_model("zones", net, gauges=gauges)
    zones, _ = gauge_zones(net, net.index_of(gauges))
    assert model.learned == ("k",) and model.n_zones == 2
    with torch.no_grad():
        model.theta["k"].copy_(torch.tensor([0.5, -0.5]))
    k, prior = model.table()["k"], prior_params(net, "muskingum")["k"]
    # one multiplier per zone, exactly (thalweg calibrate's model)
    np.testing.assert_allclose(k / prior, np.exp([0.5, -0.5])[zones], rtol=1e-13)
    np.testing.assert_allclose(model.multipliers()["k"], np.exp([0.5, -0.5]), rtol=1e-15)


def test_per_reach_penalty_is_zero_at_the_prior_and_sees_differences():
    # chain 1 -> 2 -> 3 -> 4
    chain = from_arrays(np.arange(1, 5), np.array([2, 3, 4, -1]), np.full(4, 2000.0), np.arange(1, 5) * 1e7)
    model = PerReachModel("muskingum", prior_params(chain, "muskingum"), chain.downstream, learn=["k"],
                          prior_weight=1.0, smooth_weight=0.0)
    assert float(model.penalty().detach()) == 0.0
    with torch.no_grad():
        model.theta["k"].fill_(0.2)
    r = np.log(model.table()["k"] / prior_params(chain, "muskingum")["k"])
    np.testing.assert_allclose(float(model.penalty().detach()), (r ** 2).mean(), rtol=1e-12)
    smooth = PerReachModel("muskingum", prior_params(chain, "muskingum"), chain.downstream, learn=["k"],
                           prior_weight=0.0, smooth_weight=1.0)
    with torch.no_grad():
        smooth.theta["k"].copy_(torch.tensor([0.0, 0.4, 0.0, 0.0], dtype=torch.float64))
    r = np.log(smooth.table()["k"] / prior_params(chain, "muskingum")["k"])
    np.testing.assert_allclose(float(smooth.penalty().detach()), ((r[:3] - r[1:]) ** 2).mean(), rtol=1e-12)


def test_regression_standardises_and_saves_attributes(net, tmp_path):
    model = build_model("regression", net, attributes=["length", "area"], seed=3)
    feats = model.features.numpy()
    np.testing.assert_allclose(feats.mean(0), 0.0, atol=1e-12)
    np.testing.assert_allclose(feats.std(0), 1.0, rtol=1e-12)
    np.testing.assert_allclose(feats[:, 1], (np.log(net.area) - np.log(net.area).mean()) / np.log(net.area).std())
    _push(model, 0.5)
    path = save_model(model, tmp_path / "k.json")
    record = json.loads(path.read_text())
    assert record["format"] == "thalweg-parameter-model" and record["version"] == 1
    assert [a["name"] for a in record["attributes"]] == ["length", "area"] and record["scheme"] == "muskingum"
    assert record["bounds"]["x"] == {"name": "x", "lower": 0.0, "upper": 0.5, "space": "linear"}
    # same network: the same numbers, bit for bit
    again = load_model(path, net)
    for name, values in model.table().items():
        np.testing.assert_array_equal(again.table()[name], values)
    # another network: its own attributes through the saved standardisation (not re-standardised)
    other = scheidegger_network(50, seed=9, single_basin=True)
    moved = load_model(path, other)
    expected = (np.log(other.length) - record["attributes"][0]["mean"]) / record["attributes"][0]["std"]
    np.testing.assert_allclose(moved.features.numpy()[:, 0], expected, rtol=1e-12)
    np.testing.assert_array_equal(model.for_network(other).table()["k"], moved.table()["k"])


def test_attribute_and_kind_errors_name_the_fix(net):
    with pytest.raises(InputError, match=r"no reach attribute 'slope'.*available: length, area, catchment_area"):
        build_model("regression", net, attributes=["length", "slope"])
    with pytest.raises(InputError, match=r"unknown parameter model 'mlp'.*prior, zones, per-reach, regression"):
        build_model("mlp", net)
    with pytest.raises(InputError, match=r"no parameter tau to learn.*k, x"):
        build_model("per-reach", net, learn=["tau"])
    with pytest.raises(InputError, match="prior given as arrays"):
        save_model(build_model("regression", net, prior=prior_params(net, "muskingum")), "unused.json")
