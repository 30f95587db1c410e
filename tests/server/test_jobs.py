"""Route jobs through the real service, checked against thalweg.routing.route called directly."""
from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import thalweg
from thalweg.errors import ThalwegWarning
from thalweg.client import pack
from thalweg.irf import SCHEMES
from thalweg.metrics import all_metrics
from thalweg.routing import route
from thalweg.testing import assert_discharge_close
from thalweg.workflow import resolve_params

from .conftest import DT, START, assert_flows_close, expect_error, inline_network, inline_runoff, synthetic_runoff

STEPS = 96


def direct(net, runoff, scheme="muskingum_nonneg", spec=None) -> np.ndarray:
    """The same routing, called directly (float32, CPU): Q [N, T] in the network's order."""
    params, _ = resolve_params(net, scheme, spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThalwegWarning)  # the service reports them in the job record
        return route(net, runoff, params, scheme, dt=DT, device="cpu").numpy()


@pytest.fixture(scope="module")
def routed(client, network):
    """One inline route job, rows of the network and of the runoff in two different shuffled orders."""
    rng = np.random.default_rng(5)
    runoff = synthetic_runoff(network, STEPS)
    net_order, runoff_order = rng.permutation(network.n_reaches), rng.permutation(network.n_reaches)
    seen = []
    job = client.route(inline_network(network, net_order), inline_runoff(runoff[runoff_order],
                                                                          ids=network.ids[runoff_order]),
                       label="test inline", hydrograph_reaches=[int(network.ids[0])])
    assert job["state"] == "queued" and job["kind"] == "route" and job["label"] == "test inline"
    final = client.wait(job["id"], interval=0.05, timeout=120, callback=seen.append)
    assert final["state"] == "succeeded", final["error"]
    return {"job": final, "runoff": runoff, "expected": direct(network, runoff), "polled": seen}


def test_health_and_schemes(client):
    import torch

    health = client.health()
    assert health["status"] == "ok" and health["version"] == thalweg.__version__
    assert health["torch"] == torch.__version__
    deadline = time.monotonic() + 120
    while health["device"]["type"] == "unknown":  # the compute worker reports it once started
        assert time.monotonic() < deadline, health
        time.sleep(0.1)
        health = client.health()
    assert health["device"]["type"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert health["workers"]["compute"] is not None and health["pid"] != health["workers"]["compute"]
    assert set(health["jobs"]) == {"queued", "running", "succeeded", "failed", "cancelled"}
    schemes = client.schemes()
    assert [s["name"] for s in schemes] == sorted(SCHEMES)
    for s in schemes:
        assert s == SCHEMES[s["name"]].to_dict()


def test_job_record_progress_and_outputs(routed, network):
    job, polled = routed["job"], routed["polled"]
    fractions = [r["progress"]["fraction"] for r in polled]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert polled[-1]["progress"]["message"] == "done"
    folder = Path(job["folder"])
    assert folder.name == job["id"] and (folder / "job.json").exists()
    assert not (folder / "out.partial").exists()
    assert set(job["outputs"]) >= {"q", "settings", "hydrographs"}
    for path in job["outputs"].values():
        assert Path(path).is_file() and Path(path).parent == folder / "out"
    assert job["result"]["reaches"] == network.n_reaches and job["result"]["steps"] == STEPS
    assert job["result"]["first_time"] == "2020-01-01T01:00:00"  # the end of the first step
    assert job["inputs"]["network"] == {"inline": True, "reaches": network.n_reaches}
    assert {"queued", "run", "route", "write"} <= set(job["timings"])
    assert job["error"] is None and job["started"] <= job["finished"]


def test_hydrograph_matches_direct_routing(client, routed, network):
    job_id, expected = routed["job"]["id"], routed["expected"]
    for pos in (0, int(network.outlets[0]), network.n_reaches // 2):
        reach = int(network.ids[pos])
        h = client.hydrograph(job_id, reach)
        assert h["reach_id"] == reach and h["units"] == "m3/s"
        assert len(h["time"]) == STEPS and h["time"][0] == "2020-01-01T01:00:00"
        assert h["observed"] is None and h["metrics"] is None and h["gauge_id"] is None
        assert_discharge_close(np.array(h["simulated"]), expected[pos], rtol=1e-5, name=f"reach {reach}")


def test_snapshot_matches_direct_routing(client, routed, network):
    job_id, expected = routed["job"]["id"], routed["expected"]
    by_index = client.snapshot(job_id, 10)
    assert by_index["step"] == 10 and by_index["time"] == "2020-01-01T11:00:00"
    by_time = client.snapshot(job_id, "2020-01-01T11:00:00")
    near = client.snapshot(job_id, "2020-01-01T11:20:00Z")  # nearest step end
    last = client.snapshot(job_id, -1)
    assert by_time == by_index and near["step"] == 10 and last["step"] == STEPS - 1
    order = network.index_of(by_index["reach_ids"])
    got = np.array(by_index["values"])
    assert_flows_close(got, expected[order, 10], scale=np.abs(expected).max())


def test_summary_matches_direct_routing(client, routed, network):
    s = client.summary(routed["job"]["id"])
    assert s["columns"] == ["mean", "max", "time_of_max", "q05", "q50", "q95"]
    order = network.index_of(s["reach_ids"])
    expected = routed["expected"][order].astype(np.float64)
    np.testing.assert_allclose(s["data"]["max"], expected.max(axis=1), rtol=1e-5)
    np.testing.assert_allclose(s["data"]["mean"], expected.mean(axis=1), rtol=1e-4)
    step_of_max = expected.argmax(axis=1)
    times = (START + np.timedelta64(3600, "s") * (step_of_max + 1)).astype("datetime64[s]").astype(str)
    assert s["data"]["time_of_max"] == times.tolist()


def test_results_errors(client, routed, network):
    job_id = routed["job"]["id"]
    err = expect_error(lambda: client.hydrograph(job_id, 987654321), 404, "987654321")
    assert err.error == "NetworkError" and err.body["ids"] == [987654321]
    expect_error(lambda: client.snapshot(job_id, STEPS), 422, f"step {STEPS} is outside", "0 .. 95")
    expect_error(lambda: client.snapshot(job_id, "2021-06-01T00:00:00"), 422, "outside the routed period")
    expect_error(lambda: client.snapshot(job_id, "soon"), 422, "neither a step index nor an ISO 8601 time")
    expect_error(lambda: client.request("GET", f"/jobs/{job_id}/hydrograph", query={"reach": "x"}), 422,
                 "query parameter reach")


@pytest.mark.parametrize("what", ["status", "cancel", "hydrograph", "snapshot", "summary", "delete"])
def test_unknown_job_is_404(client, what):
    calls = {"status": lambda: client.status("nope"), "cancel": lambda: client.cancel("nope"),
             "hydrograph": lambda: client.hydrograph("nope", 1), "snapshot": lambda: client.snapshot("nope", 0),
             "summary": lambda: client.summary("nope"), "delete": lambda: client.delete("nope")}
    err = expect_error(calls[what], 404, "no job 'nope'", "GET /jobs")
    assert err.error == "NotFound"


def test_gauge_observed_and_metrics(client, network):
    runoff = synthetic_runoff(network, 48, seed=9)
    expected = direct(network, runoff)
    outlet = int(network.outlets[0])
    observed = expected[outlet].astype(np.float64) * 1.1 + 0.3
    observed[::7] = np.nan
    gauges = [{"gauge_id": "G1", "reach_id": int(network.ids[outlet]), "name": "outlet gauge",
               "observed": [None if np.isnan(v) else float(v) for v in observed]}]
    job = client.route(inline_network(network), inline_runoff(runoff), gauges=gauges)
    final = client.wait(job["id"], interval=0.05, timeout=120, check=True)
    assert final["result"]["gauges"] == [{"gauge_id": "G1", "name": "outlet gauge",
                                          "reach_id": int(network.ids[outlet])}]
    h = client.hydrograph(job["id"], int(network.ids[outlet]))
    assert h["gauge_id"] == "G1"
    assert h["observed"] == gauges[0]["observed"]
    want = all_metrics(np.array(h["simulated"]), observed)
    assert set(h["metrics"]) == set(want)
    for name, value in want.items():
        assert h["metrics"][name] == pytest.approx(float(value), rel=1e-9, nan_ok=True), name
    assert 0.5 < h["metrics"]["nse"] < 1.0  # a 10 % bias plus an offset: good, not perfect


def test_scheme_and_constant_params(client, network):
    runoff = synthetic_runoff(network, 40, seed=4)
    spec = {"tau": 5400.0}
    job = client.route(inline_network(network), inline_runoff(runoff), scheme="linear_storage", params=spec)
    client.wait(job["id"], interval=0.05, timeout=120, check=True)
    expected = direct(network, runoff, "linear_storage", spec)
    snap = client.snapshot(job["id"], 20)
    assert_flows_close(snap["values"], expected[network.index_of(snap["reach_ids"]), 20], scale=np.abs(expected).max())


def test_failing_job_reports_its_error_and_service_stays_healthy(client, network):
    cycle = {"ids": [1, 2, 3, 4], "downstream_ids": [2, 3, 1, -1], "length": [1000.0] * 4,
             "area": [1.0, 2.0, 3.0, 4.0], "area_unit": "km2"}
    job = client.route(cycle, {"values": [[1.0, 1.0]] * 4, "dt": DT, "start": "2020-01-01"})
    final = client.wait(job["id"], interval=0.05, timeout=60)
    assert final["state"] == "failed" and final["outputs"] == {}
    err = final["error"]
    assert err["error"] == "CycleError" and sorted(err["ids"]) == [1, 2, 3]
    assert "downstream_ids" in err["message"] and "cycle" in err["message"]
    assert not (Path(final["folder"]) / "out").exists() and not (Path(final["folder"]) / "out.partial").exists()

    half = inline_runoff(synthetic_runoff(network, 8)[:-2], ids=network.ids[:-2])
    final = client.wait(client.route(inline_network(network), half)["id"], interval=0.05, timeout=60)
    assert final["error"]["error"] == "RunoffMismatchError"
    assert sorted(final["error"]["ids"]) == sorted(network.ids[-2:].tolist())

    gaps = inline_runoff(synthetic_runoff(network, 8))
    gaps["values"][3][5] = None
    final = client.wait(client.route(inline_network(network), gaps)["id"], interval=0.05, timeout=60)
    assert final["error"]["error"] == "MissingValueError" and final["error"]["ids"] == [int(network.ids[3])]
    assert "nan='zero'" in final["error"]["message"]

    assert client.health()["status"] == "ok"
    ok = client.route(inline_network(network), gaps, nan="zero")
    assert client.wait(ok["id"], interval=0.05, timeout=60)["state"] == "succeeded"


def test_missing_reaches_as_zero_are_warned(client, network):
    runoff = synthetic_runoff(network, 8)
    part = inline_runoff(runoff[2:], ids=network.ids[2:])
    final = client.wait(client.route(inline_network(network), part, missing="zero")["id"], interval=0.05,
                        timeout=60, check=True)
    notes = [w for w in final["warnings"] if "have no runoff" in w]  # the file readers' words (one aligner)
    assert len(notes) == 1 and "2 of the network's" in notes[0] and str(network.ids[0]) in notes[0]
    full = runoff.copy()
    full[:2] = 0.0
    snap = client.snapshot(final["id"], -1)
    expected = direct(network, full)
    assert_flows_close(snap["values"], expected[network.index_of(snap["reach_ids"]), -1], scale=np.abs(expected).max())


def test_results_of_a_failed_job_are_a_conflict(client):
    cycle = {"ids": [1, 2], "downstream_ids": [2, 1], "length": [1.0, 1.0]}
    job = client.wait(client.route(cycle, {"values": [[1.0], [1.0]], "dt": DT, "start": "2020-01-01"})["id"],
                      interval=0.05, timeout=60)
    assert job["state"] == "failed"
    expect_error(lambda: client.hydrograph(job["id"], 1), 409, "failed", "results exist only for a succeeded job")
    expect_error(lambda: client.cancel(job["id"]), 409, "already failed")


def test_list_and_delete_jobs(client, network):
    job = client.wait(client.route(inline_network(network), inline_runoff(synthetic_runoff(network, 4)))["id"],
                      interval=0.05, timeout=60)
    listed = client.list_jobs()
    assert job["id"] in [j["id"] for j in listed]
    assert [j["created"] for j in listed] == sorted(j["created"] for j in listed)
    assert all(j["state"] == "succeeded" for j in client.list_jobs(state="succeeded"))
    client.delete(job["id"])
    assert not Path(job["folder"]).exists()
    expect_error(lambda: client.status(job["id"]), 404)


def test_packed_runoff_gives_the_same_results(client, network, routed):
    """Runoff sent packed (base64 float32) routes exactly as the same runoff sent as JSON numbers."""
    runoff = routed["runoff"]
    job = client.route(inline_network(network), {"values": pack(runoff), "dt": DT, "start": "2020-01-01T00:00:00Z"})
    final = client.wait(job["id"], interval=0.05, timeout=120, check=True)
    assert final["inputs"]["runoff"]["rows"] == network.n_reaches and final["inputs"]["runoff"]["steps"] == STEPS
    for step in (0, 40, -1):
        a, b = client.snapshot(job["id"], step), client.snapshot(routed["job"]["id"], step)
        got = dict(zip(a["reach_ids"], a["values"]))
        want = dict(zip(b["reach_ids"], b["values"]))
        assert_flows_close([got[k] for k in want], list(want.values()), scale=np.abs(routed["expected"]).max())
    # lists with None pack to NaN: a missing value, refused under nan='error'
    gaps = runoff[:, :4].tolist()
    gaps[7][2] = None
    final = client.wait(client.route(inline_network(network), {"values": pack(gaps), "dt": DT,
                                                              "start": "2020-01-01"})["id"], interval=0.05, timeout=60)
    assert final["error"]["error"] == "MissingValueError" and final["error"]["ids"] == [int(network.ids[7])]


def test_runoff_as_volumes(client, network):
    """units='m3' takes volumes per step (m3_riv style) and divides them by dt."""
    runoff = synthetic_runoff(network, 12, seed=8)
    volumes = inline_runoff(runoff.astype(np.float64) * DT) | {"units": "m3"}
    final = client.wait(client.route(inline_network(network), volumes)["id"], interval=0.05, timeout=60, check=True)
    snap = client.snapshot(final["id"], 6)
    expected = direct(network, runoff)
    assert_flows_close(snap["values"], expected[network.index_of(snap["reach_ids"]), 6], scale=np.abs(expected).max())
