"""Quarantine: executions that keep crashing the engine are set aside, not retried for ever.

An engine crash (a log entry it cannot read, a bug that raises outside any step) leaves
the execution's work message pending, so it is retried after the lease. Each crash is
counted in the execution's meta hash; at the worker's ``quarantine_after`` the worker
appends ``ExecutionQuarantined`` (which needs no readable log), acknowledges the message
and notes it in the audit log. The status stays ``quarantined`` through timers and
signals until an operator, having fixed the cause, releases it: the count is reset and
``ExecutionReleased`` sends it back to the workers.
"""

from __future__ import annotations

from zart_es.core import (
    QUARANTINED,
    ExecutionEnded,
    ExecutionNotFound,
    ExecutionQuarantined,
    ExecutionReleased,
    RepairRefused,
    VersionConflict,
    effects_of,
)
from zart_es.ops._audit_log import audit
from zart_es.store import Deployment

MESSAGE_LIMIT = 2000
"""Characters of the crash's message kept in the log."""


async def quarantine_if_crashed_too_often(
    deployment: Deployment, execution_id: str, exc: BaseException, limit: int, *, by: str = ""
) -> int | None:
    """Count one crash; once there are ``limit`` of them, quarantine the execution and
    return the count (None while under the limit, or when there is nothing to quarantine)."""
    crashes = await deployment.store.count_crash(execution_id)
    if crashes is None or crashes < limit:
        return None
    event = ExecutionQuarantined(crashes=crashes, error_type=type(exc).__name__,
                                 message=str(exc)[:MESSAGE_LIMIT])
    try:
        # by the worker that ran it: no work message (it is held until released)
        await deployment.store.append(execution_id, -1, event, effects_of(event, by_run=True))
    except (ExecutionEnded, ExecutionNotFound):
        return None
    await audit(deployment.store, "quarantine", execution_id=execution_id, by=by,
                crashes=str(crashes), error=f"{event.error_type}: {event.message}")
    return crashes


async def release(
    deployment: Deployment, execution_id: str, *, by: str = "", reason: str = ""
) -> None:
    """Let a quarantined execution run again (its crash count starts over).

    :class:`RepairRefused` unless it is quarantined; ExecutionNotFound for an unknown id."""
    store = deployment.store
    while True:
        meta = await store.meta(execution_id)
        if not meta:
            raise ExecutionNotFound(execution_id)
        if meta.get(b"st") != QUARANTINED.encode():
            status = meta.get(b"st", b"?").decode()
            raise RepairRefused(execution_id, f"it is {status}, not quarantined")
        await store.forget_crashes(execution_id)
        try:
            await store.append(execution_id, int(meta[b"v"]),
                               ExecutionReleased(by=by, reason=reason))
        except VersionConflict:
            continue  # a timer or a signal was recorded meanwhile: look again
        break
    await audit(deployment.store, "release", execution_id=execution_id,
                by=by, reason=reason)
