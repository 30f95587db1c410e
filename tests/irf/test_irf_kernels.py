"""Each kernel against its definition in ROUTING.md section 3, parametrised from the SCHEMES registry."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from thalweg.errors import InputError, ThalwegWarning
from thalweg.irf import (
    SCHEMES,
    Parameter,
    Scheme,
    get_scheme,
    register_scheme,
    truncate,
)
from thalweg.irf.hayami import cdf
from thalweg.irf.muskingum import coefficients, substeps

DT = 3600.0


def _params(scheme: Scheme, n: int, rng: np.random.Generator, *, max_travel: float = 20 * DT) -> dict:
    """Random parameters in bounds whose travel time stays under ``max_travel`` s (short kernels)."""
    raw = scheme.sample_params(n, rng)
    p = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in raw.items()}
    if scheme.uses_length:
        p["length"] = torch.as_tensor(rng.uniform(500.0, 5000.0, n))
    tt = scheme.travel_time(p, DT)
    scale = torch.clamp(max_travel / tt, max=1.0)
    for spec in scheme.parameters:  # shrink the time-like parameters of reaches that are too slow
        if spec.unit == "s":
            p[spec.name] = torch.clamp(p[spec.name] * scale, min=spec.lower)
        elif spec.unit == "m s-1":
            p[spec.name] = torch.clamp(p[spec.name] / scale, max=spec.upper)
    if "diffusivity" in p:
        # Peclet number c L / D >= 2 (lambda >= mu): otherwise the inverse Gaussian has a tail of
        # exp(-lambda s / (2 mu^2)) too heavy for any test horizon (physically: diffusion-dominated reaches)
        p["diffusivity"] = torch.clamp(torch.minimum(p["diffusivity"], p["celerity"] * p["length"] / 2.0), min=10.0)
    return p


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_kernel_has_unit_mass(name, rng):
    scheme = SCHEMES[name]
    p = _params(scheme, 50, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        k = scheme.kernels(p, DT, 4000)
    for kern, what in ((k.h, "h"), (k.g, "g")):
        assert kern.shape == (50, 4000), what
        np.testing.assert_allclose(kern.sum(-1).numpy(), 1.0, atol=1e-9, err_msg=f"{name}.{what}")


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_auto_length_covers_the_mass(name, rng):
    scheme = SCHEMES[name]
    p = _params(scheme, 50, rng)
    length = scheme.auto_length(p, DT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        k = scheme.kernels(p, DT, length)
    assert float(k.h.sum(-1).min()) > 0.99


def _muskingum_recursion(c0, c1, c2, inflow):
    out = np.zeros_like(inflow)
    prev_o, prev_i = 0.0, 0.0
    for t, i in enumerate(inflow):
        prev_o = c0 * i + c1 * prev_i + c2 * prev_o
        prev_i = i
        out[t] = prev_o
    return out


@pytest.mark.parametrize("k, x", [(1800.0, 0.25), (7200.0, 0.1), (86400.0, 0.45), (3000.0, 0.4), (1000.0, 0.2)])
def test_muskingum_kernel_equals_its_recursion(k, x):
    p = {"k": torch.tensor([k], dtype=torch.float64), "x": torch.tensor([x], dtype=torch.float64)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        kern = SCHEMES["muskingum"].kernels(p, DT, 300)
    c0, c1, c2 = (float(c) for c in coefficients(p["k"], p["x"], DT))
    impulse = np.zeros(300)
    impulse[0] = 1.0
    np.testing.assert_allclose(kern.h[0].numpy(), _muskingum_recursion(c0, c1, c2, impulse), rtol=0, atol=1e-15)
    # lateral: Q[t] = C2 Q[t-1] + (C0 + C1) q[t]  (river-route's plain Muskingum, runoff at the inlet)
    np.testing.assert_allclose(kern.g[0].numpy(), _muskingum_recursion(c0 + c1, 0.0, c2, impulse), atol=1e-15)
    assert math.isclose(c0 + c1 + c2, 1.0, abs_tol=1e-15)


def test_muskingum_warns_on_negative_coefficients():
    p = {"k": torch.tensor([600.0, 86400.0]), "x": torch.tensor([0.25, 0.25])}
    with pytest.warns(ThalwegWarning, match=r"1 reaches \(C0 < 0.*1 reaches \(C2 < 0|negative coefficients"):
        SCHEMES["muskingum"].kernels(p, DT, 10)


@pytest.mark.parametrize("k, x", [(600.0, 0.25), (1000.0, 0.0), (1700.0, 0.45), (40000.0, 0.2)])
def test_substep_kernel_equals_fine_recursion(k, x):
    p = {"k": torch.tensor([k], dtype=torch.float64), "x": torch.tensor([x], dtype=torch.float64)}
    s = int(substeps(p, DT)[0])
    assert (2 * k * (1 - x) >= DT / s - 1e-9)
    kern = SCHEMES["muskingum_substep"].kernels(p, DT, 60)
    c0, c1, c2 = (float(c) for c in coefficients(p["k"], p["x"], DT / s))
    assert c2 >= -1e-12
    impulse = np.zeros(60 * s)
    impulse[:s] = 1.0  # a unit step-mean input held over the first coarse step
    fine_h = _muskingum_recursion(c0, c1, c2, impulse)[s - 1::s]
    fine_g = _muskingum_recursion(c0 + c1, 0.0, c2, impulse)[s - 1::s]
    np.testing.assert_allclose(kern.h[0].numpy(), fine_h, atol=1e-14)
    np.testing.assert_allclose(kern.g[0].numpy(), fine_g, atol=1e-14)
    # sub-stepping removes the oscillation of C2 < 0; only h[0] may stay negative (C0 < 0 when dt < 2Kx)
    assert float(kern.h[:, 1:].min()) >= -1e-15 and float(kern.g.min()) >= -1e-15


def test_linear_storage_equals_implicit_euler():
    tau = 5000.0
    p = {"tau": torch.tensor([tau], dtype=torch.float64)}
    h = SCHEMES["linear_storage"].kernels(p, DT, 50).h[0].numpy()
    a = DT / (tau + DT)
    out, prev = [], 0.0
    for t in range(50):  # S' = I - S / tau, implicit Euler, Q = S / tau: Q[t] = (1 - a) Q[t-1] + a I[t]
        prev = (1 - a) * prev + a * (1.0 if t == 0 else 0.0)
        out.append(prev)
    np.testing.assert_allclose(h, out, atol=1e-16)


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_nash_integer_n_is_n_fold_linear_storage(n):
    tau = 7200.0
    length = 200
    ls = SCHEMES["linear_storage"].kernels({"tau": torch.tensor([tau], dtype=torch.float64)}, DT, length).h[0]
    expected = np.zeros(length)
    expected[0] = 1.0
    for _ in range(n):
        expected = np.convolve(expected, ls.numpy())[:length]
    p = {"tau": torch.tensor([tau], dtype=torch.float64), "n": torch.tensor([float(n)], dtype=torch.float64)}
    h = SCHEMES["nash_cascade"].kernels(p, DT, length).h[0].numpy()
    np.testing.assert_allclose(h, expected, rtol=1e-10, atol=1e-16)


def test_nash_non_integer_n_lies_between_its_neighbours():
    p = {"tau": torch.full((3,), 7200.0, dtype=torch.float64),
         "n": torch.tensor([2.0, 2.5, 3.0], dtype=torch.float64)}
    h = SCHEMES["nash_cascade"].kernels(p, DT, 400).h
    mean = (h * torch.arange(400, dtype=torch.float64)).sum(-1)
    assert float(mean[0]) < float(mean[1]) < float(mean[2])
    # negative binomial mean n (1 - a) / a, a = dt / (tau + dt)
    a = DT / (7200.0 + DT)
    np.testing.assert_allclose(mean.numpy(), [n * (1 - a) / a for n in (2.0, 2.5, 3.0)], rtol=1e-9)


def _hayami_density(s, length, c, d):
    return length / (2.0 * np.sqrt(np.pi * d * s**3)) * np.exp(-(length - c * s) ** 2 / (4.0 * d * s))


@pytest.mark.parametrize("length, c, d", [(2000.0, 1.0, 1e4), (20000.0, 0.5, 1e5), (5e4, 2.0, 300.0),
                                          (1000.0, 0.2, 5e5)])
def test_hayami_is_the_cell_integral_of_the_density(length, c, d):
    n_steps = 60
    p = {"length": torch.tensor([length], dtype=torch.float64), "celerity": torch.tensor([c], dtype=torch.float64),
         "diffusivity": torch.tensor([d], dtype=torch.float64)}
    h = SCHEMES["hayami"].kernels(p, DT, n_steps).h[0].numpy()
    expected = np.empty(n_steps)
    for k in range(n_steps):
        # Simpson's rule in u = log(s) (the density can peak within seconds of s = 0 when D is large)
        u = np.linspace(np.log(max(k * DT, 1e-3)), np.log((k + 1) * DT), 20001)
        f = _hayami_density(np.exp(u), length, c, d) * np.exp(u)
        w = np.ones_like(u)
        w[1:-1:2], w[2:-1:2] = 4.0, 2.0
        expected[k] = (u[1] - u[0]) / 3.0 * (w * f).sum()
    np.testing.assert_allclose(h, expected, atol=1e-9)
    # the step-mean of the density is the cell integral, not a point sample
    assert np.argmax(h) == np.argmax(expected)


def test_hayami_cdf_survives_long_slow_reaches():
    # exp(2 lambda / mu) = exp(c L / D) overflows float64 here; the log-space term must not
    s = torch.tensor([1e5, 2e5, 4e5], dtype=torch.float64)
    mu = torch.tensor(2e5 / 0.5, dtype=torch.float64)
    lam = torch.tensor((2e5) ** 2 / (2 * 10.0), dtype=torch.float64)
    f = cdf(s, mu, lam)
    assert torch.isfinite(f).all() and float(f.min()) >= 0 and float(f.max()) <= 1


@pytest.mark.parametrize("lag_steps, taps", [(0.0, {0: 1.0}), (3.0, {3: 1.0}), (2.3, {2: 0.7, 3: 0.3}),
                                             (0.75, {0: 0.25, 1: 0.75})])
def test_pure_lag_interpolates_between_steps(lag_steps, taps):
    h = SCHEMES["pure_lag"].kernels({"lag": torch.tensor([lag_steps * DT], dtype=torch.float64)}, DT, 8).h[0]
    expected = np.zeros(8)
    for k, v in taps.items():
        expected[k] = v
    np.testing.assert_allclose(h.numpy(), expected, atol=1e-12)


def test_truncate_keeps_mass_and_reports_the_tail():
    a = 0.1
    kernel = a * (1 - a) ** torch.arange(200, dtype=torch.float64)[None, :].repeat(2, 1)
    kernel[1] *= 3.0  # truncation keeps whatever mass the kernel had
    kept, tail = truncate(kernel, 20)
    assert kept.shape == (2, 20)
    np.testing.assert_allclose(kept.sum(-1).numpy(), kernel.sum(-1).numpy(), rtol=1e-12)
    expected_tail = (1 - a) ** 20 - (1 - a) ** 200  # geometric tail between 20 and 200, over the total mass
    np.testing.assert_allclose(tail.numpy(), expected_tail / (1 - (1 - a) ** 200), rtol=1e-10)
    # the kept shape is the original shape scaled
    np.testing.assert_allclose((kept / kernel[:, :20]).numpy(), np.broadcast_to(kept[:, :1] / kernel[:, :1], (2, 20)))


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_kernels_are_differentiable_in_every_parameter(name, rng):
    scheme = SCHEMES[name]
    base = _params(scheme, 3, rng, max_travel=4.37 * DT)  # off the lag kernel's kinks at whole steps
    names = list(scheme.parameter_names)

    def f(*values):
        p = dict(base)
        p.update(zip(names, values))
        k = scheme.kernels(p, DT, 12)
        return k.h, k.g

    inputs = tuple(base[n].clone().requires_grad_(True) for n in names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        # relative finite-difference step: the parameters span 1e-1 .. 1e6
        eps = 1e-6 * max(float(min(i.detach().abs().min() for i in inputs)), 1e-3)
        assert torch.autograd.gradcheck(f, inputs, eps=eps, atol=1e-7, rtol=1e-4)


def test_registry_takes_a_custom_scheme_and_refuses_duplicates():
    def kernel(params, dt, n_steps):
        h = torch.zeros(params["w"].shape[0], n_steps, dtype=params["w"].dtype)
        h[:, 0] = 1.0
        return h, None

    custom = Scheme(name="_test_identity", parameters=(Parameter("w", "1", "unused", 0.0, 1.0, 0.5),),
                    kernel=kernel, travel_time=lambda p, dt: torch.zeros_like(p["w"]))
    try:
        register_scheme(custom)
        assert get_scheme("_test_identity") is custom
        with pytest.raises(ValueError, match="registered already"):
            register_scheme(custom)
    finally:
        SCHEMES.pop("_test_identity", None)
    with pytest.raises(InputError, match="unknown routing scheme 'nope'") as err:
        get_scheme("nope")
    assert "muskingum" in err.value.hint


@pytest.mark.parametrize("name", sorted(n for n, s in SCHEMES.items() if s.recursion is not None))
def test_recursion_has_the_kernels_as_impulse_responses(name, rng):
    scheme = SCHEMES[name]
    p = _params(scheme, 20, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        kern = scheme.kernels(p, DT, 80)
        rec = scheme.recursion(p, DT)
    for series, (first, second), what in ((kern.h, (rec.b0, rec.b1), "h"), (kern.g, (rec.c0, rec.c1), "g")):
        out, prev_out, prev_in = [], torch.zeros(20, dtype=torch.float64), torch.zeros(20, dtype=torch.float64)
        for t in range(80):
            impulse = torch.full((20,), 1.0 if t == 0 else 0.0, dtype=torch.float64)
            prev_out = rec.r * prev_out + first * impulse + second * prev_in
            prev_in = impulse
            out.append(prev_out)
        np.testing.assert_allclose(torch.stack(out, -1).numpy(), series.numpy(), atol=1e-14, err_msg=f"{name}.{what}")
