"""The Thalweg backend as seen from QGIS: start ``thalweg serve`` as a subprocess, or connect to a running one.

QGIS's Python never imports torch or the backend package: the backend is its own process, started with a
clean environment (QGIS's PYTHONPATH, PYTHONHOME, PROJ and GDAL data paths are not passed on), and driven
over HTTP on 127.0.0.1 with :mod:`.client` (the backend's own standard-library client, one file shared).

One backend serves a QGIS session (the panel and the Processing algorithms alike): :func:`shared` starts it
on first use, :func:`stop_shared` stops it (the plugin's ``unload``, QGIS's exit and interpreter exit).
"""
from __future__ import annotations

import atexit
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import PluginError
from ..settings import Settings
from .client import ClientError, ServerProcess, ThalwegClient, start_server

__all__ = ["Backend", "shared", "current", "stop_shared", "clean_environment", "backend_command", "SETUP_HINT"]

SETUP_HINT = ("Set up the backend with `bash scripts/setup.sh` in a Thalweg checkout, then set 'Backend Python' "
              "to <checkout>/.venv/bin/python in the Thalweg panel's backend settings.")
# variables of QGIS's own Python and GIS stack that would break (or silently change) the backend's
_DROP_PREFIXES = ("PYTHON", "QGIS", "PROJ_", "GDAL_", "QT_PLUGIN_PATH", "VIRTUAL_ENV", "CONDA_PREFIX")
_BUSY = "another Thalweg service is using the workspace"


def clean_environment(settings: Settings) -> dict[str, str]:
    """The backend's environment: this one without QGIS's Python and GIS variables, plus the settings'
    PYTHONPATH (development checkouts only) and unbuffered output (the READY line must arrive at once)."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(_DROP_PREFIXES)}
    if settings.pythonpath:
        env["PYTHONPATH"] = settings.pythonpath
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONNOUSERSITE"] = "1"  # the user's ~/.local packages are QGIS-Python-shaped, not the backend's
    return env


def backend_command(settings: Settings) -> list[str]:
    """The command that starts the service: ``<python> -m thalweg.server`` or ``<thalweg> serve``.

    Raises PluginError (with the setup command) when no backend is configured or the configured one is missing.
    """
    if settings.backend_python:
        python = os.path.expanduser(settings.backend_python)
        if not os.path.isfile(python):
            raise PluginError(f"the backend Python {python} does not exist. {SETUP_HINT}")
        return [python, "-m", "thalweg.server"]
    exe = os.path.expanduser(settings.backend_command) if settings.backend_command else shutil.which("thalweg")
    if not exe or not (os.path.isfile(exe) or shutil.which(exe)):
        what = f"the thalweg executable {exe} does not exist" if settings.backend_command else \
            "no Thalweg backend is configured and `thalweg` is not on the PATH"
        raise PluginError(f"{what}. {SETUP_HINT}")
    return [exe, "serve"]


def _start_failure(exc: ClientError, command: list[str]) -> PluginError:
    output = exc.message
    if "No module named thalweg" in output or "No module named 'thalweg'" in output:
        return PluginError(f"{command[0]} has no Thalweg backend installed (No module named thalweg). {SETUP_HINT}",
                           output)
    if "No module named" in output:
        missing = output.split("No module named", 1)[1].split("\n", 1)[0].strip(" '\"")
        return PluginError(f"the backend at {command[0]} lacks the Python package '{missing}'. Run "
                           f"`bash scripts/setup.sh` in the Thalweg checkout again.", output)
    last = next((line for line in reversed(output.splitlines()) if line.strip()), exc.message)
    return PluginError(f"the Thalweg backend did not start: {last.strip()[:300]}", output)


def _wait_for_device(client: ThalwegClient, process: ServerProcess, timeout: float) -> dict[str, Any]:
    """/health once the compute worker has reported its device (it imports torch first: seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        health = client.health()
        if (health.get("device") or {}).get("type") != "unknown" or time.monotonic() > deadline \
                or not process.running():
            return health
        time.sleep(0.2)


class Backend:
    """A running backend: its ``client`` (:class:`.client.ThalwegClient`), ``health`` and ``device``.

    Build one with :meth:`start` (start or reuse a service as the settings say) or :meth:`connect` (a URL).
    ``owned`` says whether this plugin started the process (and so stops it).
    """

    def __init__(self, client: ThalwegClient, health: dict[str, Any], process: ServerProcess | None = None,
                 settings: Settings | None = None) -> None:
        self.client, self.health, self.process = client, health, process
        self.settings = settings or Settings()

    @property
    def owned(self) -> bool:
        return self.process is not None

    @property
    def device(self) -> dict[str, Any]:
        """``{"type": "cuda" | "cpu", "name": ..., "memory_bytes": ..., "count": ...}`` from /health."""
        return dict(self.health.get("device") or {})

    @property
    def device_label(self) -> str:
        """What the panel shows: the GPU's name, or 'CPU'."""
        dev = self.device
        if dev.get("type") == "cuda":
            return str(dev.get("name") or "GPU")
        return "CPU" + (f" ({dev['name']})" if dev.get("name") and dev.get("name") != "cpu" else "")

    @property
    def url(self) -> str:
        return self.client.url

    def __repr__(self) -> str:
        return f"Backend({self.url!r}, device={self.device_label!r}, owned={self.owned})"

    @classmethod
    def connect(cls, url: str, connection_file: str | None = None, *, settings: Settings | None = None) -> Backend:
        """A backend you started yourself, at ``url``; the token comes from its connection file."""
        settings = settings or Settings()
        token = None
        if connection_file and os.path.exists(connection_file):
            token = ThalwegClient.from_connection_file(connection_file).token
        client = ThalwegClient(url, token, timeout=settings.request_timeout)
        try:
            health = client.health()
        except ClientError as exc:
            raise PluginError(f"no Thalweg backend answers at {url} ({exc.message}). Start it with `thalweg serve`, "
                              f"or clear 'Backend URL' so that the plugin starts one.") from None
        return cls(client, health, None, settings)

    @classmethod
    def start(cls, settings: Settings | None = None) -> Backend:
        """Start ``thalweg serve`` (blocking until READY and /health answer: call it from a task, not the GUI
        thread), or reuse the service already serving the workspace, or connect to ``backend_url``.

        Raises PluginError with the fix when the backend is missing or fails to start.
        """
        settings = settings or Settings.load()
        if settings.backend_url:
            return cls.connect(settings.backend_url, settings.resolved_connection_file, settings=settings)
        command = backend_command(settings)
        workspace = settings.resolved_workspace
        Path(workspace).mkdir(parents=True, exist_ok=True)
        try:
            process = start_server(workspace, command=command, env=clean_environment(settings),
                                   timeout=settings.start_timeout)
        except FileNotFoundError as exc:
            raise PluginError(f"cannot run {command[0]}: {exc.strerror}. {SETUP_HINT}") from None
        except PermissionError as exc:
            raise PluginError(f"cannot run {command[0]}: {exc.strerror}; make it executable or point the "
                              f"backend settings at the backend's Python.") from None
        except ClientError as exc:
            if _BUSY in exc.message:  # a service already serves this workspace (another QGIS, qgis_process)
                conn = str(Path(workspace) / "connection.json")
                try:
                    client = ThalwegClient.from_connection_file(conn, timeout=settings.request_timeout)
                    return cls(client, client.health(), None, settings)
                except ClientError:
                    pass
            raise _start_failure(exc, command) from None
        client = process.client(timeout=settings.request_timeout)
        try:
            health = _wait_for_device(client, process, settings.start_timeout)
        except ClientError as exc:
            process.stop(5)
            raise PluginError(f"the Thalweg backend started but /health failed: {exc.message}", process.output()) \
                from None
        return cls(client, health, process, settings)

    def running(self) -> bool:
        """Whether the backend still answers (a dead process counts as not running)."""
        if self.process is not None and not self.process.running():
            return False
        try:
            self.health = self.client.health()
        except ClientError:
            return False
        return True

    def stop(self, timeout: float = 15.0) -> int | None:
        """Stop the process this plugin started (running jobs stop at a safe point); None if it was not ours."""
        if self.process is None:
            return None
        return self.process.stop(timeout)

    def output(self) -> str:
        """The backend's last lines of output (for "More info")."""
        return self.process.output() if self.process is not None else ""


_lock = threading.RLock()
_shared: Backend | None = None
_atexit_registered = False


def shared(settings: Settings | None = None) -> Backend:
    """The session's backend, started on first use (blocking: call from a task or a Processing algorithm);
    a backend that died is started again."""
    global _shared, _atexit_registered
    with _lock:
        if _shared is not None and _shared.running():
            return _shared
        if _shared is not None:
            _shared.stop(2)
        _shared = Backend.start(settings)
        if not _atexit_registered:  # qgis_process and a QGIS that exits without unloading plugins
            atexit.register(stop_shared)
            _atexit_registered = True
        return _shared


def current() -> Backend | None:
    """The session's backend if one was started (never starts one)."""
    return _shared


def stop_shared() -> None:
    """Stop the session's backend, if this plugin started it."""
    global _shared
    with _lock:
        backend, _shared = _shared, None
    if backend is not None:
        backend.stop()
