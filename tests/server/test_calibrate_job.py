"""Calibrate jobs through the real service: inline network and runoff, gauge and observation files."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from thalweg.learning.calibrate import gauge_zones
from thalweg.routing import route
from thalweg.workflow import resolve_params

from .conftest import DT, START, expect_error, inline_network, inline_runoff, synthetic_runoff

STEPS = 300
FACTORS = (1.8, 0.6)


@pytest.fixture(scope="module")
def setup(network, tmp_path_factory):
    """The largest basin's outlet and a nested gauge; observations routed with k x 1.8 and x 0.6 in their zones."""
    folder = tmp_path_factory.mktemp("calibrate_job")
    nup = network.n_upstream
    outlet = int(network.outlets[np.argmax(nup[network.outlets])])
    inside = np.flatnonzero((network.basin == outlet) & (nup >= 0.2 * nup[outlet]) & (nup <= 0.6 * nup[outlet]))
    nested = int(inside[np.argmax(nup[inside])])
    gauges = np.array([outlet, nested])
    zones, _ = gauge_zones(network, gauges)
    prior, _ = resolve_params(network, "muskingum")
    k = np.where(zones >= 0, prior["k"] * np.asarray(FACTORS)[np.clip(zones, 0, None)], prior["k"])
    runoff = synthetic_runoff(network, STEPS)
    ids = network.ids[gauges]
    q = route(network, runoff, {"k": k, "x": 0.25}, "muskingum", dt=DT, at=ids, engine="exact").numpy()
    pd.DataFrame({"gauge_id": ["OUT", "MID"], "reach_id": ids}).to_csv(folder / "gauges.csv", index=False)
    end = START + np.timedelta64(int(DT), "s") * np.arange(1, STEPS + 1)
    obs = pd.DataFrame({"time": pd.to_datetime(end), "OUT": q[0], "MID": q[1]})
    obs.to_csv(folder / "qobs.csv", index=False)
    return {"runoff": runoff, "gauges": str(folder / "gauges.csv"), "observed": str(folder / "qobs.csv"),
            "ids": ids, "k": k, "zones": zones}


@pytest.mark.filterwarnings("ignore::thalweg.errors.ThalwegWarning")
def test_calibrate_job_recovers_the_factors(client, network, setup):
    job = client.calibrate(inline_network(network), inline_runoff(setup["runoff"]), setup["gauges"],
                           setup["observed"], label="calibration", iterations=300, write_gpkg=False,
                           scheme="muskingum")  # the scheme the observations were made with
    assert job["kind"] == "calibrate" and job["inputs"]["gauges"] == setup["gauges"]
    seen = []
    final = client.wait(job["id"], interval=0.05, timeout=180, callback=seen.append)
    assert final["state"] == "succeeded", final["error"]
    assert any("calibration iteration" in r["progress"]["message"] for r in seen) or len(seen) < 3
    outputs = final["outputs"]
    assert {"q", "params", "calibration", "gauges", "settings", "hydrographs"} <= set(outputs)
    assert all(Path(p).is_file() and Path(p).parent == Path(final["folder"]) / "out" for p in outputs.values())

    result = final["result"]
    got = {z["gauge_reach_id"]: z["multipliers"]["k"] for z in result["zones"]}
    np.testing.assert_allclose([got[int(r)] for r in setup["ids"]], FACTORS, rtol=0.03)
    assert result["calibrated"] == ["k"] and 0 < result["iterations"] <= 300
    assert all(m["after"]["nse"] > 0.999 for m in result["metrics"]), result["metrics"]
    assert result["params_used"]["k"].startswith("calibrated: prior (GEOGloWS rule")

    table = pd.read_csv(outputs["params"]).set_index("reach_id").loc[network.ids]
    np.testing.assert_allclose(table["k"].to_numpy(), setup["k"], rtol=0.03)
    assert (table["zone"].to_numpy() == setup["zones"]).all()
    report = json.loads(Path(outputs["calibration"]).read_text())
    assert report["iterations"] == result["iterations"] and report["zones"] == result["zones"]
    assert client.list_jobs(kind="calibrate")[-1]["id"] == final["id"]
    # the calibrated discharge is served like a route job's: hydrograph against the observations, with metrics
    h = client.hydrograph(final["id"], int(setup["ids"][1]))
    assert h["gauge_id"] == "MID" and h["metrics"]["nse"] > 0.999
    np.testing.assert_allclose(h["simulated"], h["observed"], rtol=0.02, atol=1e-3 * max(h["observed"]))


@pytest.mark.parametrize("changes, fragments", [
    ({"gauges": None, "observed": None}, ["gauges: Field required"]),
    ({"calibrate": ["kk"]}, ["calibrate: the 'muskingum_nonneg' scheme has no parameter kk"]),
    ({"zones": "basins"}, ["zones: Input should be 'gauges' or 'global'"]),
    ({"iterations": 0}, ["iterations: Input should be greater than or equal to 1"]),
    ({"warmup": 300}, ["warmup: 300 steps leave none of the runoff's 300 steps"]),
])
def test_invalid_calibrate_body_is_a_readable_422(client, network, setup, changes, fragments):
    body = {"kind": "calibrate", "network": inline_network(network), "runoff": inline_runoff(setup["runoff"]),
            "gauges": setup["gauges"], "observed": setup["observed"]}
    body = {k: v for k, v in (body | changes).items() if v is not None}
    err = expect_error(lambda: client.submit(body), 422, *fragments)
    assert err.error == "ValidationError" and len(err.message) < 400, err.message


@pytest.mark.filterwarnings("ignore::thalweg.errors.ThalwegWarning")
def test_cancel_reaches_a_job_that_reports_every_iteration(client, network, setup):
    """A calibration sends progress every few milliseconds; Cancel must still stop it at its next iteration
    (the worker's loop once went back to reading messages without looking at the cancel flag)."""
    job = client.calibrate(inline_network(network), inline_runoff(setup["runoff"]), setup["gauges"],
                           setup["observed"], iterations=100_000, write_gpkg=False, scheme="muskingum")
    deadline = time.monotonic() + 120
    while "iteration" not in (client.status(job["id"])["progress"]["message"] or ""):
        assert time.monotonic() < deadline, client.status(job["id"])
        time.sleep(0.02)
    asked = time.monotonic()
    client.cancel(job["id"])
    final = client.wait(job["id"], interval=0.02, timeout=30)
    assert final["state"] == "cancelled", final
    assert time.monotonic() - asked < 1.0 and "calibration iteration" in final["progress"]["message"]


def _inline_gauges(setup, observed):
    return [{"gauge_id": name, "reach_id": int(reach),
             "observed": [None if not np.isfinite(v) else float(v) for v in row]}
            for name, reach, row in zip(("OUT", "MID"), setup["ids"], observed)]


@pytest.mark.filterwarnings("ignore::thalweg.errors.ThalwegWarning")
def test_regression_job_with_inline_gauges_periods_and_a_held_out_gauge(client, network, setup, tmp_path):
    """Every fitting option through the service, with inline gauges: the job's losses and metrics are those of
    the library's run_fit with the same options, the held-out gauge and the validation period are scored apart,
    and the saved model routes to the parameter table it wrote."""
    from thalweg.learning.run import run_fit
    from thalweg.params.model_file import apply_model

    obs = pd.read_csv(setup["observed"])[["OUT", "MID"]].to_numpy().T.copy()
    obs[0, 40:50] = np.nan  # gaps travel as nulls
    options = dict(model="regression", attributes=["length", "area"], calibration="2020-01-01/2020-01-06",
                   validation="2020-01-07/2020-01-13", validate_gauges=["MID"], optimiser="lbfgs", iterations=4,
                   warmup=12, loss="nse_star", seed=3, scheme="muskingum", write_gpkg=False)
    checkpoint = tmp_path / "fit.ckpt"
    job = client.calibrate(inline_network(network), inline_runoff(setup["runoff"]), _inline_gauges(setup, obs),
                           checkpoint=str(checkpoint), checkpoint_every=2, **options)
    seen = []
    final = client.wait(job["id"], interval=0.05, timeout=300, callback=seen.append)
    assert final["state"] == "succeeded", final["error"]
    assert {"q", "params", "calibration", "plot", "model", "gauges", "hydrographs"} <= set(final["outputs"])
    result = final["result"]
    assert result["model"] == "regression" and result["calibrated"] == ["k", "x"]
    roles = {m["gauge_id"]: m["role"] for m in result["metrics"]}
    assert roles == {"OUT": "calibration", "MID": "held-out"}
    end = START + np.timedelta64(int(DT), "s") * np.arange(1, STEPS + 1)
    # whole days: the steps ending after midnight of the 1st, up to midnight ending the 6th
    cal_steps = int(((end > np.datetime64("2020-01-01")) & (end <= np.datetime64("2020-01-07T00:00"))).sum())
    assert result["split"]["calibration"] == {"start": 0, "end": cal_steps, "label": "calibration"}
    out = next(m for m in result["metrics"] if m["gauge_id"] == "OUT")
    # the validation scores count only validation steps (after the warm-up, minus the gap in the calibration)
    assert out["after"]["calibration"]["n"] == cal_steps - 12 - 10
    assert out["after"]["validation"]["n"] == result["split"]["validation"]["end"] - cal_steps
    assert out["after"]["calibration"]["nse"] > out["before"]["calibration"]["nse"]

    direct = run_fit(network, setup["runoff"], dt=DT, time_end=end, gauge_reaches=setup["ids"].tolist(),
                     observed=obs, gauge_names=["OUT", "MID"], learning_rate=None, weight_decay=0.0,
                     early_stopping=None, engine="auto", device="cpu",
                     **{k: v for k, v in options.items() if k != "write_gpkg"})
    assert result["loss"] == pytest.approx(direct.result.loss, rel=1e-6)
    for m in result["metrics"]:
        mine = direct.result.metrics_after[m["gauge_id"]]
        for period in ("calibration", "validation"):
            assert m["after"][period]["nse"] == pytest.approx(mine[period]["nse"], rel=1e-6, abs=1e-9)
    table = pd.read_csv(final["outputs"]["params"]).set_index("reach_id").loc[network.ids]
    np.testing.assert_allclose(apply_model(final["outputs"]["model"], network)["k"], table["k"], rtol=1e-9)
    assert checkpoint.is_file()
    messages = [r["progress"]["message"] for r in seen]
    # the fit's progress says its loss (polls may miss every fit step on a loaded machine: the format is checked)
    assert all("loss" in m for m in messages if "fit iteration" in m)
    fractions = [r["progress"]["fraction"] for r in seen if r["progress"].get("fraction") is not None]
    assert fractions == sorted(fractions)
    # a second job of the same fit resumes the checkpoint (here: at its last iteration) to the same numbers
    again = client.wait(client.calibrate(inline_network(network), inline_runoff(setup["runoff"]),
                                         _inline_gauges(setup, obs), checkpoint=str(checkpoint), checkpoint_every=2,
                                         **options)["id"], interval=0.05, timeout=300)
    assert again["state"] == "succeeded", again["error"]
    assert again["result"]["loss"] == result["loss"] and again["result"]["metrics"] == result["metrics"]
    assert again["result"]["iterations"] == result["iterations"]


@pytest.mark.parametrize("changes, fragments", [
    ({"model": "mlp"}, ["model: Input should be"]),
    ({"calibration": "2020-01-01"}, ["calibration: String should match pattern"]),
    ({"observed": None}, ["observed: is required with a gauge CSV"]),
    ({"attributes": ["slope"]}, ["attributes are for the regression model, not 'zones'"]),
    ({"model": "per-reach", "zones": "global"}, ["zones 'global' is for the zones model"]),
    ({"checkpoint": "fit.ckpt"}, ["checkpoint:", "is a relative path"]),
    ({"checkpoint": "/no/such/folder/fit.ckpt"}, ["the folder of '/no/such/folder/fit.ckpt' does not exist"]),
    ({"loss": "mse"}, ["loss: Input should be"]),
    ({"early_stopping": 0}, ["early_stopping: Input should be greater than or equal to 1"]),
    ({"model": "per-reach", "bounds": {"k": [10.0, 1.0]}}, ["bounds: bounds of 'k' are [10, 1] s",
                                                            'physical bounds (bounds)']),
    ({"bounds": {"k": [1.0]}}, ["bounds.k: List should have at least 2 items"]),
])
def test_invalid_fit_options_are_a_readable_422(client, network, setup, changes, fragments):
    body = {"kind": "calibrate", "network": inline_network(network), "runoff": inline_runoff(setup["runoff"]),
            "gauges": setup["gauges"], "observed": setup["observed"]}
    body = {k: v for k, v in (body | changes).items() if v is not None}
    err = expect_error(lambda: client.submit(body), 422, *fragments)
    assert err.error == "ValidationError" and len(err.message) < 400, err.message


def test_inline_gauges_need_their_observations_and_known_held_out_ids(client, network, setup):
    obs = pd.read_csv(setup["observed"])[["OUT", "MID"]].to_numpy().T
    gauges = _inline_gauges(setup, obs)
    body = {"kind": "calibrate", "network": inline_network(network), "runoff": inline_runoff(setup["runoff"]),
            "gauges": [gauges[0], {k: v for k, v in gauges[1].items() if k != "observed"}]}
    expect_error(lambda: client.submit(body), 422, "gauges.observed: gauge(s) MID have no observed values")
    body["gauges"] = gauges
    expect_error(lambda: client.submit(body | {"validate_gauges": ["TOP"]}), 422,
                 "validate_gauges: TOP are not among the gauges (OUT, MID)")


@pytest.mark.filterwarnings("ignore::thalweg.errors.ThalwegWarning")
def test_cancel_stops_a_fit_at_its_next_iteration_and_keeps_the_checkpoint(client, network, setup, tmp_path):
    checkpoint = tmp_path / "cancelled.ckpt"
    job = client.calibrate(inline_network(network), inline_runoff(setup["runoff"]), setup["gauges"],
                           setup["observed"], model="per-reach", iterations=100_000, write_gpkg=False,
                           scheme="muskingum", checkpoint=str(checkpoint), checkpoint_every=100_000)
    deadline = time.monotonic() + 120
    while "fit iteration" not in (client.status(job["id"])["progress"]["message"] or ""):
        assert time.monotonic() < deadline, client.status(job["id"])
        time.sleep(0.02)
    asked = time.monotonic()
    client.cancel(job["id"])
    final = client.wait(job["id"], interval=0.02, timeout=30)
    assert final["state"] == "cancelled", final
    assert time.monotonic() - asked < 2.0 and "fit iteration" in final["progress"]["message"]
    # the cancel saved the state reached (checkpoint_every alone would not have written one yet)
    assert checkpoint.is_file() and not any(Path(final["folder"]).glob("out/*_calibration.json"))
