"""The local job service (``thalweg serve``): a FastAPI app on 127.0.0.1 that the QGIS plugin drives.

QGIS's Python must never import torch, so the plugin starts this service as its own process and talks
to it over HTTP: long work is a job (submit, poll, cancel), never one long request. Modules:
``app`` (routes), ``jobs`` (queue, cancel, workspace folders), ``tasks`` (what each job kind does),
``views`` (results shaped for the plugin), ``bodies`` (pydantic models), ``auth`` (token, loopback).
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import sys
from pathlib import Path

__all__ = ["serve", "serve_from_args", "add_serve_arguments", "default_workspace", "READY_PREFIX", "CONNECTION_FILE"]

log = logging.getLogger(__name__)

READY_PREFIX = "THALWEG READY "
CONNECTION_FILE = "connection.json"
LOCK_FILE = "service.lock"


def default_workspace() -> Path:
    """``$THALWEG_WORKSPACE``, else the user's data folder (``~/.local/share/thalweg``, ``%LOCALAPPDATA%``)."""
    if os.environ.get("THALWEG_WORKSPACE"):
        return Path(os.environ["THALWEG_WORKSPACE"]).expanduser()
    if os.name == "nt":
        return Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "thalweg"
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "thalweg"


@contextlib.contextmanager
def _workspace_lock(workspace: Path):
    """One service per workspace: a second one would run and overwrite the same jobs."""
    path = workspace / LOCK_FILE
    fh = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600), "a+")
    try:
        if os.name == "nt":
            import msvcrt

            try:
                msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
            except OSError:
                raise BlockingIOError from None
        else:
            import fcntl

            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        yield
    finally:
        fh.close()


def _private_folder(path: Path) -> None:
    """Create ``path`` readable by the user only (0700): job folders hold the user's data and results. A folder
    that already exists keeps its mode (it may be the user's own); the service's ``jobs/`` inside is 0700 anyway."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        if not path.is_dir():
            raise
        return
    os.chmod(path, 0o700)  # mkdir's mode is cut by the umask; 0700 is what is meant


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return 2


def add_serve_arguments(parser) -> None:
    """The service's command-line options, shared by ``thalweg serve`` and ``python -m thalweg.server``."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (loopback only unless --allow-remote)")
    parser.add_argument("--port", type=int, default=0, help="port (0: a free one, printed on the READY line)")
    parser.add_argument("--workspace", help="folder for jobs and the connection file (default: "
                        "$THALWEG_WORKSPACE, else the user's data folder); created readable by you only (0700), "
                        "and its jobs/ folder, which holds every job's record and results, is always 0700")
    parser.add_argument("--connection-file", help="where to write the connection file (url + token, readable by you "
                        "only: mode 0600); default <workspace>/connection.json")
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow binding to a non-loopback address (requests must then name it, or a loopback "
                             "name, in their Host header)")
    parser.add_argument("--max-body-mb", type=float, default=64.0, help="size limit of request bodies, MB (> 0)")
    parser.add_argument("--shutdown-grace", type=float, default=10.0,
                        help="longest wait, s, for running jobs to stop when the service stops")
    parser.add_argument("--stall-timeout", type=float, default=120.0,
                        help="seconds a running job may go without progress, CPU time or I/O (a read blocked on a "
                             "named pipe or a dead network mount) before it is stopped and failed; 0: never")
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])


def serve_from_args(args) -> int:
    return serve(host=args.host, port=args.port, workspace=args.workspace, allow_remote=args.allow_remote,
                 connection_file=args.connection_file, max_body_mb=args.max_body_mb,
                 shutdown_grace=args.shutdown_grace, stall_timeout=args.stall_timeout, log_level=args.log_level)


def serve(host: str = "127.0.0.1", port: int = 0, workspace: str | os.PathLike | None = None,
          allow_remote: bool = False, connection_file: str | os.PathLike | None = None, *,
          max_body_mb: float = 64.0, shutdown_grace: float = 10.0, stall_timeout: float = 120.0,
          log_level: str = "warning") -> int:
    """Run the job service until SIGTERM/SIGINT; return an exit code (0 after a clean stop, 2 when it
    cannot start: a non-loopback host without ``allow_remote``, a busy port or workspace).

    Parameters
    ----------
    host : address to bind; loopback only (127.0.0.1, ::1, 'localhost') unless ``allow_remote``.
    port : TCP port; 0 picks a free one (printed on the READY line).
    workspace : folder for jobs and the connection file (default: :func:`default_workspace`). What is private:
        a workspace the service creates is 0700, its ``jobs/`` folder and every job folder are 0700 whatever
        the umask (results hold the user's data), the connection file (it holds the token) and the lock file
        are 0600. An existing workspace folder keeps its mode.
    allow_remote : allow a non-loopback address (the token is then the only protection: use with care).
    connection_file : where to write ``{"url", "token", "pid", ...}`` (mode 0600); default
        ``<workspace>/connection.json``.
    max_body_mb : size limit of request bodies (inline networks and runoff), MB.
    shutdown_grace : the longest wait for running jobs when the service stops (each gets half a second to
        reach a safe point, then its worker process is killed; nothing partial is kept either way).
    stall_timeout : seconds a running job may go without progress, CPU time or I/O before it is deemed stuck
        on a read that will not return (a named pipe, a dead network mount), stopped and failed, so the jobs
        queued behind it run; 0 turns the watch off.
    log_level : uvicorn and Thalweg log level (stderr).

    On start, one line goes to stdout: ``THALWEG READY {"url": ..., "host": ..., "port": ..., "pid": ...,
    "connection_file": ..., "workspace": ..., "version": ...}``.
    """
    from .auth import bind_socket, is_loopback, new_token, remove_connection_file, resolve_host, \
        write_connection_file

    host = resolve_host(host)
    if not is_loopback(host) and not allow_remote:
        return _fail(f"refusing to listen on {host!r}: the service binds to loopback addresses only "
                     f"(127.0.0.1). Pass --allow-remote to expose it to the network, knowing that the token "
                     f"is then its only protection.")
    if not 0 <= int(port) <= 65535:
        return _fail(f"port {port} is not a TCP port (0..65535; 0 picks a free one).")
    for flag, value, low, why in (("--max-body-mb", max_body_mb, None, "a size in MB above 0, e.g. 64"),
                                  ("--shutdown-grace", shutdown_grace, 0.0, "seconds, 0 or more, e.g. 10"),
                                  ("--stall-timeout", stall_timeout, 0.0, "seconds, 0 or more (0: no watch), e.g. "
                                                                          "120")):
        if not math.isfinite(value) or (value <= 0 if low is None else value < low):
            return _fail(f"{flag} {value:g} is not usable; give {why}.")
    workspace = Path(workspace).expanduser().resolve() if workspace else default_workspace()
    conn_path = Path(connection_file).expanduser().resolve() if connection_file else workspace / CONNECTION_FILE
    if conn_path.is_dir():
        return _fail(f"the connection file {conn_path} is a folder; give a file path to --connection-file, e.g. "
                     f"{conn_path / CONNECTION_FILE}.")
    try:
        _private_folder(workspace)
    except OSError as exc:
        return _fail(f"cannot create the workspace {workspace}: {exc.strerror or exc}. Give another --workspace.")

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    try:
        lock = _workspace_lock(workspace)
        lock.__enter__()
    except BlockingIOError:
        return _fail(f"another Thalweg service is using the workspace {workspace} (see {workspace / LOCK_FILE}); "
                     f"stop it, or give another --workspace.")
    except OSError as exc:
        return _fail(f"cannot use the workspace {workspace}: {exc.strerror or exc} ({workspace / LOCK_FILE}). "
                     f"Give a --workspace you can write to.")
    try:
        try:
            sock = bind_socket(host, int(port))
        except OSError as exc:
            return _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}. Choose another --port "
                         f"(0 picks a free one).")
        return _run(sock, workspace, conn_path, max_body_mb=max_body_mb, shutdown_grace=shutdown_grace,
                    stall_timeout=stall_timeout, log_level=log_level, new_token=new_token, allow_remote=allow_remote,
                    write_connection_file=write_connection_file,
                    remove_connection_file=remove_connection_file)
    finally:
        lock.__exit__(None, None, None)


def _run(sock, workspace: Path, conn_path: Path, *, max_body_mb, shutdown_grace, stall_timeout, log_level, new_token,
         allow_remote, write_connection_file, remove_connection_file) -> int:
    import uvicorn

    from .. import __version__
    from .app import create_app
    from .auth import HostRule
    from .jobs import JobManager
    from .tasks import LANES

    bound_host, bound_port = sock.getsockname()[:2]
    url_host = f"[{bound_host}]" if ":" in bound_host else bound_host
    url = f"http://{url_host}:{bound_port}"
    try:
        manager = JobManager(workspace, LANES, log_level=log_level, stall=stall_timeout or None)
        counts = manager.recover()
    except OSError as exc:
        return _fail(f"cannot use the jobs folder of the workspace {workspace}: {exc.strerror or exc} "
                     f"({getattr(exc, 'filename', None) or workspace / 'jobs'}). Give a --workspace you can write to.")
    if counts["interrupted"]:
        log.warning("%d job(s) were interrupted by the previous stop and are marked failed", counts["interrupted"])
    token = new_token()
    server: uvicorn.Server | None = None

    def request_stop() -> None:
        if server is not None:
            server.should_exit = True

    app = create_app(manager, token, max_body_bytes=int(max_body_mb * 1024 * 1024), connection_file=str(conn_path),
                     on_shutdown=lambda: manager.shutdown(shutdown_grace), request_stop=request_stop,
                     hosts=HostRule(bound_host, allow_remote))
    info = {"url": url, "host": bound_host, "port": bound_port, "pid": os.getpid(), "token": token,
            "workspace": str(workspace), "version": __version__}
    try:
        write_connection_file(conn_path, info)
    except OSError as exc:
        return _fail(f"cannot write the connection file {conn_path}: {exc.strerror or exc}. Give a writable file "
                     f"path to --connection-file.")
    ready = {k: v for k, v in info.items() if k != "token"} | {"connection_file": str(conn_path)}

    class Server(uvicorn.Server):
        async def startup(self, sockets=None) -> None:
            await super().startup(sockets=sockets)
            if not self.should_exit:  # listening: tell whoever started us
                print(READY_PREFIX + json.dumps(ready), flush=True)

    config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="on", timeout_graceful_shutdown=5,
                            server_header=False)
    server = Server(config)
    # uvicorn re-raises the signal that stopped it once it is done; with these handlers in place that ends
    # in a normal return, so the connection file is removed and the exit code is 0
    stopped = []
    previous = {sig: signal.signal(sig, lambda s, f: stopped.append(s)) for sig in (signal.SIGINT, signal.SIGTERM)}
    manager.start()
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if not manager.stopping:  # uvicorn ended without its lifespan shutdown
            manager.shutdown(shutdown_grace)
        remove_connection_file(conn_path, token)
        sock.close()
    return 0
