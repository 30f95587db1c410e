"""The HTTP routes of the job service: thin handlers over :class:`JobManager` and :mod:`.views`.

Every error is a JSON body ``{"error": <class>, "message": <one readable line>, ...}``: 400 for a Host header
that does not name the service (DNS rebinding, see :mod:`.auth`), 401 without the token, 404 for unknown
jobs and reaches, 409 for results of a job that has none (yet), 413 for oversized bodies, 422 for invalid
bodies and parameters (with the field named), 503 while shutting down. A bug gives a 500 with its type and
message and leaves the service running.
"""
from __future__ import annotations

import logging
import os
import platform
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, FastAPI, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import ThalwegError
from . import views
from .auth import HostRule, host_allowed, token_matches
from .messages import readable
from .bodies import (EXAMPLES, ErrorBody, Health, Hydrograph, JobBody, JobRecord, SchemeInfo,
                     Snapshot, Summary)
from .bodies import DetectBody, Detection
from .jobs import STATES, JobConflict, JobManager, ServiceStopping, UnknownJob
from .tasks import check_input_files, describe

__all__ = ["create_app", "ApiError", "DEFAULT_MAX_BODY"]

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY = 64 * 1024 * 1024
DRAIN_LIMIT = 1024 * 1024 * 1024  # bodies refused for their size are read and dropped up to this many bytes
_STATUS_NAMES = {400: "BadRequest", 401: "Unauthorized", 404: "NotFound", 405: "MethodNotAllowed",
                 409: "Conflict", 413: "PayloadTooLarge", 415: "UnsupportedMediaType", 422: "ValidationError",
                 503: "ServiceUnavailable"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, error: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra
        self.error = error or _STATUS_NAMES.get(status, "Error")


def _error(status: int, error: str, message: str, headers: dict[str, str] | None = None, **extra: Any):
    return JSONResponse({"error": error, "message": message, **views.jsonable(extra)}, status_code=status,
                        headers=headers)


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with a 413, by Content-Length or while streaming."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    def _message(self, size: int | None) -> str:
        got = f"{size / 1e6:,.1f} MB" if size is not None else "more"
        return (f"the request body is {got}; the limit for inline payloads is {self.max_bytes / 1e6:,.1f} MB. "
                f"Send the network and runoff as file paths instead, or start the service with a larger "
                f"--max-body-mb.")

    async def _drain(self, receive, declared: int | None) -> int:
        """Read and drop the rest of a refused body (up to DRAIN_LIMIT): clients such as urllib send the whole
        body before reading the answer, and would see a broken pipe instead of the 413 if it were left."""
        if declared is not None and declared > DRAIN_LIMIT:
            return 0
        dropped = 0
        while dropped <= DRAIN_LIMIT:
            message = await receive()
            if message["type"] != "http.request":
                break
            dropped += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        return dropped

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or ()).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._drain(receive, int(length))
            response = _error(413, "PayloadTooLarge", self._message(int(length)))
            await response(scope, receive, send)
            return
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    if message.get("more_body", False):
                        seen += await self._drain(receive, None)
                    raise StarletteHTTPException(413, self._message(seen))
            return message

        await self.app(scope, limited, send)


class HostCheck:
    """Answer only requests whose ``Host`` header names this service (against DNS rebinding: see
    :mod:`.auth`); others get a 400 before any route runs, /health included."""

    def __init__(self, app, rule: HostRule) -> None:
        self.app, self.rule = app, rule

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        values = [v for k, v in scope.get("headers") or () if k == b"host"]
        header = values[0].decode("latin-1") if len(values) == 1 else None
        if host_allowed(header, self.rule):
            await self.app(scope, receive, send)
            return
        shown = "no Host header" if not values else (
            f"{len(values)} Host headers" if len(values) > 1 else f"the Host header {header[:100]!r}")
        response = _error(400, "BadHost", f"the request has {shown}; the service answers only requests for "
                                          f"127.0.0.1, localhost or [::1], or for the address it listens on (a web "
                                          f"page that points a name of its own at this machine gets this answer). "
                                          f"Use the url of the connection file.")
        await response(scope, receive, send)


def create_app(manager: JobManager, token: str, *, max_body_bytes: int = DEFAULT_MAX_BODY,
               connection_file: str | None = None, on_shutdown: Callable[[], None] | None = None,
               request_stop: Callable[[], None] | None = None, hosts: HostRule | None = None) -> FastAPI:
    """The FastAPI application of a workspace's job manager, guarded by ``token``; ``hosts`` says which Host
    headers it answers (default: loopback names only)."""
    import torch

    where = f" ({connection_file})" if connection_file else ""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        if on_shutdown is not None:
            import anyio

            await anyio.to_thread.run_sync(on_shutdown)

    app = FastAPI(title="Thalweg job service", version=__version__, openapi_url=None, docs_url=None,
                  redoc_url=None, lifespan=lifespan,
                  description="Local job API of Thalweg: route runoff through river networks, extract networks, "
                              "read hydrographs and snapshots. Every endpoint but /health needs "
                              "'Authorization: Bearer <token>' with the token of the connection file.")
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(HostCheck, rule=hosts or HostRule("127.0.0.1"))  # added last: runs first
    bearer = HTTPBearer(auto_error=False, description="the token written in the connection file")

    async def require_token(request: Request, _: Any = Security(bearer)) -> None:
        header = request.headers.get("authorization")
        if not token_matches(header, token):
            what = "no token" if not header else "a wrong token"
            raise ApiError(401, f"the request has {what}: send 'Authorization: Bearer <token>' with the token "
                                f"from the service's connection file{where}.")

    errors = {401: {"model": ErrorBody, "description": "missing or wrong token"},
              422: {"model": ErrorBody, "description": "invalid request"}}
    job_errors = {**errors, 404: {"model": ErrorBody, "description": "unknown job"}}
    result_errors = {**job_errors, 409: {"model": ErrorBody, "description": "the job has no such results (yet)"}}

    # ---- exception handlers: every error is one JSON shape ----
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return _error(exc.status, exc.error, exc.message, headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        text, items = readable(list(exc.errors()))
        return _error(422, "ValidationError", text, errors=items)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no endpoint {request.method} {request.url.path}; the endpoints are listed at /openapi.json."
        elif exc.status_code == 405:
            message = f"{request.url.path} does not take {request.method}."
        return _error(exc.status_code, _STATUS_NAMES.get(exc.status_code, "Error"), message,
                      getattr(exc, "headers", None))

    @app.exception_handler(ThalwegError)
    async def _thalweg(request: Request, exc: ThalwegError):
        return JSONResponse(views.jsonable(exc.to_dict()), status_code=422)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception):  # the server is one of the edges that catch everything
        log.exception("bug while serving %s %s", request.method, request.url.path)
        return _error(500, type(exc).__name__, f"{exc} (a bug in Thalweg: please report it with the service's "
                                               f"log)", bug=True)

    # ---- open ----
    @app.get("/health", response_model=Health, tags=["service"], operation_id="health")
    async def health() -> dict[str, Any]:
        """Liveness, version and compute device (no token needed)."""
        return {"status": "ok", "version": __version__, "torch": torch.__version__,
                "python": platform.python_version(), "device": manager.device(), "pid": os.getpid(),
                "workers": manager.workers(), "jobs": manager.counts()}

    # ---- guarded ----
    api = APIRouter(dependencies=[Depends(require_token)], responses=errors)

    @api.get("/openapi.json", include_in_schema=False)
    async def openapi() -> JSONResponse:
        if app.openapi_schema is None:
            app.openapi_schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                             routes=app.routes)
        return JSONResponse(app.openapi_schema)

    @api.get("/schemes", response_model=list[SchemeInfo], tags=["service"], operation_id="schemes")
    async def schemes() -> list[dict[str, Any]]:
        """Routing schemes and their parameters (units, bounds, defaults)."""
        from ..irf import SCHEMES

        return views.jsonable([SCHEMES[name].to_dict() for name in sorted(SCHEMES)])

    @api.post("/detect", response_model=Detection, tags=["service"], operation_id="detect_schema")
    def detect(body: DetectBody) -> JSONResponse:
        """The hydrography schema of a file or of a layer's fields: role -> field, units, candidates, problems
        (the QGIS panel shows it for confirmation; the plugin never detects schemas itself)."""
        return JSONResponse(views.jsonable(views.detect(body)))

    # links let API tools (schemathesis' stateful phase) follow a new job's id into the job endpoints
    links = {name: {"operationId": op, "parameters": {"job_id": "$response.body#/id"}} for name, op in (
        ("GetJob", "get_job"), ("CancelJob", "cancel_job"), ("DeleteJob", "delete_job"),
        ("Hydrograph", "get_hydrograph"), ("Snapshot", "get_snapshot"), ("Summary", "get_summary"),
        ("Axes", "get_axes"))}

    @api.post("/jobs", status_code=202, response_model=JobRecord, tags=["jobs"], operation_id="submit_job",
              responses={202: {"description": "the job's record", "links": links},
                         503: {"model": ErrorBody, "description": "shutting down"}})
    async def submit(body: Annotated[JobBody, Body(openapi_examples=EXAMPLES)]) -> JSONResponse:
        """Submit a job; returns its record (state 'queued') at once. Poll GET /jobs/{id}."""
        import anyio

        await anyio.to_thread.run_sync(check_input_files, body)  # stat() may block on a stalled mount
        try:
            job = manager.submit(body.kind, body, describe(body), label=body.label)
        except ServiceStopping as exc:
            raise ApiError(503, str(exc)) from None
        return JSONResponse(views.jsonable(manager.record(job)), status_code=202)

    @api.get("/jobs", tags=["jobs"], operation_id="list_jobs")
    async def list_jobs(state: Literal[STATES] | None = Query(None), kind: str | None = Query(None, max_length=50)
                        ) -> dict[str, list[JobRecord]]:  # type: ignore[valid-type]
        """Every job of the workspace, oldest first (filter by state or kind)."""
        return JSONResponse({"jobs": [views.jsonable(manager.record(j)) for j in manager.list(state, kind)]})

    def _job(job_id: str):
        try:
            return manager.get(job_id)
        except UnknownJob:
            raise ApiError(404, f"no job '{job_id[:80]}' in this workspace; GET /jobs lists them.",
                           error="NotFound") from None

    @api.get("/jobs/{job_id}", response_model=JobRecord, responses=job_errors, tags=["jobs"], operation_id="get_job")
    async def status(job_id: str) -> JSONResponse:
        """State, progress, timings, outputs and error of one job."""
        return JSONResponse(views.jsonable(manager.record(_job(job_id))))

    @api.post("/jobs/{job_id}/cancel", response_model=JobRecord, tags=["jobs"], operation_id="cancel_job",
              responses={**job_errors, 409: {"model": ErrorBody, "description": "already finished"}})
    async def cancel(job_id: str) -> JSONResponse:
        """Cancel a queued job now, or stop a running one at its next safe point (within a second)."""
        job = _job(job_id)
        try:
            manager.cancel(job.id)
        except JobConflict as exc:
            raise ApiError(409, str(exc)) from None
        return JSONResponse(views.jsonable(manager.record(job)))

    @api.delete("/jobs/{job_id}", status_code=204, tags=["jobs"], operation_id="delete_job",
                responses={**job_errors, 409: {"model": ErrorBody, "description": "still queued or running"}})
    async def delete(job_id: str) -> None:
        """Forget a finished job and delete its folder and outputs."""
        job = _job(job_id)
        try:
            manager.delete(job.id)
        except JobConflict as exc:
            raise ApiError(409, str(exc)) from None

    def _results(call, *args):
        try:
            answer = call(*args)
            return answer if isinstance(answer, Response) else JSONResponse(answer)
        except JobConflict as exc:
            raise ApiError(409, str(exc)) from None
        except views.NotFoundError as exc:
            return JSONResponse(views.jsonable(exc.error.to_dict()), status_code=404)

    @api.get("/jobs/{job_id}/hydrograph", response_model=Hydrograph, responses=result_errors, tags=["results"],
             operation_id="get_hydrograph")
    def hydrograph(job_id: str, reach: int = Query(..., ge=-(2**63), le=2**63 - 1, description="reach id")):
        """Discharge of one reach at the end of each step; observed values and metrics where a gauge is on it."""
        job = _job(job_id)
        return _results(views.hydrograph, manager, job, reach)

    packed = {"content": {views.F32_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
              "description": "with format=f32: little-endian float32 per reach, in the order of GET "
                             "/jobs/{job_id}/axes; step, time and units in X-Thalweg-* headers"}

    @api.get("/jobs/{job_id}/snapshot", response_model=Snapshot, responses={**result_errors, 200: packed},
             tags=["results"], operation_id="get_snapshot")
    def snapshot(job_id: str, time: str = Query(..., min_length=1, max_length=64,
                                                description="step index (negative from the end) or ISO time"),
                 fmt: Literal["json", "f32"] = Query("json", alias="format",
                                                     description="json, or f32 for packed float32")):
        """Discharge of every reach at the end of one step, for map animation (format=f32: packed, the reach
        ids once from /axes)."""
        job = _job(job_id)
        return _results(views.snapshot_f32 if fmt == "f32" else views.snapshot, manager, job, time)

    @api.get("/jobs/{job_id}/axes", response_model=views.Axes, responses=result_errors, tags=["results"],
             operation_id="get_axes")
    def axes(job_id: str):
        """Reach ids in the order of packed snapshots, and the time of each step."""
        job = _job(job_id)
        return _results(views.axes, manager, job)

    @api.get("/jobs/{job_id}/summary", response_model=Summary, responses=result_errors, tags=["results"],
             operation_id="get_summary")
    def summary(job_id: str):
        """Per-reach statistics: mean, max, time of max, q05 (high flow), q50, q95 (low flow)."""
        job = _job(job_id)
        return _results(views.summary, manager, job)

    if request_stop is not None:
        @api.post("/shutdown", status_code=202, tags=["service"], operation_id="shutdown")
        async def shutdown() -> dict[str, str]:
            """Stop the service as SIGTERM does (queued jobs cancelled, running ones stopped at a safe point);
            for platforms without signals (Windows)."""
            request_stop()
            return {"message": "the service is stopping"}

    app.include_router(api)
    return app
