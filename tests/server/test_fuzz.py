"""A bounded schemathesis run against the live service's OpenAPI schema: no 500, no crash."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from thalweg.client import start_server


@pytest.mark.slow
def test_schemathesis_finds_no_server_error(tmp_path):
    """About 1,400 generated requests (examples, coverage, fuzzing and stateful phases, 50 examples per
    operation, fixed seed), 20-40 s; /shutdown is left out (it would end the run early)."""
    st = Path(sys.executable).with_name("st")
    st = str(st) if st.exists() else shutil.which("st")
    if st is None:
        pytest.skip("schemathesis (the 'st' command) is not installed")
    with start_server(tmp_path / "ws", python=sys.executable) as server:
        client = server.client()
        assert server.url.startswith("http://127.0.0.1:")  # loopback only
        env = dict(os.environ, NO_COLOR="1", SCHEMATHESIS_TELEMETRY="false")
        run = subprocess.run(
            [st, "run", f"{server.url}/openapi.json", "--header", f"Authorization: Bearer {client.token}",
             "--checks", "not_a_server_error", "--max-examples", "50", "--seed", "1", "--workers", "1",
             "--exclude-path", "/shutdown", "--request-timeout", "20", "--report", "junit",
             "--report-dir", str(tmp_path / "report")],
            capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
        tail = run.stdout[-3000:] + run.stderr[-2000:]
        assert run.returncode == 0, tail
        assert "Server error" not in run.stdout and " passed" in run.stdout, tail
        assert client.health()["status"] == "ok"  # still up after the fuzzing
        jobs = client.list_jobs()
        assert jobs, "the fuzzing never submitted a valid job"
        assert not [j for j in jobs if (j["error"] or {}).get("bug")], [j["error"] for j in jobs]
    assert server.process.returncode == 0, server.output()
