"""The HTTP API: a Litestar app over the same :class:`Client` the CLI uses.

Litestar because it speaks msgspec natively (request bodies decode straight into Structs,
responses encode with msgspec) and builds the OpenAPI schema from the same types; see
docs/architecture.md. No engine logic lives here: every route is one Client call.

Errors are RFC 9457 problem details with a stable ``code`` (:mod:`zart_es.api._problems`);
each route declares in the OpenAPI document the error replies it can send.
"""

from __future__ import annotations

import asyncio
import hmac
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Litestar, MediaType, Request, Response, Router, get, post
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.spec import (
    Components,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Schema,
    SecurityScheme,
    Tag,
)
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_201_CREATED,
    HTTP_202_ACCEPTED,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from redis.exceptions import RedisClusterException, RedisError, ResponseError

from zart_es import __version__
from zart_es.api import _admin as api_admin
from zart_es.api import _bulk as api_bulk
from zart_es.api import _schedules as api_schedules
from zart_es.api import _ui as api_ui
from zart_es.api._problems import ProblemOperation, errors, problem_plugin
from zart_es.client import Client
from zart_es.core import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    ExecutionEnded,
    PartitionMismatch,
    Status,
)
from zart_es.ops import (
    ExecutionDetail,
    ExecutionPage,
    Stats,
    TaskQueueLoad,
    event_record,
    render_deployment_metrics,
)


class StartRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Body of ``POST /executions``."""

    name: str
    input: Any = None
    id: str | None = None
    task_queue: str | None = None
    """Run it on this task queue instead of the one its workflow declares."""
    debounce: str | int | None = None
    """A window ("5s", or a number of seconds): starts with the same ``debounce_key`` in it are one
    execution, run with the last input once no start came for that long."""
    debounce_key: str = ""
    if_ended: str = "return"
    """The id in use by an ended execution: ``return`` it, ``reject`` (409), ``reset``."""
    if_running: str = "return"
    """The id in use by a running one: ``return`` it, ``fail`` (409), ``terminate``."""


class Started(msgspec.Struct, frozen=True):
    """Reply of ``POST /executions``: 201 when created, 200 when the id existed."""

    id: str
    created: bool


class CancelAccepted(msgspec.Struct, frozen=True):
    """Reply of ``POST /executions/{id}/cancel``."""

    id: str
    cancel_requested: bool


class Delivered(msgspec.Struct, frozen=True):
    """Reply of ``POST /executions/{id}/events/{name}``."""

    id: str
    event: str
    delivered: bool


class QueryRequestBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Body of ``POST /executions/{id}/queries/{name}`` (optional)."""

    args: list[Any] = msgspec.field(default_factory=list)
    """The handler's positional arguments."""
    timeout: float = 5.0
    """Seconds to wait for a worker's answer."""


class QueryResult(msgspec.Struct, frozen=True):
    """Reply of ``POST /executions/{id}/queries/{name}``."""

    id: str
    query: str
    result: Any


class UpdateRequestBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Body of ``POST /executions/{id}/updates/{name}``."""

    payload: Any = None
    update_id: str | None = None
    """Makes delivery idempotent: the same id again waits for the same answer."""
    timeout: float = 30.0
    """Seconds to wait for the answer."""


class UpdateResult(msgspec.Struct, frozen=True):
    """Reply of ``POST /executions/{id}/updates/{name}``."""

    id: str
    update: str
    result: Any


class Health(msgspec.Struct, frozen=True):
    """Reply of ``GET /healthz``."""

    status: str
    redis: bool
    version: str
    error: str = ""
    """What Redis answered when it refuses writes (``status`` "refusing_writes")."""


def _client(request: Request[Any, Any, Any]) -> Client:
    client: Client = request.app.state.client
    return client


@post("/executions", status_code=HTTP_201_CREATED, summary="Start an execution",
      **errors("execution_exists", body=True, replies={HTTP_200_OK: ResponseSpec(
          Started, generate_examples=False,
          description="an execution with that id existed: nothing started")}))
async def start_execution(
    request: Request[Any, Any, Any], data: JSONBody[StartRequest]
) -> Response[Started]:
    """Idempotent on ``id``: the same id again starts nothing and answers 200."""
    started = await _client(request).submit(data.name, data.input, execution_id=data.id,
                                            task_queue=data.task_queue,
                                            debounce=data.debounce,
                                            debounce_key=data.debounce_key,
                                            if_ended=data.if_ended, if_running=data.if_running)
    return Response(Started(started.execution_id, started.created),
                    status_code=HTTP_201_CREATED if started.created else HTTP_200_OK)


Cursor = Annotated[str | None, QueryParameter(
    description="the `next` of the previous page (opaque); none: the first page")]


@get("/executions", summary="List executions, newest first, a page at a time",
     **errors("invalid_request"))
async def list_executions(
    request: Request[Any, Any, Any],
    *,
    status: FromQuery[Status | None] = None,
    name: FromQuery[str | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    cursor: Cursor = None,
    started_after: Annotated[datetime | None, QueryParameter(
        description="only executions started at or after this instant")] = None,
    started_before: Annotated[datetime | None, QueryParameter(
        description="only executions started before this instant")] = None,
) -> ExecutionPage:
    """Filter by ``status``, workflow ``name`` and start time (ISO 8601 with an offset).
    ``next`` is the cursor of the following page, null on the last; pass it as ``cursor``
    with the same filters. Executions started meanwhile are newer: they never shift a
    page."""
    return await _client(request).list_page(
        status=status, name=name, limit=limit, cursor=cursor, started_after=started_after,
        started_before=started_before)


@get("/executions/{execution_id:str}", summary="One execution's state",
     **errors("not_found", "invalid_request"))
async def get_execution(
    request: Request[Any, Any, Any], execution_id: FromPath[str]
) -> ExecutionDetail:
    """State, result or error, steps done, current step and pending timers."""
    return await _client(request).describe(execution_id)


@get("/executions/{execution_id:str}/wait", summary="Long-poll until the execution ends",
     **errors("not_found", "invalid_request"))
async def wait_execution(
    request: Request[Any, Any, Any], execution_id: FromPath[str],
    timeout: Annotated[float, QueryParameter(ge=0, le=300)] = 30.0,
) -> ExecutionDetail:
    """Answers as soon as the execution ends, or after ``timeout`` seconds (at most 300)
    with its current state; ``done`` tells which. A failed end is a 200 like any other."""
    client = _client(request)
    await client.wait(execution_id, timeout)
    return await client.describe(execution_id)


@get("/stats", summary="Executions by state and by workflow", **errors())
async def stats(request: Request[Any, Any, Any]) -> Stats:
    """Counts kept by the append script: no scan of executions."""
    return await _client(request).stats()


@get("/task-queues", summary="Each task queue's backlog and live workers", **errors())
async def task_queues(request: Request[Any, Any, Any]) -> list[TaskQueueLoad]:
    """Every task queue a worker served, a workflow declared or a starter named."""
    return await _client(request).task_queues()


@get("/task-queues/{name:str}", summary="One task queue's backlog and live workers",
     **errors("invalid_request"))
async def task_queue(request: Request[Any, Any, Any], name: FromPath[str]) -> TaskQueueLoad:
    """``backlog`` (waiting + in flight, over every partition) is what KEDA's metrics-api
    trigger of a pool divides by its workers' concurrency (deploy/scaledobject.py)."""
    (load,) = await _client(request).task_queues([name])
    return load


class EventPage(msgspec.Struct, frozen=True):
    """Reply of ``GET /executions/{id}/history``: events oldest first (each with ``type``,
    ``seq``, ``at_ms``, ``prev_hash`` and its fields); ``next``: the following page."""

    items: list[dict[str, Any]]
    next: str | None


@dataclass
class _HistoryOperation(ProblemOperation):
    """The history route's 200 is a JSON page, or JSON lines with ``?format=jsonl``."""

    def __post_init__(self) -> None:
        super().__post_init__()
        ok = (self.responses or {}).get("200")
        if isinstance(ok, OpenAPIResponse) and ok.content is not None:
            ok.content["application/x-ndjson"] = OpenAPIMediaType(schema=Schema(
                type=OpenAPIType.STRING, description="the whole log, one event per line"))


@get("/executions/{execution_id:str}/history", summary="The execution's event log",
     media_type=MediaType.JSON, **errors(
         "not_found", "invalid_request", operation=_HistoryOperation, replies={
             HTTP_200_OK: ResponseSpec(EventPage, generate_examples=False,
                                       description="a page of events, or the whole log as "
                                                   "JSON lines (format=jsonl)")}))
async def get_history(
    request: Request[Any, Any, Any], execution_id: FromPath[str],
    format: FromQuery[Literal["json", "jsonl"]] = "json",
    cursor: Cursor = None,
    limit: Annotated[int, QueryParameter(ge=1, le=10_000)] = 1000,
) -> Response[Any]:
    """A page of events (``next``: the cursor of the following one, null on the last), or
    ``?format=jsonl``: the whole log, one event per line, to export."""
    client = _client(request)
    if format == "jsonl":
        body = b"".join([msgspec.json.encode(event_record(e)) + b"\n"
                         async for e in client.history(execution_id)])
        return Response(body, media_type="application/x-ndjson")
    page = await client.history_page(execution_id, cursor=cursor, limit=limit)
    return Response(EventPage([event_record(e) for e in page.items], page.next))


@post("/executions/{execution_id:str}/cancel", status_code=HTTP_202_ACCEPTED,
      summary="Ask an execution to stop",
      **errors("not_found", "execution_ended", "invalid_request"))
async def cancel_execution(
    request: Request[Any, Any, Any], execution_id: FromPath[str],
    reason: FromQuery[str] = "", by: FromQuery[str] = "",
) -> CancelAccepted:
    """The workflow gets ``Cancelled`` at its next durable call. 409 if it already ended.
    ``?reason=`` and ``?by=`` (who asks) go with the request and into the operator trail."""
    if not await _client(request).cancel(execution_id, reason or None, by=by):
        raise ExecutionEnded(execution_id, -1)
    return CancelAccepted(execution_id, cancel_requested=True)


@post("/executions/{execution_id:str}/signals/{name:str}", status_code=HTTP_202_ACCEPTED,
      summary="Deliver a signal", **errors("not_found", "execution_ended", body=True))
async def deliver_signal(
    request: Request[Any, Any, Any], execution_id: FromPath[str], name: FromPath[str],
    data: JSONBody[Any] = None, *, signal_id: FromQuery[str | None] = None,
    by: FromQuery[str] = "",
) -> Delivered:
    """The JSON body is the payload. ``?signal_id=`` makes delivery idempotent; ``?by=``
    (an operator's name) also records the signal in the operator trail."""
    return await _deliver(request, execution_id, name, data, signal_id=signal_id, by=by)


@post("/executions/{execution_id:str}/events/{name:str}", status_code=HTTP_202_ACCEPTED,
      summary="Deliver a signal (the route's first name)", deprecated=True,
      **errors("not_found", "execution_ended", body=True))
async def deliver_event(
    request: Request[Any, Any, Any], execution_id: FromPath[str], name: FromPath[str],
    data: JSONBody[Any] = None, event_id: FromQuery[str | None] = None,
) -> Delivered:
    """``/signals/{name}`` under its first name; ``?event_id=`` is ``?signal_id=``."""
    return await _deliver(request, execution_id, name, data, signal_id=event_id)


@post("/executions/{execution_id:str}/queries/{name:str}", status_code=HTTP_200_OK,
      summary="Ask a query of an execution (read-only: nothing is recorded)",
      **errors("not_found", "unknown_query", "query_failed", "query_timeout",
               "invalid_request", body=True))
async def query_execution(
    request: Request[Any, Any, Any], execution_id: FromPath[str], name: FromPath[str],
    data: JSONBody[QueryRequestBody | None] = None,
) -> QueryResult:
    """A worker serving the execution's task queue replays its log read-only and calls
    the handler the workflow registered with ``ctx.on_query(name, ...)`` at the point
    it has reached. 404 ``unknown_query`` lists the registered ones; 504 when no worker
    answers within ``timeout``."""
    body = data or QueryRequestBody()
    value = await _client(request).query(execution_id, name, *body.args,
                                         timeout=body.timeout)
    return QueryResult(execution_id, name, value)


@post("/executions/{execution_id:str}/updates/{name:str}", status_code=HTTP_200_OK,
      summary="Send an update and wait for the workflow's answer",
      **errors("not_found", "execution_ended", "unknown_update", "update_failed",
               "update_timeout", "invalid_request", body=True))
async def update_execution(
    request: Request[Any, Any, Any], execution_id: FromPath[str], name: FromPath[str],
    data: JSONBody[UpdateRequestBody | None] = None, by: FromQuery[str] = "",
) -> UpdateResult:
    """Delivered durably (recorded in the log) before the wait; the answer is the one
    the workflow recorded with ``reply``. 504 ``update_timeout`` leaves it delivered:
    retry with the same ``update_id`` to wait for the same answer. ``?by=`` also records
    it in the operator trail."""
    body = data or UpdateRequestBody()
    value = await _client(request).update(execution_id, name, body.payload,
                                          update_id=body.update_id, timeout=body.timeout,
                                          by=by)
    return UpdateResult(execution_id, name, value)


async def _deliver(request: Request[Any, Any, Any], execution_id: str, name: str, data: Any,
                   *, signal_id: str | None, by: str = "") -> Delivered:
    delivered = await _client(request).send_signal(execution_id, name, data,
                                                   signal_id=signal_id, by=by)
    return Delivered(execution_id, name, delivered)


class Alive(msgspec.Struct, frozen=True):
    """Reply of ``GET /livez``."""

    status: str
    version: str


@get("/livez", summary="Liveness: this process answers", opt={"public": True},
     **errors(public=True))
async def livez() -> Alive:
    """200 while the process serves requests, whatever Redis does: a liveness probe on it
    does not restart every pod when Redis blips (readiness uses ``/healthz``)."""
    return Alive("ok", __version__)


@get("/healthz", summary="Readiness: Redis reachable and accepting writes",
     opt={"public": True},
     **errors(public=True, replies={HTTP_503_SERVICE_UNAVAILABLE: ResponseSpec(
         Health, generate_examples=False,
         description="Redis unreachable, refusing writes, or the partition count is not "
                     "the deployment's")}))
async def healthz(request: Request[Any, Any, Any]) -> Response[Health]:
    """200 when Redis answers, accepts a write and this process's settings match the
    deployment's (its partition count); 503 otherwise: "unavailable", "refusing_writes"
    (out of memory, a read-only replica: ``error`` says what Redis answered) or
    "misconfigured"."""
    state, error = "ok", ""
    store = _client(request).store
    try:
        await store.check_config()  # its HSETNX is a write: refused as any other would be
    except ResponseError as exc:  # Redis answers, but refuses the write
        state, error = "refusing_writes", f"{type(exc).__name__}: {exc}"
    except (RedisError, OSError, RedisClusterException):
        state = "unavailable"
    except PartitionMismatch:
        state = "misconfigured"
    return Response(Health(state, state != "unavailable", __version__, error),
                    status_code=HTTP_200_OK if state == "ok" else HTTP_503_SERVICE_UNAVAILABLE)


@get("/metrics", summary="Prometheus metrics", media_type=MediaType.TEXT, **errors())
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Executions by state and workflow, work-stream lag per partition, timers due."""
    body = await render_deployment_metrics(_client(request))
    return Response(body, media_type="text/plain; version=0.0.4")


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
        app.state.bulk_tasks = set()  # the bulk jobs this process runs (kept referenced)
        app.state.client = client or Client(redis_url, partitions=partitions,
                                            max_payload_bytes=max_input_bytes)
        try:
            yield
        finally:
            # a job cut short here reads as abandoned once it stops updating
            for task in list(app.state.bulk_tasks):
                task.cancel()
            await asyncio.gather(*app.state.bulk_tasks, return_exceptions=True)
            if own:
                await app.state.client.close()

    return Litestar(
        route_handlers=[
            Router("/", tags=["executions"], security=BEARER, route_handlers=[
                start_execution, list_executions, get_execution, get_history, wait_execution,
                cancel_execution, deliver_signal, deliver_event, query_execution,
                update_execution]),
            Router("/", tags=["admin"], security=BEARER,
                   route_handlers=[*api_admin.ROUTES, *api_bulk.ROUTES]),
            Router("/", tags=["schedules"], security=BEARER,
                   route_handlers=api_schedules.ROUTES),
            Router("/", tags=["monitoring"], security=BEARER, route_handlers=[stats, metrics,
                                                                        task_queues, task_queue]),
            Router("/", tags=["probes"], route_handlers=[livez, healthz]),
            Router("/", tags=["console"], security=BEARER, route_handlers=api_ui.ROUTES),
        ],
        lifespan=[lifespan],
        guards=[_bearer_guard(token)] if token else [],
        plugins=[problem_plugin()],
        openapi_config=OPENAPI,
        request_max_body_size=max_input_bytes + 64 * 1024,
        debug=False,
        logging_config=None,  # records go to the process's logging (zart-es: structlog)
    )


BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
"""The routes' security requirement (in force when the API runs with a token)."""

OPENAPI = OpenAPIConfig(
    title="zart-es", version=__version__,
    description="Durable executions over HTTP. Errors are RFC 9457 problem details "
                "(application/problem+json) with a stable `code` member.",
    components=Components(security_schemes={"bearer": SecurityScheme(
        type="http", scheme="bearer",
        description="`--token` / `$ZART_API_TOKEN` of `zart-es api`; without one, no auth")}),
    tags=[Tag(name="executions", description="start, read, steer executions"),
          Tag(name="admin", description="repairs and pause rules (docs/operations.md)"),
          Tag(name="schedules", description="recurring schedules (docs/schedules.md)"),
          Tag(name="monitoring", description="counts and Prometheus metrics"),
          Tag(name="probes", description="liveness and readiness; no token needed")],
)
