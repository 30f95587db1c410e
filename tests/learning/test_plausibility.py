"""The one plausibility rule of fitted parameters: implied celerity length / k inside CELERITY_RANGE."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from thalweg.errors import ThalwegWarning, option_names
from thalweg.network import from_arrays
from thalweg.params import CELERITY_RANGE, check_celerity
from thalweg.params.checks import implied_celerity


@pytest.fixture
def net():
    # five reaches of 1, 2, 3, 4, 5 km in a chain
    return from_arrays([1, 2, 3, 4, 5], [2, 3, 4, 5, -1], [1000.0, 2000.0, 3000.0, 4000.0, 5000.0])


def _caught(fn):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        out = fn()
    return out, [str(w.message) for w in seen if issubclass(w.category, ThalwegWarning)]


def test_celerities_are_length_over_travel_time_and_the_outside_ones_are_named(net):
    lo, hi = CELERITY_RANGE
    assert (lo, hi) == (0.05, 5.0)
    # celerities 0.01 (too slow), 1, 1, 10 (too fast), the upper edge 5 (kept)
    celerity = np.array([0.01, 1.0, 1.0, 10.0, 5.0])
    k = net.length / celerity
    params = {"k": k, "x": np.full(5, 0.25)}
    np.testing.assert_allclose(implied_celerity(net, "muskingum", params)["k"], celerity, rtol=1e-12)
    with option_names({"run_fit.bounds": "--bound"}):
        count, messages = _caught(lambda: check_celerity(net, "muskingum", params))
    assert count == 2 and len(messages) == 1
    text = messages[0]
    assert "2 of 5 reaches have a fitted k implying a celerity outside the plausible 0.05-5 m/s" in text, text
    assert "(0.01 to 10 m/s" in text and "at reaches 1, 4." in text
    # the fix, as the flag: k from the longest reach at 5 m/s to the shortest at 0.05 m/s, so that every reach
    # is inside the range
    assert "--bound k=1000:20000 (every reach's k at 0.05-5 m/s)" in text, text
    with option_names({"run_fit.bounds": "--bound"}):  # a prior outside those is kept inside the suggestion
        _, (with_prior,) = _caught(lambda: check_celerity(net, "muskingum", params, prior={"k": net.length / 0.04}))
    assert "--bound k=1000:125000 (every reach's k at 0.05-5 m/s, widened to hold the prior)" in with_prior
    bounded = {"k": np.clip(k, 1000.0, 20000.0), "x": params["x"]}
    assert _caught(lambda: check_celerity(net, "muskingum", bounded)) == (0, [])
    # lengths spread over more than 5 / 0.05: no one bound keeps all, the median reach's range is suggested
    wide = from_arrays([1, 2, 3], [2, 3, -1], [100.0, 1000.0, 20000.0])
    with option_names({"run_fit.bounds": "--bound"}):
        _, (wide_text,) = _caught(lambda: check_celerity(wide, "muskingum", {"k": np.full(3, 1.0), "x": np.zeros(3)}))
    assert "--bound k=200:20000 (a median reach's k at 0.05-5 m/s)" in wide_text, wide_text
    # torch tensors (a model's output) give the same count; every value inside: silent
    count_t, _ = _caught(lambda: check_celerity(net, "muskingum", {k_: torch.as_tensor(v) for k_, v in params.items()}))
    assert count_t == 2
    inside = {"k": net.length / 1.0, "x": np.full(5, 0.25)}
    assert _caught(lambda: check_celerity(net, "muskingum", inside)) == (0, [])


def test_nash_travel_time_is_n_tau_and_a_surface_without_bounds_gives_its_own_fix(net):
    n = np.full(5, 4.0)
    tau = net.length / 1.0 / n  # travel time n tau at 1 m/s: plausible
    assert _caught(lambda: check_celerity(net, "nash_cascade", {"n": n, "tau": tau}))[0] == 0
    tau_fast = tau / 100.0  # 100 m/s
    count, messages = _caught(lambda: check_celerity(net, "nash_cascade", {"n": n, "tau": tau_fast}, what="trained",
                                                     bound_option=None, fix="Learn fewer routing parameters."))
    assert count == 5 and "trained tau" in messages[0] and messages[0].endswith("Learn fewer routing parameters.")
    assert "Narrow" not in messages[0]
    # only the parameters named are checked
    assert _caught(lambda: check_celerity(net, "nash_cascade", {"n": n, "tau": tau_fast}, names=["n"]))[0] == 0
