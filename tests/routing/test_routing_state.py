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


@pytest.mark.parametrize("engine, kernel_length", [("exact", None), ("exact", 64), ("fft", 64), ("closure", 64)])
@pytest.mark.parametrize("scheme", ["muskingum_nonneg", "hayami"])
def test_prepared_route_chunks_equal_route_chunks(scheme, engine, kernel_length, mid_basin, rng):
    """PreparedRoute (coefficients and kernels computed once, reused per chunk) gives route()'s chunked values
    and states exactly, and one pass's values to rounding (the oracle: route over the whole series)."""
    from thalweg.routing import PreparedRoute

    sch = SCHEMES[scheme]
    if sch.recursion is None:
        kernel_length = kernel_length or 64
    params = scheme_params(sch, mid_basin, rng, max_travel=1.5 * DT)
    q = torch.as_tensor(runoff(mid_basin, rng, batch=2, steps=400))
    opts = {"engine": engine, "kernel_length": kernel_length, "dtype": torch.float64, "device": "cpu"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        whole = route(mid_basin, q, params, scheme, dt=DT, **opts)
        expected, expected_state = _chunked(mid_basin, q, params, scheme, **opts)
        prepared = PreparedRoute(mid_basin, params, scheme, dt=DT, **opts)
        state, parts = None, []
        for a, b in CHUNKS:
            part, state = prepared(q[..., a:b], state, return_state=True)
            parts.append(part)
    got = torch.cat(parts, -1)
    assert torch.equal(got, expected)
    assert state.kind == expected_state.kind and state.steps == 400
    for name, tensor in state.tensors.items():
        assert torch.equal(tensor, expected_state.tensors[name]), name
    assert_discharge_close(got, whole, rtol=1e-10, ids=mid_basin.ids)


def test_prepared_route_gives_each_call_its_own_gradient(mid_basin, rng):
    """Parameters requiring grad: two calls, two backward passes, each the gradient route() gives."""
    from thalweg.routing import PreparedRoute

    p = scheme_params(SCHEMES["muskingum"], mid_basin, rng)
    q = torch.as_tensor(runoff(mid_basin, rng, batch=1, steps=50))
    k = torch.as_tensor(np.asarray(p["k"], dtype=np.float64)).requires_grad_(True)
    params = {"k": k, "x": p["x"]}
    prepared = PreparedRoute(mid_basin, params, "muskingum", dt=DT, dtype=torch.float64, device="cpu")
    grads = []
    for _ in range(2):
        k.grad = None
        prepared(q).sum().backward()
        grads.append(k.grad.clone())
    k.grad = None
    route(mid_basin, q, params, "muskingum", dt=DT, dtype=torch.float64, device="cpu").sum().backward()
    assert torch.count_nonzero(grads[0]) > 0
    assert torch.equal(grads[0], grads[1]) and torch.equal(grads[0], k.grad)


@pytest.mark.parametrize(("scheme", "dtype"), [("muskingum", torch.float64), ("hayami", torch.float64),
                                           ("muskingum", torch.float32)])
def test_prepared_route_sees_parameters_changed_in_place(scheme, dtype, mid_basin, rng):
    """Parameters requiring grad, changed in place between calls as an optimizer does, under no_grad as an
    evaluation runs: each call routes the current values (the oracle: route() with them), nothing kept stale."""
    from thalweg.routing import PreparedRoute

    p = scheme_params(SCHEMES[scheme], mid_basin, rng, max_travel=3 * DT)
    name = "k" if scheme == "muskingum" else "celerity"
    tensor = torch.as_tensor(np.asarray(p[name], dtype=np.float64)).to(dtype).requires_grad_(True)
    params = {**p, name: tensor}
    q = torch.as_tensor(runoff(mid_basin, rng, batch=1, steps=80))
    opts = {"dt": DT, "engine": "exact", "dtype": torch.float64, "device": "cpu"}
    prepared = PreparedRoute(mid_basin, params, scheme, **opts)
    with torch.no_grad():
        first = prepared(q)
        tensor.mul_(0.7)  # still in bounds: k shorter, celerity slower
        second = prepared(q)
        expected = route(mid_basin, q, params, scheme, **opts)
    assert not torch.equal(first, second)
    assert torch.equal(second, expected)


def test_upstream_sum_is_the_sum_of_the_upstream_outflows(mid_basin, rng):
    """The state's inflow: per reach, the sum of its upstream reaches' outflow (brute force in numpy)."""
    from thalweg.routing.engines import _upstream_sum
    from thalweg.routing.topology import topology

    topo = topology(mid_basin)
    down = np.asarray(mid_basin.downstream)
    for steps in (1, 5):
        series = torch.as_tensor(rng.gamma(1.5, 1.0, (2, mid_basin.n_reaches, steps)))
        expected = np.zeros(series.shape)
        for i, d in enumerate(down):
            if d >= 0:
                expected[:, d] += series[:, i].numpy()
        for cache in (None, {}):
            np.testing.assert_allclose(_upstream_sum(topo, series, cache).numpy(), expected, rtol=1e-14, atol=0)


@pytest.mark.parametrize("scheme", ["pure_lag", "hayami", "nash_cascade"])
def test_prepared_route_keeps_its_taps_and_cascade_between_calls(scheme, mid_basin, rng):
    """A prepared route makes the compact taps (pure lag, Hayami) once for each series length and the Nash cascade
    once, and gives route()'s values on every call (the oracle: route() on the same runoff)."""
    import dataclasses

    from thalweg.irf import nash
    from thalweg.routing import PreparedRoute

    made = []
    sch = SCHEMES[scheme]
    if scheme == "nash_cascade":
        params = {"tau": np.full(mid_basin.n_reaches, 1800.0), "n": np.full(mid_basin.n_reaches, 2.0)}
        counted = sch  # the cascade is the scheme's own rule: counted through nash.whole_cascade below
    else:
        params = scheme_params(sch, mid_basin, rng, max_travel=3 * DT)

        def compact(p, dt, t_len, tol):
            made.append(t_len)
            return sch.compact(p, dt, t_len, tol)
        counted = dataclasses.replace(sch, compact=compact)
    whole_cascade = nash.whole_cascade

    def cascade(p, dt):
        made.append("cascade")
        return whole_cascade(p, dt)

    q = torch.as_tensor(runoff(mid_basin, rng, batch=1, steps=120))
    opts = {"dt": DT, "engine": "exact", "dtype": torch.float64, "device": "cpu"}
    try:
        nash.whole_cascade = cascade
        prepared = PreparedRoute(mid_basin, params, counted, **opts)
        got = [prepared(q), prepared(q * 2.0), prepared(q[..., :50])]
        calls = list(made)
        expected = [route(mid_basin, x, params, counted, **opts) for x in (q, q * 2.0, q[..., :50])]
    finally:
        nash.whole_cascade = whole_cascade
    assert calls == (["cascade"] if scheme == "nash_cascade" else [120, 50])
    for a, b in zip(got, expected):
        assert torch.equal(a, b)


@pytest.mark.parametrize("scheme", ["hayami", "pure_lag", "muskingum"])  # muskingum: a 64-step g apart from h
def test_gradients_through_a_warm_started_convolution(scheme, mid_basin, rng):
    """A convolution routed from a warm state (the inputs before the chunk) by the compiled engine, gradients in
    the runoff and a parameter: the chunk's discharge is the one-pass run's, its runoff gradient the one-pass run's
    over the chunk (the chunk's runoff reaches nothing before it), and the parameter's directional derivative
    matches central differences with the state held fixed (the state is a constant, as a recursion's warm state)."""
    sch = SCHEMES[scheme]
    p = scheme_params(sch, mid_basin, rng, max_travel=1.5 * DT)
    name = sch.parameter_names[0]
    q = torch.as_tensor(runoff(mid_basin, rng, batch=2, steps=120))  # two batch elements: their own histories
    w = torch.as_tensor(rng.standard_normal((2, mid_basin.n_reaches, 60)))
    opts = {"engine": "exact", "kernel_length": 64, "dtype": torch.float64, "device": "cpu"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        _, state = route(mid_basin, q[..., :60], p, scheme, dt=DT, return_state=True, **opts)
        no_grad = route(mid_basin, q[..., 60:], p, scheme, dt=DT, state=state, **opts)  # the compiled path
        qa = q.clone().requires_grad_(True)
        whole = route(mid_basin, qa, p, scheme, dt=DT, **opts)
        (whole[..., 60:] * w).sum().backward()
        base = torch.as_tensor(np.asarray(p[name], dtype=np.float64))
        k = base.clone().requires_grad_(True)
        q2 = q[..., 60:].clone().requires_grad_(True)
        warm = route(mid_basin, q2, {**p, name: k}, scheme, dt=DT, state=state, **opts)
        (warm * w).sum().backward()
        assert_discharge_close(warm.detach(), whole.detach()[..., 60:], rtol=1e-10, ids=mid_basin.ids)
        assert_discharge_close(warm.detach(), no_grad, rtol=1e-10, ids=mid_basin.ids)
        np.testing.assert_allclose(q2.grad.numpy(), qa.grad[..., 60:].numpy(), rtol=1e-9, atol=1e-12)
        v = torch.as_tensor(rng.uniform(-1.0, 1.0, base.shape))
        eps = 1e-6

        def loss(scale):
            out = route(mid_basin, q[..., 60:], {**p, name: base * (1.0 + scale * v)}, scheme, dt=DT,
                        state=state, **opts)
            return float((out * w).sum())
        fd = (loss(eps) - loss(-eps)) / (2 * eps)
    ad = float((k.grad * base * v).sum())
    assert abs(ad) > 1e-6
    assert ad == pytest.approx(fd, rel=1e-5)
