"""muskingum_nonneg: non-negative runoff never gives negative discharge, mass is conserved, and only the reaches
that need it have x lowered (issue 7, item 1). Plain muskingum stays RAPID-identical and keeps warning."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from _routing_cases import DT, small_tree
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from thalweg.errors import ThalwegWarning
from thalweg.irf import SCHEMES
from thalweg.irf.muskingum import coefficients, nonneg_substeps
from thalweg.routing import route, route_reference


def _brute_force(k: float, x: float, dt: float, s_max: int = 4000) -> float:
    """The largest x' <= x for which some s in 1..s_max makes C0, C1, C2 at dt/s all >= 0 (search over s)."""
    s = np.arange(1, s_max + 1, dtype=np.float64)
    r = dt / (2.0 * k * s)
    feasible = np.minimum(np.minimum(r, 1.0 - r), x)
    return float(feasible.max())


@given(k=st.floats(0.1, 30 * 86400.0), x=st.floats(0.0, 0.5), dt=st.floats(60.0, 86400.0))
@settings(max_examples=300, deadline=None)
def test_substeps_and_x_are_the_best_non_negative_choice(k, x, dt):
    p = {"k": torch.tensor([k], dtype=torch.float64), "x": torch.tensor([x], dtype=torch.float64)}
    s, x_used, lowered = nonneg_substeps(p, dt)
    s, x_used = float(s[0]), float(x_used[0])
    assert s >= 1 and s == round(s)
    c0, c1, c2 = (float(c[0]) for c in coefficients(p["k"], torch.tensor([x_used], dtype=torch.float64), dt / s))
    tol = 1e-12
    assert min(c0, c1, c2) >= -tol, (s, x_used, c0, c1, c2)
    assert x_used <= x
    if dt / (2.0 * k) < 1000:  # the brute force covers the best s
        assert x_used == pytest.approx(_brute_force(k, x, dt), rel=1e-9, abs=1e-12)
    assert bool(lowered[0]) == (x_used < x)
    if 2.0 * k * x <= dt <= 2.0 * k * (1.0 - x):  # one step keeps every coefficient >= 0: nothing changes
        assert s == 1 and x_used == x


def test_kernels_are_non_negative_with_unit_mass(rng):
    scheme = SCHEMES["muskingum_nonneg"]
    n = 400
    p = {"k": torch.as_tensor(np.exp(rng.uniform(np.log(1.0), np.log(20 * 86400.0), n))),
         "x": torch.as_tensor(rng.uniform(0.0, 0.5, n))}
    kern = scheme.kernels(p, DT, 20000)
    assert float(kern.h.min()) >= 0.0 and float(kern.g.min()) >= 0.0
    np.testing.assert_allclose(kern.h.sum(-1).numpy(), 1.0, atol=1e-6)
    np.testing.assert_allclose(kern.g.sum(-1).numpy(), 1.0, atol=1e-6)
    coef = scheme.recursion(p, DT).stacked()
    assert float(coef.min()) >= 0.0  # r, b0, b1, c0, c1: the recursion itself cannot make a negative value


def test_x_kept_where_a_sub_step_can_and_lowered_with_one_warning_naming_ids(rng):
    net = small_tree()
    k = np.full(net.n_reaches, 3600.0)
    k[[1, 5]] = 86400.0  # dt < 2Kx: x must be lowered to dt/(2K) there
    x = np.full(net.n_reaches, 0.4)  # kept at k = 3600 s (2Kx = 2880 s <= dt <= 2K(1-x) = 4320 s)
    x[[1, 5]] = 0.25
    params = {"k": k, "x": x}
    q = rng.gamma(2.0, 1.0, size=(net.n_reaches, 50))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = route(net, q, params, "muskingum_nonneg", dt=DT, dtype=torch.float64, device="cpu")
    texts = [str(w.message) for w in caught if issubclass(w.category, ThalwegWarning)]
    assert len(texts) == 1, texts
    assert "on 2 of 9 reaches (2, 6)" in texts[0] and "x lowered" in texts[0]
    # the figures, over the lowered reaches only: x from 0.25 (0.4 elsewhere) down to dt / (2K), both with dt < 2Kx
    assert f"from up to 0.25 to as low as {DT / (2 * 86400.0):.3g})" in texts[0], texts[0]
    assert "2 of them have dt < 2Kx" in texts[0], texts[0]
    assert "scheme='muskingum'" in texts[0]  # the Python keyword, where the user is
    # away from the lowered reaches the result is plain Muskingum's (s = 1, x kept)
    p_t = {"k": torch.as_tensor(k), "x": torch.as_tensor(params["x"])}
    s, x_used, lowered = nonneg_substeps(p_t, DT)
    assert lowered.numpy().tolist() == [i in (1, 5) for i in range(9)]
    np.testing.assert_allclose(x_used.numpy()[[1, 5]], DT / (2 * 86400.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        lowered_params = {"k": k, "x": x_used.numpy()}
        plain = route_reference(net, q, lowered_params, "muskingum", dt=DT)
    np.testing.assert_allclose(out.numpy(), plain, rtol=1e-10, atol=1e-12)


def test_plain_muskingum_stays_rapid_identical_and_warns(rng):
    net = small_tree()
    params = {"k": np.full(net.n_reaches, 86400.0), "x": np.full(net.n_reaches, 0.25)}
    q = rng.gamma(2.0, 1.0, size=(net.n_reaches, 30))
    with pytest.warns(ThalwegWarning, match="negative coefficients.*muskingum_nonneg"):
        out = route(net, q, params, "muskingum", dt=DT, dtype=torch.float64, device="cpu")
    # RAPID's recursion written out: C0 = (dt - 2Kx)/D, C1 = (dt + 2Kx)/D, C2 = (2K(1-x) - dt)/D
    k, x = 86400.0, 0.25
    d = 2 * k * (1 - x) + DT
    c0, c1, c2 = (DT - 2 * k * x) / d, (DT + 2 * k * x) / d, (2 * k * (1 - x) - DT) / d
    head = 5  # reach id 6: its own outlet, no upstream
    expect, prev = [], 0.0
    for t in range(q.shape[1]):
        prev = c2 * prev + (c0 + c1) * q[head, t]
        expect.append(prev)
    np.testing.assert_allclose(out.numpy()[head], expect, rtol=1e-12)


_TREE = small_tree()


@st.composite
def _case(draw):
    n = _TREE.n_reaches
    dt = draw(st.sampled_from([60.0, 900.0, 3600.0, 3 * 3600.0, 86400.0]))
    # K from 1/100 to 40 steps: short against dt (many sub-steps) to long (x lowered), with a tail that empties
    k = np.minimum(dt * np.array(draw(st.lists(st.floats(0.01, 40.0), min_size=n, max_size=n))), 30 * 86400.0)
    x = np.array(draw(st.lists(st.floats(0.0, 0.5), min_size=n, max_size=n)))
    wet = draw(st.integers(1, 12))
    seed = draw(st.integers(0, 2**31 - 1))
    q = np.random.default_rng(seed).gamma(0.5, 2.0, size=(n, wet))
    q[np.random.default_rng(seed + 1).random(q.shape) < 0.3] = 0.0
    return k, x, dt, q


@given(case=_case())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_non_negative_runoff_gives_non_negative_discharge_and_keeps_mass(case):
    k, x, dt, wet_q = case
    params = {"k": k, "x": x}
    p_t = {"k": torch.as_tensor(k), "x": torch.as_tensor(x)}
    # long enough dry tail for every kernel to have emptied to 1e-9 of its mass along the longest path
    recursion = SCHEMES["muskingum_nonneg"].recursion(p_t, dt)
    slowest = float(recursion.r.max())
    tail = 64 if slowest < 1e-3 else int(np.ceil(np.log(1e-12) / np.log(slowest))) * 5 + 64
    q = np.zeros((_TREE.n_reaches, wet_q.shape[1] + tail))
    q[:, : wet_q.shape[1]] = wet_q
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        out64 = route(_TREE, q, params, "muskingum_nonneg", dt=dt, dtype=torch.float64, device="cpu").numpy()
        out32 = route(_TREE, q, params, "muskingum_nonneg", dt=dt, device="cpu").numpy()
    assert out64.min() >= 0.0 and out32.min() >= 0.0
    outlets = _TREE.outlets
    np.testing.assert_allclose(out64[outlets].sum(), q.sum(), rtol=1e-7)


def test_sample_basin_negative_with_the_old_defaults_none_with_the_new():
    """The Cance sample (routed as thalweg.demo routes it: GEOGloWS prior, hourly steps) had 298 negative
    values on 38 reaches with muskingum and muskingum_substep; muskingum_nonneg has none and keeps the volume."""
    pytest.importorskip("pyogrio", reason="reading the sample's GeoPackage needs the GIS extra")
    from thalweg.demo import sample_dir
    from thalweg.hydrography import read_network
    from thalweg.params import resolve_params
    from thalweg.runoff import read_runoff

    folder = sample_dir()
    net = read_network(folder / "cance_rivers.gpkg", layer="rivers")
    ro = read_runoff(folder / "cance_runoff.nc", net)
    params, _ = resolve_params(net, "muskingum")
    assert float(np.min(ro.values)) >= 0.0
    out = {}
    for name in ("muskingum", "muskingum_substep", "muskingum_nonneg"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out[name] = route(net, ro.values, params, name, dt=ro.dt, dtype=torch.float64, device="cpu").numpy()
        assert any(issubclass(w.category, ThalwegWarning) for w in caught), name  # each says what it does
    for old in ("muskingum", "muskingum_substep"):
        negative = out[old] < 0
        assert negative.sum() > 100 and negative.any(-1).sum() > 10, old
    assert out["muskingum_nonneg"].min() >= 0.0
    (outlet,) = net.outlets
    # the same water leaves the outlet (to the part still in the channels at the end of the series)
    np.testing.assert_allclose(out["muskingum_nonneg"][outlet].sum(), out["muskingum"][outlet].sum(), rtol=1e-3)


def test_substep_choice_is_shared_only_inside_a_scope_and_gradients_match_finite_differences(rng):
    """A prepared route makes the sub-step choice once for its report and its recursion (``irf.base.shared_scope``);
    outside such a block nothing is kept, so parameters changed in ways that bump no version counter (``.data``,
    a numpy array under the tensor, fused optimizers) still get the choice of their new values. The rewritten
    selections (no torch.where) keep the formulas' gradients."""
    from thalweg.irf.base import shared_scope

    n = 64
    k_np = np.exp(rng.uniform(np.log(60.0), np.log(5 * 86400.0), n))
    k = torch.from_numpy(k_np)  # shares k_np's memory
    x = torch.as_tensor(rng.uniform(0.0, 0.5, n), dtype=torch.float64)
    p = {"k": k, "x": x}
    first = nonneg_substeps(p, DT)[0].clone()
    k_np *= 0.01  # short reaches: more of them need sub-steps or a lowered x; k's version counter does not move
    assert not torch.equal(nonneg_substeps(p, DT)[0], first)
    with torch.no_grad():
        k.data.mul_(100.0)
    assert torch.equal(nonneg_substeps(p, DT)[0], first)
    with shared_scope():
        a, b = nonneg_substeps(p, DT)[0], nonneg_substeps(p, DT)[0]
        assert a is b  # made once in the block
        assert nonneg_substeps({"k": k.clone(), "x": x}, DT)[0] is not a  # other tensors: their own choice
    assert nonneg_substeps(p, DT)[0] is not a  # nothing kept after it

    scheme = SCHEMES["muskingum_nonneg"]
    kk = torch.as_tensor(k_np * 0.5).requires_grad_(True)
    xx = x.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: scheme.recursion({"k": a, "x": b}, DT).stacked(), (kk, xx))


def test_routes_in_inference_mode_and_after_it(rng):
    """In inference mode (tensors without version counters) the discharge is the one routed outside it, and an
    in-place change of k there is seen by the next sub-step choice."""
    net = small_tree()
    p = {"k": rng.uniform(600.0, 20000.0, net.n_reaches), "x": rng.uniform(0.1, 0.5, net.n_reaches)}
    q = rng.gamma(2.0, 1.0, (net.n_reaches, 48))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        outside = route(net, q, p, "muskingum_nonneg", dt=DT, device="cpu")
        with torch.inference_mode():
            inside = route(net, q, p, "muskingum_nonneg", dt=DT, device="cpu")
            p_inf = {"k": torch.as_tensor(p["k"]), "x": torch.as_tensor(p["x"])}
            first = nonneg_substeps(p_inf, DT)[0].clone()
            p_inf["k"].mul_(0.01)  # in place, in inference mode: no version counter to see it
            assert not torch.equal(nonneg_substeps(p_inf, DT)[0], first)
    assert torch.equal(outside, inside)
