"""``Scheme.compact``: each reach's kernel over its support only (pure lag, Hayami), against the full kernels,
the support rule on the full kernels, an mpmath inverse-Gaussian CDF, the float64 numpy routing, and finite
differences; the compiled Hayami path (routing.c's hayami_*) and its torch fallback both."""
from __future__ import annotations

import dataclasses
import math

import mpmath as mp
import numpy as np
import pytest
import torch
from thalweg.irf import SCHEMES, Compact, hayami, lag
from thalweg.irf.base import cdf_support, support_tol, taps_support
from thalweg.network import scheidegger_network
from thalweg.routing import _cpu, exact, route, route_reference
from thalweg.routing.topology import topology

native = pytest.mark.skipif(not _cpu.available(), reason="needs the compiled CPU engine")
PATHS = [pytest.param(True, id="compiled", marks=native), pytest.param(False, id="torch")]
HAYAMI = SCHEMES["hayami"]
CEL, DIF = HAYAMI.parameters  # celerity [0.05, 10] m/s, diffusivity [10, 1e6] m2/s


def _spread(n: int, rng: np.random.Generator) -> dict:
    """Hayami parameters over the whole parameter bounds (log-uniform, the four corners included) and reach
    lengths of 10 m to 100 km."""
    c = np.exp(rng.uniform(math.log(CEL.lower), math.log(CEL.upper), n))
    d = np.exp(rng.uniform(math.log(DIF.lower), math.log(DIF.upper), n))
    length = np.exp(rng.uniform(math.log(10.0), math.log(1e5), n))
    c[:4], d[:4] = [CEL.lower, CEL.lower, CEL.upper, CEL.upper], [DIF.lower, DIF.upper, DIF.lower, DIF.upper]
    length[4:8] = [10.0, 1e5, 10.0, 1e5]
    return {"celerity": torch.as_tensor(c), "diffusivity": torch.as_tensor(d), "length": torch.as_tensor(length)}


def _gathered(full: torch.Tensor, comp: Compact) -> tuple[np.ndarray, np.ndarray]:
    """The full kernels' taps at the compact columns (0 past each count) and the mask of the columns in use."""
    width = comp.taps.shape[1]
    cols = comp.first[:, None] + torch.arange(width)[None, :]
    inside = torch.arange(width)[None, :] < comp.count[:, None]
    taps = torch.gather(full, 1, cols.clamp(max=full.shape[1] - 1))
    return torch.where(inside, taps, 0.0).numpy(), inside.numpy()


def _ends(full: np.ndarray, comp: Compact) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mass of the full kernels before and after each compact support, and the cut tol * max(total, 1e-300)
    without tol."""
    k = np.arange(full.shape[1])[None, :]
    first = comp.first.numpy()[:, None]
    last = first + comp.count.numpy()[:, None]
    head = np.where(k < first, np.abs(full), 0.0).sum(1)
    tail = np.where(k >= last, np.abs(full), 0.0).sum(1)
    return head, tail, np.maximum(np.abs(full).sum(1), 1e-300)


CASES = [(86400.0, 366), (3600.0, 1500), (60.0, 400)]


@pytest.mark.parametrize("use_native", PATHS)
@pytest.mark.parametrize("dt,n_steps", CASES)
@pytest.mark.parametrize("tol", [1e-9, 1e-13])
def test_hayami_compact_is_the_full_kernel_over_the_support_rule(use_native, dt, n_steps, tol):
    p = _spread(600, np.random.default_rng(int(dt) + n_steps))
    comp = hayami.compact(p, dt, n_steps, tol, native=use_native)
    full, _ = hayami.kernel(p, dt, n_steps)
    taps, inside = _gathered(full, comp)
    assert comp.first.dtype == comp.count.dtype == torch.int64 and comp.taps.dtype == torch.float64
    assert int(comp.count.min()) >= 1 and comp.taps.shape[1] == int(comp.count.max())
    assert int((comp.first + comp.count).max()) <= n_steps
    np.testing.assert_allclose(comp.taps.numpy(), taps, rtol=0, atol=1e-12)
    assert not comp.taps.numpy()[~inside].any()  # zero past each count
    # at most tol of the mass left out at either end, up to the full kernels' own rounding: their tail taps are
    # differences of values near 1 (1.1e-16 steps), so sums of hundreds of them are off by up to ~1e-14 (the
    # exact rule is held to mpmath below)
    head, tail, total = _ends(full.numpy(), comp)
    slack = 2e-14 + 1e-3 * tol * total
    assert (head <= tol * total + slack).all() and (tail <= tol * total + slack).all()
    # the same supports as the rule on the full kernels, up to the rounding of masses at the cut
    k0, k1 = _cpu.kernel_support(full, None, tol) if _cpu.available() else map(np.asarray, taps_support(full, None,
                                                                                                      tol))
    first, last = comp.first.numpy(), (comp.first + comp.count).numpy()
    assert np.mean((first == k0) & (last == k1)) >= 0.9


def _mp_cdf(s, mu, lam):
    s, mu, lam = mp.mpf(s), mp.mpf(mu), mp.mpf(lam)
    if s <= 0:
        return mp.mpf(0)
    root = mp.sqrt(lam / s)
    return mp.ncdf(root * (s / mu - 1)) + mp.exp(2 * lam / mu) * mp.ncdf(-root * (s / mu + 1))


@pytest.mark.parametrize("use_native", PATHS)
def test_hayami_compact_against_mpmath(use_native):
    """Taps and supports against the inverse-Gaussian CDF in 40 digits: the support rule exactly (each end's
    mass <= tol of the total, one tap fewer would not be) and every tap."""
    mp.mp.dps = 40
    dt, n_steps, tol = 3600.0, 300, 1e-13
    p = _spread(24, np.random.default_rng(5))
    comp = hayami.compact(p, dt, n_steps, tol, native=use_native)
    mu, lam = (p["length"] / p["celerity"]).numpy(), (p["length"] ** 2 / (2 * p["diffusivity"])).numpy()
    for i in range(mu.size):
        f0, c = int(comp.first[i]), int(comp.count[i])
        big_f = [_mp_cdf(k * dt, mu[i], lam[i]) for k in range(f0, f0 + c + 1)]
        total = _mp_cdf(n_steps * dt, mu[i], lam[i])
        cut = tol * max(total, mp.mpf(1e-300))
        if total < 1e-290:  # nothing within the horizon: one tap at its end, at most the float64 underflow
            assert f0 + c == n_steps and float(total) < 1e-290
            continue
        near = mp.mpf(1) + mp.mpf(1e-9)  # masses within 1e-9 of the cut may round either way
        assert big_f[0] <= cut * near, (i, "head kept too little")
        assert f0 == 0 or _mp_cdf((f0 + 1) * dt, mu[i], lam[i]) > cut / near, (i, "head kept too much")
        assert total - big_f[-1] <= cut * near, (i, "tail kept too little")
        assert c == 1 or total - big_f[-2] > cut / near, (i, "tail kept too much")
        want = np.array([float(b - a) for a, b in zip(big_f[:-1], big_f[1:])])
        # a tap is a difference of the CDF's values. Head taps (F <= 1/2 at their end) to 1e-12 of the mass before
        # their end (the compiled F is a sum of positive terms; torch's too since Phi(a) goes by erfc); tail taps to
        # 1e-12 of themselves plus 2e-15 (torch: differences of values near 1; compiled: 1 - F = phi(a) (R(a) - R(b))
        # cancels where b - a << 1, very diffusive reaches, to ~eps Phi(-a))
        before = np.array([float(b) for b in big_f[1:]])
        head = before <= 0.5
        bound = np.where(head, 1e-12 * np.maximum(want, before), 1e-12 * want + 2e-15)
        got = comp.taps[i, :c].numpy()
        assert np.all(np.abs(got - want) <= bound), (i, float(np.max(np.abs(got - want) / bound)))


def test_cdf_keeps_the_far_head():
    """``cdf`` at a = sqrt(lam/s)(s/mu - 1) below -8.3, where torch's ndtr is 0: to 1e-13 of mpmath."""
    mp.mp.dps = 40
    mu, lam = 155593.6, 603575.3
    s = torch.tensor([7740.0, 3000.0, 1500.0], dtype=torch.float64)
    got = hayami.cdf(s, torch.tensor(mu, dtype=torch.float64), torch.tensor(lam, dtype=torch.float64)).numpy()
    want = np.array([float(_mp_cdf(float(v), mu, lam)) for v in s])
    assert (want > 0).all() and (want < 1e-16).all()
    np.testing.assert_allclose(got, want, rtol=1e-13)


@native
def test_compiled_and_torch_compact_agree():
    p = _spread(2000, np.random.default_rng(9))
    for dt, n_steps in CASES:
        a = hayami.compact(p, dt, n_steps, 1e-9, native=True)
        b = hayami.compact(p, dt, n_steps, 1e-9, native=False)
        same = (a.first == b.first) & (a.count == b.count)
        assert float(same.double().mean()) >= 0.99
        np.testing.assert_allclose(a.taps[same, :b.taps.shape[1]].numpy(), b.taps[same, :a.taps.shape[1]].numpy(),
                                   rtol=0, atol=1e-13)


@native
def test_compiled_compact_in_threads_and_chunks_is_the_same(monkeypatch):
    p = _spread(1000, np.random.default_rng(2))
    one = hayami.compact(p, 3600.0, 500, 1e-13)
    monkeypatch.setattr(hayami, "CHUNK", 97)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        two = hayami.compact(p, 3600.0, 500, 1e-13)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one.first, two.first) and torch.equal(one.count, two.count)
    assert torch.equal(one.taps, two.taps)


def test_torch_fallback_without_the_library(monkeypatch):
    p = _spread(50, np.random.default_rng(4))
    want = hayami.compact(p, 3600.0, 200, 1e-13, native=False)
    monkeypatch.setattr(hayami, "_library", lambda: None)
    got = hayami.compact(p, 3600.0, 200, 1e-13)
    assert torch.equal(got.first, want.first) and torch.equal(got.taps, want.taps)
    with pytest.raises(RuntimeError, match="compiled path"):
        hayami.compact(p, 3600.0, 200, 1e-13, native=True)


@pytest.mark.parametrize("use_native", PATHS)
def test_hayami_taps_gradients_match_finite_differences(use_native):
    """Taps over fixed supports (computed once) against central differences in celerity, diffusivity and length
    (the compiled path: the analytic derivatives of routing.c's hayami_taps_backward)."""
    p = _spread(8, np.random.default_rng(8))  # the four corners of the bounds, and four inside
    p["length"] = torch.as_tensor([800.0, 3000.0, 12000.0, 500.0, 40000.0, 2000.0, 150.0, 7000.0],
                                  dtype=torch.float64)
    comp = hayami.compact(p, 3600.0, 120, 1e-13, native=use_native)

    def taps(log_c, log_d, log_length):  # in logs: one relative eps for parameters across five decades
        c, d, length = torch.exp(log_c), torch.exp(log_d), torch.exp(log_length)
        mu, lam = length / c, length**2 / (2 * d)
        if use_native:
            return hayami._Taps.apply(mu, lam, comp.first, comp.count, comp.taps.shape[1], 3600.0, 120)
        j = torch.arange(comp.taps.shape[1] + 1)
        f = hayami.cdf((comp.first[:, None] + j) * 3600.0, mu[:, None], lam[:, None])
        return torch.where(j[None, :-1] < comp.count[:, None], f[:, 1:] - f[:, :-1], 0.0)

    args = tuple(torch.log(p[k]).requires_grad_(True) for k in ("celerity", "diffusivity", "length"))
    assert torch.autograd.gradcheck(taps, args, eps=1e-6, atol=1e-8, rtol=1e-5)


# --- routing through the compact kernels -------------------------------------------------------------------

@pytest.fixture(scope="module")
def net():
    return scheidegger_network(150, seed=3)


def _route_params(net, rng):
    n = net.n_reaches
    return {"celerity": torch.as_tensor(rng.uniform(0.2, 3.0, n)),
            "diffusivity": torch.as_tensor(np.exp(rng.uniform(math.log(50.0), math.log(5e4), n))),
            "length": torch.as_tensor(np.asarray(net.length, dtype=np.float64))}


def _runoff(net, rng, steps, dtype):
    return torch.as_tensor(rng.gamma(2.0, 1.0, (2, net.n_reaches, steps)), dtype=dtype)


def _old(topo, q, p, dt, **kw):
    """The full-kernel path: the same scheme without its compact hook."""
    scheme = dataclasses.replace(HAYAMI, compact=None)
    return exact.route_exact(topo, q, scheme, p, dt, kernels_fn=lambda length: scheme.kernels(p, dt, length),
                             kernel_length=None, **kw)


def _rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@native
@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-6), (torch.float32, 1e-5)])
@pytest.mark.parametrize("dt", [3600.0, 86400.0])
def test_fir_compact_routes_as_the_full_kernels(net, dtype, rtol, dt):
    rng = np.random.default_rng(int(dt))
    p = _route_params(net, rng)
    q = _runoff(net, rng, 240, dtype)
    topo = topology(net)
    out, _, path = exact.route_exact(topo, q, HAYAMI, p, dt, kernels_fn=None, kernel_length=None)
    assert path == "fir-compact"  # never asked for [N, T] kernels (kernels_fn None would fail)
    old, _, old_path = _old(topo, q, p, dt)
    assert old_path == "fir-native"
    assert out.dtype == dtype and _rel(out, old) <= rtol
    ref = route_reference(net, q.double().numpy(), {k: v.numpy() for k, v in p.items() if k != "length"}, "hayami",
                          dt=dt)  # the float64 numpy convolution with the whole kernels
    assert _rel(out, ref) <= rtol
    # route() takes it too
    q_api = route(net, q, {k: v.numpy() for k, v in p.items() if k != "length"}, "hayami", dt=dt, engine="exact",
                  dtype=dtype)
    assert _rel(q_api, ref) <= rtol


@native
def test_kernel_length_and_warm_starts_keep_the_full_kernels(net):
    rng = np.random.default_rng(1)
    p = _route_params(net, rng)
    q = _runoff(net, rng, 100, torch.float64)
    topo = topology(net)
    _, _, path = exact.route_exact(topo, q, HAYAMI, p, 3600.0, kernels_fn=lambda n: HAYAMI.kernels(p, 3600.0, n),
                                   kernel_length=50)
    assert path == "fir-native"
    _, _, path = exact.route_exact(topo, q, HAYAMI, p, 3600.0, kernels_fn=lambda n: HAYAMI.kernels(p, 3600.0, n),
                                   kernel_length=None, want="history")
    assert path == "fir-native"


@native
def test_routed_gradients_in_celerity_and_diffusivity(net):
    """dQ/dc and dQ/dD through the compiled convolution and the compiled taps, by finite differences (float64;
    supports held fixed within eps: a support edge moves only taps of <= 1e-13 of the mass)."""
    small = scheidegger_network(12, seed=2)
    rng = np.random.default_rng(6)
    p = _route_params(small, rng)
    q = _runoff(small, rng, 40, torch.float64)[:1]
    topo = topology(small)
    weights = torch.as_tensor(rng.uniform(0.5, 1.5, q.shape))

    def loss(c, d):
        out, _, path = exact.route_exact(topo, q, HAYAMI, {"celerity": c, "diffusivity": d, "length": p["length"]},
                                         1800.0, kernels_fn=None, kernel_length=None)
        assert path == "fir-compact"
        return (out * weights).sum(-1)

    args = (p["celerity"].clone().requires_grad_(True), p["diffusivity"].clone().requires_grad_(True))
    assert torch.autograd.gradcheck(loss, args, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_lag_compact_is_its_two_taps():
    rng = np.random.default_rng(3)
    p = {"lag": torch.as_tensor(np.concatenate([rng.uniform(0, 30 * 3600.0, 40), [0.0, 3600.0, 7200.0]]))}
    comp = SCHEMES["pure_lag"].compact(p, 3600.0, 24, support_tol(torch.float32))
    d = p["lag"].numpy() / 3600.0
    first = np.floor(d)
    assert comp.first.dtype == torch.int64 and np.array_equal(comp.first.numpy(), first.astype(np.int64))
    np.testing.assert_allclose(comp.taps.numpy(), np.stack([1.0 - (d - first), d - first], -1), rtol=0, atol=1e-15)
    assert (comp.count == 2).all()  # whole lags too: the second tap (0) keeps its gradient
    full, _ = lag.kernel(p, 3600.0, 40)
    taps, _ = _gathered(full, comp)
    np.testing.assert_allclose(comp.taps.numpy(), taps, atol=1e-15)


@native
def test_lag_routes_through_the_hook_as_lag_native(net):
    rng = np.random.default_rng(2)
    p = {"lag": torch.as_tensor(rng.uniform(0, 20 * 3600.0, net.n_reaches))}
    q = _runoff(net, rng, 80, torch.float64)
    out, _, path = exact.route_exact(topology(net), q, SCHEMES["pure_lag"], p, 3600.0, kernels_fn=None,
                                     kernel_length=None)
    assert path == "lag-native"
    ref = route_reference(net, q.numpy(), {"lag": p["lag"].numpy()}, "pure_lag", dt=3600.0)
    assert _rel(out, ref) <= 1e-12


def test_cdf_support_is_the_rule_on_the_increments():
    """The bisection on a CDF against the scan of its increments (``taps_support``), for a CDF with exact
    increments (the cumulative sum of given taps)."""
    rng = np.random.default_rng(7)
    h = torch.as_tensor(rng.gamma(0.3, 1.0, (300, 90)) * (rng.random((300, 90)) < 0.5))
    h[:5] = 0.0
    h[5:10, :] = 0.0
    h[5:10, -1] = 1.0  # all the mass in the last tap
    cum = torch.cat([torch.zeros(300, 1, dtype=h.dtype), torch.cumsum(h, -1)], -1)
    for tol in (1e-9, 1e-3, 0.2):
        first, count = cdf_support(lambda m: cum.gather(1, m.long()[:, None])[:, 0], 90, tol, h[:, 0])
        k0, k1 = taps_support(h, None, tol)
        assert torch.equal(first, k0) and torch.equal(first + count, k1)
