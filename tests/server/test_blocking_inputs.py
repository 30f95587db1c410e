"""Inputs that block a read (issue 8, finding 10): refused at the service's door, and a read that blocks
anyway (the file became a named pipe after submission) cannot hold its lane: the job fails, the next runs."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from thalweg.client import start_server
from thalweg.network import scheidegger_network
from thalweg.server.worker import process_activity

from .conftest import expect_error, inline_network, inline_runoff, synthetic_runoff, write_m3_riv

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes (os.mkfifo)")


@pytest.fixture(scope="module")
def small():
    net = scheidegger_network(60, seed=2)
    return net, synthetic_runoff(net, 24)


def test_named_pipes_and_devices_are_refused_at_submission(client, small, tmp_path):
    net, runoff = small
    fifo = tmp_path / "runoff.nc"
    os.mkfifo(fifo)
    good = write_m3_riv(tmp_path / "good.nc", net, runoff)
    before = len(client.list_jobs())
    err = expect_error(lambda: client.route(inline_network(net), str(fifo)), 422, str(fifo), "named pipe (FIFO)",
                       "regular file")
    assert err.body["field"] == "runoff" and err.body["path"] == str(fifo)
    gauges = tmp_path / "gauges.csv"
    os.mkfifo(gauges)
    err = expect_error(lambda: client.route(inline_network(net), str(good), gauges=str(gauges)), 422, str(gauges))
    assert err.body["field"] == "gauges"
    err = expect_error(lambda: client.extract(str(fifo)), 422, str(fifo), "named pipe")
    assert err.body["field"] == "network"
    zero = tmp_path / "zeros.csv"  # a link to an endless device (issue 8, finding 15)
    zero.symlink_to("/dev/zero")
    expect_error(lambda: client.route(inline_network(net), str(zero)), 422, str(zero), "a character device")
    assert len(client.list_jobs()) == before  # nothing was queued
    folder = tmp_path / "net.gdb"  # folders stay allowed: FileGDB, shapefile folders
    folder.mkdir()
    job = client.extract(str(folder))
    assert client.wait(job["id"], timeout=120)["state"] == "failed"  # not a network, but read, not refused


def test_process_activity_tells_a_blocked_process_from_a_working_one(tmp_path):
    if process_activity(os.getpid()) is None:
        pytest.skip("needs /proc (Linux)")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    blocked = subprocess.Popen([sys.executable, "-c", f"open({str(fifo)!r}).read()"])
    busy = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 30: pass"])
    try:
        time.sleep(1.0)  # both have started (imports done)
        first = {p.pid: process_activity(p.pid) for p in (blocked, busy)}
        time.sleep(1.0)
        second = {p.pid: process_activity(p.pid) for p in (blocked, busy)}
        assert second[blocked.pid] == first[blocked.pid]  # waiting in open(): no CPU, no byte
        assert second[busy.pid][0] > first[busy.pid][0]  # CPU ticks go up
    finally:
        for p in (blocked, busy):
            p.kill()
            p.wait(10)


def test_a_read_that_blocks_does_not_hold_the_lane(tmp_path, small):
    """Job B's runoff file is replaced by a named pipe after it was accepted: B blocks in its read. The
    service (stall timeout 3 s) stops it and fails it, and job C, queued behind B on the same lane, runs."""
    net, runoff = small
    path = write_m3_riv(tmp_path / "runoff.nc", net, runoff)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with start_server(tmp_path / "ws", python=sys.executable, args=["--stall-timeout", "3"]) as server:
        client = server.client(timeout=30)
        b = client.route(inline_network(net), str(path), write_gpkg=False)
        os.replace(fifo, path)  # from now on, reading it waits for a writer that never comes
        c = client.route(inline_network(net), inline_runoff(runoff), write_gpkg=False)
        final_b = client.wait(b["id"], interval=0.1, timeout=120)
        final_c = client.wait(c["id"], interval=0.1, timeout=120)
        assert final_b["state"] == "failed", final_b
        assert final_b["timings"]["run"] < 60, final_b["timings"]
        if final_b["error"]["error"] == "Stalled":  # the readers may refuse the pipe themselves first
            message = final_b["error"]["message"]
            assert "without progress, CPU time or I/O" in message and "named pipe" in message, message
            assert "reading runoff" in message and "--stall-timeout" in final_b["error"]["hint"]
        assert final_c["state"] == "succeeded", final_c["error"]
        assert np.isfinite(client.snapshot(c["id"], -1)["values"][0])
        assert server.running()
    assert server.process.returncode == 0, server.output()
