"""The backend from QGIS: start with a clean environment, /health, device, jobs as QgsTasks, cancel, stop."""
from __future__ import annotations

import os
import time

import pytest

SAMPLE_REACHES = 123  # resources/sample/README.md


def test_backend_started_with_a_clean_environment(backend, backend_settings, monkeypatch):
    from thalweg.service.process import clean_environment

    monkeypatch.setenv("PYTHONPATH", "/usr/share/qgis/python")
    monkeypatch.setenv("PYTHONHOME", "/nonexistent")
    monkeypatch.setenv("QGIS_PREFIX_PATH", "/usr")
    env = clean_environment(backend_settings)
    assert env["PYTHONPATH"] == backend_settings.pythonpath
    assert "PYTHONHOME" not in env and "QGIS_PREFIX_PATH" not in env
    health = backend.client.health()
    assert health["status"] == "ok" and health["pid"] == backend.process.pid
    assert backend.device["type"] in ("cpu", "cuda")
    assert backend.device_label == ("CPU" if backend.device["type"] == "cpu" else backend.device["name"])[:3] \
        or backend.device_label.startswith("CPU")


def test_missing_backend_says_how_to_set_it_up(backend_settings, tmp_path):
    import dataclasses

    from thalweg.errors import PluginError
    from thalweg.service.process import Backend

    bad = dataclasses.replace(backend_settings, backend_python=str(tmp_path / "nope" / "python"))
    with pytest.raises(PluginError, match=r"nope/python does not exist\. Set up the backend with `bash scripts/setup"):
        Backend.start(bad)
    # an interpreter without the backend package (QGIS's own Python)
    wrong = dataclasses.replace(backend_settings, backend_python="/usr/bin/python3", pythonpath="",
                                workspace=str(tmp_path / "ws"))
    with pytest.raises(PluginError, match=r"/usr/bin/python3 has no Thalweg backend installed") as info:
        Backend.start(wrong)
    assert "Traceback" not in info.value.message and "thalweg" in info.value.details


def test_route_job_as_a_task(backend, sample, wait_task):
    from thalweg.service.tasks import JobTask

    got = []
    seen = []
    task = JobTask("Thalweg test: route", {"kind": "route", "network": str(sample["rivers"]),
                                           "runoff": str(sample["runoff"]), "write_gpkg": False},
                   on_finished=lambda record, error: got.append((record, error)))
    task.recordChanged.connect(lambda rec: seen.append(rec["progress"]["fraction"]))
    percents = []
    task.progressChanged.connect(percents.append)
    wait_task(task)
    (record, error), = got
    assert error is None, error and error.details
    assert record["state"] == "succeeded" and record["result"]["reaches"] == SAMPLE_REACHES
    assert seen and seen[-1] == pytest.approx(1.0)
    assert percents and percents[-1] == pytest.approx(100.0)
    assert set(task.timings) >= {"prepare", "submit", "job"}


def test_failed_job_reaches_the_callback_as_a_plugin_error(backend, tmp_path, wait_task):
    from thalweg.errors import PluginError
    from thalweg.service.tasks import JobTask

    got = []
    body = {"kind": "route", "network": {"ids": [1, 2, 3], "downstream_ids": [2, 3, 1], "length": [1e3, 1e3, 1e3]},
            "runoff": {"values": [[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]], "dt": 3600, "start": "2020-01-01T00:00:00"}}
    wait_task(JobTask("Thalweg test: cycle", body, on_finished=lambda r, e: got.append((r, e))))
    (record, error), = got
    assert record is None and isinstance(error, PluginError)
    assert error.error == "CycleError" and sorted(error.ids) == [1, 2, 3]
    assert "1 -> 2 -> 3 -> 1" in error.message or "cycle" in error.message


def test_cancel_stops_the_backend_job_within_a_second(backend, qtbot, long_job):
    from thalweg.errors import LEVEL_INFO
    from thalweg.service.tasks import JobTask, start

    body = {"kind": "route", "network": long_job["network"], "runoff": long_job["runoff"], "write_gpkg": False}
    got = []
    task = JobTask("Thalweg test: cancel", body, on_finished=lambda r, e: got.append((r, e)))
    start(task)
    qtbot.waitUntil(lambda: task.job_id is not None and
                    backend.client.status(task.job_id)["state"] == "running", timeout=120_000)
    import datetime as dt

    t0 = time.time()
    task.cancel()
    qtbot.waitUntil(lambda: bool(got), timeout=10_000)
    told = time.time() - t0
    ended = backend.client.status(task.job_id)
    assert ended["state"] == "cancelled", ended
    # the backend job ended within a second of the click (its record's end time, same clock)
    finished = dt.datetime.fromisoformat(ended["finished"].replace("Z", "+00:00")).timestamp()
    assert finished - t0 < 1.0, f"the backend job ended {finished - t0:.2f} s after the cancel"
    assert told < 2.0, f"the task reported the cancel after {told:.2f} s"
    (record, error), = got
    assert record is None and error.level == LEVEL_INFO and "cancelled" in error.message
    # the lane is free again: QGIS and the backend stay usable
    assert backend.client.health()["status"] == "ok"


def test_stop_shared_stops_the_process(backend_settings, tmp_path):
    import dataclasses

    from thalweg.service import process

    settings = dataclasses.replace(backend_settings, workspace=str(tmp_path / "ws2"))
    b = process.Backend.start(settings)
    pid = b.process.pid
    assert b.running()
    assert b.stop() == 0
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_encode_body_is_json_dumps_in_pieces():
    import json
    import random

    from thalweg.service.tasks import encode_body

    rng = random.Random(4)
    n = 12_345
    network = {"ids": list(range(n)), "length": [rng.random() * 1e4 for _ in range(n)],
               "area": [None if i % 7 else 1.5 for i in range(n)],
               "geometry": {"wkb": "QUJD" * 400_000, "sizes": [3] * n, "crs": "EPSG:2154"},
               "name": "rivière \u00e9\U0001F30A" * 300_000}
    body = {"kind": "route", "network": network,
            "runoff": {"values": [[float(i), 2.5] for i in range(6_001)], "dt": 3600.0}, "empty": [], "flag": True}
    assert encode_body(body) == json.dumps(body, allow_nan=False, separators=(",", ":")).encode("utf-8")
    with pytest.raises(ValueError):
        encode_body({"length": [1.0] * 6000 + [float("nan")]})


def test_settings_round_trip_and_environment_fallback(monkeypatch):
    from qgis.core import QgsSettings

    from thalweg.settings import PREFIX, Settings

    saved = Settings(backend_python="/opt/thalweg/.venv/bin/python", poll_interval=0.5, workspace="/tmp/ws")
    saved.save()
    try:
        assert Settings.load() == saved
        QgsSettings().remove(PREFIX + "backend_python")
        monkeypatch.setenv("THALWEG_BACKEND_PYTHON", "/env/python")
        assert Settings.load().backend_python == "/env/python"
    finally:
        QgsSettings().remove(PREFIX.rstrip("/"))
    assert Settings.load().poll_interval == Settings().poll_interval
