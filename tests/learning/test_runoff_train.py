"""Training a runoff model through the routing: a synthetic basin whose true GR4 parameters and routing k are
known (observations made with them at the outlet only), checkpoints that resume, both modes, sub-windows,
``thalweg train`` on the sample basin."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from thalweg.errors import Cancelled, InputError, ThalwegWarning
from thalweg.learning.train import lateral_all, train
from thalweg.network import scheidegger_network
from thalweg.params.models import build_model
from thalweg.routing import route
from thalweg.runoff.models import build_runoff_model

DT = 3600.0
INPUTS = ["precipitation", "pet"]
# x2, x4 and the initial fills pinned by narrow bounds: x1, x3 and the routing k are what the outlet must tell
PINNED = {"x2": (-1e-4, 1e-4), "x4": (2.999, 3.001), "s0": (0.499, 0.501), "r0": (0.499, 0.501)}
TRUE = {"x1": 120.0, "x3": 40.0}
TRUE_K_FACTOR = 2.0


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def case():
    net = scheidegger_network(20, seed=3, single_basin=True)
    rng = np.random.default_rng(0)
    steps = 240
    storm = (rng.random(steps) < 0.08) * rng.gamma(1.5, 4.0, steps)
    p = storm[None] * rng.uniform(0.7, 1.3, (net.n_reaches, 1))
    f = np.stack([p, np.full_like(p, 0.1)], -1)
    outlet = int(net.ids[net.outlets[0]])
    truth = build_runoff_model("gr4", INPUTS, n_catchments=net.n_reaches,
                               prior={"x1": TRUE["x1"], "x3": TRUE["x3"], "x2": 0.0, "x4": 3.0}, bounds=PINNED)
    routing = build_model("zones", net, "muskingum_nonneg", gauges=[outlet])
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        routing.theta["k"].fill_(np.log(TRUE_K_FACTOR))
        q = lateral_all(truth, torch.as_tensor(f), torch.as_tensor(net.catchment_area.copy()), DT)
        obs = route(net, q, routing(), "muskingum_nonneg", dt=DT, at=[outlet], dtype=torch.float64).numpy()
    return {"network": net, "forcings": f, "observed": obs, "outlet": outlet}


def fresh(case, **kw):
    model = build_runoff_model("gr4", INPUTS, n_catchments=case["network"].n_reaches, bounds=PINNED,
                               prior={"x2": 0.0, "x4": 3.0})
    routing = build_model("zones", case["network"], "muskingum_nonneg", gauges=[case["outlet"]])
    return model, routing


def run(case, model, routing, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)
        return train(model, case["network"], case["forcings"], dt=DT, gauges=[case["outlet"]],
                     observed=case["observed"], routing_model=routing, dtype=torch.float64, **kw)


def test_true_parameters_are_recovered_from_the_outlet_alone(case):
    model, routing = fresh(case)
    result = run(case, model, routing, iterations=35, learning_rate=0.1, routing_learning_rate=0.1)
    values = {k: float(v.detach()[0]) for k, v in model.parameter_values().items()}
    factor = float(np.exp(routing.theta["k"].detach()[0].item()))
    assert result.loss < 2e-3, result.loss
    assert values["x1"] == pytest.approx(TRUE["x1"], rel=0.05)
    assert values["x3"] == pytest.approx(TRUE["x3"], rel=0.05)
    assert factor == pytest.approx(TRUE_K_FACTOR, rel=0.05)
    before = result.metrics_before[str(case["outlet"])]["calibration"]["nse"]
    assert result.metrics_after[str(case["outlet"])]["calibration"]["nse"] > max(before, 0.99)


def test_checkpoint_resumes_where_an_uninterrupted_run_ends(case, tmp_path):
    model, routing = fresh(case)
    whole = run(case, model, routing, iterations=6)
    ckpt = tmp_path / "train.ckpt"
    model2, routing2 = fresh(case)
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] == 4  # before the 4th iteration

    with pytest.raises(Cancelled):
        run(case, model2, routing2, iterations=6, checkpoint=ckpt, should_stop=stop)
    assert ckpt.exists()
    model3, routing3 = fresh(case)
    resumed = run(case, model3, routing3, iterations=6, checkpoint=ckpt)
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in whole.history], rel=1e-9)
    for a, b in zip(model.state_dict().values(), model3.state_dict().values()):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-9)


def test_checkpoint_of_another_training_is_refused(case, tmp_path):
    ckpt = tmp_path / "train.ckpt"
    model, routing = fresh(case)
    run(case, model, routing, iterations=2, checkpoint=ckpt, checkpoint_every=1)
    model, routing = fresh(case)
    with pytest.raises(InputError, match="different fit"):
        run(case, model, routing, iterations=2, checkpoint=ckpt, loss="kge")


def test_two_step_trains_the_runoff_model_then_the_routing(case):
    model, routing = fresh(case)
    result = run(case, model, routing, mode="two-step", iterations=4, routing_iterations=4)
    assert result.routing_fit is not None and result.routing_fit.iterations >= 1
    assert float(routing.theta["k"].detach().abs()[0]) > 0  # the routing moved in the second step
    label = str(case["outlet"])
    assert result.metrics_after[label]["calibration"]["nse"] > result.metrics_before[label]["calibration"]["nse"]


def test_runoff_mode_leaves_the_routing_at_its_prior(case):
    model, routing = fresh(case)
    run(case, model, routing, mode="runoff", iterations=3)
    assert float(routing.theta["k"].detach()[0]) == 0.0


@pytest.mark.parametrize("kind", ["lstm", "mclstm"])
def test_sequence_models_train_on_windows(case, kind):
    net = case["network"]
    model = build_runoff_model(kind, INPUTS, n_catchments=net.n_reaches, hidden=4,
                               input_stats={"precipitation": [0.5, 2.0], "pet": [0.1, 0.01]})
    routing = build_model("prior", net, "muskingum_nonneg")
    result = run(case, model, routing, mode="runoff", iterations=4, window=48, spinup=24, batch=2, eval_every=2,
                 learning_rate=0.02)
    scored = [h for h in result.history if h.get("scored", True)]
    assert len(result.history) == 4 and len(scored) == 2
    assert np.isfinite([h["loss"] for h in result.history]).all()
    assert result.best_iteration in (2, 4)


def test_bad_settings_name_the_fix(case):
    model, routing = fresh(case)
    with pytest.raises(InputError, match="unknown training mode"):
        run(case, model, routing, mode="both")
    with pytest.raises(InputError, match="window"):
        run(case, model, routing, iterations=1, window=10_000)
    with pytest.raises(InputError, match="the forcings lack pet"):
        train(model, case["network"], type("F", (), {"values": case["forcings"][..., :1],
                                                     "names": ("precipitation",)})(),
              dt=DT, gauges=[case["outlet"]], observed=case["observed"])


def test_thalweg_train_on_the_sample_basin(tmp_path):
    from thalweg.cli import main
    from thalweg.demo import sample_dir
    from thalweg.runoff.models import load_runoff_model

    s = sample_dir()
    code = main(["-q", "train", str(s / "cance_rivers.gpkg"), "--forcing", f"precipitation={s / 'cance_forcings.nc'}",
                 "--forcing", f"pet={s / 'cance_forcings.nc'}:pet", "--gauges", str(s / "cance_gauges.csv"),
                 "--observed", str(s / "cance_qobs.csv"), "--calibration", "2014-09-15/2014-11-14",
                 "--validation", "2014-11-15/2015-01-15", "--iterations", "1", "--mode", "two-step",
                 "--routing-iterations", "1", "--static", "slope", "--static-file", str(s / "cance_forcings.nc"),
                 "--parameter-model", "regression", "-o", str(tmp_path), "--name", "cance"])
    assert code == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["cance_params.csv", "cance_runoff.nc", "cance_runoff_model.pt", "cance_train.json",
                     "cance_train.png"]
    import json

    record = json.loads((tmp_path / "cance_train.json").read_text())
    after = record["metrics"]["after"]
    assert set(after) == {"V3524010", "V3515010", "V3517010"}
    assert all(after[g]["validation"]["n"] > 1000 for g in after)
    model, extra = load_runoff_model(tmp_path / "cance_runoff_model.pt")
    assert model.kind == "gr4" and extra["scheme"] == "muskingum_nonneg"


def test_thalweg_train_refuses_a_missing_forcing(tmp_path, capsys):
    from thalweg.cli import main
    from thalweg.demo import sample_dir

    s = sample_dir()
    code = main(["train", str(s / "cance_rivers.gpkg"), "--gauges", str(s / "cance_gauges.csv"),
                 "--observed", str(s / "cance_qobs.csv"), "-o", str(tmp_path)])
    assert code == 3
    assert "needs forcings" in capsys.readouterr().err


@pytest.mark.parametrize("extra, fragments", [
    (["--forcing", "precipitation={nc}:nosuch"],
     ["forcing 'precipitation': no variable nosuch (variables: precipitation, pet", "source '{nc}:VARIABLE'"]),
    (["--forcing", "precipitation={nc}"], ["needs the forcing(s) pet", "e.g. --forcing precipitation=P.nc"]),
    (["--forcing", "precipitation={nc}", "--forcing", "pet={nc}", "--validate-gauges", "V3524010,V3515010",
      "--validate-gauges", "V3517010"],
     ["every gauge (3) is held out, so nothing is left to train on", "Hold out fewer gauges (--validate-gauges)."]),
])
def test_thalweg_train_errors_name_its_own_flags(tmp_path, capsys, extra, fragments):
    """train's hints use train's syntax: PATH:VARIABLE for a forcing (not route's --variable), --validate-gauges
    (calibrate's flag, one setting for both) and no --leave-one-out, which train does not have."""
    from thalweg.cli import main
    from thalweg.demo import sample_dir

    s = sample_dir()
    nc = s / "cance_forcings.nc"
    code = main(["train", str(s / "cance_rivers.gpkg"), "--gauges", str(s / "cance_gauges.csv"),
                 "--observed", str(s / "cance_qobs.csv"), "-o", str(tmp_path), "--iterations", "1",
                 *[e.format(nc=nc) for e in extra]])
    err = capsys.readouterr().err
    assert code == 3, err
    for fragment in fragments:
        assert fragment.format(nc=nc) in err, err
    assert "--variable" not in err and "--leave-one-out" not in err and "leave_one" not in err
    assert not list(tmp_path.iterdir())
