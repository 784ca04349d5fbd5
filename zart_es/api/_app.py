"""The HTTP API: a Litestar app over the same :class:`Client` the CLI uses.

Litestar because it speaks msgspec natively (request bodies decode straight into Structs,
responses encode with msgspec) and builds the OpenAPI schema from the same types; see
docs/architecture.md. No engine logic lives here: every route is one Client call.

Errors are JSON ``{"code": ..., "message": ...}`` with a stable code: ``not_found``
(404), ``execution_ended`` (409), ``invalid_request`` (422), ``payload_too_large`` (413),
``unauthorized`` (401), ``redis_unavailable`` (503), ``repair_refused`` (409),
``unknown_step`` (422), ``schedule_exists`` (409).
"""

from __future__ import annotations

import hmac
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
from litestar import Litestar, MediaType, Request, Response, get, post
from litestar.connection import ASGIConnection
from litestar.exceptions import HTTPException, NotAuthorizedException, ValidationException
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.params import Parameter
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_201_CREATED,
    HTTP_202_ACCEPTED,
    HTTP_401_UNAUTHORIZED,
    HTTP_404_NOT_FOUND,
    HTTP_409_CONFLICT,
    HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    HTTP_422_UNPROCESSABLE_ENTITY,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from redis.exceptions import RedisClusterException, RedisError

from zart_es import __version__
from zart_es.api import _admin as api_admin
from zart_es.api import _schedules as api_schedules
from zart_es.client import Client
from zart_es.core import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    STATES,
    ConfigError,
    ExecutionEnded,
    ExecutionNotFound,
    InvalidExecutionId,
    PartitionMismatch,
    PayloadError,
    PayloadTooLarge,
    RedisUnavailable,
    RepairRefused,
    ScheduleExists,
    ScheduleNotFound,
    UnknownStep,
    ZartError,
)
from zart_es.ops import (
    ExecutionDetail,
    ExecutionSummary,
    Stats,
    event_record,
    render_deployment_metrics,
)


class StartRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Body of ``POST /executions``."""

    name: str
    input: Any = None
    id: str | None = None


class Started(msgspec.Struct, frozen=True):
    """Reply of ``POST /executions``: 201 when created, 200 when the id existed."""

    id: str
    created: bool


class Cancelled(msgspec.Struct, frozen=True):
    """Reply of ``POST /executions/{id}/cancel``."""

    id: str
    cancel_requested: bool


class Delivered(msgspec.Struct, frozen=True):
    """Reply of ``POST /executions/{id}/events/{name}``."""

    id: str
    event: str
    delivered: bool


class Health(msgspec.Struct, frozen=True):
    """Reply of ``GET /healthz``."""

    status: str
    redis: bool
    version: str


class ErrorBody(msgspec.Struct, frozen=True):
    """Every error reply."""

    code: str
    message: str


def _client(request: Request[Any, Any, Any]) -> Client:
    client: Client = request.app.state.client
    return client


@post("/executions", status_code=HTTP_201_CREATED, summary="Start an execution")
async def start_execution(request: Request[Any, Any, Any], data: StartRequest) -> Response[Started]:
    """Idempotent on ``id``: the same id again starts nothing and answers 200."""
    started = await _client(request).submit(data.name, data.input, execution_id=data.id)
    return Response(Started(started.execution_id, started.created),
                    status_code=HTTP_201_CREATED if started.created else HTTP_200_OK)


@get("/executions", summary="List executions, newest first")
async def list_executions(
    request: Request[Any, Any, Any],
    status: str | None = None,
    name: str | None = None,
    limit: int = Parameter(default=100, ge=1, le=1000),
) -> list[ExecutionSummary]:
    """Filter by ``status`` (one of pending, running, sleeping, completed, failed,
    cancelled, timed_out) and workflow ``name``."""
    if status is not None and status not in STATES:
        raise ValidationException(f"unknown status {status!r}; use one of {', '.join(STATES)}")
    return await _client(request).list(status=status, name=name, limit=limit)


@get("/executions/{execution_id:str}", summary="One execution's state")
async def get_execution(request: Request[Any, Any, Any], execution_id: str) -> ExecutionDetail:
    """State, result or error, steps done, current step and pending timers."""
    return await _client(request).describe(execution_id)


@get("/executions/{execution_id:str}/wait", summary="Long-poll until the execution ends")
async def wait_execution(
    request: Request[Any, Any, Any], execution_id: str,
    timeout: float = Parameter(default=30.0, ge=0, le=300),
) -> ExecutionDetail:
    """Answers as soon as the execution ends, or after ``timeout`` seconds (at most 300)
    with its current state; ``done`` tells which. A failed end is a 200 like any other."""
    client = _client(request)
    await client.wait(execution_id, timeout)
    return await client.describe(execution_id)


@get("/stats", summary="Executions by state and by workflow")
async def stats(request: Request[Any, Any, Any]) -> Stats:
    """Counts kept by the append script: no scan of executions."""
    return await _client(request).stats()


@get("/executions/{execution_id:str}/history", summary="The execution's event log",
     media_type=MediaType.JSON)
async def get_history(
    request: Request[Any, Any, Any], execution_id: str, format: str = "json"
) -> Response[Any]:
    """The events as a JSON array, or ``?format=jsonl`` (one event per line) to export."""
    if format not in ("json", "jsonl"):
        raise ValidationException("format must be json or jsonl")
    events = [event_record(e) async for e in _client(request).history(execution_id)]
    if format == "jsonl":
        body = b"".join(msgspec.json.encode(e) + b"\n" for e in events)
        return Response(body, media_type="application/x-ndjson")
    return Response(events)


@post("/executions/{execution_id:str}/cancel", status_code=HTTP_202_ACCEPTED,
      summary="Ask an execution to stop")
async def cancel_execution(request: Request[Any, Any, Any], execution_id: str) -> Cancelled:
    """The workflow gets ``Cancelled`` at its next durable call. 409 if it already ended."""
    if not await _client(request).cancel(execution_id):
        raise ExecutionEnded(execution_id, -1)
    return Cancelled(execution_id, cancel_requested=True)


@post("/executions/{execution_id:str}/signals/{name:str}", status_code=HTTP_202_ACCEPTED,
      summary="Deliver a signal")
async def deliver_signal(
    request: Request[Any, Any, Any], execution_id: str, name: str, data: Any = None,
    signal_id: str | None = None,
) -> Delivered:
    """The JSON body is the payload. ``?signal_id=`` makes delivery idempotent."""
    return await _deliver(request, execution_id, name, data, signal_id)


@post("/executions/{execution_id:str}/events/{name:str}", status_code=HTTP_202_ACCEPTED,
      summary="Deliver a signal (the route's first name)", deprecated=True)
async def deliver_event(
    request: Request[Any, Any, Any], execution_id: str, name: str, data: Any = None,
    event_id: str | None = None,
) -> Delivered:
    """``/signals/{name}`` under its first name; ``?event_id=`` is ``?signal_id=``."""
    return await _deliver(request, execution_id, name, data, event_id)


async def _deliver(request: Request[Any, Any, Any], execution_id: str, name: str, data: Any,
                   signal_id: str | None) -> Delivered:
    delivered = await _client(request).send_signal(execution_id, name, data,
                                                   signal_id=signal_id)
    return Delivered(execution_id, name, delivered)


class Alive(msgspec.Struct, frozen=True):
    """Reply of ``GET /livez``."""

    status: str
    version: str


@get("/livez", summary="Liveness: this process answers", opt={"public": True})
async def livez() -> Alive:
    """200 while the process serves requests, whatever Redis does: a liveness probe on it
    does not restart every pod when Redis blips (readiness uses ``/healthz``)."""
    return Alive("ok", __version__)


@get("/healthz", summary="Readiness: Redis reachable", opt={"public": True})
async def healthz(request: Request[Any, Any, Any]) -> Response[Health]:
    """200 when Redis answers and this process's settings match the deployment's (its
    partition count), 503 otherwise ("unavailable" / "misconfigured")."""
    state = "ok"
    try:
        await _client(request).store.check_config()
    except (RedisError, OSError, RedisClusterException):
        state = "unavailable"
    except PartitionMismatch:
        state = "misconfigured"
    return Response(Health(state, state != "unavailable", __version__),
                    status_code=HTTP_200_OK if state == "ok" else HTTP_503_SERVICE_UNAVAILABLE)


@get("/metrics", summary="Prometheus metrics", media_type=MediaType.TEXT)
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Executions by state and workflow, work-stream lag per partition, timers due."""
    body = await render_deployment_metrics(_client(request))
    return Response(body, media_type="text/plain; version=0.0.4")


_STATUS_OF: list[tuple[type[BaseException], int, str]] = [
    (ExecutionNotFound, HTTP_404_NOT_FOUND, "not_found"),
    (ScheduleNotFound, HTTP_404_NOT_FOUND, "not_found"),
    (ScheduleExists, HTTP_409_CONFLICT, "schedule_exists"),
    (ExecutionEnded, HTTP_409_CONFLICT, "execution_ended"),
    (RepairRefused, HTTP_409_CONFLICT, "repair_refused"),
    (UnknownStep, HTTP_422_UNPROCESSABLE_ENTITY, "unknown_step"),
    (PayloadTooLarge, HTTP_413_REQUEST_ENTITY_TOO_LARGE, "payload_too_large"),
    (InvalidExecutionId, HTTP_422_UNPROCESSABLE_ENTITY, "invalid_request"),
    (PayloadError, HTTP_422_UNPROCESSABLE_ENTITY, "invalid_request"),
    (PartitionMismatch, HTTP_503_SERVICE_UNAVAILABLE, "misconfigured"),
    (ConfigError, HTTP_422_UNPROCESSABLE_ENTITY, "invalid_request"),
    (RedisUnavailable, HTTP_503_SERVICE_UNAVAILABLE, "redis_unavailable"),
]


def _error(_request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    if isinstance(exc, ExecutionEnded):
        message = f"execution {exc.execution_id!r} has already ended"
    else:
        message = str(exc)
    for kind, status, code in _STATUS_OF:
        if isinstance(exc, kind):
            return Response(ErrorBody(code, message), status_code=status)
    if isinstance(exc, ValidationException):
        return Response(ErrorBody("invalid_request", _validation_message(exc)),
                        status_code=HTTP_422_UNPROCESSABLE_ENTITY)
    if isinstance(exc, NotAuthorizedException):
        return Response(ErrorBody("unauthorized", "missing or wrong bearer token"),
                        status_code=HTTP_401_UNAUTHORIZED,
                        headers={"WWW-Authenticate": "Bearer"})
    if isinstance(exc, HTTPException):
        code = {404: "not_found", 405: "method_not_allowed",
                413: "payload_too_large"}.get(exc.status_code, "http_error")
        return Response(ErrorBody(code, exc.detail), status_code=exc.status_code)
    if isinstance(exc, RedisError | OSError | RedisClusterException):
        return Response(ErrorBody("redis_unavailable", f"Redis error: {exc}"),
                        status_code=HTTP_503_SERVICE_UNAVAILABLE)
    return Response(ErrorBody("error", str(exc)), status_code=HTTP_422_UNPROCESSABLE_ENTITY)


def _validation_message(exc: ValidationException) -> str:
    extra = exc.extra if isinstance(exc.extra, list) else []
    details = "; ".join(_detail(item) for item in extra)
    return f"{exc.detail}: {details}" if details else str(exc.detail)


def _detail(item: object) -> str:
    """One validation problem, naming the field when Litestar says which."""
    if not isinstance(item, dict):
        return str(item)
    message = str(item.get("message", item))
    key = item.get("key")
    return f"{key}: {message}" if key and str(key) not in message else message


def _too_deep(_request: Request[Any, Any, Any], _exc: RecursionError) -> Response[ErrorBody]:
    return Response(ErrorBody("invalid_request", "the JSON body is nested too deeply"),
                    status_code=HTTP_422_UNPROCESSABLE_ENTITY)


def _bearer_guard(token: str) -> Any:
    expected = token.encode()

    def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        if handler.opt.get("public"):
            return
        scheme, _, given = connection.headers.get("authorization", "").partition(" ")
        # the scheme is case-insensitive (RFC 9110 11.1); the token is compared exactly
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                                 expected):
            raise NotAuthorizedException

    return guard


def create_app(
    redis_url: str | None = None,
    *,
    token: str | None = None,
    max_input_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    partitions: int | None = None,
    client: Client | None = None,
) -> Litestar:
    """The ASGI app. ``token`` (default ``$ZART_API_TOKEN``) turns on bearer auth for every
    route but ``/healthz``; ``max_input_bytes`` caps request bodies and inputs (413)."""
    token = token if token is not None else os.environ.get("ZART_API_TOKEN") or None

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        own = client is None
        app.state.client = client or Client(redis_url, partitions=partitions,
                                            max_payload_bytes=max_input_bytes)
        try:
            yield
        finally:
            if own:
                await app.state.client.close()

    return Litestar(
        route_handlers=[start_execution, list_executions, get_execution, get_history,
                        cancel_execution, deliver_signal, deliver_event, livez, healthz, metrics,
                        wait_execution, stats, *api_admin.ROUTES, *api_schedules.ROUTES],
        lifespan=[lifespan],
        guards=[_bearer_guard(token)] if token else [],
        exception_handlers={ZartError: _error, HTTPException: _error, RedisError: _error,
                            OSError: _error, RedisClusterException: _error,
                            RecursionError: _too_deep},
        openapi_config=OpenAPIConfig(title="zart-es", version=__version__),
        request_max_body_size=max_input_bytes + 64 * 1024,
        debug=False,
    )
