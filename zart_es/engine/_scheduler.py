"""The Scheduler: starts the due occurrences of recurring schedules (one per worker).

What a schedule is and how a tick moves it on durably: :mod:`zart_es.ops._schedules`.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
from typing import Any

import msgspec
import structlog

from zart_es.core import (
    UNREADABLE,
    ConfigError,
    ExecutionNotFound,
    InvalidExecutionId,
    PayloadError,
    Schedule,
    ScheduleState,
    counted_from,
    decode_value,
    due,
    next_occurrence,
    occurrence_text,
    render_id,
)
from zart_es.engine._aio import tick_forever
from zart_es.engine._logs import Complaints
from zart_es.ops import (
    RACE_ROUNDS,
    Schedules,
    cancel_execution,
    decode_schedule,
    decode_state,
    encode_record,
    submit_execution,
)
from zart_es.store import Deployment, HasDeployment, deployment_of, redis_now_ms

log = structlog.get_logger("zart_es.scheduler")


# -- Redis: starting occurrences ---------------------------------------------------------


class Scheduler:
    """Starts the due occurrences of every schedule. Run one per worker process (or
    anywhere with a Deployment): several at once never start an occurrence twice."""

    def __init__(self, deployment: Deployment | HasDeployment, *,
                 poll_interval: float = 1.0) -> None:
        if poll_interval <= 0:
            raise ConfigError(f"poll_interval must be > 0 seconds, got {poll_interval}")
        self.deployment = deployment_of(deployment)
        self._schedules = Schedules(self.deployment)
        self._poll = poll_interval
        self._wake = asyncio.Event()
        self._next_wait = poll_interval
        self._complaints = Complaints(log)
        self.started = 0
        """Executions this scheduler created, since it was built."""

    def wake(self) -> None:
        """Look at the schedules again now (e.g. after adding one in this process)."""
        self._wake.set()

    async def run(self) -> None:
        """Tick forever (until cancelled); Redis errors are logged and retried.

        Between ticks it sleeps until the earliest next occurrence (at most
        ``poll_interval``), so a schedule that fires every second is not late by a
        whole tick.
        """
        async def tick() -> float:
            await self.tick()
            return self._next_wait

        await tick_forever(tick, self._wake, self._poll, log, "schedule tick")

    async def tick(self, now_ms: int | None = None) -> builtins.list[str]:
        """Start what is due at ``now_ms`` (default: Redis' clock) for every schedule not
        paused; returns the ids of the executions this call created.

        Per schedule, of the occurrences after the last one handled (or after its
        creation) and at or before now, only the latest is considered (catch-up rule);
        the older ones count as ``skipped``. Its ``overlap`` policy decides what happens
        while the previous execution is still running. A schedule that cannot be started
        (an id taken by another workflow, an input that no longer decodes) is logged and
        its occurrence counted as skipped; the other schedules go on.
        """
        await self.deployment.ready()
        redis, keys = self.deployment.redis, self.deployment.keys
        if now_ms is None:
            now_ms = await redis_now_ms(redis)
        pipe = redis.pipeline(transaction=False)
        pipe.hgetall(keys.schedules())
        pipe.hgetall(keys.schedule_state())
        definitions, states = await pipe.execute()
        started: builtins.list[str] = []
        next_due: int | None = None
        for field in sorted(definitions):
            what = f"{keys.schedules()} {field.decode('utf-8', 'backslashreplace')}"
            try:
                schedule = decode_schedule(definitions[field])
                progress = await self._advance(schedule, states.get(field), now_ms, started)
                upcoming = None if schedule.paused else next_occurrence(
                    schedule, max(progress, now_ms))
            except UNREADABLE as exc:
                # a definition (or progress) this version cannot use: the others go on
                self._complaints.once("schedule cannot run", what, exc)
                continue
            self._complaints.forget(what)
            if upcoming is not None and (next_due is None or upcoming < next_due):
                next_due = upcoming
        self._next_wait = (self._poll if next_due is None
                           else max(0.001, min(self._poll, (next_due - now_ms) / 1000)))
        self.started += len(started)
        return started

    async def _advance(
        self, schedule: Schedule, raw: bytes | None, now_ms: int, started: builtins.list[str]
    ) -> int:
        """Move one schedule on to ``now_ms`` (claim, start, confirm; see the module
        docstring); returns its ``last_ms`` (0 if it has none)."""
        name, key = schedule.name, self.deployment.keys.schedule_state()
        for _ in range(RACE_ROUNDS):
            state = decode_state(raw) if raw else None
            if state is not None and state.pending:
                new = await self._start(schedule, state, started)
            else:
                if schedule.paused:
                    break
                after = max(state.last_ms if state else 0, counted_from(schedule))
                found = due(schedule, after, now_ms)
                if found.latest is None:
                    break
                new = await self._decide(schedule, state or ScheduleState(last_ms=after),
                                         found.latest, found.missed)
            ok, current = await self._schedules.cas(key, name, raw, encode_record(new))
            if not ok and not current:
                break  # removed meanwhile
            raw = encode_record(new) if ok else current
        return decode_state(raw).last_ms if raw else 0

    async def _decide(
        self, schedule: Schedule, state: ScheduleState, occurrence: int, missed: int
    ) -> ScheduleState:
        """The claim for ``occurrence``: started (pending) or skipped for overlap."""
        previous = state.last_execution
        running = bool(previous) and schedule.overlap != "always" and await self._running(
            previous)
        if running and schedule.overlap == "skip":
            log.info("schedule occurrence skipped: previous execution still running",
                     schedule=schedule.name, occurrence=occurrence_text(occurrence),
                     execution_id=previous)
            return msgspec.structs.replace(state, last_ms=occurrence,
                                           skipped=state.skipped + missed + 1)
        return msgspec.structs.replace(
            state, last_ms=occurrence, last_execution=render_id(schedule, occurrence),
            started=state.started + 1, skipped=state.skipped + missed, pending=True,
            pending_cancel=previous if running else "")

    async def _running(self, execution_id: str) -> bool:
        """Whether the execution exists and has not ended (one read of its meta hash)."""
        meta = await self.deployment.store.meta(execution_id)
        return bool(meta) and b"end" not in meta

    async def _start(
        self, schedule: Schedule, state: ScheduleState, started: builtins.list[str]
    ) -> ScheduleState:
        """Do what a claim decided (idempotent); the confirmed state to write."""
        occurrence = occurrence_text(state.last_ms)
        execution_id = state.last_execution
        if state.pending_cancel:
            with contextlib.suppress(ExecutionNotFound):
                await cancel_execution(
                    self.deployment, state.pending_cancel,
                    reason=f"schedule {schedule.name}: overlapped by {occurrence}")
        try:
            data = decode_value(schedule.input, Any, f"input of schedule {schedule.name!r}")
            result = await submit_execution(self.deployment, schedule.workflow, data, execution_id)
        except (ConfigError, PayloadError, InvalidExecutionId) as exc:
            log.error(  # noqa: TRY400 -- an expected failure: no traceback wanted
                "schedule occurrence not started", schedule=schedule.name,
                occurrence=occurrence, execution_id=execution_id, error=str(exc))
            return msgspec.structs.replace(state, pending=False, pending_cancel="",
                                           last_execution="", started=state.started - 1,
                                           skipped=state.skipped + 1)
        if result.created:
            started.append(execution_id)
            log.info("schedule occurrence started", schedule=schedule.name,
                     occurrence=occurrence, execution_id=execution_id,
                     workflow=schedule.workflow)
        return msgspec.structs.replace(state, pending=False, pending_cancel="")

