"""``thalweg serve`` options (issue 8, findings 9 and 13): bad values and paths give one line and exit 2, and
what is private is private: workspace, jobs and job folders 0700, connection and lock files 0600."""
from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from thalweg.client import start_server
from thalweg.server.jobs import JobManager
from thalweg.server.tasks import LANES


def _serve(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "thalweg.server", "--port", "0", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("flag, value, fragment", [
    ("--max-body-mb", "-1", "--max-body-mb -1 is not usable; give a size in MB above 0"),
    ("--max-body-mb", "0", "--max-body-mb 0 is not usable"),
    ("--max-body-mb", "nan", "--max-body-mb nan is not usable"),
    ("--shutdown-grace", "-1", "--shutdown-grace -1 is not usable; give seconds, 0 or more"),
    ("--stall-timeout", "inf", "--stall-timeout inf is not usable"),
])
def test_bad_numbers_are_refused_before_starting(tmp_path, flag, value, fragment):
    run = _serve("--workspace", str(tmp_path / "ws"), flag, value)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    assert fragment in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "ws").exists() and "THALWEG READY" not in run.stdout


def test_connection_file_that_is_a_folder(tmp_path):
    folder = tmp_path / "conn"
    folder.mkdir()
    run = _serve("--workspace", str(tmp_path / "ws"), "--connection-file", str(folder))
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert f"the connection file {folder} is a folder" in run.stderr
    assert f"--connection-file, e.g. {folder / 'connection.json'}" in run.stderr


@pytest.mark.skipif(os.name == "nt" or os.geteuid() == 0, reason="needs POSIX permissions, as a user without root")
def test_unwritable_connection_folder(tmp_path):
    locked = tmp_path / "ro"
    locked.mkdir(mode=0o500)
    try:
        run = _serve("--workspace", str(tmp_path / "ws"), "--connection-file", str(locked / "c.json"))
    finally:
        locked.chmod(0o700)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert f"cannot write the connection file {locked / 'c.json'}" in run.stderr


@pytest.mark.skipif(os.name == "nt", reason="POSIX modes")
def test_workspace_and_job_folders_are_private_whatever_the_umask(tmp_path):
    workspace = tmp_path / "new" / "ws"
    launcher = ["sh", "-c", 'umask 022 && exec "$0" -m thalweg.server "$@"', sys.executable]
    with start_server(workspace, command=launcher) as server:
        client = server.client()
        job = client.route({"ids": [1, 2], "downstream_ids": [2, -1], "length": [1e3, 1e3], "area": [5.0, 9.0],
                            "area_unit": "km2"},
                           {"values": [[1.0] * 6, [2.0] * 6], "dt": 3600.0, "start": "2020-01-01T00:00:00"},
                           write_gpkg=False)
        final = client.wait(job["id"], interval=0.05, timeout=120, check=True)
        folder = workspace / "jobs" / job["id"]

        def mode(path):
            return stat.S_IMODE(path.stat().st_mode)

        assert mode(workspace) == 0o700 and mode(workspace / "jobs") == 0o700 and mode(folder) == 0o700
        assert mode(server.connection_file) == 0o600 and mode(workspace / "service.lock") == 0o600
        assert os.access(final["outputs"]["q"], os.R_OK)
    assert server.process.returncode == 0, server.output()


@pytest.mark.skipif(os.name == "nt", reason="POSIX modes")
def test_existing_jobs_folder_becomes_private(tmp_path):
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs").chmod(0o755)  # as an earlier version left it
    tmp_path.chmod(0o750)
    JobManager(tmp_path, LANES)  # creates no process before start()
    assert stat.S_IMODE((tmp_path / "jobs").stat().st_mode) == 0o700
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o750  # the user's own folder keeps its mode
