"""Jobs: the queue, cancellation, and the workspace folders that outlive the service.

Every job owns ``<workspace>/jobs/<id>/`` (mode 0700, as ``jobs/``: results hold the user's data):
``job.json`` (its record, rewritten atomically at each change of state) and, once it has succeeded,
``out/`` with its outputs. A running job writes into ``out.partial/``,
renamed to ``out/`` only when the job succeeds, so a crash or a cancel never leaves half a result behind.
A restarted service reads the records back; jobs that were queued or running when it died become failed
("Interrupted").

Each lane (route jobs share ``compute``, so one GPU job runs at a time and the others queue; network
extraction runs on ``io`` beside it) has a thread here that feeds one worker process (:mod:`.worker`).
Cancelling a queued job is immediate; a running job stops at its next safe point, or its worker is killed
if none comes within half a second.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import logging
import os
import queue
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .._files import atomic_write_text
from .worker import STALL_SECONDS, Outcome, Worker

__all__ = ["JobManager", "Job", "STATES", "FINAL_STATES", "JobConflict", "ServiceStopping", "UnknownJob"]

log = logging.getLogger(__name__)

STATES = ("queued", "running", "succeeded", "failed", "cancelled")
FINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})
RECORD_FILE = "job.json"
OUT_DIR, PARTIAL_DIR = "out", "out.partial"


class UnknownJob(KeyError):
    pass


class JobConflict(Exception):
    """The job is in a state that does not allow the request (results of a running job, ...)."""


class ServiceStopping(Exception):
    pass


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1000):03d}Z"


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    import calendar

    main, _, rest = text.rstrip("Z").partition(".")
    return calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S")) + (int(rest) / 1000 if rest else 0.0)


def new_job_id() -> str:
    """Sortable and readable: ``20250101-120000-a1b2c3`` (UTC time of submission + random suffix)."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


@dataclasses.dataclass(eq=False)
class Job:
    id: str
    kind: str
    folder: Path
    created: float
    inputs: dict[str, Any]
    label: str | None = None
    body: Any = None  # the validated request; None for jobs read back from the workspace
    state: str = "queued"
    fraction: float = 0.0
    message: str = "queued"
    started: float | None = None
    finished: float | None = None
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    outputs: dict[str, str] = dataclasses.field(default_factory=dict)
    result: dict[str, Any] = dataclasses.field(default_factory=dict)
    warnings: list[str] = dataclasses.field(default_factory=list)
    error: dict[str, Any] | None = None
    cancel: threading.Event = dataclasses.field(default_factory=threading.Event)

    def record(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "label": self.label, "state": self.state,
            "progress": {"fraction": round(self.fraction, 4), "message": self.message},
            "cancel_requested": self.cancel.is_set(),
            "created": _iso(self.created), "started": _iso(self.started), "finished": _iso(self.finished),
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "inputs": self.inputs, "outputs": dict(self.outputs), "result": self.result,
            "warnings": list(self.warnings[:200]), "error": self.error, "folder": str(self.folder),
        }

    @classmethod
    def from_record(cls, data: dict[str, Any], folder: Path) -> Job:
        progress = data.get("progress") or {}
        return cls(id=str(data["id"]), kind=str(data["kind"]), folder=folder,
                   created=_epoch(data.get("created")) or folder.stat().st_mtime, inputs=data.get("inputs") or {},
                   label=data.get("label"), state=str(data["state"]),
                   fraction=float(progress.get("fraction", 0.0)), message=str(progress.get("message", "")),
                   started=_epoch(data.get("started")), finished=_epoch(data.get("finished")),
                   timings=dict(data.get("timings") or {}), outputs=dict(data.get("outputs") or {}),
                   result=dict(data.get("result") or {}), warnings=list(data.get("warnings") or []),
                   error=data.get("error"))


class JobManager:
    """Jobs of one workspace: submission, lanes of worker threads, cancellation, records on disk.

    Parameters
    ----------
    workspace : folder holding ``jobs/`` (created if needed).
    lanes : job kind -> lane name; each lane runs one job at a time in its own worker process.
    cache_size : jobs whose results (discharge, ...) stay in memory for the results endpoints.
    grace : seconds a cancelled job gets to reach a safe point before its worker is killed.
    log_level : log level of the worker processes.
    warm : lanes whose worker starts with the service (the others start with their first job).
    stall : seconds a running job may go without progress, CPU time or I/O before it is deemed stuck on a
        blocking read, stopped and failed (None: never); see :mod:`.worker`.
    """

    def __init__(self, workspace: str | os.PathLike, lanes: Mapping[str, str], *, cache_size: int = 4,
                 grace: float = 0.5, log_level: str = "warning", warm: tuple[str, ...] = ("compute",),
                 stall: float | None = STALL_SECONDS) -> None:
        self.workspace = Path(workspace)
        self.jobs_dir = self.workspace / "jobs"
        self.jobs_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.jobs_dir, 0o700)  # results hold the user's data: never readable by others, whatever the umask
        self.lanes = dict(lanes)
        names = sorted(set(self.lanes.values()))
        self._workers = {lane: Worker(lane, grace=grace, log_level=log_level, stall=stall) for lane in names}
        self._warm = [lane for lane in warm if lane in self._workers]
        self._jobs: dict[str, Job] = {}
        self._lock = threading.RLock()
        self._queues: dict[str, queue.Queue] = {lane: queue.Queue() for lane in names}
        self._threads: list[threading.Thread] = []
        self._running: dict[str, Job | None] = {lane: None for lane in names}
        self._cache: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()
        self._cache_size = cache_size
        self._loading: dict[tuple[str, str], threading.Lock] = {}  # (job id, key) -> held while it loads
        self._stopping = False

    # ---- life cycle ----
    @property
    def stopping(self) -> bool:
        return self._stopping

    def recover(self) -> dict[str, int]:
        """Read the jobs of a previous run back; unfinished ones become failed ('Interrupted')."""
        counts = {"finished": 0, "interrupted": 0, "removed": 0}
        for folder in sorted(self.jobs_dir.iterdir()):
            if not folder.is_dir():
                continue
            for leftover in folder.glob(".*.part*"):  # temporary files of an interrupted atomic write
                with contextlib.suppress(OSError):
                    leftover.unlink()
            record_path = folder / RECORD_FILE
            try:
                data = json.loads(record_path.read_text(encoding="utf-8"))
                job = Job.from_record(data, folder)
            except FileNotFoundError:
                # created and never recorded: the service died within the submission itself
                shutil.rmtree(folder, ignore_errors=True)
                counts["removed"] += 1
                continue
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring %s: unreadable job record (%s)", record_path, exc)
                continue
            shutil.rmtree(folder / PARTIAL_DIR, ignore_errors=True)
            if job.state not in FINAL_STATES:
                was = f"{job.state}" + (f" ({job.fraction:.0%}: {job.message})" if job.state == "running" else "")
                job.error = {"error": "Interrupted",
                             "message": f"the service stopped while this job was {was}; nothing it wrote was "
                                        f"kept. Submit it again.",
                             "hint": "Submit the job again."}
                job.state, job.finished = "failed", job.finished or time.time()
                job.message = "interrupted"
                self._save(job)
                counts["interrupted"] += 1
            else:
                counts["finished"] += 1
            self._jobs[job.id] = job
        return counts

    def start(self) -> None:
        """Start one feeding thread per lane, and the warm lanes' worker processes."""
        for lane in self._warm:
            self._workers[lane].start()
        for lane, q in self._queues.items():
            thread = threading.Thread(target=self._worker, args=(lane, q), name=f"thalweg-{lane}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def shutdown(self, grace: float = 10.0) -> None:
        """Stop: queued jobs are cancelled, running ones stopped (at a safe point, else by killing their
        worker); after ``grace`` seconds whatever still runs is recorded as interrupted."""
        with self._lock:
            self._stopping = True
            for worker in self._workers.values():
                worker.closing = True
            for job in self._jobs.values():
                if job.state == "queued":
                    job.cancel.set()
                    self._finish(job, "cancelled", message="cancelled: the service stopped before it started")
                elif job.state == "running":
                    job.cancel.set()
        for q in self._queues.values():
            q.put(None)
        deadline = time.monotonic() + grace
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            for job in self._jobs.values():
                if job.state == "running":
                    job.error = {"error": "Interrupted", "message": "the service stopped before this job could "
                                 "reach a safe point; nothing it wrote was kept. Submit it again."}
                    self._finish(job, "failed", message="interrupted")
        for worker in self._workers.values():
            worker.close()

    # ---- requests ----
    def submit(self, kind: str, body: Any, inputs: dict[str, Any], label: str | None = None) -> Job:
        if kind not in self.lanes:
            raise AssertionError(f"no lane for job kind {kind!r}")
        with self._lock:
            if self._stopping:
                raise ServiceStopping("the service is shutting down; submit the job to its next start")
            job_id = new_job_id()
            while job_id in self._jobs or (self.jobs_dir / job_id).exists():
                job_id = new_job_id()
            folder = self.jobs_dir / job_id
            folder.mkdir(mode=0o700)
            os.chmod(folder, 0o700)
            job = Job(id=job_id, kind=kind, folder=folder, created=time.time(), inputs=inputs, label=label,
                      body=body)
            self._save(job)
            self._jobs[job_id] = job
            self._queues[self.lanes[kind]].put(job)
        return job

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise UnknownJob(job_id)
        return job

    def record(self, job: Job) -> dict[str, Any]:
        with self._lock:
            rec = job.record()
            if job.state == "queued":
                lane = self.lanes.get(job.kind)
                ahead = sum(1 for j in self._jobs.values() if j.state == "queued" and self.lanes.get(j.kind) == lane
                            and (j.created, j.id) < (job.created, job.id))
                running = self._running.get(lane) is not None
                ahead += int(running)
                rec["progress"]["message"] = f"queued: {ahead} job{'s' if ahead != 1 else ''} ahead"
        return rec

    def list(self, state: str | None = None, kind: str | None = None) -> list[Job]:
        with self._lock:
            jobs = [j for j in self._jobs.values()
                    if (state is None or j.state == state) and (kind is None or j.kind == kind)]
        return sorted(jobs, key=lambda j: (j.created, j.id))

    def device(self) -> dict[str, Any]:
        """The compute lane's device, as its worker reported it ({'type': 'unknown'} while it starts)."""
        worker = self._workers.get("compute") or next(iter(self._workers.values()))
        with self._lock:
            if self._running.get(worker.name) is None:  # while a job runs, its lane's thread owns the pipe
                worker.poll_ready()
        return worker.device or {"type": "unknown", "name": "the compute worker is starting", "memory_bytes": None,
                                 "count": None}

    def workers(self) -> dict[str, int | None]:
        """Lane -> process id of its worker (None until it has started)."""
        return {lane: w.pid for lane, w in self._workers.items()}

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {s: sum(1 for j in self._jobs.values() if j.state == s) for s in STATES}

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued job now, or ask a running one to stop at its next safe point."""
        job = self.get(job_id)
        with self._lock:
            if job.state in ("succeeded", "failed"):
                raise JobConflict(f"job {job.id} has already {job.state}; there is nothing to cancel.")
            if job.state == "queued":
                job.cancel.set()
                self._finish(job, "cancelled", message="cancelled before it started")
            elif job.state == "running":
                job.cancel.set()
                job.message = f"stopping: {job.message}"
        return job

    def delete(self, job_id: str) -> None:
        """Forget a finished job and remove its folder."""
        job = self.get(job_id)
        with self._lock:
            if job.state not in FINAL_STATES:
                raise JobConflict(f"job {job.id} is {job.state}; cancel it and wait for it to stop before "
                                  f"deleting it.")
            del self._jobs[job.id]
            self._cache.pop(job.id, None)
        shutil.rmtree(job.folder, ignore_errors=True)

    def cached(self, job: Job, key: str, load: Callable[[], Any]) -> Any:
        """A result object of ``job`` kept in memory (the last ``cache_size`` jobs), loaded on first use.

        Loaded once: concurrent first requests for the same object wait for one ``load()`` (run outside the
        manager's lock, so other requests go on meanwhile) instead of each reading the file again.
        """
        with self._lock:
            entry = self._cache.get(job.id)
            if entry is not None and key in entry:
                self._cache.move_to_end(job.id)
                return entry[key]
            gate = self._loading.setdefault((job.id, key), threading.Lock())
        with gate:
            with self._lock:
                entry = self._cache.get(job.id)
                if entry is not None and key in entry:  # loaded by the request we waited for
                    self._cache.move_to_end(job.id)
                    return entry[key]
            try:
                value = load()
                self._remember(job.id, {key: value})
            finally:
                with self._lock:
                    if self._loading.get((job.id, key)) is gate:
                        del self._loading[(job.id, key)]
        return value

    # ---- internals ----
    def _remember(self, job_id: str, items: dict[str, Any]) -> None:
        with self._lock:
            entry = self._cache.setdefault(job_id, {})
            entry.update(items)
            self._cache.move_to_end(job_id)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def _save(self, job: Job) -> None:
        atomic_write_text(job.folder / RECORD_FILE, json.dumps(job.record(), indent=1, default=str))

    def _finish(self, job: Job, state: str, *, message: str) -> None:
        job.state, job.message, job.finished = state, message, time.time()
        if job.started is not None:
            job.timings["run"] = job.finished - job.started
        else:
            job.timings["queued"] = job.finished - job.created
        job.body = None  # inline arrays can be large; the record keeps what was asked
        try:
            self._save(job)
        except OSError:
            log.exception("cannot write the record of job %s", job.id)

    def _progress(self, job: Job, fraction: float, message: str) -> None:
        with self._lock:
            if job.state != "running":
                return
            job.fraction = max(job.fraction, min(max(float(fraction), 0.0), 1.0))
            job.message = f"stopping: {message}" if job.cancel.is_set() else str(message)

    def _worker(self, lane: str, q: queue.Queue) -> None:
        while True:
            job = q.get()
            if job is None:
                return
            with self._lock:
                if job.state != "queued" or self._stopping:
                    continue
                job.state, job.started, job.message = "running", time.time(), "starting"
                job.timings["queued"] = job.started - job.created
                self._running[lane] = job
                self._save(job)
            try:
                self._run(job, self._workers[lane])
            except Exception:  # the manager's own bug: record it, keep the lane alive
                log.exception("job %s could not be run", job.id)
                with self._lock:
                    job.error = {"error": "RuntimeError", "message": "the service failed to run this job; see its "
                                 "log.", "bug": True}
                    self._finish(job, "failed", message="failed")
            finally:
                with self._lock:
                    self._running[lane] = None

    def _run(self, job: Job, worker: Worker) -> None:
        staging = job.folder / PARTIAL_DIR
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            outcome: Outcome = worker.run(job.kind, job.body, staging, job.cancel,
                                          lambda fraction, message: self._progress(job, fraction, message))
            if outcome.state == "succeeded":
                final = job.folder / OUT_DIR
                shutil.rmtree(final, ignore_errors=True)
                os.replace(staging, final)  # one rename: the outputs appear whole or not at all
                outcome.outputs = {name: str(final / Path(path).relative_to(staging))
                                   for name, path in outcome.outputs.items()}
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        error = outcome.error
        if error is not None and "traceback_text" in error:
            error = dict(error)
            text = error.pop("traceback_text")
            with contextlib.suppress(OSError):
                atomic_write_text(job.folder / "traceback.txt", text)
            error["traceback"] = str(job.folder / "traceback.txt")
        with self._lock:
            job.error = error
            job.warnings.extend(outcome.warnings)
            if outcome.state == "succeeded":
                job.fraction = 1.0
                job.outputs, job.result = outcome.outputs, outcome.result
                job.timings.update(outcome.timings)
                if outcome.cache:
                    self._remember(job.id, outcome.cache)
            self._finish(job, outcome.state, message=outcome.message)
