"""Bulk operations over the HTTP API: a job that runs in the API process, polled by id.

``POST /admin/bulk/{action}`` selects the executions (a dry run only counts them) and
starts the job; its progress is written to Redis as it goes, so ``GET /admin/bulk/{job}``
answers from any API replica. A job whose process died stops updating: after
STALE_MS without news it reads as ``abandoned`` (run it again: every operation is
refused or a no-op where it already applied).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import msgspec
import structlog
from litestar import Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED

from zart_es.api._problems import errors
from zart_es.client import (
    BulkFilter,
    BulkOutcome,
    BulkProblem,
    Client,
    bulk_operation,
    bulk_select,
    run_bulk,
)

log = structlog.get_logger("zart_es.api.bulk")

STALE_MS = 60_000
SAVE_EVERY_S = 0.5
Action = Literal["cancel", "retry-step", "rerun", "restart", "release"]


class BulkRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Body of ``POST /admin/bulk/{action}``."""

    filter: BulkFilter = msgspec.field(default_factory=BulkFilter)
    step: str | None = None
    """retry-step: the failed step (default: the latest failed one)."""
    steps: list[str] | None = None
    """rerun: the steps to run again from."""
    reason: str = ""
    by: str = ""
    dry_run: bool = False
    """Only count what the filter selects."""


class BulkJob(msgspec.Struct, frozen=True):
    """A bulk operation: what it does to which executions, and how far it got."""

    job: str | None
    action: str
    state: str
    """``counted`` (a dry run), ``running``, ``done``, ``failed`` (stopped by an error:
    ``error``) or ``abandoned`` (its API process stopped updating it)."""
    filter: BulkFilter
    matched: int
    done: int = 0
    skipped: int = 0
    failed: int = 0
    problems: list[BulkProblem] = msgspec.field(default_factory=list)
    by: str = ""
    started_ms: int = 0
    updated_ms: int = 0
    error: str = ""


def _client(request: Request[Any, Any, Any]) -> Client:
    client: Client = request.app.state.client
    return client


@post("/admin/bulk/{action:str}", status_code=HTTP_202_ACCEPTED,
      summary="Cancel, retry-step, rerun, restart or release every execution a filter selects",
      **errors("invalid_request", body=True, replies={HTTP_200_OK: ResponseSpec(
          BulkJob, generate_examples=False,
          description="a dry run: what the filter selects, counted; nothing done")}))
async def start_bulk(request: Request[Any, Any, Any], action: FromPath[Action],
                     data: JSONBody[BulkRequest]) -> Response[BulkJob]:
    """The filter (status, workflow, started time range, id prefix) is resolved first;
    each execution then gets the one-execution operation, with its own recorded event
    and operator-trail entry (``by``). 202 with the job to poll; ``dry_run`` answers 200
    with the count (``state`` ``counted``) and acts on nothing."""
    client = _client(request)
    apply = bulk_operation(client, action, step=data.step, steps=data.steps,
                           reason=data.reason, by=data.by)
    ids = await bulk_select(client, data.filter)
    now = _now_ms()
    job = BulkJob(None if data.dry_run else uuid.uuid4().hex, action,
                  "counted" if data.dry_run else "running", data.filter, len(ids),
                  by=data.by, started_ms=now, updated_ms=now)
    if job.job is None:
        return Response(job, status_code=HTTP_200_OK)
    jobs = client.deployment.bulk_jobs
    await jobs.save(job.job, msgspec.json.encode(job))
    tasks: set[asyncio.Task[None]] = request.app.state.bulk_tasks
    task = asyncio.create_task(_run(client, job, ids, apply))
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    return Response(job, status_code=HTTP_202_ACCEPTED)


@get("/admin/bulk/{job:str}", summary="A bulk operation's progress",
     **errors("not_found"))
async def bulk_job(request: Request[Any, Any, Any], job: FromPath[str]) -> BulkJob:
    """How far the job got; ``abandoned`` when it is ``running`` but its API process has
    not updated it for a minute."""
    record = await _client(request).deployment.bulk_jobs.load(job)
    if record is None:
        raise NotFoundException(f"no bulk job {job!r} (unknown, or older than a week)")
    found = msgspec.json.decode(record, type=BulkJob)
    if found.state == "running" and _now_ms() - found.updated_ms > STALE_MS:
        return msgspec.structs.replace(found, state="abandoned")
    return found


async def _run(client: Client, job: BulkJob, ids: list[str],
               apply: Callable[[str], Awaitable[bool]]) -> None:
    jobs = client.deployment.bulk_jobs
    job_id = job.job or ""
    saved = time.monotonic()
    pending: asyncio.Task[None] | None = None

    def progress(outcome: BulkOutcome) -> None:
        nonlocal saved, pending
        if time.monotonic() - saved >= SAVE_EVERY_S and (pending is None or pending.done()):
            saved = time.monotonic()
            pending = asyncio.create_task(jobs.save(job_id, _encode(job, outcome)))

    try:
        outcome = await run_bulk(ids, job.action, apply, progress=progress)
        final = _encode(job, outcome, "done")
    except Exception as exc:  # a Redis outage, a bug: say so in the job
        log.exception("bulk job stopped", job=job.job)
        final = msgspec.json.encode(msgspec.structs.replace(
            job, state="failed", error=f"{type(exc).__name__}: {exc}", updated_ms=_now_ms()))
    if pending is not None:
        await asyncio.gather(pending, return_exceptions=True)
    await jobs.save(job_id, final)


def _encode(job: BulkJob, outcome: BulkOutcome, state: str = "running") -> bytes:
    return msgspec.json.encode(msgspec.structs.replace(
        job, state=state, done=outcome.done, skipped=outcome.skipped, failed=outcome.failed,
        problems=list(outcome.problems), updated_ms=_now_ms()))


def _now_ms() -> int:
    return int(time.time() * 1000)


ROUTES = [start_bulk, bulk_job]
