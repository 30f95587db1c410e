"""Every engine against the float64 reference, for every registered scheme (ROUTING.md section 4)."""
from __future__ import annotations

import functools
import os
import warnings

import numpy as np
import pytest
import torch
from _routing_cases import DT, runoff, scheme_params, small_tree
from thalweg.errors import InputError, NetworkError, RunoffError, ThalwegWarning
from thalweg.irf import SCHEMES
from thalweg.routing import ENGINES, route, route_reference
from thalweg.testing import assert_discharge_close

ENGINE_NAMES = [e for e in ENGINES if e != "auto"]


# the closure engine on CPU convolves (sources x taps) per target: a shorter case keeps CI fast
_STEPS = {"closure": 32}
_TRAVEL = {"closure": 0.5 * DT}


@functools.cache
def _case(scheme: str, steps: int, travel: float, network_key: int):
    """(params, runoff, reference Q) for a scheme on the deep network, computed once per run."""
    network = _NETWORKS[network_key]
    rng = np.random.default_rng(abs(hash((scheme, steps))) % 2**32)
    params = scheme_params(SCHEMES[scheme], network, rng, max_travel=travel)
    q = runoff(network, rng, batch=1 if steps < 100 else 2, steps=steps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        ref = route_reference(network, q, params, scheme, dt=DT)
    return params, q, ref


_NETWORKS: dict[int, object] = {}


def _deep_case(scheme, deep_network, engine="exact"):
    _NETWORKS[id(deep_network)] = deep_network
    return _case(scheme, _STEPS.get(engine, 300), _TRAVEL.get(engine, 6 * DT), id(deep_network))


@pytest.mark.parametrize("engine", ENGINE_NAMES)
@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_engine_matches_reference(scheme, engine, deep_network):
    params, q, ref = _deep_case(scheme, deep_network, engine)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        out = route(deep_network, q.astype(np.float32), params, scheme, dt=DT, engine=engine, device="cpu")
    assert out.dtype == torch.float32 and out.shape == q.shape
    assert_discharge_close(out, ref, rtol=1e-5, ids=deep_network.ids)


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_float64_is_float64_close(engine, deep_network):
    params, q, ref = _deep_case("muskingum", deep_network, engine)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        out = route(deep_network, q, params, "muskingum", dt=DT, engine=engine, dtype=torch.float64, device="cpu")
    assert out.dtype == torch.float64
    assert_discharge_close(out, ref, rtol=1e-10, ids=deep_network.ids)


@pytest.mark.parametrize("engine", ENGINE_NAMES)
@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_mass_balance_closes(scheme, engine, deep_network, mid_basin, rng):
    """All runoff leaves through the outlet once a long enough dry tail has passed."""
    network = mid_basin if engine == "closure" else deep_network  # closure on CPU: a smaller basin
    params = scheme_params(SCHEMES[scheme], network, rng, max_travel=1 * DT)
    steps = 300 if engine == "closure" else 700
    q = np.zeros((1, network.n_reaches, steps))
    q[..., :48] = rng.gamma(2.0, 1.0, size=(1, network.n_reaches, 48))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        out = route(network, q, params, scheme, dt=DT, engine=engine, device="cpu")
    (outlet,) = network.outlets
    volume_in = q.sum() * DT
    volume_out = float(out[0, outlet].double().sum()) * DT
    assert abs(volume_out - volume_in) <= 1e-6 * volume_in, (volume_in, volume_out)
    assert float(out[0, outlet, -1]) <= 1e-9 * float(out[0, outlet].max())  # the tail is dry: nothing cut off


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_output_at_gauges_in_their_order(engine, deep_network):
    params, q, ref = _deep_case("linear_storage", deep_network, engine)
    gauges = deep_network.ids[[deep_network.outlets[0], 17, 5, 1000]]
    out = route(deep_network, q.astype(np.float32), params, "linear_storage", dt=DT, engine=engine,
                at=gauges, device="cpu")
    assert out.shape == (q.shape[0], 4, q.shape[-1])
    assert_discharge_close(out, ref[:, deep_network.index_of(gauges)], rtol=1e-5, ids=gauges)
    single = route(deep_network, q[0].astype(np.float32), params, "linear_storage", dt=DT, engine=engine,
                   at=gauges[:2], device="cpu")
    assert single.shape == (2, q.shape[-1])
    with pytest.raises(NetworkError, match="987654321"):
        route(deep_network, q, params, "linear_storage", dt=DT, engine=engine, at=[987654321], device="cpu")


def _gradcheck_route(scheme_name, engine, network, rng, steps=10):
    scheme = SCHEMES[scheme_name]
    base = scheme_params(scheme, network, rng, max_travel=2.37 * DT)
    names = list(scheme.parameter_names)
    q0 = torch.as_tensor(runoff(network, rng, batch=1, steps=steps)[0])

    def f(q, *values):
        params = dict(zip(names, values))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ThalwegWarning)
            return route(network, q, params, scheme_name, dt=DT, engine=engine, dtype=torch.float64, device="cpu")

    inputs = (q0.clone().requires_grad_(True),) + tuple(torch.as_tensor(base[n]).clone().requires_grad_(True)
                                                        for n in names)
    # one finite-difference step for all inputs, relative to the smallest (x ~ 0.1 next to k ~ 1e3 s)
    eps = 1e-6 * min(float(i.detach().abs().clamp(min=1e-3).min()) for i in inputs[1:])
    assert torch.autograd.gradcheck(f, inputs, eps=eps, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("engine", ENGINE_NAMES)
@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_gradients_match_finite_differences(scheme, engine, rng):
    _gradcheck_route(scheme, engine, small_tree(), rng)


def test_reference_is_the_recursion_on_a_hand_tree():
    """Linear storage on the hand tree, recursion written out here, against route_reference."""
    net = small_tree()
    tau = np.full(net.n_reaches, 2 * DT)
    q = np.zeros((net.n_reaches, 6))
    q[net.index_of([7])[0], 0] = 1.0  # one unit in reach 7 at the first step: 7 -> 2 -> 1 -> 4
    out = route_reference(net, q, {"tau": tau}, "linear_storage", dt=DT)
    a = DT / (2 * DT + DT)
    expect = {}
    upstream = np.zeros(6)
    for reach in (7, 2, 1, 4):
        prev, series = 0.0, []
        for t in range(6):
            prev = (1 - a) * prev + a * (upstream[t] + q[net.index_of([reach])[0], t])
            series.append(prev)
        expect[reach] = np.array(series)
        upstream = expect[reach]
    for reach, series in expect.items():
        np.testing.assert_allclose(out[net.index_of([reach])[0]], series, rtol=1e-14)
    for reach in (3, 5, 6, 8, 9):
        assert not out[net.index_of([reach])[0]].any()


@pytest.mark.skipif(bool(os.environ.get("THALWEG_NO_NATIVE")), reason="THALWEG_NO_NATIVE is set")
def test_compiled_cpu_kernels_build():
    """The C kernels compile here (setup.sh installs gcc): without them CPU routing falls back to torch, ~10x
    slower, so a machine that should have them and does not is a failure, not a silent fallback."""
    from thalweg.routing import _native

    assert _native.load() is not None, _native.unavailable_reason()


def test_reaches_of_a_few_metres_route_with_a_warning(rng):
    """k of seconds (NHDPlus flowlines of a few metres) is accepted: plain Muskingum warns and still equals
    the recursion; the sub-stepped scheme routes it without negative coefficients."""
    net = small_tree()
    k = np.full(net.n_reaches, 3600.0)
    k[[0, 4]] = [2.0, 0.5]
    params = {"k": k, "x": np.full(net.n_reaches, 0.25)}
    q = runoff(net, rng, batch=1, steps=40)
    with pytest.warns(ThalwegWarning, match="negative coefficients"):
        out = route(net, q, params, "muskingum", dt=DT, dtype=torch.float64, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        ref = route_reference(net, q, params, "muskingum", dt=DT)
    assert_discharge_close(out, ref, rtol=1e-10, ids=net.ids)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ThalwegWarning)
        sub = route(net, q, params, "muskingum_substep", dt=DT, dtype=torch.float64, device="cpu")
    assert float(sub.min()) >= 0.0  # non-negative runoff gives non-negative flow once C2 >= 0
    assert_discharge_close(sub, route_reference(net, q, params, "muskingum_substep", dt=DT), rtol=1e-10, ids=net.ids)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_cuda_without_a_gpu_says_how_to_fix_it():
    from thalweg.routing import resolve_device

    assert resolve_device(None).type == "cpu" and resolve_device("auto").type == "cpu"
    with pytest.raises(InputError, match="a CUDA device was asked for, but torch sees no GPU") as err:
        resolve_device("cuda")
    assert "--device cpu" in err.value.hint


def test_auto_is_exact():
    from thalweg.routing.engines import resolve

    assert resolve("auto") == "exact" and resolve("closure") == "closure"


def test_route_refuses_bad_input(deep_network):
    q = np.ones((deep_network.n_reaches, 5), dtype=np.float32)
    p = {"tau": 3600.0}
    with pytest.raises(InputError, match="unknown engine 'warp'") as err:
        route(deep_network, q, p, "linear_storage", dt=DT, engine="warp")
    assert "exact" in err.value.hint
    with pytest.raises(RunoffError, match=f"expected \\[batch, {deep_network.n_reaches:,} reaches"):
        route(deep_network, q[:-1], p, "linear_storage", dt=DT)
    with pytest.raises(InputError, match="time step must be positive"):
        route(deep_network, q, p, "linear_storage", dt=0)
    with pytest.raises(InputError, match="needs parameter"):
        route(deep_network, q, {}, "linear_storage", dt=DT)
    bad = np.full(deep_network.n_reaches, 3600.0)
    bad[[3, 8]] = -1.0
    with pytest.raises(InputError, match="outside") as err:
        route(deep_network, q, {"tau": bad}, "linear_storage", dt=DT)
    assert sorted(err.value.ids) == sorted(deep_network.ids[[3, 8]].tolist())
