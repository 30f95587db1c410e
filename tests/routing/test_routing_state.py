"""Warm state: routing in time chunks gives one pass's result, for every engine and scheme kind."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from _routing_cases import DT, runoff, scheme_params
from thalweg.errors import InputError, ThalwegWarning
from thalweg.irf import SCHEMES
from thalweg.routing import RoutingState, route
from thalweg.testing import assert_discharge_close

CHUNKS = ((0, 1), (1, 90), (90, 91), (91, 250), (250, 400))  # a one-step chunk, uneven lengths


def _chunked(network, q, params, scheme, **opts):
    state, parts = None, []
    for a, b in CHUNKS:
        part, state = route(network, q[..., a:b], params, scheme, dt=DT, state=state, return_state=True, **opts)
        parts.append(part)
    return torch.cat(parts, -1), state


@pytest.mark.parametrize("engine, kernel_length", [("exact", None), ("exact", 64), ("fft", None), ("fft", 64),
                                                   ("closure", 64)])
@pytest.mark.parametrize("scheme", ["muskingum", "linear_storage", "hayami", "pure_lag"])
def test_chunks_equal_one_pass(scheme, engine, kernel_length, mid_basin, rng):
    sch = SCHEMES[scheme]
    if kernel_length is None and sch.recursion is None:
        kernel_length = 64  # without a recursion a warm state needs a fixed kernel length
    params = scheme_params(sch, mid_basin, rng, max_travel=1.5 * DT)
    q = torch.as_tensor(runoff(mid_basin, rng, batch=2, steps=400))
    opts = {"engine": engine, "kernel_length": kernel_length, "dtype": torch.float64, "device": "cpu"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        whole, last = route(mid_basin, q, params, scheme, dt=DT, return_state=True, **opts)
        parts, state = _chunked(mid_basin, q, params, scheme, **opts)
    assert_discharge_close(parts, whole, rtol=1e-10, ids=mid_basin.ids)
    assert state.steps == 400 and state.kind == last.kind
    assert state.kind == ("recursive" if kernel_length is None else "history")
    for name, tensor in state.tensors.items():
        np.testing.assert_allclose(tensor.numpy(), last.tensors[name].numpy(), rtol=1e-10, atol=1e-12,
                                   err_msg=name)


def test_float32_chunks_stay_within_float32_rounding(mid_basin, rng):
    params = scheme_params(SCHEMES["muskingum"], mid_basin, rng)
    q = torch.as_tensor(runoff(mid_basin, rng, batch=1, steps=400), dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        whole = route(mid_basin, q, params, "muskingum", dt=DT, engine="exact")
        parts, _ = _chunked(mid_basin, q, params, "muskingum", engine="exact")
    assert_discharge_close(parts, whole, rtol=1e-6)


def test_state_refuses_another_run(mid_basin, small_network, rng):
    params = {"tau": 7200.0}
    q = runoff(mid_basin, rng, batch=1, steps=20)
    _, state = route(mid_basin, q, params, "linear_storage", dt=DT, return_state=True)
    assert isinstance(state, RoutingState) and state.kind == "recursive" and state.batch == 1
    with pytest.raises(InputError, match="dt 3600 s \\(now 1800 s\\)"):
        route(mid_basin, q, params, "linear_storage", dt=DT / 2, state=state)
    with pytest.raises(InputError, match="scheme 'linear_storage' \\(now 'pure_lag'\\)"):
        route(mid_basin, q, {"lag": 3600.0}, "pure_lag", dt=DT, state=state)
    with pytest.raises(InputError, match="batch 1 \\(now 2\\)"):
        route(mid_basin, np.repeat(q, 2, axis=0), params, "linear_storage", dt=DT, state=state)
    with pytest.raises(InputError, match="reaches"):
        route(small_network, runoff(small_network, rng, batch=1, steps=20), params, "linear_storage", dt=DT,
              state=state)
    with pytest.raises(InputError, match="recursive state, and this engine needs a history state"):
        route(mid_basin, q, params, "linear_storage", dt=DT, engine="closure", state=state)
