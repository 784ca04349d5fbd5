"""Errors of the HTTP API as RFC 9457 problem details, and their OpenAPI declarations.

Every error reply is ``application/problem+json``::

    {"type": "urn:zart-es:problem:not_found", "title": "Not found", "status": 404,
     "detail": "no execution 'x'", "instance": "/executions/x", "code": "not_found"}

``code`` is the stable extension member clients branch on (``type`` carries the same
code as a URI); ``detail`` is for people and may change. The table :data:`PROBLEMS` is
the one place a code gets its status and title: the exception handlers answer with it and
the routes declare their error replies from it (:func:`errors`), so the OpenAPI document
lists exactly the replies a route can send.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotAuthorizedException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Operation
from litestar.plugins.problem_details import (
    ProblemDetailsConfig,
    ProblemDetailsException,
    ProblemDetailsPlugin,
)
from redis.exceptions import RedisClusterException, RedisError

from zart_es.core import (
    ArchiveError,
    ConfigError,
    ExecutionEnded,
    ExecutionExists,
    ExecutionNotFound,
    InvalidExecutionId,
    PartitionMismatch,
    PayloadError,
    PayloadTooLarge,
    QueryFailed,
    QueryTimeout,
    RedisUnavailable,
    RepairRefused,
    ScheduleExists,
    ScheduleNotFound,
    UnknownQuery,
    UnknownStep,
    UnknownUpdate,
    UpdateFailed,
    UpdateTimeout,
    ZartError,
)

MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:zart-es:problem:"

PROBLEMS: dict[str, tuple[int, str, str]] = {
    # code: (status, title, when: the description the OpenAPI document gives)
    "malformed_request": (400, "Malformed request", "the body is not JSON"),
    "unauthorized": (401, "Unauthorized",
                     "missing or wrong bearer token (only when the API runs with one)"),
    "not_found": (404, "Not found", "no such execution or schedule"),
    "method_not_allowed": (405, "Method not allowed", "the route has no such method"),
    "execution_ended": (409, "Execution already ended", "the execution has already ended"),
    "execution_exists": (409, "Execution exists",
                         "the id is in use and the start's reuse policy refuses it"),
    "repair_refused": (409, "Repair refused",
                       "the repair makes no sense for the execution now (running, another "
                       "end, not quarantined, archived)"),
    "schedule_exists": (409, "Schedule exists", "the schedule name is taken"),
    "payload_too_large": (413, "Payload too large",
                          "the body or an input is over --max-input-bytes"),
    "invalid_request": (422, "Invalid request",
                        "a parameter or body field is missing, of the wrong type or out of "
                        "range, or an execution id uses characters outside the allowed set"),
    "unknown_step": (422, "Unknown step", "the execution never recorded that step"),
    "unknown_query": (404, "Unknown query",
                      "the execution has no handler for that query (the detail lists them)"),
    "query_failed": (422, "Query failed", "the query handler raised"),
    "unknown_update": (404, "Unknown update", "the workflow does not declare that update"),
    "update_failed": (422, "Update failed",
                      "the workflow failed the update, or ended without answering it"),
    "update_timeout": (504, "Update timeout",
                       "not answered in time; it stays delivered (retry with its update_id)"),
    "query_timeout": (504, "Query timeout",
                      "no worker of the execution's task queue answered in time"),
    "error": (422, "Refused", "zart-es refused the request"),
    "archive_unavailable": (503, "Archive unavailable", "the archive cannot be read"),
    "redis_unavailable": (503, "Redis unavailable", "Redis cannot be reached"),
    "misconfigured": (503, "Misconfigured",
                      "the API's partition count is not the deployment's"),
    "internal_error": (500, "Internal error", "a bug: the API's log has the traceback"),
}

_CODE_OF: list[tuple[type[BaseException], str]] = [  # the first match wins
    (ExecutionNotFound, "not_found"),
    (ScheduleNotFound, "not_found"),
    (ScheduleExists, "schedule_exists"),
    (ExecutionEnded, "execution_ended"),
    (ExecutionExists, "execution_exists"),
    (RepairRefused, "repair_refused"),
    (UnknownStep, "unknown_step"),
    (UnknownQuery, "unknown_query"),
    (QueryFailed, "query_failed"),
    (QueryTimeout, "query_timeout"),
    (UnknownUpdate, "unknown_update"),
    (UpdateFailed, "update_failed"),
    (UpdateTimeout, "update_timeout"),
    (PayloadTooLarge, "payload_too_large"),
    (InvalidExecutionId, "invalid_request"),
    (PayloadError, "invalid_request"),
    (PartitionMismatch, "misconfigured"),
    (ConfigError, "invalid_request"),
    (RedisUnavailable, "redis_unavailable"),
    (ArchiveError, "archive_unavailable"),
    (ZartError, "error"),
    (ValidationException, "invalid_request"),
    (NotAuthorizedException, "unauthorized"),
    (RedisError, "redis_unavailable"),
    (RedisClusterException, "redis_unavailable"),
    (OSError, "redis_unavailable"),
    (RecursionError, "invalid_request"),
]

_HTTP_CODES = {400: "malformed_request", 404: "not_found", 405: "method_not_allowed",
               413: "payload_too_large"}

log = structlog.get_logger("zart_es.api")


class ProblemDetails(msgspec.Struct, frozen=True):
    """An error reply (RFC 9457). ``code`` is stable; ``detail`` is for people."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    instance: str | None = None


class Problem(ProblemDetailsException):
    """A problem details reply whose ``instance`` is the request's path."""

    def __init__(self, code: str, detail: str, *, status: int | None = None,
                 headers: dict[str, str] | None = None) -> None:
        known_status, title, _ = PROBLEMS.get(code, (status or 500, "", ""))
        status = status or known_status
        super().__init__(detail=detail, status_code=status, headers=headers,
                         type_=TYPE_PREFIX + code, extra={"code": code},
                         title=title or HTTPStatus(status).phrase)

    def to_response(self, request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        """The reply, ``instance`` naming the path that failed."""
        self.instance = self.instance or request.url.path
        return super().to_response(request)


def problem_of(exc: Exception) -> Problem:
    """The problem details of an exception a route (or Litestar, or Redis) raised."""
    if isinstance(exc, Problem):
        return exc
    code = next((code for kind, code in _CODE_OF if isinstance(exc, kind)), "internal_error")
    detail, status, headers = str(exc), None, None
    if isinstance(exc, NotAuthorizedException):
        detail, headers = "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"}
    elif isinstance(exc, ValidationException):
        detail = _validation_message(exc)
    elif isinstance(exc, HTTPException):
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        detail, status, headers = exc.detail, exc.status_code, exc.headers
    elif isinstance(exc, RecursionError):
        detail = "the JSON body is nested too deeply"
    elif isinstance(exc, ExecutionEnded):
        detail = f"execution {exc.execution_id!r} has already ended"
    elif code == "redis_unavailable" and not isinstance(exc, RedisUnavailable):
        detail = f"Redis error: {exc}"
    elif code == "internal_error":
        log.error("unhandled error in a route", exc_info=exc)
        detail = f"{type(exc).__name__} (see the API's log)"
    return Problem(code, detail, status=status, headers=headers)


def problem_plugin() -> ProblemDetailsPlugin:
    """Litestar's problem details plugin, answering every error kind the API meets."""
    handled: list[type[Exception]] = [ZartError, HTTPException, RedisError,
                                      RedisClusterException, OSError, RecursionError,
                                      Exception]
    return ProblemDetailsPlugin(ProblemDetailsConfig(
        exception_to_problem_detail_map=dict.fromkeys(handled, problem_of)))


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


# -- the OpenAPI side ---------------------------------------------------------------------

SECURED = ("unauthorized", "redis_unavailable", "misconfigured")
"""What any route behind the token that reads Redis may answer."""
BODY = ("malformed_request", "payload_too_large", "invalid_request")
"""What any route that takes a JSON body may answer."""


@dataclass
class ProblemOperation(Operation):
    """An operation whose error replies are only those the route declared.

    Litestar documents a 400 "validation error" for every route with a parameter; ours
    answer 422 ``invalid_request`` for that, and 400 only for a body that is not JSON
    (declared by the routes that take one).
    """

    def __post_init__(self) -> None:
        generated = (self.responses or {}).get("400")
        if generated is not None and MEDIA_TYPE not in (getattr(generated, "content", None)
                                                        or {}):
            del self.responses["400"]  # type: ignore[union-attr]


def errors(*codes: str, public: bool = False, body: bool = False,
           replies: Mapping[int, ResponseSpec] | None = None,
           operation: type[ProblemOperation] | None = None) -> Mapping[str, Any]:
    """Route decorator keywords declaring its error replies: ``codes`` plus those of
    every secured route (unless ``public``) and of every route with a body (``body``);
    ``replies`` declares other replies (a second success status, a 503 that is not a
    problem)."""
    wanted = [*codes, *(() if public else SECURED), *(BODY if body else ())]
    by_status: dict[int, list[str]] = {}
    for code in dict.fromkeys(wanted):
        by_status.setdefault(PROBLEMS[code][0], []).append(code)
    return {
        "responses": {
            status: ResponseSpec(
                ProblemDetails, media_type=MEDIA_TYPE, generate_examples=False,
                description="; ".join(f"`{code}`: {PROBLEMS[code][2]}" for code in codes_))
            for status, codes_ in sorted(by_status.items())
        } | dict(replies or {}),
        "operation_class": operation or ProblemOperation,
    }
