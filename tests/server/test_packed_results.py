"""Packed snapshots for map animation: GET /jobs/{id}/snapshot?format=f32 and GET /jobs/{id}/axes, through
the standard-library client, against the JSON snapshot and thalweg.routing.route called directly."""
from __future__ import annotations

import array
import http.client

import numpy as np
import pytest

from .conftest import DT, assert_flows_close, expect_error, inline_network, inline_runoff, synthetic_runoff
from .test_jobs import direct

STEPS = 30


@pytest.fixture(scope="module")
def job(client, network):
    rng = np.random.default_rng(8)
    order = rng.permutation(network.n_reaches)  # the answers follow the job's reach order, not the network's
    runoff = synthetic_runoff(network, STEPS, seed=8)
    rec = client.route(inline_network(network, order), inline_runoff(runoff[order], ids=network.ids[order]),
                       write_gpkg=False)
    final = client.wait(rec["id"], interval=0.05, timeout=120, check=True)
    return {"id": final["id"], "expected": direct(network, runoff), "network": network}


def test_axes_and_packed_snapshots(client, job):
    axes = client.axes(job["id"])
    net = job["network"]
    assert axes["job_id"] == job["id"] and axes["units"] == "m3/s" and axes["dt"] == DT
    assert len(axes["time"]) == STEPS and axes["time"][0] == "2020-01-01T01:00:00"  # end of the first step
    assert sorted(axes["reach_ids"]) == sorted(net.ids.tolist())
    rows = np.searchsorted(net.ids, axes["reach_ids"])  # scheidegger ids are sorted
    for step in (0, 17, -1):
        packed = client.snapshot_f32(job["id"], step)
        plain = client.snapshot(job["id"], step)
        assert isinstance(packed["values"], array.array) and packed["values"].typecode == "f"
        assert packed["step"] == plain["step"] == step % STEPS and packed["time"] == plain["time"]
        assert packed["time"] == axes["time"][step] and packed["units"] == "m3/s"
        assert plain["reach_ids"] == axes["reach_ids"]
        assert list(packed["values"]) == plain["values"]  # float32 both ways: equal, not close
        assert_flows_close(np.asarray(packed["values"]), job["expected"][rows, step % STEPS])
    by_time = client.snapshot_f32(job["id"], axes["time"][5])
    assert by_time["step"] == 5


def test_packed_snapshot_on_the_wire(server, client, job):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("GET", f"/jobs/{job['id']}/snapshot?time=3&format=f32",
                     headers={"Authorization": f"Bearer {client.token}"})
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    assert resp.status == 200 and resp.getheader("Content-Type") == "application/octet-stream"
    n = job["network"].n_reaches
    assert len(raw) == 4 * n and resp.getheader("X-Thalweg-Reaches") == str(n)
    assert resp.getheader("X-Thalweg-Step") == "3" and resp.getheader("X-Thalweg-Time") == "2020-01-01T04:00:00"
    np.testing.assert_array_equal(np.frombuffer(raw, "<f4"), client.snapshot(job["id"], 3)["values"])


def test_packed_snapshot_errors_stay_json(client, job):
    expect_error(lambda: client.snapshot_f32("no-such-job", 0), 404, "no job 'no-such-job'")
    expect_error(lambda: client.axes("no-such-job"), 404, "no job 'no-such-job'")
    expect_error(lambda: client.snapshot_f32(job["id"], STEPS), 422, f"outside the results' {STEPS} steps")
    err = expect_error(lambda: client.request("GET", f"/jobs/{job['id']}/snapshot",
                                              query={"time": 0, "format": "f64"}), 422, "format")
    assert err.error == "ValidationError"
    extract = client.wait(client.extract(str(__file__))["id"], timeout=120)
    expect_error(lambda: client.axes(extract["id"]), 409, "'extract' job")
