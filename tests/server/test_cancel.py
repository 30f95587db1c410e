"""Cancelling: a queued job at once, a running route job at its next safe point (within a second)."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from .conftest import expect_error, inline_network, inline_runoff, synthetic_runoff


def _wait_for(client, job_id, predicate, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = client.status(job_id)
        if predicate(record):
            return record
        assert record["state"] in ("queued", "running"), record
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} never got there: {record}")


def test_cancel_queued_and_running_jobs(client, network, long_job):
    long = client.route(long_job["network"], long_job["runoff"], write_gpkg=False, label="long")
    small = client.route(inline_network(network), inline_runoff(synthetic_runoff(network, 4)))
    # the compute lane runs one job at a time: the small job waits behind the long one
    waiting = client.status(small["id"])
    assert waiting["state"] == "queued" and "ahead" in waiting["progress"]["message"]
    cancelled = client.cancel(small["id"])
    assert cancelled["state"] == "cancelled" and cancelled["cancel_requested"]
    assert client.cancel(small["id"])["state"] == "cancelled"  # cancelling twice is harmless

    # reading a large runoff file has no safe point inside: the worker is stopped after half a second
    running = _wait_for(client, long["id"], lambda r: r["progress"]["message"].startswith("reading runoff"))
    assert running["state"] == "running"
    start = time.monotonic()
    asked = client.cancel(long["id"])
    assert asked["cancel_requested"] and asked["state"] in ("running", "cancelled")
    final = client.wait(long["id"], interval=0.01, timeout=30)
    latency = time.monotonic() - start
    assert final["state"] == "cancelled", final
    assert latency < 1.0, f"cancel took {latency:.2f} s"
    assert final["error"] is None and final["outputs"] == {}
    assert final["progress"]["message"].startswith("cancelled")
    folder = Path(final["folder"])
    assert not (folder / "out").exists() and not (folder / "out.partial").exists()
    expect_error(lambda: client.summary(long["id"]), 409, "cancelled")


def test_a_crashed_worker_fails_one_job_only(client, network, long_job):
    if not hasattr(signal, "SIGKILL"):
        pytest.skip("needs SIGKILL to play a crash")
    job = client.route(long_job["network"], long_job["runoff"], write_gpkg=False)
    _wait_for(client, job["id"], lambda r: r["progress"]["message"].startswith("reading runoff"))
    pid = client.health()["workers"]["compute"]
    os.kill(pid, signal.SIGKILL)  # as the kernel's out-of-memory killer would
    final = client.wait(job["id"], interval=0.02, timeout=30)
    assert final["state"] == "failed" and final["error"]["error"] == "WorkerCrashed"
    assert "died (exit code -9)" in final["error"]["message"] and final["error"]["bug"]
    assert not (Path(final["folder"]) / "out.partial").exists()
    after = client.wait(client.route(inline_network(network), inline_runoff(synthetic_runoff(network, 4)))["id"],
                        interval=0.05, timeout=120)
    assert after["state"] == "succeeded"
    assert client.health()["workers"]["compute"] not in (None, pid)
