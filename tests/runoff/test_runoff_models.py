"""Runoff models: GR4 against an independent scalar reference of airGR's GR4H equations, chunked = one pass,
MC-LSTM mass balance, gradients against finite differences (gradcheck, float64), the model file round trip."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from thalweg.errors import InputError
from thalweg.runoff.models import (GR4_PARAMETERS, RUNOFF_MODELS, build_runoff_model, load_runoff_model,
                                   save_runoff_model)
from thalweg.runoff.models._gr4_stores import production, routing
from thalweg.runoff.models.gr4 import unit_hydrographs

INPUTS = ["precipitation", "pet"]


@pytest.fixture(autouse=True)
def one_thread():
    """The models step through time on tiny tensors: extra threads only spin (and slow a shared CI box)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def forcings(b=1, c=3, t=120, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    rain = (torch.rand(b, c, t, generator=g) < 0.15) * torch.rand(b, c, t, generator=g) * 8.0
    pet = 0.05 + 0.2 * torch.rand(b, c, t, generator=g)
    return torch.stack([rain, pet], -1).to(dtype)


def gr4_reference(p, e, x1, x2, x3, x4, s, r):
    """airGR's GR4H (frun_GR4H.f90, MOD_GR4H) for one catchment, scalar loops and the UH state arrays airGR
    shifts each step: an independent transcription of the published equations, float64."""
    nh = 480

    def ss1(i):
        return 0.0 if i <= 0 else ((i / x4) ** 1.25 if i < x4 else 1.0)

    def ss2(i):
        if i <= 0:
            return 0.0
        if i <= x4:
            return 0.5 * (i / x4) ** 1.25
        return 1.0 - 0.5 * (2.0 - i / x4) ** 1.25 if i < 2 * x4 else 1.0

    o1 = [ss1(i) - ss1(i - 1) for i in range(1, nh + 1)]
    o2 = [ss2(i) - ss2(i - 1) for i in range(1, 2 * nh + 1)]
    st1, st2 = [0.0] * nh, [0.0] * (2 * nh)
    out = []
    for pt, et in zip(p, e):
        if pt <= et:
            ws = min((et - pt) / x1, 13.0)
            tws = math.tanh(ws)
            er = s * (2.0 - s / x1) * tws / (1.0 + (1.0 - s / x1) * tws)
            s -= er
            pr = 0.0
        else:
            ws = min((pt - et) / x1, 13.0)
            tws = math.tanh(ws)
            ps = x1 * (1.0 - (s / x1) ** 2) * tws / (1.0 + s / x1 * tws)
            pr = pt - et - ps
            s += ps
        s = max(s, 0.0)
        perc = s * (1.0 - (1.0 + (s / (21.0 / 4.0 * x1)) ** 4) ** -0.25)
        s -= perc
        pr += perc
        for k in range(nh - 1):
            st1[k] = st1[k + 1] + o1[k] * pr * 0.9
        st1[nh - 1] = o1[nh - 1] * pr * 0.9
        for k in range(2 * nh - 1):
            st2[k] = st2[k + 1] + o2[k] * pr * 0.1
        st2[2 * nh - 1] = o2[2 * nh - 1] * pr * 0.1
        exch = x2 * (r / x3) ** 3.5
        r = max(0.0, r + st1[0] + exch)
        qr = r * (1.0 - (1.0 + (r / x3) ** 4) ** -0.25)
        r -= qr
        qd = max(0.0, st2[0] + exch)
        out.append(qr + qd)
    return np.array(out)


def gr4_model(c=3, kind="per-catchment", seed=1, **kw):
    m = build_runoff_model("gr4", INPUTS, n_catchments=c, parameter_model=kind, **kw).double()
    if kind == "per-catchment":
        with torch.no_grad():
            m.params.offset.copy_(torch.randn(m.params.offset.shape, generator=torch.Generator().manual_seed(seed),
                                              dtype=torch.float64) * 0.8)
    return m


@pytest.mark.parametrize("engine", ["adjoint", "autograd"])
def test_gr4_matches_airgr_reference(engine):
    f = forcings(c=3, t=150)
    m = gr4_model()
    with torch.no_grad():
        q, _ = m(f, engine=engine)
        v = {k: t.numpy() for k, t in m.parameter_values().items()}
    for c in range(3):
        ref = gr4_reference(f[0, c, :, 0].numpy(), f[0, c, :, 1].numpy(), v["x1"][c], v["x2"][c], v["x3"][c],
                            v["x4"][c], v["s0"][c] * v["x1"][c], v["r0"][c] * v["x3"][c])
        np.testing.assert_allclose(q[0, c].numpy(), ref, rtol=1e-10, atol=1e-12, err_msg=f"catchment {c}")


def test_unit_hydrographs_sum_to_one():
    x4 = torch.tensor([0.5, 1.0, 3.7, 12.0, 48.0], dtype=torch.float64)
    h1, h2 = unit_hydrographs(x4, 97)
    np.testing.assert_allclose(h1.sum(-1).numpy(), 1.0, rtol=1e-14)
    np.testing.assert_allclose(h2.sum(-1).numpy(), 1.0, rtol=1e-14)
    assert (h1 >= 0).all() and (h2 >= 0).all()


def model_of(kind, c=3):
    if kind == "gr4":
        return gr4_model(c)
    return build_runoff_model(kind, INPUTS, n_catchments=c, hidden=4, seed=3,
                              static=np.arange(2 * c, dtype=float).reshape(c, 2) + 1.0,
                              static_names=["a", "b"]).double()


@pytest.mark.parametrize("kind", sorted(RUNOFF_MODELS))
def test_chunks_equal_one_pass(kind):
    f = forcings(b=2, c=3, t=90)
    m = model_of(kind)
    with torch.no_grad():
        whole, end = m(f)
        pieces, state = [], None
        for a, b in ((0, 1), (1, 40), (40, 90)):
            q, state = m(f[:, :, a:b], state)
            pieces.append(q)
    np.testing.assert_allclose(torch.cat(pieces, -1).numpy(), whole.numpy(), rtol=1e-12, atol=1e-13)
    for key in end:
        np.testing.assert_allclose(state[key].numpy(), end[key].numpy(), rtol=1e-12, atol=1e-13, err_msg=key)


@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-12), (torch.float32, 2e-6)])
def test_mclstm_conserves_mass(dtype, rtol):
    f = forcings(b=2, c=4, t=200, dtype=dtype)
    m = build_runoff_model("mclstm", INPUTS, n_catchments=4, hidden=6, seed=2).to(dtype)
    with torch.no_grad():
        q, st = m(f, diagnostics=True)
    rain = f[..., 0]
    storage = st["fluxes"]["storage"]
    change = storage - torch.cat([torch.zeros_like(storage[..., :1]), storage[..., :-1]], -1)
    balance = rain - (q + st["fluxes"]["loss"] + change)
    scale = rain.abs() + q.abs() + storage.abs() + 1e-3
    assert float((balance.abs() / scale).max()) < rtol
    # over the run: what fell = what left (runoff + sink) + what is stored at the end
    total = rain.sum(-1) - q.sum(-1) - st["fluxes"]["loss"].sum(-1) - st["c"].sum(-1)
    assert float(total.abs().max()) < rtol * float(rain.sum(-1).max()) * 10


def test_mclstm_needs_its_mass_input():
    with pytest.raises(InputError, match="mass input 'precipitation'") as err:
        build_runoff_model("mclstm", ["pet"], n_catchments=2)
    assert err.value.field == "mass_input"


def test_gr4_store_adjoints_pass_gradcheck():
    g = torch.Generator().manual_seed(5)
    m, t = 3, 8
    pn = torch.rand(m, t, generator=g, dtype=torch.float64) * 4 * (torch.rand(m, t, generator=g) < 0.5)
    en = torch.where(pn > 0, torch.zeros_like(pn), 0.2 * torch.rand(m, t, generator=g, dtype=torch.float64))
    x1 = torch.tensor([80.0, 250.0, 40.0], dtype=torch.float64, requires_grad=True)
    s0 = torch.tensor([30.0, 150.0, 5.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: production(pn, en, a, b, (21 / 4) ** 4), (x1, s0))
    q9 = torch.rand(m, t, generator=g, dtype=torch.float64).requires_grad_()
    q1 = (0.3 * torch.rand(m, t, generator=g, dtype=torch.float64)).requires_grad_()
    x2 = torch.tensor([0.3, -0.05, 0.1], dtype=torch.float64, requires_grad=True)
    x3 = torch.tensor([40.0, 120.0, 15.0], dtype=torch.float64, requires_grad=True)
    r0 = torch.tensor([20.0, 60.0, 3.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(routing, (q9, q1, x2, x3, r0))


@pytest.mark.parametrize("kind", sorted(RUNOFF_MODELS))
def test_model_gradients_pass_gradcheck(kind):
    f = forcings(b=1, c=2, t=10, seed=4)
    m = model_of(kind, c=2)
    name = "params.offset" if kind == "gr4" else next(n for n, p in m.named_parameters() if p.ndim == 2)
    w = dict(m.named_parameters())[name].detach().clone().requires_grad_()

    def run(weight):
        return torch.func.functional_call(m, {name: weight}, (f,))[0]

    assert torch.autograd.gradcheck(run, (w,), eps=1e-6, atol=1e-6)


def test_gr4_parameters_stay_in_bounds_and_start_at_the_prior():
    m = build_runoff_model("gr4", INPUTS, n_catchments=4, parameter_model="regression",
                           static=np.array([[1.0, 3.0], [2.0, 1.0], [4.0, 2.0], [8.0, 9.0]]),
                           static_names=["slope", "drainage_density"]).double()
    v = m.parameter_values()
    for spec in GR4_PARAMETERS:
        np.testing.assert_allclose(v[spec.name].detach().numpy(), spec.default, rtol=1e-9, atol=1e-12)
    with torch.no_grad():
        for p in m.params.mlp.parameters():
            p.add_(100.0)
    v = m.parameter_values()
    for spec in GR4_PARAMETERS:
        assert (v[spec.name] >= spec.lower).all() and (v[spec.name] <= spec.upper).all()


def test_regression_needs_static_attributes():
    with pytest.raises(InputError, match="needs static catchment attributes"):
        build_runoff_model("gr4", INPUTS, n_catchments=3, parameter_model="regression")


@pytest.mark.parametrize("kind", sorted(RUNOFF_MODELS))
def test_model_file_round_trip(kind, tmp_path):
    m = model_of(kind)
    f = forcings(c=3, t=40)
    path = save_runoff_model(tmp_path / "m.pt", m, extra={"note": "x"})
    back, extra = load_runoff_model(path)
    assert extra == {"note": "x"} and back.kind == kind
    with torch.no_grad():
        np.testing.assert_allclose(back.double()(f)[0].numpy(), m(f)[0].numpy(), rtol=1e-12)


def test_unknown_model_and_option_are_refused():
    with pytest.raises(InputError, match="unknown runoff model 'gr5'"):
        build_runoff_model("gr5", INPUTS, n_catchments=1)
    with pytest.raises(InputError, match="takes no option"):
        build_runoff_model("lstm", INPUTS, n_catchments=1, parameter_model="uniform")
