"""The Host header check against DNS rebinding (issue 8, finding 11): only loopback names, or the bound
address, are answered, /health included; raw http.client requests set the header as a browser page would."""
from __future__ import annotations

import http.client
import json
import socket
import sys

import pytest

from thalweg.client import start_server
from thalweg.server.auth import HostRule, host_allowed, is_loopback

from .test_service import _outward_ip


def _get(port: int, host: str | None, path: str = "/health", token: str | None = None,
         address: str = "127.0.0.1") -> tuple[int, dict]:
    """GET ``path`` with exactly this Host header (None: none at all, over HTTP/1.0)."""
    if host is None:
        with socket.create_connection((address, port), timeout=10) as s:
            s.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
            raw = b""
            while chunk := s.recv(65536):
                raw += chunk
        head, _, body = raw.partition(b"\r\n\r\n")
        return int(head.split()[1]), json.loads(body)
    conn = http.client.HTTPConnection(address, port, timeout=10)
    try:
        conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host)
        if token:
            conn.putheader("Authorization", f"Bearer {token}")
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_host_rule():
    rule = HostRule("127.0.0.1")
    for good in ("127.0.0.1", "127.0.0.1:8765", "localhost", "LocalHost:1", "[::1]", "[::1]:8765", "127.0.0.9:80"):
        assert host_allowed(good, rule), good
    for bad in (None, "", " ", "evil.example", "evil.example:8765", "127.0.0.1.nip.io", "localhost.evil.example",
                "[::1", "[::1]x", "::1", "127.0.0.1:abc", "0.0.0.0", "192.168.1.10:8765", "[::ffff:c0a8:10a]"):
        assert not host_allowed(bad, rule), bad
    remote = HostRule("192.168.1.10", allow_remote=True)
    assert host_allowed("192.168.1.10:8765", remote) and host_allowed("localhost:8765", remote)
    assert not host_allowed("192.168.1.11:8765", remote) and not host_allowed("evil.example", remote)
    anywhere = HostRule("0.0.0.0", allow_remote=True)
    assert host_allowed("10.1.2.3:8765", anywhere) and host_allowed(socket.gethostname(), anywhere)
    assert not host_allowed("evil.example:8765", anywhere)


def test_foreign_host_headers_are_refused(server, client):
    port = server.port
    for host in ("evil.example", f"evil.example:{port}", "", f"localhost.evil.example:{port}", None):
        status, body = _get(port, host)
        assert status == 400, (host, status, body)
        assert body["error"] == "BadHost" and "127.0.0.1, localhost or [::1]" in body["message"], body
        assert "pid" not in body and "version" not in body
    assert "'evil.example'" in _get(port, "evil.example")[1]["message"]
    assert "no Host header" in _get(port, None)[1]["message"]
    # the token does not make a foreign Host acceptable
    status, body = _get(port, "evil.example", "/jobs", token=client.token)
    assert status == 400 and body["error"] == "BadHost"
    for host in (f"127.0.0.1:{port}", "127.0.0.1", f"localhost:{port}", "localhost", f"[::1]:{port}"):
        status, body = _get(port, host)
        assert status == 200 and body["status"] == "ok", (host, body)
    status, body = _get(port, f"localhost:{port}", "/jobs", token=client.token)
    assert status == 200 and "jobs" in body


def test_allow_remote_answers_its_bound_address(tmp_path):
    ip = _outward_ip()
    if ip is None or is_loopback(ip):
        pytest.skip("no non-loopback address on this machine")
    with start_server(tmp_path / "ws", python=sys.executable, args=["--host", ip, "--allow-remote"]) as server:
        assert _get(server.port, f"{ip}:{server.port}", address=ip)[0] == 200
        assert _get(server.port, "localhost", address=ip)[0] == 200
        status, body = _get(server.port, "evil.example", address=ip)
        assert status == 400 and body["error"] == "BadHost"
        assert server.client().health()["status"] == "ok"  # the client sends the url's address
    assert server.process.returncode == 0, server.output()
