"""Operations over many executions: cancel, retry-step, rerun, restart, release by filter.

The filter is resolved to a list of ids first (a snapshot: executions that start later
are not touched, and one whose status changes half-way is still acted on once); then
each id gets the one-execution operation, so each has its own recorded event and its own
entry in the operator trail, with ``by``. What does not apply to an execution (a cancel
of one that ended, a repair refused) is counted as skipped with the reason; nothing is
retried behind the caller's back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING

import msgspec

from zart_es.core import (
    STATES,
    ConfigError,
    ExecutionNotFound,
    RepairRefused,
    UnknownStep,
    ZartError,
    check_execution_id,
    check_workflow_name,
)

if TYPE_CHECKING:
    from zart_es.client._client import Client

BULK_ACTIONS = ("cancel", "retry-step", "rerun", "restart", "release")
PAGE = 500
CONCURRENCY = 16
MAX_ERRORS = 100


class BulkFilter(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Which executions: all of these that are given (none: every execution in Redis)."""

    status: str | None = None
    workflow: str | None = None
    started_after: datetime | None = None
    started_before: datetime | None = None
    id_prefix: str | None = None
    ids: list[str] | None = None
    """Only these executions (those that exist; the other filters still apply): the
    console's selected rows."""

    def check(self) -> BulkFilter:
        """Itself, or ConfigError naming what is wrong."""
        for execution_id in self.ids or ():
            check_execution_id(execution_id)
        if self.status is not None and self.status not in STATES:
            raise ConfigError(f"unknown status {self.status!r}; use one of {', '.join(STATES)}")
        if self.workflow is not None:
            check_workflow_name(self.workflow)
        if self.id_prefix is not None and not self.id_prefix:
            raise ConfigError("an id prefix must not be empty")
        return self


class BulkProblem(msgspec.Struct, frozen=True):
    """An execution the operation did not apply to, and why."""

    execution_id: str
    error: str


class BulkOutcome(msgspec.Struct):
    """How far a bulk operation got: ``done + skipped + failed`` of ``matched``."""

    action: str
    matched: int
    done: int = 0
    skipped: int = 0
    """The operation does not apply (ended already, a repair refused)."""
    failed: int = 0
    """It went wrong (the first MAX_ERRORS are in ``problems``)."""
    problems: list[BulkProblem] = msgspec.field(default_factory=list)


async def matching(client: Client, where: BulkFilter) -> AsyncIterator[str]:
    """The ids of the executions in Redis ``where`` selects, newest first."""
    where.check()
    if where.ids is not None:
        async for execution_id in _chosen(client, where):
            yield execution_id
        return
    cursor: str | None = None
    while True:
        page = await client.list_page(status=where.status, name=where.workflow, limit=PAGE,
                                      cursor=cursor, started_after=where.started_after,
                                      started_before=where.started_before)
        for row in page.items:
            if where.id_prefix is None or row.execution_id.startswith(where.id_prefix):
                yield row.execution_id
        if page.next is None:
            return
        cursor = page.next


async def _chosen(client: Client, where: BulkFilter) -> AsyncIterator[str]:
    """Those of ``where.ids`` that exist and pass the other filters, in the given order."""
    after = None if where.started_after is None else where.started_after.timestamp() * 1000
    before = None if where.started_before is None else where.started_before.timestamp() * 1000
    for execution_id in dict.fromkeys(where.ids or ()):
        try:
            status = await client.status(execution_id)
        except ExecutionNotFound:
            continue
        if ((where.status is None or status.status == where.status)
                and (where.workflow is None or status.workflow == where.workflow)
                and (where.id_prefix is None or execution_id.startswith(where.id_prefix))
                and (after is None or status.created_ms >= after)
                and (before is None or status.created_ms < before)):
            yield execution_id


async def select(client: Client, where: BulkFilter) -> list[str]:
    """The ids ``where`` selects now (what a dry run counts and a run acts on)."""
    return [execution_id async for execution_id in matching(client, where)]


def operation(client: Client, action: str, *, step: str | None = None,
              steps: list[str] | None = None, reason: str = "", by: str = ""
              ) -> Callable[[str], Awaitable[bool]]:
    """The one-execution operation ``action`` as ``f(id) -> applied``; ConfigError for an
    unknown action or missing steps."""
    if action not in BULK_ACTIONS:
        raise ConfigError(f"unknown bulk action {action!r}; use one of {', '.join(BULK_ACTIONS)}")
    if action == "rerun" and not steps:
        raise ConfigError("a bulk rerun needs the steps to run again from")

    async def apply(execution_id: str) -> bool:
        if action == "cancel":
            return await client.cancel(execution_id, reason or None, by=by)
        if action == "retry-step":
            await client.retry_step(execution_id, step, reason=reason, by=by)
        elif action == "rerun":
            await client.rerun(execution_id, list(steps or ()), reason=reason, by=by)
        elif action == "restart":
            await client.restart(execution_id, reason=reason, by=by)
        else:
            await client.release(execution_id, reason=reason, by=by)
        return True

    return apply


async def run_bulk(ids: list[str], action: str, apply: Callable[[str], Awaitable[bool]], *,
                   progress: Callable[[BulkOutcome], object] | None = None,
                   concurrency: int = CONCURRENCY) -> BulkOutcome:
    """Apply ``apply`` to each of ``ids``, ``concurrency`` at a time; ``progress`` hears of
    every one done."""
    outcome = BulkOutcome(action=action, matched=len(ids))
    gate = asyncio.Semaphore(concurrency)

    async def one(execution_id: str) -> None:
        async with gate:
            try:
                applied = await apply(execution_id)
            except (RepairRefused, UnknownStep) as exc:
                _problem(outcome, execution_id, exc, skipped=True)
            except ZartError as exc:
                _problem(outcome, execution_id, exc, skipped=False)
            else:
                if applied:
                    outcome.done += 1
                else:
                    _problem(outcome, execution_id, "it has ended: nothing to cancel",
                             skipped=True)
            if progress is not None:
                progress(outcome)

    async with asyncio.TaskGroup() as group:  # a Redis error stops them all, and raises
        for execution_id in ids:
            group.create_task(one(execution_id))
    return outcome


def _problem(outcome: BulkOutcome, execution_id: str, error: BaseException | str, *,
             skipped: bool) -> None:
    if skipped:
        outcome.skipped += 1
    else:
        outcome.failed += 1
    if len(outcome.problems) < MAX_ERRORS:
        outcome.problems.append(BulkProblem(execution_id, str(error)))
