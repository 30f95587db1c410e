"""Worker processes: each lane runs its jobs in one warm child process.

Why a process and not a thread: a cancel must take effect within a second, but the library's safe points
(``run_route``'s ``should_stop``) lie seconds apart while a large file is read or the native engine runs.
A cancel first asks the job to stop at its next safe point; if it has not stopped after ``grace`` seconds,
the worker is killed and a fresh one started. Killing is safe: a job writes only into its staging folder,
which the service removes; outputs appear by one rename, after success. A crash in native code (GDAL,
torch, an out-of-memory kill) likewise fails one job and leaves the service running.

The child imports the library once (torch takes seconds), then runs jobs one after another, sending
progress, then one final message: ``done``, ``cancelled``, ``error`` (a ThalwegError) or ``bug``.

A read that blocks (a named pipe created after submission, a network mount that stopped answering) would
hold the lane forever, and every job queued behind it. So while a job runs, the service watches its worker:
a worker that sends no progress, uses no CPU and reads or writes no byte for ``stall`` seconds is waiting on
something that will not come; it is killed and the job fails with the stage it was stuck in. (Linux, from
``/proc``; where the counters cannot be read the watch is off.)
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import os
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import Cancelled

__all__ = ["Worker", "Outcome", "JobContext", "TaskResult", "Cancelled", "process_activity", "STALL_SECONDS"]

log = logging.getLogger(__name__)

# results objects smaller than this come back from the worker for the in-memory cache; larger ones are read
# back from the job's files when first asked for
CACHE_BYTES = 256 * 1024 * 1024
# a working job reports progress, burns CPU or moves bytes well within this many seconds; a job doing none of
# these for that long is blocked on a read that will not return
STALL_SECONDS = 120.0


@dataclasses.dataclass
class TaskResult:
    """What a task hands back: output paths (inside its staging folder), small JSON results, stage timings,
    and objects worth keeping in memory for the results endpoints (``cache``)."""

    outputs: dict[str, Path] = dataclasses.field(default_factory=dict)
    result: dict[str, Any] = dataclasses.field(default_factory=dict)
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    cache: dict[str, Any] = dataclasses.field(default_factory=dict)


class JobContext:
    """What a task sees: its staging folder, a progress callback and the stop flag."""

    def __init__(self, out_dir: Path, progress: Callable[[float, str], None], should_stop: Callable[[], bool]):
        self.out_dir = Path(out_dir)
        self._progress = progress
        self.should_stop = should_stop

    def progress(self, fraction: float, message: str) -> None:
        self._progress(float(fraction), str(message))

    def check(self, stage: str) -> None:
        """Raise :class:`Cancelled` if the job was asked to stop (call between stages)."""
        if self.should_stop():
            raise Cancelled(stage)


@dataclasses.dataclass
class Outcome:
    """How a job ended, as the manager records it."""

    state: str  # succeeded, failed, cancelled
    message: str
    error: dict[str, Any] | None = None
    outputs: dict[str, str] = dataclasses.field(default_factory=dict)
    result: dict[str, Any] = dataclasses.field(default_factory=dict)
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    cache: dict[str, Any] = dataclasses.field(default_factory=dict)
    warnings: list[str] = dataclasses.field(default_factory=list)


# ---------------------------------------------------------------- child side
def _watch_parent() -> None:
    """Exit if the service dies: an orphan would go on writing into a workspace it no longer owns."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch():
        parent.join()  # returns when the parent is gone
        os._exit(3)

    threading.Thread(target=watch, name="thalweg-parent-watch", daemon=True).start()


def _bug(exc: BaseException) -> dict[str, Any]:
    message = str(exc) or repr(exc)
    hint = "This is a bug in Thalweg: please report it with traceback.txt from the job's folder."
    if "out of memory" in message.lower() or isinstance(exc, MemoryError):
        hint = "The job ran out of memory: route fewer steps or reaches at a time, or use device 'cpu'."
    return {"error": type(exc).__name__, "message": message, "bug": True, "hint": hint,
            "traceback_text": "".join(traceback.format_exception(exc))}


def _cache_part(cache: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in cache.items():
        size = getattr(getattr(value, "values", None), "nbytes", 0)
        if size <= CACHE_BYTES and key != "network":
            out[key] = value
    return out


def process_activity(pid: int) -> tuple[int, ...] | None:
    """What process ``pid`` has done so far: CPU clock ticks (user + system, all threads), then the bytes its
    read and write calls moved when readable; None where unknown (no ``/proc``: not Linux)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            after_name = fh.read().rsplit(b")", 1)[1].split()  # the name may hold spaces and parentheses
        ticks = int(after_name[11]) + int(after_name[12])  # fields 14 and 15 of proc(5): utime, stime
    except (OSError, ValueError, IndexError):
        return None
    moved: tuple[int, ...] = ()
    try:
        with open(f"/proc/{pid}/io", "rb") as fh:
            moved = tuple(int(line.split()[1]) for line in fh if line.startswith((b"rchar:", b"wchar:")))
    except (OSError, ValueError, IndexError):
        pass  # CPU time alone still tells a blocked process from a working one
    return (ticks, *moved)


def device_info() -> dict[str, Any]:
    """The device jobs run on: GPU name and memory, or the CPU. Asked in the worker, so the service process
    itself never creates a CUDA context (it would hold GPU memory for nothing)."""
    import platform

    import torch

    if torch.cuda.is_available():
        i = torch.cuda.current_device()
        props = torch.cuda.get_device_properties(i)
        return {"type": "cuda", "index": i, "name": props.name, "memory_bytes": int(props.total_memory),
                "count": torch.cuda.device_count()}
    return {"type": "cpu", "name": platform.processor() or platform.machine(), "memory_bytes": None, "count": 0,
            "threads": torch.get_num_threads()}


def _preload() -> None:
    """Import the file stack (xarray, netCDF4, geopandas, pyogrio: seconds) while the worker waits for its first
    job, so the plugin's first Run does not pay for it; a job that comes meanwhile waits for it to finish."""
    import importlib

    for name in ("pandas", "xarray", "netCDF4", "pyogrio", "shapely", "geopandas"):
        try:
            importlib.import_module(name)
        except ImportError:  # a missing piece fails the job that needs it, with its own message
            pass


def _child_main(conn, stop_event, log_level: str) -> None:
    """The worker's loop: receive ('run', kind, body, out_dir), answer with progress and one final message."""
    import warnings

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s [worker]: %(message)s")
    _watch_parent()
    from ..errors import ThalwegError, ThalwegWarning
    from .tasks import TASKS

    conn.send(("ready", os.getpid(), device_info()))
    preload = threading.Thread(target=_preload, name="preload", daemon=True)
    preload.start()
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message[0] != "run":
            return
        # a job importing the file stack while the preload thread is half-way through it can be handed a partially
        # initialised module (Python's import deadlock avoidance): the first job waits for the preload instead
        preload.join()
        _, kind, body, out_dir = message
        last = [0.0, ""]

        def progress(fraction: float, text: str, last=last) -> None:
            now = time.monotonic()
            if text != last[1] or now - last[0] > 0.05:  # throttle: a level loop may report thousands of times
                last[0], last[1] = now, text
                conn.send(("progress", fraction, text))

        ctx = JobContext(Path(out_dir), progress, stop_event.is_set)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ThalwegWarning)
            try:
                res = TASKS[kind](body, ctx)
                final = ("done", {k: str(v) for k, v in res.outputs.items()}, res.result, res.timings,
                         _cache_part(res.cache))
            except Cancelled as exc:
                final = ("cancelled", exc.stage)
            except ThalwegError as exc:
                final = ("error", exc.to_dict())
            except Exception as exc:  # noqa: BLE001  reported to the service, which records it
                log.exception("job failed in the worker")
                final = ("bug", _bug(exc))
        notes = [str(w.message) for w in caught if issubclass(w.category, ThalwegWarning)]
        try:
            conn.send(final + (notes,))
        except (EOFError, OSError, BrokenPipeError):
            return
        except Exception as exc:  # the results did not pickle: still report the job
            conn.send(("bug", _bug(exc), notes))


# ---------------------------------------------------------------- service side
class Worker:
    """One lane's worker process, started on demand and restarted after a kill or a crash.

    Parameters
    ----------
    name : lane name (for logs and process titles).
    grace : seconds a cancelled job gets to reach a safe point before its worker is killed.
    log_level : the child's log level.
    stall : seconds without progress, CPU time or I/O after which a job is deemed stuck on a read that will not
        return and its worker is killed (None: never).
    """

    def __init__(self, name: str, *, grace: float = 0.5, log_level: str = "warning",
                 stall: float | None = STALL_SECONDS) -> None:
        self.name, self.grace, self.log_level, self.stall = name, grace, log_level, stall
        self._ctx = multiprocessing.get_context("spawn")  # fork would copy CUDA state and threads
        self._process = None
        self._conn = None
        self._stop = None
        self._lock = threading.Lock()
        self._is_ready = False
        self.pid: int | None = None
        self.device: dict[str, Any] | None = None  # known once a worker has been ready
        self.closing = False  # set when the service stops: no fresh worker after a kill

    def start(self) -> None:
        """Start the child (idempotent); it imports the library in the background."""
        with self._lock:
            if self._process is not None and self._process.is_alive():
                return
            parent_conn, child_conn = self._ctx.Pipe()
            self._stop = self._ctx.Event()
            self._process = self._ctx.Process(target=_child_main, args=(child_conn, self._stop, self.log_level),
                                              name=f"thalweg-worker-{self.name}", daemon=True)
            self._process.start()
            child_conn.close()
            self._conn = parent_conn
            self._is_ready = False
            self.pid = self._process.pid

    def _ready(self, cancel: threading.Event) -> str | None:
        """Wait for the child's 'ready'; None when ready, else why not ('cancelled', or the failure)."""
        while not self._is_ready:
            if cancel.is_set():
                return "cancelled"
            if self._conn.poll(0.05):
                try:
                    tag, pid, device = self._conn.recv()
                except (EOFError, OSError):
                    return f"the worker process could not start (exit code {self._process.exitcode})"
                assert tag == "ready" and pid == self.pid, (tag, pid, self.pid)
                self._is_ready, self.device = True, device
            elif not self._process.is_alive():
                return f"the worker process could not start (exit code {self._process.exitcode})"
        return None

    def poll_ready(self) -> None:
        """Take the child's 'ready' message if it has come (to learn the device before the first job)."""
        with self._lock:
            if self._process is None or self._is_ready or not self._conn.poll(0):
                return
            try:
                tag, pid, device = self._conn.recv()
            except (EOFError, OSError):
                return
            self._is_ready, self.device = True, device

    def kill(self) -> None:
        with self._lock:
            if self._process is not None:
                if self._process.is_alive():
                    self._process.kill()
                self._process.join(10)
                self._conn.close()
            self._process = self._conn = None
            self._is_ready = False
            self.pid = None

    def close(self) -> None:
        """Stop the child (ask, then kill)."""
        if self._process is not None and self._process.is_alive():
            with contextlib.suppress(OSError):
                self._conn.send(("exit",))
            self._process.join(2)
        self.kill()

    def run(self, kind: str, body: Any, out_dir: Path, cancel: threading.Event,
            progress: Callable[[float, str], None]) -> Outcome:
        """Run one job in the child; cancel is honoured at a safe point, or by a kill after ``grace`` s."""
        self.start()
        progress(0.0, "starting the worker")
        why = self._ready(cancel)
        if why == "cancelled":
            return Outcome("cancelled", "cancelled before it started")
        if why is not None:
            self.kill()
            return Outcome("failed", "failed", error={"error": "WorkerFailed", "message": why + "; see the service's "
                                                      "log.", "bug": True})
        self._stop.clear()
        try:
            self._conn.send(("run", kind, body, str(out_dir)))
        except Exception as exc:  # a broken pipe, or a body that does not pickle
            self.kill()
            return Outcome("failed", "failed", error={"error": "WorkerFailed", "bug": True,
                                                      "message": f"cannot hand the job to its worker: {exc}"})
        asked = None
        stage, quiet_since = "starting", time.monotonic()
        seen, next_look = process_activity(self.pid), quiet_since + 1.0
        while True:
            gone = False
            if self._conn.poll(0.02):
                try:
                    message = self._conn.recv()
                except (EOFError, OSError):  # the child's end closed: it died
                    message, gone = None, True
                if message is not None and message[0] == "progress":
                    progress(message[1], message[2])
                    stage, quiet_since = message[2], time.monotonic()
                    message = None  # and on to the checks: a job reporting every few ms must still see Cancel
                if message is not None:
                    return self._outcome(message)
            now = time.monotonic()
            if self.stall is not None and seen is not None and asked is None and not gone and now >= next_look:
                next_look = now + 1.0
                activity = process_activity(self.pid)
                if activity != seen:
                    seen, quiet_since = activity, now
                elif now - quiet_since > self.stall:
                    return self._stalled(stage, now - quiet_since)
            if not gone and cancel.is_set():
                if asked is None:
                    self._stop.set()  # the job's should_stop(): stop at the next safe point
                    asked = time.monotonic()
                elif time.monotonic() - asked > self.grace:
                    self.kill()  # no safe point in sight: stop it now; the service removes its staging folder
                    if not self.closing:
                        self.start()  # warm up the next one
                    return Outcome("cancelled", "cancelled (its worker was stopped)")
            if gone or not self._process.is_alive() and not self._conn.poll(0):
                self._process.join(5)
                code = self._process.exitcode
                self.kill()
                if not self.closing:
                    self.start()
                return Outcome("failed", "failed", error={
                    "error": "WorkerCrashed", "bug": True,
                    "message": f"the job's worker process died (exit code {code}) without reporting an error: "
                               f"a crash in native code, or the system stopped it (out of memory?).",
                    "hint": "Retry with a smaller input; if it happens again, report it with the service's log."})

    def _stalled(self, stage: str, quiet: float) -> Outcome:
        """Kill a worker stuck on a read that does not return, so the lane's next jobs can run."""
        self.kill()
        if not self.closing:
            self.start()
        return Outcome("failed", "failed: stalled", error={
            "error": "Stalled",
            "message": f"the job was stopped after {quiet:.0f} s without progress, CPU time or I/O while "
                       f"'{stage}': a read was waiting for data that never came (an input that is a named pipe, "
                       f"or on a network mount that stopped answering).",
            "hint": "Give input files on a disk that answers; for a very slow disk, start the service with a "
                    "larger --stall-timeout."})

    @staticmethod
    def _outcome(message: tuple) -> Outcome:
        tag, *rest = message
        notes = rest[-1]
        if tag == "done":
            outputs, result, timings, cache = rest[:4]
            return Outcome("succeeded", "done", outputs=outputs, result=result, timings=timings, cache=cache,
                           warnings=notes)
        if tag == "cancelled":
            return Outcome("cancelled", f"cancelled before {rest[0]}", warnings=notes)
        if tag == "error":
            return Outcome("failed", "failed", error=rest[0], warnings=notes)
        return Outcome("failed", "failed", error=rest[0], warnings=notes)  # bug
