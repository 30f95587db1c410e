"""thalweg.params: one source of truth for parameter priors, bounds, positivity and the checks (issue 7 item 5,
issue 8 finding 12's parameter messages)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from _routing_cases import DT, small_tree
from thalweg.errors import InputError
from thalweg.irf import SCHEMES, Parameter, Scheme, register_scheme
from thalweg.params import (check_calibrated, check_constant, check_names, default_calibrated, geoglows_velocity,
                            resolve_params)
from thalweg.routing import route


def _net():
    return small_tree()  # lengths and areas on every reach


def test_priors_come_from_the_declarations():
    net = _net()
    travel = net.length / geoglows_velocity(net.area)
    p, used = resolve_params(net, "muskingum_nonneg")
    np.testing.assert_allclose(p["k"], travel)
    np.testing.assert_allclose(p["x"], 0.25)
    assert used["x"] == "default 0.25" and used["k"].startswith("GEOGloWS rule")
    p, used = resolve_params(net, "nash_cascade", {"n": 2.0})
    np.testing.assert_allclose(p["tau"], travel / 2.0)  # travel time per reservoir: prior_divisor='n'
    p, _ = resolve_params(net, "hayami")
    np.testing.assert_allclose(p["celerity"], geoglows_velocity(net.area))
    np.testing.assert_allclose(p["diffusivity"], SCHEMES["hayami"].parameters[1].default)


def test_a_user_registered_scheme_gets_its_prior_and_positivity():
    def kernel(params, dt, n_steps):
        a = dt / (params["t"][:, None] + dt)
        k = torch.arange(n_steps, dtype=a.dtype)[None, :]
        return a * (1 - a) ** k, None

    scheme = Scheme(name="_test_store", parameters=(
        Parameter("t", "s", "storage time", 0.0, 1e7, 100.0, positive=True, prior="travel_time"),
        Parameter("w", "1", "unused weight", 0.0, 1.0, 0.5)), kernel=kernel, travel_time=lambda p, dt: p["t"])
    register_scheme(scheme)
    try:
        net = _net()
        p, used = resolve_params(net, "_test_store")
        np.testing.assert_allclose(p["t"], net.length / geoglows_velocity(net.area))
        np.testing.assert_allclose(p["w"], 0.5)
        q = np.ones((net.n_reaches, 5))
        route(net, q, p, "_test_store", dt=DT, device="cpu")
        with pytest.raises(InputError, match=r"parameter 't' is missing or outside \(0, 1e\+07\] s at 1 reaches: 3"):
            route(net, q, {"t": np.where(net.ids == 3, 0.0, 10.0), "w": 0.5}, "_test_store", dt=DT, device="cpu")
        with pytest.raises(InputError, match=r"parameter 't' = 0 is outside \(0, 1e\+07\] s"):
            resolve_params(net, "_test_store", {"t": 0.0})
    finally:
        SCHEMES.pop("_test_store", None)


def test_nash_n_zero_is_reported_as_n():
    """Issue 8 finding 12: n = 0 made the prior tau infinite and was reported as tau out of bounds."""
    with pytest.raises(InputError, match=r"parameter 'n' = 0 is outside \[0.2, 10\]") as err:
        resolve_params(_net(), "nash_cascade", {"n": 0})
    assert err.value.field == "n" and "tau" not in str(err.value)


def test_a_field_that_is_not_a_time_says_so():
    """Issue 8 finding 12: --param k=strmOrder said 'not in the network' although the field exists."""
    pytest.importorskip("geopandas")
    from thalweg.demo import sample_dir
    from thalweg.hydrography import read_network

    net = read_network(sample_dir() / "cance_rivers.gpkg", layer="rivers")
    with pytest.raises(InputError, match=r"field strmOrder \(stream order\) holds the network's stream order "
                                         r"\(unit 1\), not k in s"):
        resolve_params(net, "muskingum", {"k": "strmOrder"})
    with pytest.raises(InputError, match=r"field 'nope' for parameter 'k' is not among the network's fields") as err:
        resolve_params(net, "muskingum", {"k": "nope"})
    assert "strmOrder" in err.value.hint
    p, used = resolve_params(net, "nash_cascade", {"n": "strmOrder"})  # a number without unit fits n
    assert used["n"] == "field strmOrder" and p["n"].min() >= 1


def test_one_message_for_each_check():
    with pytest.raises(InputError, match=r"the 'muskingum' scheme takes no parameter\(s\) tau") as err:
        check_names("muskingum", ["k", "tau"])
    assert "Its parameters are: k, x" in err.value.hint
    with pytest.raises(InputError, match=r"parameter 'x' = 0.7 is outside \[0, 0.5\]"):
        check_constant("muskingum", "x", 0.7)
    with pytest.raises(InputError, match="must be a number"):
        check_constant("muskingum", "k", True)
    assert check_calibrated("muskingum", None) == default_calibrated("muskingum") == ["k"]
    with pytest.raises(InputError, match="has no parameter celerity to calibrate"):
        check_calibrated("muskingum", ["celerity"])


def test_resolve_params_lives_in_params_and_workflow_uses_it():
    import thalweg
    from thalweg import workflow

    assert workflow.resolve_params is resolve_params is thalweg.resolve_params


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU"))])
def test_scheme_params_names_the_bad_parameter_and_keeps_gradients(device):
    """routing.params: numpy arrays, numbers and CPU tensors reach the device with their values, a bad parameter is
    named with its reaches; tensors requiring grad stay themselves, so gradients reach them."""
    from thalweg.routing.params import scheme_params

    net = _net()
    n = net.n_reaches
    rng = np.random.default_rng(3)
    k = rng.uniform(600.0, 7200.0, n)
    nan_at_2 = np.where(np.arange(n) == 2, np.nan, k)
    for bad, name, where in (({"k": k, "x": 0.9}, "x", f"{n} reaches"),
                             ({"k": nan_at_2, "x": 0.2}, "k", f"1 reaches: {net.ids[2]}")):
        with pytest.raises(InputError, match=rf"parameter '{name}' is missing or outside .* at {where}"):
            scheme_params(net, SCHEMES["muskingum"], bad, dtype=torch.float64, device=device)
    sent = scheme_params(net, SCHEMES["hayami"], {"celerity": k / 3600.0, "diffusivity": torch.full((n,), 1e4)},
                         dtype=torch.float64, device=device)
    assert list(sent) == ["celerity", "diffusivity", "length"]
    for name, expected in (("celerity", k / 3600.0), ("diffusivity", np.full(n, 1e4)), ("length", net.length)):
        assert sent[name].device.type == device
        np.testing.assert_array_equal(sent[name].cpu().numpy(), expected)
    tau = torch.tensor(k, device=device, requires_grad=True)
    mixed = scheme_params(net, SCHEMES["nash_cascade"], {"tau": tau, "n": 2.0}, dtype=torch.float64, device=device)
    mixed["tau"].sum().backward()
    assert torch.equal(tau.grad, torch.ones_like(tau)) and float(mixed["n"][0]) == 2.0


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_check_values_refuses_exactly_what_the_bounds_rule_refuses(kind):
    """check_values decides from the smallest and largest value (an interval rule); the oracle is the rule itself
    over every value (Parameter.outside): one bad value of each kind at a random reach is refused and named,
    values at the bounds pass."""
    from thalweg.params import check_values

    net = _net()
    n = net.n_reaches
    rng = np.random.default_rng(11)
    for spec in (SCHEMES["muskingum"].parameters[0], SCHEMES["muskingum"].parameters[1]):  # k (positive), x
        base = rng.uniform(max(spec.lower, 1e-3), min(spec.upper, 10.0), n)
        cases = [np.nan, np.inf, -np.inf, spec.lower - 1.0, spec.upper * 2.0 + 1.0, spec.lower, spec.upper, 0.0]
        for value in cases:
            at = int(rng.integers(n))
            arr = base.copy()
            arr[at] = value
            given = arr if kind == "numpy" else torch.as_tensor(arr)
            if spec.outside(arr).any():
                with pytest.raises(InputError, match=rf"'{spec.name}' .* at 1 reaches: {net.ids[at]}"):
                    check_values(net, spec, given)
            else:
                check_values(net, spec, given)  # no error


def test_check_values_takes_any_float_tensor():
    """float16 and bfloat16 tensors (numpy has no bfloat16) are checked as the others are."""
    from thalweg.params import check_values

    net = _net()
    spec = SCHEMES["muskingum"].parameters[1]  # x in [0, 0.5]
    for dtype in (torch.float16, torch.bfloat16):
        check_values(net, spec, torch.full((net.n_reaches,), 0.25, dtype=dtype))
        bad = torch.full((net.n_reaches,), 0.25, dtype=dtype)
        bad[3] = 0.75
        with pytest.raises(InputError, match=rf"'x' .* at 1 reaches: {net.ids[3]}"):
            check_values(net, spec, bad)
