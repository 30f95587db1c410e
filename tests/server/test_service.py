"""The service as a process: loopback only, the token, the workspace lock, size limits, restart, SIGTERM."""
from __future__ import annotations

import http.client
import json
import socket
import stat
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from thalweg.client import ClientError, ThalwegClient, start_server
from thalweg.server.auth import is_loopback

from .conftest import expect_error, inline_network, inline_runoff, synthetic_runoff


def _outward_ip() -> str | None:
    """This machine's address on its default route (no packet is sent), or None."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("10.255.255.255", 1))
        return s.getsockname()[0]
    except OSError:
        return None
    finally:
        s.close()


def _listening(port: int) -> list[str]:
    """Local addresses (hex, as in /proc/net/tcp*) listening on ``port``."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, _, state = line.split()[1:4]
            address, _, hex_port = local.partition(":")
            if int(hex_port, 16) == port and state == "0A":
                found.append(address)
    return found


def test_is_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1") and is_loopback("127.1.2.3")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10") and not is_loopback("example.com")


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10"])
def test_non_loopback_host_is_refused(tmp_path, host):
    with pytest.raises(ClientError) as info:
        start_server(tmp_path / "ws", python=sys.executable, args=["--host", host], timeout=60)
    assert info.value.error == "StartFailed"
    assert "exited with code 2" in info.value.message
    assert f"refusing to listen on '{host}'" in info.value.message and "--allow-remote" in info.value.message
    assert not (tmp_path / "ws").exists()  # refused before touching anything


def test_binds_to_loopback_only(server):
    assert server.info["host"] == "127.0.0.1" and server.url == f"http://127.0.0.1:{server.port}"
    if not Path("/proc/net/tcp").exists():
        pytest.skip("needs Linux /proc/net/tcp to list the listening sockets")
    assert _listening(server.port) == ["0100007F"]  # 127.0.0.1, and nothing else
    ip = _outward_ip()
    if ip is not None and not is_loopback(ip):
        with pytest.raises(OSError):
            socket.create_connection((ip, server.port), timeout=2).close()


def test_connection_file_and_token(server, client):
    path = server.connection_file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    info = json.loads(path.read_text())
    assert info["url"] == server.url and info["pid"] == server.pid and len(info["token"]) >= 40
    anonymous = ThalwegClient(server.url)
    assert anonymous.health()["status"] == "ok"  # the one open endpoint
    wrong = ThalwegClient(server.url, "not-the-token")
    for c, what in ((anonymous, "no token"), (wrong, "a wrong token")):
        for call in (c.schemes, c.list_jobs, lambda c=c: c.status("x"), lambda c=c: c.submit({"kind": "route"}),
                     lambda c=c: c.request("GET", "/openapi.json"), lambda c=c: c.cancel("x")):
            err = expect_error(call, 401, what, "Authorization: Bearer", str(path))
            assert err.error == "Unauthorized"
    req = urllib.request.Request(server.url + "/schemes", headers={"Authorization": f"Basic {info['token']}"})
    with pytest.raises(urllib.error.HTTPError) as http_error:
        urllib.request.urlopen(req, timeout=10)
    assert http_error.value.code == 401 and http_error.value.headers["WWW-Authenticate"] == "Bearer"
    assert client.request("GET", "/openapi.json")["info"]["title"] == "Thalweg job service"


def test_thalweg_serve_command(tmp_path):
    """The CLI's ``thalweg serve`` starts the same service (serve() is what it calls)."""
    with start_server(tmp_path / "ws", command=[sys.executable, "-m", "thalweg.cli", "serve"]) as proc:
        assert proc.client().health()["status"] == "ok"
        assert proc.connection_file == tmp_path / "ws" / "connection.json"
    assert proc.process.returncode == 0


def test_shutdown_endpoint(tmp_path):
    """POST /shutdown stops the service as SIGTERM does (the way to stop it on Windows)."""
    proc = start_server(tmp_path / "ws", python=sys.executable)
    try:
        client = proc.client()
        expect_error(ThalwegClient(proc.url).shutdown, 401)
        client.shutdown()
        assert proc.process.wait(30) == 0
    finally:
        proc.stop()
    assert not proc.connection_file.exists()
    expect_error(client.health, None, "cannot reach the Thalweg service")


def test_second_service_on_a_workspace_is_refused(server):
    with pytest.raises(ClientError) as info:
        start_server(server.info["workspace"], python=sys.executable, timeout=60)
    assert "another Thalweg service is using the workspace" in info.value.message
    assert server.client().health()["status"] == "ok"  # the first one is untouched


def test_busy_port_is_refused(server, tmp_path):
    with pytest.raises(ClientError) as info:
        start_server(tmp_path / "ws", port=server.port, python=sys.executable, timeout=60)
    assert f"cannot listen on 127.0.0.1:{server.port}" in info.value.message


def _post_chunked(url: str, token: str, payload: bytes) -> tuple[int, dict]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.putrequest("POST", "/jobs")
    for name, value in (("Authorization", f"Bearer {token}"), ("Content-Type", "application/json"),
                        ("Transfer-Encoding", "chunked")):
        conn.putheader(name, value)
    conn.endheaders()
    for start in range(0, len(payload), 65536):
        piece = payload[start:start + 65536]
        conn.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
    conn.send(b"0\r\n\r\n")
    resp = conn.getresponse()
    body = json.loads(resp.read())
    conn.close()
    return resp.status, body


def _wait_state(client, job_id, state, timeout=120.0):
    deadline = time.monotonic() + timeout
    while (record := client.status(job_id))["state"] != state:
        assert time.monotonic() < deadline, record
        time.sleep(0.02)
    return record


def test_restart_payload_limit_and_sigterm(tmp_path, network, long_job):
    """Service A finishes a job and is killed (SIGKILL) in the middle of another; service B, on the same
    workspace, finds the first with its results and marks the second interrupted; B refuses oversized
    bodies; SIGTERM stops B cleanly, cancelling its running and queued jobs."""
    ws = tmp_path / "ws"
    a = start_server(ws, python=sys.executable)
    try:
        ca = a.client()
        runoff = synthetic_runoff(network, 24)
        done = ca.wait(ca.route(inline_network(network), inline_runoff(runoff))["id"], interval=0.05, timeout=120,
                       check=True)
        reach = int(network.ids[network.outlets[0]])
        before = ca.hydrograph(done["id"], reach)
        killed = ca.route(long_job["network"], long_job["runoff"], write_gpkg=False)
        _wait_state(ca, killed["id"], "running")
    finally:
        a.process.kill()  # a crash: no shutdown, no cleanup
        a.process.wait(30)
    assert json.loads((ws / "jobs" / killed["id"] / "job.json").read_text())["state"] == "running"

    b = start_server(ws, python=sys.executable, args=["--max-body-mb", "1"])
    try:
        cb = b.client()
        assert cb.token != ca.token
        expect_error(ThalwegClient(b.url, ca.token).list_jobs, 401, "a wrong token")
        jobs = {j["id"]: j for j in cb.list_jobs()}
        assert jobs[done["id"]]["state"] == "succeeded" and jobs[done["id"]]["outputs"] == done["outputs"]
        assert cb.hydrograph(done["id"], reach) == before  # now read back from the NetCDF file
        assert cb.snapshot(done["id"], 5)["step"] == 5
        lost = jobs[killed["id"]]
        assert lost["state"] == "failed" and lost["error"]["error"] == "Interrupted"
        assert "Submit it again" in lost["error"]["message"]
        assert not (ws / "jobs" / killed["id"] / "out.partial").exists()

        big_runoff = inline_runoff(synthetic_runoff(network, 400))  # about 2.5 MB of JSON
        err = expect_error(lambda: cb.route(inline_network(network), big_runoff), 413,
                           "limit for inline payloads is 1.0 MB", "file paths")
        assert err.error == "PayloadTooLarge"
        body = json.dumps({"kind": "route", "network": inline_network(network), "runoff": big_runoff}).encode()
        status, answer = _post_chunked(b.url, cb.token, body)  # no Content-Length: counted while read
        assert status == 413 and answer["error"] == "PayloadTooLarge"
        assert cb.health()["status"] == "ok"

        running = cb.route(long_job["network"], long_job["runoff"], write_gpkg=False)
        queued = cb.route(inline_network(network), inline_runoff(synthetic_runoff(network, 4)))
        _wait_state(cb, running["id"], "running")
    finally:
        start = time.monotonic()
        code = b.stop(timeout=60)
    assert code == 0, b.output()
    assert time.monotonic() - start < 15
    assert not b.connection_file.exists()
    records = {p.parent.name: json.loads(p.read_text()) for p in (ws / "jobs").glob("*/job.json")}
    assert records[running["id"]]["state"] == "cancelled", records[running["id"]]
    assert records[queued["id"]]["state"] == "cancelled"
    assert "service stopped" in records[queued["id"]]["progress"]["message"]
    assert not list((ws / "jobs").glob("*/out.partial"))
