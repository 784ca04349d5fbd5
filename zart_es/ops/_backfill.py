"""Backfill: start the occurrences of a schedule that fell in a past range, once each.

Each occurrence's execution id is the one the scheduler would have given it
(``id_template``), so an occurrence that ran already, or a backfill run twice, starts
nothing new. Among the backfilled occurrences, in time order, the overlap policy
decides as it does for live ones: ``skip`` starts none while the previous one still
runs, ``cancel_and_restart`` cancels it, ``always`` starts each. The schedule's live
executions are not touched.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec

from zart_es.core import (
    OVERLAP_POLICIES,
    ConfigError,
    Schedule,
    decode_value,
    occurrences_between,
    render_id,
)
from zart_es.ops._audit_log import audit
from zart_es.ops._control import cancel_execution, submit_execution
from zart_es.store import Deployment

MAX_BACKFILL = 10_000
"""The most occurrences one backfill starts."""


class Backfilled(msgspec.Struct):
    """What a backfill of ``schedule`` over [``start``, ``end``) did, occurrence by
    occurrence: started now, existed already, skipped (overlap), and the previous ones it
    cancelled (``cancel_and_restart``)."""

    schedule: str
    overlap: str
    occurrences: int
    started: list[str] = msgspec.field(default_factory=list)
    existed: list[str] = msgspec.field(default_factory=list)
    skipped: list[str] = msgspec.field(default_factory=list)
    cancelled: list[str] = msgspec.field(default_factory=list)


async def backfill(
    deployment: Deployment, schedule: Schedule, start: datetime, end: datetime, *,
    overlap: str | None = None, dry_run: bool = False, by: str = "",
    progress: Callable[[int, int], object] | None = None,
) -> Backfilled:
    """Start the occurrences of ``schedule`` in [``start``, ``end``) (timezone-aware)
    that have no execution yet, under ``overlap`` (default: the schedule's). A dry run
    only counts the occurrences in the range (``occurrences``)."""
    for moment, what in ((start, "start"), (end, "end")):
        if not isinstance(moment, datetime) or moment.utcoffset() is None:
            raise ConfigError(f"the backfill's {what} must be a timezone-aware datetime, "
                              f"got {moment!r}")
    if end <= start:
        raise ConfigError(f"the backfill's end ({end.isoformat()}) must be after its start "
                          f"({start.isoformat()})")
    name = schedule.name
    policy = overlap or schedule.overlap
    if policy not in OVERLAP_POLICIES:
        raise ConfigError(f"unknown overlap policy {policy!r}; use one of "
                          f"{', '.join(OVERLAP_POLICIES)}")
    times = occurrences_between(schedule, int(start.timestamp() * 1000),
                                int(end.timestamp() * 1000), MAX_BACKFILL)
    done = Backfilled(name, policy, len(times))
    if dry_run:
        return done
    data = decode_value(schedule.input, Any, f"input of schedule {name!r}")
    store = deployment.store
    previous = ""
    for i, occurrence in enumerate(times):
        execution_id = render_id(schedule, occurrence)
        if await store.meta(execution_id):
            done.existed.append(execution_id)
        elif previous and policy != "always" and await _running(deployment, previous):
            if policy == "skip":
                done.skipped.append(execution_id)
                continue
            await cancel_execution(deployment, previous, by=by,
                                   reason=f"schedule {name}: overlapped by the backfill of "
                                          f"{execution_id}")
            done.cancelled.append(previous)
        if execution_id not in done.existed:
            await submit_execution(deployment, schedule.workflow, data, execution_id)
            done.started.append(execution_id)
        previous = execution_id
        if progress is not None:
            progress(i + 1, len(times))
    await audit(store, "schedule.backfill", by=by, name=name, start=start.isoformat(),
                end=end.isoformat(), overlap=policy, occurrences=str(len(times)),
                started=str(len(done.started)), existed=str(len(done.existed)),
                skipped=str(len(done.skipped)), cancelled=str(len(done.cancelled)))
    return done


async def _running(deployment: Deployment, execution_id: str) -> bool:
    meta = await deployment.store.meta(execution_id)
    return bool(meta) and b"end" not in meta
