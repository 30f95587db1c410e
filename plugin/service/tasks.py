"""Long work as QgsTasks: start the backend, run a job (any kind) by polling it with short requests.

Nothing here touches layers or widgets from the worker thread: a task's body is a plain dict, or a callable
that builds one from a :class:`~qgis.core.QgsVectorLayerFeatureSource` (thread-safe by design). ``run()``
never raises (an exception there crashes QGIS): it keeps the error, returns False, and ``finished()`` (on the
main thread) hands the job record or a :class:`~..errors.PluginError` to the callback.

Keep a Python reference to every task: :func:`start` does it until the task has ended.
"""
from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from typing import Any

from qgis.core import QgsApplication, QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from ..errors import LEVEL_INFO, PluginError, from_client_error, from_job_error
from ..settings import Settings
from .client import ClientError
from .process import Backend, shared

__all__ = ["JobTask", "StartBackendTask", "run_job", "start", "running_tasks", "encode_body", "SUBMIT_TIMEOUT"]

SUBMIT_TIMEOUT = 300.0  # s: an inline network of 100,000s of reaches is a large body
CANCEL_GRACE = 30.0  # s: after this long without the job ending, stop waiting for it (it is reported)

_tasks: set[QgsTask] = set()
_LIST_PIECE = 5_000  # items of a long list encoded per call (a few ms each)
_TEXT_PIECE = 1 << 20  # characters of a long string escaped per call
_SEP = (",", ":")


def encode_body(value: Any) -> bytes:
    """``value`` as compact JSON bytes (``json.dumps(value, allow_nan=False, separators=(",", ":"))``), encoded
    in pieces of a few milliseconds with the GIL released between them: a worker thread encoding a 100,000-reach
    network in one ``json.dumps`` call (C code, holding the GIL throughout) froze QGIS's main thread for ~0.4 s."""
    out: list[str] = []
    _encode(value, out)
    return "".join(out).encode("utf-8")


def _encode(value: Any, out: list[str]) -> None:
    if isinstance(value, dict):
        out.append("{")
        for i, (key, item) in enumerate(value.items()):
            out.append(("," if i else "") + json.dumps(str(key)) + ":")
            _encode(item, out)
        out.append("}")
    elif isinstance(value, (list, tuple)) and len(value) > _LIST_PIECE:
        out.append("[")
        for start in range(0, len(value), _LIST_PIECE):
            piece = value[start:start + _LIST_PIECE]
            if any(isinstance(v, (dict, list, tuple)) for v in piece):
                for j, item in enumerate(piece):
                    out.append("," if start or j else "")
                    _encode(item, out)
            else:
                out.append(("," if start else "") + json.dumps(list(piece), allow_nan=False, separators=_SEP)[1:-1])
            time.sleep(0)  # let the main thread run
        out.append("]")
    elif isinstance(value, str) and len(value) > _TEXT_PIECE:
        out.append('"')
        for start in range(0, len(value), _TEXT_PIECE):
            out.append(json.dumps(value[start:start + _TEXT_PIECE])[1:-1])
            time.sleep(0)
        out.append('"')
    else:
        out.append(json.dumps(value, allow_nan=False, separators=_SEP))


def start(task: QgsTask) -> QgsTask:
    """Add ``task`` to QGIS's task manager and keep a reference to it until it has ended."""
    _tasks.add(task)
    task.taskCompleted.connect(lambda: _tasks.discard(task))
    task.taskTerminated.connect(lambda: _tasks.discard(task))
    QgsApplication.taskManager().addTask(task)
    return task


def running_tasks() -> list[QgsTask]:
    """Tasks started with :func:`start` that have not ended."""
    return list(_tasks)


def _bug(exc: BaseException) -> PluginError:
    return PluginError(f"a bug in the Thalweg plugin: {type(exc).__name__}: {exc} (please report it with the "
                       f"details)", traceback.format_exc())


def run_job(backend: Backend, body: dict[str, Any], *, is_canceled: Callable[[], bool],
            on_record: Callable[[dict[str, Any]], Any] | None = None, layer: str | None = None,
            timings: dict[str, float] | None = None) -> dict[str, Any]:
    """Submit ``body`` and poll the job until it ends, cancelling it once ``is_canceled()`` is true.

    The one job loop of the plugin: :class:`JobTask` and the Processing algorithms both run it (in a worker
    thread). Polls are short requests ``settings.poll_interval`` apart, so a cancel reaches the backend within
    that interval and the backend stops the job at its next safe point.

    Returns the succeeded job's record; raises PluginError (the job's error, or 'cancelled' at level info).
    """
    client = backend.client
    timings = {} if timings is None else timings
    t0 = time.perf_counter()
    try:
        record = client.request("POST", "/jobs", body=encode_body(body),
                                timeout=max(SUBMIT_TIMEOUT, client.timeout))
    except ClientError as exc:
        raise from_client_error(exc, layer=layer) from None
    timings["submit"] = time.perf_counter() - t0
    job_id = record["id"]
    if on_record is not None:
        on_record(record)
    t0 = time.perf_counter()
    cancel_at: list[float] = []

    def should_stop() -> bool:
        if is_canceled():
            if not cancel_at:
                cancel_at.append(time.monotonic())
            elif time.monotonic() - cancel_at[0] > CANCEL_GRACE:
                raise PluginError(f"job {job_id} was cancelled but has not stopped after {CANCEL_GRACE:g} s; the "
                                  f"backend may be stuck: restart it from the Thalweg panel.")
            return True
        return False

    try:
        record = client.wait(job_id, interval=backend.settings.poll_interval, callback=on_record,
                             should_stop=should_stop)
    except ClientError as exc:
        raise from_client_error(exc, layer=layer) from None
    timings["job"] = time.perf_counter() - t0
    if record["state"] == "succeeded":
        return record
    if record["state"] == "cancelled":
        raise PluginError(f"job {job_id} was cancelled.", level=LEVEL_INFO, body=record)
    raise from_job_error(record.get("error") or {"message": f"job {job_id} {record['state']}"}, layer=layer)


class StartBackendTask(QgsTask):
    """Start (or reach) the session's backend off the GUI thread; ``on_finished(backend, error)``."""

    def __init__(self, settings: Settings | None = None,
                 on_finished: Callable[[Backend | None, PluginError | None], Any] | None = None) -> None:
        super().__init__("Thalweg: starting the backend", QgsTask.CanCancel)
        self.settings = settings
        self.on_finished = on_finished
        self.backend: Backend | None = None
        self.error: PluginError | None = None

    def run(self) -> bool:
        try:
            self.backend = shared(self.settings)
            return True
        except PluginError as exc:
            self.error = exc
        except Exception as exc:  # noqa: BLE001  (raising here would crash QGIS)
            self.error = _bug(exc)
        return False

    def finished(self, result: bool) -> None:
        if self.on_finished is not None:
            self.on_finished(self.backend, None if result else self.error)


class JobTask(QgsTask):
    """Run one backend job (``route``, ``calibrate``, ``extract``, ...) as a QGIS task.

    Parameters
    ----------
    description : the task manager's label ("Thalweg: routing rivers").
    body : the job's body (a dict, see the service's API), or a callable returning it, called in the worker
        thread (e.g. :meth:`..layers.extract.NetworkSource.body`: layer extraction happens off the GUI thread).
    on_finished : ``on_finished(record, error)`` on the main thread: the succeeded job's record and None, or
        None and a PluginError (``error.level == LEVEL_INFO`` when the user cancelled).
    backend : the backend to use (default: :func:`.process.shared`, started if needed).
    settings : settings for starting the backend (default: the saved ones).
    layer : id of the QGIS layer the network comes from (errors carry it, so its features can be selected).

    Signals
    -------
    recordChanged(dict) : each polled job record (progress, message), delivered on the main thread.
    jobFinished(object, object) : (record, error), as ``on_finished``.

    Progress (0..100) goes to the task manager through ``setProgress``; ``timings`` holds the plugin-side
    phases (prepare: building the body, submit: the upload, job: until the job ended).
    """

    recordChanged = pyqtSignal(dict)
    jobFinished = pyqtSignal(object, object)

    def __init__(self, description: str, body: dict[str, Any] | Callable[[], dict[str, Any]], *,
                 on_finished: Callable[[dict | None, PluginError | None], Any] | None = None,
                 backend: Backend | None = None, settings: Settings | None = None, layer: str | None = None) -> None:
        super().__init__(description, QgsTask.CanCancel)
        self.body = body
        self.on_finished = on_finished
        self.backend = backend
        self.settings = settings
        self.layer = layer
        self.record: dict[str, Any] | None = None
        self.job_id: str | None = None
        self.error: PluginError | None = None
        self.timings: dict[str, float] = {}

    def _on_record(self, record: dict[str, Any]) -> None:
        self.job_id = record.get("id")
        progress = record.get("progress") or {}
        self.setProgress(100.0 * float(progress.get("fraction") or 0.0))
        self.recordChanged.emit(record)

    def run(self) -> bool:
        try:
            backend = self.backend or shared(self.settings)
            t0 = time.perf_counter()
            body = self.body() if callable(self.body) else self.body
            self.timings["prepare"] = time.perf_counter() - t0
            if self.isCanceled():
                self.error = PluginError("cancelled before the job was submitted.", level=LEVEL_INFO)
                return False
            self.record = run_job(backend, body, is_canceled=self.isCanceled, on_record=self._on_record,
                                  layer=self.layer, timings=self.timings)
            return True
        except PluginError as exc:
            self.error = exc
            if isinstance(exc.body, dict) and "state" in exc.body:
                self.record = exc.body
        except Exception as exc:  # noqa: BLE001  (raising here would crash QGIS)
            self.error = _bug(exc)
        return False

    def finished(self, result: bool) -> None:
        if not result and self.error is None:  # cancelled before run() began
            self.error = PluginError("cancelled.", level=LEVEL_INFO)
        record = self.record if result else None
        error = None if result else self.error
        self.jobFinished.emit(record, error)
        if self.on_finished is not None:
            self.on_finished(record, error)
