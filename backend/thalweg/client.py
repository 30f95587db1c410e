"""Client of Thalweg's local job service, standard library only (the QGIS plugin ships this same file).

>>> server = start_server(workspace="/tmp/thalweg")          # or connect to a running one:
>>> client = server.client()                                 # ThalwegClient.from_connection_file(path)
>>> job = client.submit({"kind": "route", "network": "/data/rivers.gpkg", "runoff": "/data/m3_riv.nc"})
>>> done = client.wait(job["id"], callback=lambda rec: print(rec["progress"]))
>>> client.hydrograph(job["id"], reach=1041)["simulated"]

Inline runoff travels best packed: ``client.route(network_arrays, {"values": pack(table), "dt": 3600,
"start": "2020-01-01T00:00:00Z"})``.

Every request has a timeout; every failure is a :class:`ClientError` carrying the HTTP status (None when
the service cannot be reached) and the server's one-line message.
"""
from __future__ import annotations

import array
import base64
import collections
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["ThalwegClient", "ClientError", "JobFailed", "ServerProcess", "start_server", "pack", "READY_PREFIX",
           "FINAL_STATES"]

READY_PREFIX = "THALWEG READY "
FINAL_STATES = ("succeeded", "failed", "cancelled")


def pack(values: Any, dtype: str = "float32") -> dict[str, Any]:
    """A 2-D table (a numpy array, or nested lists with None for missing values) as the service's packed
    array: ``{"dtype", "shape", "data": base64 of the little-endian bytes}``. Use it for inline runoff:
    about 4 times smaller than JSON numbers and decoded at memory speed; float32 keeps what routing uses."""
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', not {dtype!r}")
    if hasattr(values, "tobytes") and hasattr(values, "astype") and hasattr(values, "shape"):  # numpy, duck-typed
        arr = values.astype("<f4" if dtype == "float32" else "<f8")
        if len(arr.shape) != 2:
            raise ValueError(f"pack() takes a 2-D table [rows, steps]; this one has shape {tuple(arr.shape)}")
        return {"dtype": dtype, "shape": [int(n) for n in arr.shape],
                "data": base64.b64encode(arr.tobytes(order="C")).decode("ascii")}
    rows = [list(row) for row in values]
    steps = len(rows[0]) if rows else 0
    if any(len(row) != steps for row in rows):
        raise ValueError("pack() takes a table: every row needs the same number of steps")
    flat = array.array("f" if dtype == "float32" else "d",
                       (float("nan") if v is None else float(v) for row in rows for v in row))
    if sys.byteorder == "big":
        flat.byteswap()
    return {"dtype": dtype, "shape": [len(rows), steps], "data": base64.b64encode(flat.tobytes()).decode("ascii")}


class ClientError(Exception):
    """A request failed: ``status`` (HTTP code, or None when the service could not be reached), ``error``
    (the server's error class, e.g. ValidationError), ``message`` (its readable line) and ``body``."""

    def __init__(self, status: int | None, message: str, *, error: str | None = None, body: Any = None,
                 url: str | None = None) -> None:
        self.status, self.message, self.error, self.body, self.url = status, message, error, body, url
        super().__init__(str(self))

    def __str__(self) -> str:
        head = f"HTTP {self.status}" if self.status is not None else "no connection"
        return f"{head} {self.error}: {self.message}" if self.error else f"{head}: {self.message}"


class JobFailed(ClientError):
    """``wait(..., check=True)`` on a job that failed or was cancelled; ``record`` is its final record."""

    def __init__(self, record: dict[str, Any]) -> None:
        self.record = record
        error = record.get("error") or {}
        message = error.get("message") or record.get("progress", {}).get("message") or record["state"]
        super().__init__(None, f"job {record['id']} {record['state']}: {message}",
                         error=error.get("error") or record["state"], body=record)


class ThalwegClient:
    """Talk to a running service.

    Parameters
    ----------
    url : base URL, e.g. ``http://127.0.0.1:8765``.
    token : the bearer token from the connection file.
    timeout : seconds allowed for each request (results of large jobs may need more: pass ``timeout=``).
    """

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = float(timeout)
        # never route loopback traffic through an HTTP proxy from the environment
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @classmethod
    def from_connection_file(cls, path: str | os.PathLike, *, timeout: float = 10.0) -> ThalwegClient:
        """Connect with the url and token a service wrote to its connection file."""
        try:
            info = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls(info["url"], info["token"], timeout=timeout)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ClientError(None, f"cannot read the connection file {path}: {exc}; is the service running?",
                              error="ConnectionFile") from None

    def __repr__(self) -> str:
        return f"ThalwegClient({self.url!r})"

    # ---- plumbing ----
    def request(self, method: str, path: str, *, body: Any = None, query: Mapping[str, Any] | None = None,
                timeout: float | None = None) -> Any:
        """One HTTP request; the decoded JSON answer (None for an empty one), or a ClientError. ``body`` is any
        JSON value, or bytes of JSON already encoded."""
        raw, _ = self.request_bytes(method, path, body=body, query=query, timeout=timeout)
        return json.loads(raw) if raw else None

    def request_bytes(self, method: str, path: str, *, body: Any = None, query: Mapping[str, Any] | None = None,
                      timeout: float | None = None, accept: str = "application/json") -> tuple[bytes, Any]:
        """One HTTP request; the raw answer and its headers (an ``email.message.Message``), or a ClientError."""
        url = self.url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        if isinstance(body, (bytes, bytearray)):  # JSON encoded by the caller (the plugin encodes large bodies
            data = bytes(body)                     # in pieces, so QGIS's main thread is never starved of the GIL)
        else:
            data = None if body is None else json.dumps(body, allow_nan=False).encode("utf-8")
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Accept", accept)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with self._opener.open(req, timeout=self.timeout if timeout is None else timeout) as resp:
                raw, headers = resp.read(), resp.headers
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                payload = json.loads(raw) if raw else {}
            except ValueError:
                payload = {"message": raw.decode("utf-8", "replace")[:500]}
            if not isinstance(payload, dict):
                payload = {"message": str(payload)}
            raise ClientError(exc.code, str(payload.get("message") or exc.reason), error=payload.get("error"),
                              body=payload, url=url) from None
        except (urllib.error.URLError, OSError) as exc:  # refused, reset, timed out
            reason = getattr(exc, "reason", exc)
            raise ClientError(None, f"cannot reach the Thalweg service at {self.url}: {reason}", url=url,
                              error=type(reason).__name__) from None
        return raw, headers

    # ---- service ----
    def health(self) -> dict[str, Any]:
        """Version, torch version and compute device (no token needed)."""
        return self.request("GET", "/health")

    def schemes(self) -> list[dict[str, Any]]:
        """Routing schemes with their parameters (name, unit, bounds, default)."""
        return self.request("GET", "/schemes")

    def detect(self, path: str | None = None, *, layer: str | None = None, columns: Sequence[str] | None = None,
               values: Mapping[str, Sequence[float | None]] | None = None,
               fields: Mapping[str, str | None] | None = None) -> dict[str, Any]:
        """The backend's schema detection for a file (``path``, ``layer``) or a layer's field names (``columns``,
        with sample ``values`` per field for unit guesses), with the user's ``fields`` (role -> field)
        overrides: schema, fields (role -> field), units, candidates, problems."""
        body: dict[str, Any] = {"path": path, "layer": layer} if path is not None else {"columns": list(columns or [])}
        if values:
            body["values"] = {k: list(v) for k, v in values.items()}
        if fields:
            body["fields"] = dict(fields)
        return self.request("POST", "/detect", body=body)

    def shutdown(self) -> None:
        """Ask the service to stop (as SIGTERM does; also works on Windows)."""
        self.request("POST", "/shutdown")

    # ---- jobs ----
    def submit(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Submit a job (``{"kind": "route" | "extract", ...}``); its record, state 'queued'."""
        return self.request("POST", "/jobs", body=dict(body))

    def route(self, network: str | Mapping[str, Any], runoff: str | Mapping[str, Any], **options: Any) -> dict:
        """Submit a route job: ``network``/``runoff`` are absolute paths or inline dicts (see the API)."""
        return self.submit({"kind": "route", "network": network, "runoff": runoff, **options})

    def calibrate(self, network: str | Mapping[str, Any], runoff: str | Mapping[str, Any],
                  gauges: str | Sequence[Mapping[str, Any]], observed: str | None = None, **options: Any) -> dict:
        """Submit a calibrate job: a route job's inputs plus the gauges, as a CSV path with ``observed`` (a CSV
        path), or inline: ``[{"gauge_id", "reach_id", "observed": [m3/s per runoff step, None where missing]},
        ...]``. Options (the CLI's calibration flags, as JSON keys): ``model`` ('zones', 'per-reach',
        'regression', 'prior'), ``attributes``, ``calibration`` / ``validation`` ('START/END'),
        ``validate_gauges``, ``leave_one_out``, ``loss``, ``optimiser``, ``iterations``, ``learning_rate``,
        ``weight_decay``, ``early_stopping``, ``checkpoint`` (absolute path), ``seed``, ``warmup``, ``zones``,
        ``calibrate`` (the parameters to fit), ``prior_weight``, ``smooth_weight``."""
        body = {"kind": "calibrate", "network": network, "runoff": runoff,
                "gauges": gauges if isinstance(gauges, str) else [dict(g) for g in gauges], **options}
        if observed is not None:
            body["observed"] = observed
        return self.submit(body)

    def extract(self, network: str, **options: Any) -> dict[str, Any]:
        """Submit an extract job (read a network file: summary and reaches.gpkg)."""
        return self.submit({"kind": "extract", "network": network, **options})

    def status(self, job_id: str) -> dict[str, Any]:
        """The job's record: state, progress, timings, outputs, error."""
        return self.request("GET", f"/jobs/{urllib.parse.quote(job_id, safe='')}")

    def list_jobs(self, state: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        return self.request("GET", "/jobs", query={"state": state, "kind": kind})["jobs"]

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a queued job, or stop a running one at its next safe point; the record after the request."""
        return self.request("POST", f"/jobs/{urllib.parse.quote(job_id, safe='')}/cancel")

    def delete(self, job_id: str) -> None:
        """Forget a finished job and delete its folder."""
        self.request("DELETE", f"/jobs/{urllib.parse.quote(job_id, safe='')}")

    def wait(self, job_id: str, *, interval: float = 0.2, timeout: float | None = None,
             callback: Callable[[dict[str, Any]], Any] | None = None,
             should_stop: Callable[[], bool] | None = None, check: bool = False) -> dict[str, Any]:
        """Poll until the job has finished; its final record.

        Parameters
        ----------
        interval : seconds between polls.
        timeout : give up after this many seconds (ClientError with error 'Timeout'); the job keeps running.
        callback : called with each record polled (for progress bars).
        should_stop : polled too; once it is true the job is cancelled (once) and waited for.
        check : raise :class:`JobFailed` if the job failed or was cancelled.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        cancelled = False
        while True:
            record = self.status(job_id)
            if callback is not None:
                callback(record)
            if record["state"] in FINAL_STATES:
                if check and record["state"] != "succeeded":
                    raise JobFailed(record)
                return record
            if should_stop is not None and not cancelled and should_stop():
                try:
                    self.cancel(job_id)
                except ClientError as exc:
                    if exc.status != 409:  # 409: it finished meanwhile; the next poll says how
                        raise
                cancelled = True
                continue
            if deadline is not None and time.monotonic() > deadline:
                raise ClientError(None, f"job {job_id} has not finished after {timeout:g} s (it is "
                                        f"{record['state']}: {record['progress']['message']})", error="Timeout")
            time.sleep(interval)

    poll = wait

    # ---- results ----
    def hydrograph(self, job_id: str, reach: int, *, timeout: float | None = None) -> dict[str, Any]:
        """Times (step ends, ISO), simulated discharge [m3/s], and observed values and metrics if gauged."""
        return self.request("GET", f"/jobs/{urllib.parse.quote(job_id, safe='')}/hydrograph",
                            query={"reach": int(reach)}, timeout=timeout)

    def snapshot(self, job_id: str, time: int | str, *, timeout: float | None = None) -> dict[str, Any]:
        """Discharge of every reach at one step (an index, negative from the end, or an ISO time)."""
        return self.request("GET", f"/jobs/{urllib.parse.quote(job_id, safe='')}/snapshot",
                            query={"time": str(time)}, timeout=timeout)

    def snapshot_f32(self, job_id: str, time: int | str, *, timeout: float | None = None) -> dict[str, Any]:
        """:meth:`snapshot` packed, for animation: ``{"step", "time", "units", "values"}`` with ``values`` an
        ``array.array('f')`` (NaN where the JSON answer has null) in the order of :meth:`axes`' ``reach_ids``
        (fetch those once per job). About 5 times smaller than the JSON answer and needs no parsing."""
        raw, headers = self.request_bytes("GET", f"/jobs/{urllib.parse.quote(job_id, safe='')}/snapshot",
                                          query={"time": str(time), "format": "f32"}, timeout=timeout,
                                          accept="application/octet-stream")
        values = array.array("f")
        values.frombytes(raw)
        if sys.byteorder == "big":
            values.byteswap()  # the service sends little-endian
        return {"step": int(headers["X-Thalweg-Step"]), "time": headers["X-Thalweg-Time"],
                "units": headers["X-Thalweg-Units"], "values": values}

    def axes(self, job_id: str, *, timeout: float | None = None) -> dict[str, Any]:
        """Reach ids in the order of :meth:`snapshot_f32`'s values, the time of each step (ISO), dt [s], units."""
        return self.request("GET", f"/jobs/{urllib.parse.quote(job_id, safe='')}/axes", timeout=timeout)

    def summary(self, job_id: str, *, timeout: float | None = None) -> dict[str, Any]:
        """Per-reach statistics, column-wise: reach_ids and data[column]."""
        return self.request("GET", f"/jobs/{urllib.parse.quote(job_id, safe='')}/summary", timeout=timeout)


class ServerProcess:
    """A service started by :func:`start_server`: ``url``, ``port``, ``pid``, ``connection_file``, ``info``."""

    def __init__(self, process: subprocess.Popen, info: dict[str, Any], tail: collections.deque) -> None:
        self.process = process
        self.info = info
        self.url: str = info["url"]
        self.port: int = int(info["port"])
        self.pid: int = int(info["pid"])
        self.connection_file = Path(info["connection_file"])
        self._tail = tail

    def client(self, *, timeout: float = 10.0) -> ThalwegClient:
        return ThalwegClient.from_connection_file(self.connection_file, timeout=timeout)

    def output(self) -> str:
        """The last lines the service printed (stdout and stderr), for diagnostics."""
        return "\n".join(self._tail)

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 20.0) -> int:
        """Stop the service cleanly (SIGTERM; POST /shutdown on Windows), killing it after ``timeout`` s;
        its exit code."""
        if self.process.poll() is None:
            if os.name == "nt":
                try:
                    self.client(timeout=5).shutdown()
                except ClientError:
                    self.process.terminate()
            else:
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return int(self.process.returncode)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _pump(stream, tail: collections.deque, ready: queue.Queue | None) -> None:
    for line in iter(stream.readline, ""):
        line = line.rstrip("\n")
        tail.append(line)
        if ready is not None and line.startswith(READY_PREFIX):
            ready.put(line[len(READY_PREFIX):])
    stream.close()
    if ready is not None:
        ready.put(None)  # end of output: the process has gone


def start_server(workspace: str | os.PathLike | None = None, *, port: int = 0, python: str | None = None,
                 args: Sequence[str] = (), env: Mapping[str, str] | None = None, timeout: float = 120.0,
                 command: Sequence[str] | None = None) -> ServerProcess:
    """Start the service and wait for its READY line.

    Parameters
    ----------
    workspace : the service's workspace folder (default: its own default).
    port : 0 for a free port.
    python : the interpreter of the Thalweg backend (default: this one); the plugin passes the backend's.
    args : more command-line arguments (``--max-body-mb``, ``--log-level``, ...).
    env : environment of the process (default: this one's).
    timeout : seconds to wait for READY (the first start imports torch: it can take a while).
    command : the launcher, default ``[python, "-m", "thalweg.server"]``; e.g. ``["thalweg", "serve"]``.
        ``--port`` and ``--workspace`` are appended, then ``args``.

    Raises ClientError (error 'StartFailed') with the service's last output if it exits or stays silent.
    """
    cmd = list(command) if command else [python or sys.executable, "-m", "thalweg.server"]
    cmd += ["--port", str(int(port))]
    if workspace is not None:
        cmd += ["--workspace", str(workspace)]
    cmd += list(args)
    environ = dict(os.environ if env is None else env)
    environ.setdefault("PYTHONUNBUFFERED", "1")
    flags = getattr(subprocess, "CREATE_NO_WINDOW", 0) if os.name == "nt" else 0
    process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, encoding="utf-8", errors="replace", bufsize=1, env=environ,
                               creationflags=flags)
    tail: collections.deque = collections.deque(maxlen=200)
    ready: queue.Queue = queue.Queue()
    # both pipes are drained for the life of the process, or a chatty service would block on a full pipe
    threading.Thread(target=_pump, args=(process.stdout, tail, ready), daemon=True).start()
    threading.Thread(target=_pump, args=(process.stderr, tail, None), daemon=True).start()
    try:
        line = ready.get(timeout=timeout)
    except queue.Empty:
        process.kill()
        process.wait(10)
        raise ClientError(None, f"the service did not report READY within {timeout:g} s; its output:\n"
                                + "\n".join(tail), error="StartFailed") from None
    if line is None:
        code = process.wait(10)
        time.sleep(0.05)  # let the stderr pump catch up
        raise ClientError(None, f"the service exited with code {code} before it was ready; its output:\n"
                                + "\n".join(tail), error="StartFailed")
    return ServerProcess(process, json.loads(line), tail)
