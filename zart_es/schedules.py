"""Recurring schedules: start a workflow on a cron expression or every N, once per occurrence.

A schedule is a field of one hash (``keys.schedules()``: name -> msgpack
:class:`Schedule`); its progress is a field of another (``keys.schedule_state()``: name ->
msgpack :class:`ScheduleState`). Every change of a definition is also an entry of the
deployment's audit stream.

Occurrences are instants in UTC, whole seconds: a cron expression (in the schedule's time
zone, DST handled by croniter) or multiples of ``every`` since the Unix epoch. The
execution id of an occurrence is rendered from the schedule's ``id_template`` and the
occurrence's UTC text ``YYYYMMDDTHHMMSSZ``, so it depends only on (schedule, occurrence):
starting is idempotent on that id, and any number of :class:`Scheduler` s (one per
worker) can tick at once without starting an occurrence twice.

How a tick moves one schedule on, durably:

1. *Claim*: the new state (``last_ms`` = the occurrence, ``pending`` = True, the id to
   start, the execution to cancel first) replaces the state read, by compare-and-set on
   its bytes. Of two schedulers that read the same state exactly one claims; the other
   reads the claim and carries on from it, so both act on one decision.
2. *Start*: cancel the overlapped execution (``cancel_and_restart``), then submit the
   occurrence's execution (idempotent on its id).
3. *Confirm*: ``pending`` = False, by compare-and-set again.

A scheduler that dies between 1 and 3 leaves ``pending`` set; the next tick of any
scheduler does 2 and 3 again, which is harmless: cancel and submit are idempotent. No
occurrence is lost and none starts twice.

Catch-up: when a tick finds several occurrences due since the last one handled (no
scheduler ran for a while), it starts only the latest and counts the older ones in
``skipped``. Occurrences that fall while a schedule is paused are not started at all,
not even on resume.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import structlog

from .aio import tick_forever
from .autopipe import script_caller
from .client import Client
from .codec import decode_value, encode_value
from .durations import Duration
from .errors import (
    ConfigError,
    ExecutionNotFound,
    InvalidExecutionId,
    PayloadError,
    ScheduleExists,
    ScheduleNotFound,
)
from .pauses import audit
from .schedule_times import (
    DEFAULT_ID_TEMPLATE,
    MAX_NEXT_OCCURRENCES,
    Schedule,
    ScheduleSpec,
    ScheduleState,
    build_schedule,
    detail_json,
    due,
    next_occurrence,
    occurrence_text,
    occurrences,
    render_id,
)
from .store import load_script
from .timers import redis_now_ms

log = structlog.get_logger("zart_es.schedules")
_encoder = msgspec.msgpack.Encoder()
_schedule_decoder = msgspec.msgpack.Decoder(Schedule)
_state_decoder = msgspec.msgpack.Decoder(ScheduleState)

_RACE_ROUNDS = 8
"""Compare-and-set rounds per schedule and tick (each lost round means another scheduler
moved the schedule on, so a few always suffice)."""


# -- Redis: definitions ------------------------------------------------------------------


class Schedules:
    """The schedules of one deployment, through a :class:`Client`.

    Definitions only change here; :class:`Scheduler` starts their occurrences. Each
    change is one entry of the audit stream (``what`` = ``schedule.add``,
    ``schedule.replace``, ``schedule.remove``, ``schedule.pause``, ``schedule.resume``).
    """

    def __init__(self, client: Client) -> None:
        self.client = client
        self._redis = client.redis
        self._keys = client.keys
        self._cas_script = script_caller(client.redis, load_script("hash_cas"), pipelined=False)

    async def add(
        self,
        name: str,
        workflow: str,
        data: Any = None,
        *,
        cron: str | None = None,
        every: Duration | None = None,
        timezone: str = "UTC",
        overlap: str = "skip",
        id_template: str = DEFAULT_ID_TEMPLATE,
        replace: bool = False,
        by: str = "",
    ) -> Schedule:
        """Define schedule ``name``: start ``workflow`` with ``data`` on ``cron`` (in
        ``timezone``) or ``every`` interval; returns the stored definition.

        The first occurrence started is the first one after now: nothing is backfilled.
        ``replace=True`` redefines an existing schedule (unpaused, starting from now) and
        keeps its progress, so ``overlap`` still sees the execution it started last;
        without it an existing name raises :class:`ScheduleExists`. Bad settings raise
        :class:`ConfigError`, an unencodable or oversized ``data`` a ``PayloadError``.
        """
        payload = encode_value(data, f"input of schedule {name!r}", self.client._max_payload)
        schedule = build_schedule(name, workflow, payload, cron=cron, every=every,
                                  timezone=timezone, overlap=overlap, id_template=id_template)
        await self.client._ready()
        schedule = msgspec.structs.replace(schedule, created_ms=await redis_now_ms(self._redis))
        raw = _encoder.encode(schedule)
        key = self._keys.schedules()
        if await self._redis.hsetnx(key, name, raw):  # type: ignore[arg-type,misc]
            # progress left by a removed namesake (a tick racing the removal) is not ours
            await self._redis.hdel(self._keys.schedule_state(), name)  # type: ignore[misc]
            what = "schedule.add"
        elif replace:
            await self._redis.hset(key, name, raw)  # type: ignore[arg-type,misc]
            what = "schedule.replace"
        else:
            raise ScheduleExists(name)
        await audit(self._redis, self._keys, what, name=name, detail=detail_json(schedule), by=by)
        return schedule

    async def ensure(self, spec: ScheduleSpec, *, by: str = "") -> Schedule:
        """Make the stored schedule match ``spec`` (declared in code with
        :func:`zart_es.schedule`; every worker calls this at start-up): add it if missing,
        leave it alone if identical, replace it (keeping a pause) if it changed."""
        try:
            return await self.add(**spec.settings(), by=by)
        except ScheduleExists:
            pass
        payload = encode_value(spec.data, f"input of schedule {spec.name!r}",
                               self.client._max_payload)
        wanted = build_schedule(spec.name, spec.workflow, payload, cron=spec.cron,
                                every=spec.every, timezone=spec.timezone,
                                overlap=spec.overlap, id_template=spec.id_template)
        key = self._keys.schedules()
        raw: bytes | None = await self._redis.hget(key, spec.name)  # type: ignore[misc]
        while True:
            if raw is None:  # removed meanwhile
                return await self.add(**spec.settings(), by=by)
            existing = _schedule_decoder.decode(raw)
            if msgspec.structs.replace(existing, created_ms=0, paused=False) == wanted:
                return existing
            # one compare-and-set, the operator's pause carried over: a crash, a tick or
            # an operator's pause between two writes can neither unpause it nor be lost
            replaced = msgspec.structs.replace(
                wanted, created_ms=await redis_now_ms(self._redis), paused=existing.paused)
            ok, current = await self._cas(key, spec.name, raw, _encoder.encode(replaced))
            if ok:
                break
            raw = current or None
        await audit(self._redis, self._keys, "schedule.replace", name=spec.name,
                    detail=detail_json(replaced), by=by)
        return replaced

    async def get(self, name: str) -> Schedule:
        """The definition of ``name``; raises :class:`ScheduleNotFound`."""
        await self.client._ready()
        raw = await self._redis.hget(self._keys.schedules(), name)  # type: ignore[misc]
        if raw is None:
            raise ScheduleNotFound(name)
        return _schedule_decoder.decode(raw)

    async def state(self, name: str) -> ScheduleState | None:
        """The progress of ``name`` (None before its first occurrence was handled)."""
        await self.client._ready()
        raw = await self._redis.hget(self._keys.schedule_state(), name)  # type: ignore[misc]
        return None if raw is None else _state_decoder.decode(raw)

    async def remove(self, name: str, *, by: str = "") -> bool:
        """Delete the schedule and its progress; False if there was none. Executions it
        started are not touched."""
        await self.client._ready()
        if not await self._redis.hdel(self._keys.schedules(), name):  # type: ignore[misc]
            return False
        await self._redis.hdel(self._keys.schedule_state(), name)  # type: ignore[misc]
        await audit(self._redis, self._keys, "schedule.remove", name=name, detail="{}", by=by)
        return True

    async def pause(self, name: str, *, by: str = "") -> Schedule:
        """Stop starting occurrences of ``name`` (from the schedulers' next tick; one a
        scheduler already claimed still starts); its executions keep running. Pausing a
        paused schedule changes nothing."""
        return await self._set_paused(name, True, by)

    async def resume(self, name: str, *, by: str = "") -> Schedule:
        """Start occurrences of ``name`` again, from now: the ones that fell in the pause
        are not started, not even the latest (they are not counted in ``skipped``)."""
        return await self._set_paused(name, False, by)

    async def next_occurrences(self, name: str, n: int = 5) -> builtins.list[datetime]:
        """The next ``n`` (1-1000) occurrences after now (Redis' clock), in the schedule's
        time zone; also for a paused schedule."""
        if not 1 <= n <= MAX_NEXT_OCCURRENCES:
            raise ConfigError(f"n must be 1..{MAX_NEXT_OCCURRENCES}, got {n}")
        schedule = await self.get(name)
        zone = ZoneInfo(schedule.timezone)
        now = await redis_now_ms(self._redis)
        return [datetime.fromtimestamp(ms / 1000, tz=zone)
                for ms in occurrences(schedule, now, n)]

    async def list(self) -> builtins.list[Schedule]:
        """Every schedule, by name."""
        await self.client._ready()
        raw: dict[bytes, bytes] = await self._redis.hgetall(  # type: ignore[misc]
            self._keys.schedules())
        return [_schedule_decoder.decode(raw[k]) for k in sorted(raw)]

    async def _set_paused(self, name: str, paused: bool, by: str) -> Schedule:
        await self.client._ready()
        key = self._keys.schedules()
        raw = await self._redis.hget(key, name)  # type: ignore[misc]
        while True:
            if raw is None:
                raise ScheduleNotFound(name)
            schedule = _schedule_decoder.decode(raw)
            if schedule.paused == paused:
                return schedule
            if not paused:
                # progress first: while the definition still says paused, no tick starts
                # the occurrences that fell in the pause
                await self._skip_to(name, await redis_now_ms(self._redis))
            changed = msgspec.structs.replace(schedule, paused=paused)
            ok, current = await self._cas(key, name, raw, _encoder.encode(changed))
            if ok:
                break
            raw = current or None
        await audit(self._redis, self._keys, "schedule.pause" if paused else "schedule.resume",
                    name=name, detail="{}", by=by)
        return changed

    async def _skip_to(self, name: str, now_ms: int) -> None:
        """Move ``last_ms`` to ``now_ms`` (never backwards), keeping everything else."""
        key = self._keys.schedule_state()
        raw: bytes | None = await self._redis.hget(key, name)  # type: ignore[misc]
        while True:
            state = _state_decoder.decode(raw) if raw else ScheduleState(last_ms=now_ms)
            if raw and state.last_ms >= now_ms:
                return
            moved = msgspec.structs.replace(state, last_ms=now_ms)
            ok, current = await self._cas(key, name, raw, _encoder.encode(moved))
            if ok:
                return
            raw = current or None

    async def _cas(
        self, key: str, field: str, expected: bytes | None, new: bytes
    ) -> tuple[bool, bytes]:
        """Set ``key[field]`` to ``new`` if it still holds ``expected`` (None: absent).
        Returns (written, the value found when not written; b'' when absent)."""
        reply: builtins.list[Any] = await self._cas_script(
            [key], [field, expected or b"", new])
        return bool(reply[0]), bytes(reply[1])


# -- Redis: starting occurrences ---------------------------------------------------------


class Scheduler:
    """Starts the due occurrences of every schedule. Run one per worker process (or
    anywhere with a Client): several at once never start an occurrence twice."""

    def __init__(self, client: Client, *, poll_interval: float = 1.0) -> None:
        if poll_interval <= 0:
            raise ConfigError(f"poll_interval must be > 0 seconds, got {poll_interval}")
        self.client = client
        self._schedules = Schedules(client)
        self._poll = poll_interval
        self._wake = asyncio.Event()
        self._next_wait = poll_interval
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
        await self.client._ready()
        redis, keys = self.client.redis, self.client.keys
        if now_ms is None:
            now_ms = await redis_now_ms(redis)
        pipe = redis.pipeline(transaction=False)
        pipe.hgetall(keys.schedules())
        pipe.hgetall(keys.schedule_state())
        definitions, states = await pipe.execute()
        started: builtins.list[str] = []
        next_due: int | None = None
        for field in sorted(definitions):
            name = field.decode()
            try:
                schedule = _schedule_decoder.decode(definitions[field])
                progress = await self._advance(schedule, states.get(field), now_ms, started)
            except (ConfigError, PayloadError, ValueError, KeyError) as exc:
                # a definition this version cannot use: the other schedules go on
                log.error(  # noqa: TRY400 -- an expected failure: no traceback wanted
                    "schedule cannot run", schedule=name, error=str(exc))
                continue
            if schedule.paused:
                continue
            upcoming = next_occurrence(schedule, max(progress, now_ms))
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
        name, key = schedule.name, self.client.keys.schedule_state()
        for _ in range(_RACE_ROUNDS):
            state = _state_decoder.decode(raw) if raw else None
            if state is not None and state.pending:
                new = await self._start(schedule, state, started)
            else:
                if schedule.paused:
                    break
                after = max(state.last_ms if state else 0, schedule.created_ms)
                found = due(schedule, after, now_ms)
                if found.latest is None:
                    break
                new = await self._decide(schedule, state or ScheduleState(last_ms=after),
                                         found.latest, found.missed)
            ok, current = await self._schedules._cas(key, name, raw, _encoder.encode(new))
            if not ok and not current:
                break  # removed meanwhile
            raw = _encoder.encode(new) if ok else current
        return _state_decoder.decode(raw).last_ms if raw else 0

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
        meta = await self.client.store.meta(execution_id)
        return bool(meta) and b"end" not in meta

    async def _start(
        self, schedule: Schedule, state: ScheduleState, started: builtins.list[str]
    ) -> ScheduleState:
        """Do what a claim decided (idempotent); the confirmed state to write."""
        occurrence = occurrence_text(state.last_ms)
        execution_id = state.last_execution
        if state.pending_cancel:
            with contextlib.suppress(ExecutionNotFound):
                await self.client.cancel(
                    state.pending_cancel,
                    reason=f"schedule {schedule.name}: overlapped by {occurrence}")
        try:
            data = decode_value(schedule.input, Any, f"input of schedule {schedule.name!r}")
            result = await self.client.submit(schedule.workflow, data, execution_id)
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

