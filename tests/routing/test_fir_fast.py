"""The compiled CPU convolution (``fir_forward_*``/``fir_backward_*`` in routing.c: time tiles, 8 taps per
pass, products of a pass in the storage type, sums in double) against a float64 numpy brute force of
Q_i = h_i * U_i + g_i * q_i, warm starts against one pass, and its backward by gradcheck in float64."""
from __future__ import annotations

import dataclasses

import warnings

import numpy as np
import pytest
import torch
from _routing_cases import DT, runoff, scheme_params
from thalweg.errors import ThalwegWarning
from thalweg.irf import SCHEMES
from thalweg.network import scheidegger_network
from thalweg.routing import _cpu, route, route_reference
from thalweg.routing.topology import topology
from thalweg.testing import assert_discharge_close

pytestmark = pytest.mark.skipif(not _cpu.available(), reason="needs the compiled CPU engine")


def _brute(net, q, h, g):
    """Float64 direct convolution reach by reach in topological order (no supports, no tiles)."""
    topo = topology(net)
    b, n, t_len = q.shape
    out = np.zeros((b, n, t_len))
    inflow = np.zeros((b, n, t_len))
    down = np.asarray(topo.downstream)
    for i in np.asarray(topo.order):  # post-order: every reach after its upstream
        for k in range(b):
            out[k, i] = (np.convolve(inflow[k, i], h[i])[:t_len] + np.convolve(q[k, i], g[i])[:t_len])
        if down[i] >= 0:
            inflow[:, down[i]] += out[:, i]
    return out


def _kernels(n, length, rng, *, signed=False):
    """Kernels with supports of 1 to ~40 taps at random offsets (every remainder of 8 and of 4 occurs)."""
    h = np.zeros((n, length))
    for i in range(n):
        a = int(rng.integers(0, 12))
        w = int(rng.integers(1, min(40, length - a)))
        taps = rng.gamma(2.0, 1.0, w) * (rng.uniform(-0.3, 1.0, w) if signed else 1.0)
        h[i, a:a + w] = taps / np.abs(taps).sum()
    return h


@pytest.fixture(scope="module")
def net():
    return scheidegger_network(120, seed=4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("two", [False, True])
def test_forward_matches_brute_force(net, dtype, two):
    rng = np.random.default_rng(3)
    t_len = 1100  # more than one time tile (512 steps)
    h = _kernels(net.n_reaches, 64, rng, signed=two)
    g = _kernels(net.n_reaches, 64, rng, signed=True) if two else h
    q = runoff(net, rng, batch=2, steps=t_len)
    ref = _brute(net, q, h, g)
    out, _, _ = _cpu.fir_route(torch.as_tensor(q, dtype=dtype), torch.as_tensor(h),
                               torch.as_tensor(g) if two else None, topology(net))
    assert_discharge_close(out.double(), ref, rtol=1e-5 if dtype == torch.float32 else 1e-12, ids=net.ids)


@pytest.mark.parametrize("two", [False, True])
def test_warm_start_in_chunks_equals_one_pass(net, two):
    rng = np.random.default_rng(4)
    length = 48
    h = torch.as_tensor(_kernels(net.n_reaches, length, rng))
    g = torch.as_tensor(_kernels(net.n_reaches, length, rng)) if two else None
    q = torch.as_tensor(runoff(net, rng, batch=2, steps=200))
    topo = topology(net)
    whole, _, _ = _cpu.fir_route(q, h, g, topo)
    hist = (torch.zeros(2, net.n_reaches, length), torch.zeros(2, net.n_reaches, length))
    parts = []
    for a, b in ((0, 30), (30, 37), (37, 200)):  # chunks shorter and longer than the history
        out, hu, hq = _cpu.fir_route(q[..., a:b].contiguous(), h, g, topo, hist)
        hist = (hu, hq)
        parts.append(out)
    assert_discharge_close(torch.cat(parts, -1), whole, rtol=1e-12, ids=net.ids)


@pytest.mark.parametrize("two", [False, True])
def test_backward_gradcheck_float64(two):
    small = scheidegger_network(7, seed=5)
    rng = np.random.default_rng(6)
    topo = topology(small)
    t_len, length = 19, 14  # kernel supports crossing 8-tap groups; taps past the series end
    h = torch.as_tensor(_kernels(small.n_reaches, length, rng, signed=True)).requires_grad_(True)
    g = torch.as_tensor(_kernels(small.n_reaches, length, rng, signed=True)).requires_grad_(True) if two else None
    q = torch.as_tensor(runoff(small, rng, batch=1, steps=t_len)).requires_grad_(True)
    support = _cpu.kernel_support(h, g)

    def fn(q, h, *g):
        return _cpu.fir_route(q, h, g[0] if g else None, topo, support=support)[0]

    assert torch.autograd.gradcheck(fn, (q, h) + ((g,) if two else ()), eps=1e-6, atol=1e-8)


def _assert_float32_gradients_match_float64(net, h, q, rng):
    """dL/dq and dL/dh of a float32 run within 1e-5 (of the largest) of the float64 run's, L = sum(w Q)."""
    w = torch.as_tensor(rng.normal(size=q.shape))
    grads = []
    for dtype in (torch.float32, torch.float64):
        hh = h.clone().requires_grad_(True)
        qq = torch.as_tensor(q, dtype=dtype).requires_grad_(True)
        (_cpu.fir_route(qq, hh, None, topology(net))[0].double() * w).sum().backward()
        grads.append((qq.grad.double(), hh.grad))
    for a, b in zip(*grads):
        assert float((a - b).abs().max()) <= 1e-5 * float(b.abs().max())


def test_float32_gradient_matches_float64(net):
    rng = np.random.default_rng(7)
    h = torch.as_tensor(_kernels(net.n_reaches, 64, rng))
    q = runoff(net, rng, batch=1, steps=700)
    _assert_float32_gradients_match_float64(net, h, q, rng)


@pytest.mark.parametrize("scheme", ["hayami", "nash_cascade", "pure_lag"])
def test_convolution_schemes_float32_match_the_reference(net, scheme):
    rng = np.random.default_rng(8)
    params = scheme_params(SCHEMES[scheme], net, rng, max_travel=12 * DT)
    q = runoff(net, rng, batch=1, steps=400)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        ref = route_reference(net, q, params, scheme, dt=DT)
        out = route(net, torch.as_tensor(q, dtype=torch.float32), params, scheme, dt=DT, engine="exact")
    assert_discharge_close(out.double(), ref, rtol=1e-5, ids=net.ids)


def _nash_params(net, rng, n_values):
    return {"tau": rng.uniform(600.0, 20 * 3600.0, net.n_reaches), "n": rng.choice(n_values, net.n_reaches)}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_whole_nash_cascade_routes_as_recursions_exactly(net, dtype):
    rng = np.random.default_rng(9)
    params = _nash_params(net, rng, [1.0, 2.0, 3.0, 5.0, 10.0])
    q = runoff(net, rng, batch=2, steps=300)
    from thalweg.irf import nash
    from thalweg.routing import exact

    p = {k: torch.as_tensor(v) for k, v in params.items()}
    assert nash.whole_cascade(p, DT) is not None
    ref = route_reference(net, q, params, "nash_cascade", dt=DT)
    out = route(net, torch.as_tensor(q, dtype=dtype), params, "nash_cascade", dt=DT, engine="exact", dtype=dtype)
    assert_discharge_close(out.double(), ref, rtol=1e-5 if dtype == torch.float32 else 1e-12, ids=net.ids)
    _, _, path = exact.route_exact(topology(net), torch.as_tensor(q), SCHEMES["nash_cascade"], p, DT,
                                   kernels_fn=None, kernel_length=None)
    assert path == "cascade-native"  # never asked for kernels (kernels_fn None would fail)


def test_cascade_only_for_whole_n_without_its_gradient():
    from thalweg.irf import nash

    tau = torch.full((4,), 3600.0)
    assert nash.whole_cascade({"tau": tau, "n": torch.tensor([1.0, 2.0, 2.5, 3.0])}, DT) is None
    assert nash.whole_cascade({"tau": tau, "n": torch.full((4,), 3.0, requires_grad=True)}, DT) is None
    a, n = nash.whole_cascade({"tau": tau, "n": torch.full((4,), 3.0)}, DT)
    assert n.tolist() == [3, 3, 3, 3] and float(a[0]) == DT / (3600.0 + DT)


def test_cascade_gradcheck_float64():
    small = scheidegger_network(7, seed=5)
    rng = np.random.default_rng(10)
    topo = topology(small)
    nres = rng.integers(1, 4, small.n_reaches)
    a = torch.as_tensor(rng.uniform(0.05, 0.9, small.n_reaches)).requires_grad_(True)
    q = torch.as_tensor(runoff(small, rng, batch=1, steps=17)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda q, a: _cpu.cascade_route(q, a, nres, topo), (q, a), eps=1e-6, atol=1e-8)


def test_cascade_tau_gradient_matches_the_convolution(net):
    """d/dtau through the cascade's own backward equals d/dtau through the kernels and the FIR backward."""
    rng = np.random.default_rng(12)
    params = _nash_params(net, rng, [2.0, 3.0])
    q = torch.as_tensor(runoff(net, rng, batch=1, steps=200))
    w = torch.as_tensor(rng.normal(size=q.shape))
    grads = []
    for n_grad in (False, True):  # n requiring a gradient sends the route through the kernels
        tau = torch.as_tensor(params["tau"]).clone().requires_grad_(True)
        n = torch.as_tensor(params["n"]).clone().requires_grad_(n_grad)
        out = route(net, q, {"tau": tau, "n": n}, "nash_cascade", dt=DT, engine="exact", dtype=torch.float64)
        (out * w).sum().backward()
        grads.append(tau.grad)
    assert float((grads[0] - grads[1]).abs().max()) <= 1e-9 * float(grads[1].abs().max())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pure_lag_routes_its_two_taps(net, dtype):
    from thalweg.routing import exact

    rng = np.random.default_rng(13)
    lag = rng.uniform(0.0, 30 * DT, net.n_reaches)
    lag[::5] = DT * rng.integers(0, 30, lag[::5].size)  # whole steps: a shift
    q = runoff(net, rng, batch=2, steps=250)
    ref = route_reference(net, q, {"lag": lag}, "pure_lag", dt=DT)
    out = route(net, torch.as_tensor(q, dtype=dtype), {"lag": lag}, "pure_lag", dt=DT, engine="exact", dtype=dtype)
    assert_discharge_close(out.double(), ref, rtol=1e-5 if dtype == torch.float32 else 1e-12, ids=net.ids)
    _, _, path = exact.route_exact(topology(net), torch.as_tensor(q), SCHEMES["pure_lag"],
                                   {"lag": torch.as_tensor(lag)}, DT, kernels_fn=None, kernel_length=None)
    assert path == "lag-native"


def test_pure_lag_gradient_matches_the_kernel_path(net):
    """d/dlag and d/dq through the two taps equal those through the full kernels (fractional lags)."""
    rng = np.random.default_rng(14)
    lag = (rng.integers(0, 20, net.n_reaches) + rng.uniform(0.05, 0.95, net.n_reaches)) * DT
    q0 = torch.as_tensor(runoff(net, rng, batch=1, steps=120))
    w = torch.as_tensor(rng.normal(size=q0.shape))
    grads = []
    for length in (None, 120):  # a given kernel length sends the route through the kernels
        lag_t = torch.as_tensor(lag).clone().requires_grad_(True)
        q = q0.clone().requires_grad_(True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ThalwegWarning)
            out = route(net, q, {"lag": lag_t}, "pure_lag", dt=DT, engine="exact", dtype=torch.float64,
                        kernel_length=length)
        (out * w).sum().backward()
        grads.append((lag_t.grad, q.grad))
    for a, b in zip(*grads):
        assert float((a - b).abs().max()) <= 1e-10 * float(b.abs().max())


def test_offset_rows_gradcheck_float64():
    small = scheidegger_network(7, seed=5)
    rng = np.random.default_rng(15)
    topo = topology(small)
    first = rng.integers(0, 25, small.n_reaches)  # some past the series (19 steps)
    w = torch.as_tensor(rng.uniform(0.1, 1.0, (small.n_reaches, 2))).requires_grad_(True)
    q = torch.as_tensor(runoff(small, rng, batch=1, steps=19)).requires_grad_(True)

    def fn(q, w):
        return _cpu.fir_route(q, w, None, topo, support=(first, first + 2), offset=first)[0]

    assert torch.autograd.gradcheck(fn, (q, w), eps=1e-6, atol=1e-8)


def test_hundred_tap_supports_take_the_direct_convolution(net):
    """Supports of ~100 taps (Hayami at daily steps) are convolved directly, not by the far slower FFT path."""
    from thalweg.routing import exact

    rng = np.random.default_rng(16)
    h = torch.as_tensor(_kernels(net.n_reaches, 400, rng))
    h[:, :120] += 1e-3  # every support about 120 taps
    h = h / h.sum(-1, keepdim=True)
    q = torch.as_tensor(runoff(net, rng, batch=1, steps=366))
    from thalweg.irf import Kernels

    full = dataclasses.replace(SCHEMES["hayami"], compact=None)  # a kernel scheme without the compact hook
    _, _, path = exact.route_exact(topology(net), q, full, {}, DT,
                                   kernels_fn=lambda L: Kernels(h[:, :L], h[:, :L]), kernel_length=None)
    assert path == "fir-native"


def _long_kernels(n, rng, *, shape):
    """Kernels of 40 to 200 taps that the blocked pass splits into head, body and tail groups.

    front: the peak at the support's first tap, a geometric fall over 16 taps, then a long flat tail of taps near
    3e-8 of the peak (below half a float32 ulp of it: summed onto the peak one by one they would all be lost).
    middle: a small head and tail around a body in the middle (a gamma-like bump).
    """
    h = np.zeros((n, 260))
    for i in range(n):
        a = int(rng.integers(0, 20))
        w = int(rng.integers(40, 200))
        if shape == "front":
            taps = np.concatenate([0.5 ** np.arange(16) * 2.0, np.full(w - 16, 3e-8)]) * rng.uniform(0.5, 1.5, w)
        else:
            k = np.arange(w, dtype=float)
            taps = (k + 1.0) ** 6 * np.exp(-(k + 1.0) / (w / 14.0))
        h[i, a:a + w] = taps / taps.sum()
    return h


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", ["front", "middle"])
@pytest.mark.parametrize("t_len", [37, 366, 1000])
def test_long_supports_match_brute_force(net, dtype, shape, t_len):
    """Supports longer than a block of taps, series of every remainder of the output blocks (64 / 192 steps)."""
    rng = np.random.default_rng(17)
    h = _long_kernels(net.n_reaches, rng, shape=shape)
    q = runoff(net, rng, batch=1, steps=t_len)
    ref = _brute(net, q, h, h)
    out, _, _ = _cpu.fir_route(torch.as_tensor(q, dtype=dtype), torch.as_tensor(h), None, topology(net))
    assert_discharge_close(out.double(), ref, rtol=1e-5 if dtype == torch.float32 else 1e-12, ids=net.ids)


def test_float32_keeps_the_mass_of_long_small_tails(net):
    """The tail taps (3e-8 of the peak each, ~1e-5 of the mass together) reach the float32 outflow: the blocked
    pass sums them apart from the peak (added one by one to the peak's sum they vanish: total outflow ~5e-6 low)."""
    rng = np.random.default_rng(18)
    h = _long_kernels(net.n_reaches, rng, shape="front")
    q = runoff(net, rng, batch=1, steps=366)
    ref = _brute(net, q, h, h)
    out, _, _ = _cpu.fir_route(torch.as_tensor(q, dtype=torch.float32), torch.as_tensor(h), None, topology(net))
    bias = (out.double().sum() - ref.sum()) / ref.sum()
    assert abs(float(bias)) < 5e-7


@pytest.mark.parametrize("shape", ["front", "middle"])
def test_long_support_gradients_float32_match_float64(net, shape):
    rng = np.random.default_rng(19)
    h = torch.as_tensor(_long_kernels(net.n_reaches, rng, shape=shape))
    q = runoff(net, rng, batch=1, steps=366)
    _assert_float32_gradients_match_float64(net, h, q, rng)
