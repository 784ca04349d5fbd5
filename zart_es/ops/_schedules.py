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

import builtins
import functools
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import structlog

from zart_es.core import (
    DEFAULT_ID_TEMPLATE,
    MAX_NEXT_OCCURRENCES,
    ConfigError,
    Duration,
    Schedule,
    ScheduleExists,
    ScheduleNotFound,
    ScheduleSpec,
    ScheduleState,
    build_schedule,
    check_stored,
    detail_json,
    encode_value,
    occurrences,
)
from zart_es.ops._audit_log import audit
from zart_es.ops._backfill import Backfilled, backfill
from zart_es.store import (
    Deployment,
    HasDeployment,
    deployment_of,
    load_script,
    redis_now_ms,
    script_caller,
)

log = structlog.get_logger("zart_es.schedules")
_encoder = msgspec.msgpack.Encoder()
_schedule_decoder = msgspec.msgpack.Decoder(Schedule)
_state_decoder = msgspec.msgpack.Decoder(ScheduleState)


def encode_record(record: Schedule | ScheduleState) -> bytes:
    """The stored bytes of a definition or a progress record (compared byte for byte)."""
    return _encoder.encode(record)


@functools.lru_cache(maxsize=4096)
def decode_schedule(raw: bytes) -> Schedule:
    """A stored definition, checked as an added one is (ConfigError, ValueError).

    Cached by its bytes: the checks cost about 150 µs (cron, time zone, template) and
    every scheduler reads every definition on every tick."""
    return check_stored(_schedule_decoder.decode(raw))


def decode_state(raw: bytes) -> ScheduleState:
    """A stored progress record."""
    return _state_decoder.decode(raw)


RACE_ROUNDS = 8
"""Compare-and-set rounds per schedule and tick (each lost round means another scheduler
moved the schedule on, so a few always suffice)."""


# -- Redis: definitions ------------------------------------------------------------------


class Schedules:
    """The schedules of one deployment (pass a :class:`Deployment`, or a Client or Worker).

    Definitions only change here; :class:`Scheduler` starts their occurrences. Each
    change is one entry of the audit stream (``what`` = ``schedule.add``,
    ``schedule.replace``, ``schedule.remove``, ``schedule.pause``, ``schedule.resume``).
    """

    def __init__(self, deployment: Deployment | HasDeployment) -> None:
        self.deployment = deployment_of(deployment)
        self._redis = self.deployment.redis
        self._tables = self.deployment.store.tables
        self._cas_script = script_caller(self._redis, load_script("hash_cas"), pipelined=False)

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
        anchor: str = "epoch",
        replace: bool = False,
        by: str = "",
    ) -> Schedule:
        """Define schedule ``name``: start ``workflow`` with ``data`` on ``cron`` (in
        ``timezone``) or ``every`` interval; returns the stored definition.

        ``cron`` takes 5 fields (classic), 6 (seconds first, as Zart: ``"0 */5 * * * *"``
        is every 5 minutes) or 7 (and a year). ``every`` counts from the Unix epoch
        (``anchor="epoch"``: every hour on the hour) or, with ``anchor="start"`` (Zart's
        fixed delay), from the moment the schedule is added: the first occurrence is then,
        each next one the previous plus the interval.

        The first occurrence started is the first one after now: nothing is backfilled.
        ``replace=True`` redefines an existing schedule (unpaused, starting from now) and
        keeps its progress, so ``overlap`` still sees the execution it started last;
        without it an existing name raises :class:`ScheduleExists`. Bad settings raise
        :class:`ConfigError`, an unencodable or oversized ``data`` a ``PayloadError``.
        """
        payload = encode_value(data, f"input of schedule {name!r}",
                               self.deployment.max_payload_bytes)
        schedule = build_schedule(name, workflow, payload, cron=cron, every=every,
                                  timezone=timezone, overlap=overlap, id_template=id_template,
                                  anchor=anchor)
        await self.deployment.ready()
        schedule = msgspec.structs.replace(schedule, created_ms=await redis_now_ms(self._redis))
        raw = _encoder.encode(schedule)
        schedules = self._tables.schedules
        if await schedules.put_new(name, raw):
            # progress left by a removed namesake (a tick racing the removal) is not ours
            await self._tables.schedule_state.delete(name)
            what = "schedule.add"
        elif replace:
            await schedules.put(name, raw)
            what = "schedule.replace"
        else:
            raise ScheduleExists(name)
        await audit(self.deployment.store, what, name=name, detail=detail_json(schedule), by=by)
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
                               self.deployment.max_payload_bytes)
        wanted = build_schedule(spec.name, spec.workflow, payload, cron=spec.cron,
                                every=spec.every, timezone=spec.timezone,
                                overlap=spec.overlap, id_template=spec.id_template,
                                anchor=spec.anchor)
        key = self._tables.schedules.key
        raw = await self._tables.schedules.get(spec.name)
        while True:
            if raw is None:  # removed meanwhile
                return await self.add(**spec.settings(), by=by)
            try:
                existing: Schedule | None = _schedule_decoder.decode(raw)
            except msgspec.DecodeError:  # bytes of no definition: the code's replaces them
                existing = None
            if existing is not None and msgspec.structs.replace(
                    existing, created_ms=0, paused=False) == wanted:
                return existing
            # one compare-and-set, the operator's pause carried over: a crash, a tick or
            # an operator's pause between two writes can neither unpause it nor be lost
            replaced = msgspec.structs.replace(
                wanted, created_ms=await redis_now_ms(self._redis),
                paused=existing is not None and existing.paused)
            ok, current = await self.cas(key, spec.name, raw, _encoder.encode(replaced))
            if ok:
                break
            raw = current or None
        await audit(self.deployment.store, "schedule.replace", name=spec.name,
                    detail=detail_json(replaced), by=by)
        return replaced

    async def get(self, name: str) -> Schedule:
        """The definition of ``name``; raises :class:`ScheduleNotFound`."""
        await self.deployment.ready()
        raw = await self._tables.schedules.get(name)
        if raw is None:
            raise ScheduleNotFound(name)
        return _schedule_decoder.decode(raw)

    async def state(self, name: str) -> ScheduleState | None:
        """The progress of ``name`` (None before its first occurrence was handled)."""
        await self.deployment.ready()
        raw = await self._tables.schedule_state.get(name)
        return None if raw is None else _state_decoder.decode(raw)

    async def remove(self, name: str, *, by: str = "") -> bool:
        """Delete the schedule and its progress; False if there was none. Executions it
        started are not touched."""
        await self.deployment.ready()
        if not await self._tables.schedules.delete(name):
            return False
        await self._tables.schedule_state.delete(name)
        await audit(self.deployment.store, "schedule.remove", name=name, detail="{}", by=by)
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

    async def backfill(
        self, name: str, start: datetime, end: datetime, *, overlap: str | None = None,
        dry_run: bool = False, by: str = "",
        progress: Callable[[int, int], object] | None = None,
    ) -> Backfilled:
        """Start each occurrence of ``name`` in [``start``, ``end``) once (its id is the
        one the scheduler gives it: one that ran already is not started again), under
        ``overlap`` (default: the schedule's) among the backfilled ones. See
        :mod:`zart_es.ops._backfill`."""
        return await backfill(self.deployment, await self.get(name), start, end,
                              overlap=overlap, dry_run=dry_run, by=by, progress=progress)

    async def list(self) -> builtins.list[Schedule]:
        """Every schedule, by name."""
        await self.deployment.ready()
        raw = await self._tables.schedules.all()
        return [_schedule_decoder.decode(raw[k]) for k in sorted(raw)]

    async def _set_paused(self, name: str, paused: bool, by: str) -> Schedule:
        await self.deployment.ready()
        key = self._tables.schedules.key
        raw = await self._tables.schedules.get(name)
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
            ok, current = await self.cas(key, name, raw, _encoder.encode(changed))
            if ok:
                break
            raw = current or None
        await audit(self.deployment.store, "schedule.pause" if paused else "schedule.resume",
                    name=name, detail="{}", by=by)
        return changed

    async def _skip_to(self, name: str, now_ms: int) -> None:
        """Move ``last_ms`` to ``now_ms`` (never backwards), keeping everything else."""
        key = self._tables.schedule_state.key
        raw = await self._tables.schedule_state.get(name)
        while True:
            state = _state_decoder.decode(raw) if raw else ScheduleState(last_ms=now_ms)
            if raw and state.last_ms >= now_ms:
                return
            moved = msgspec.structs.replace(state, last_ms=now_ms)
            ok, current = await self.cas(key, name, raw, _encoder.encode(moved))
            if ok:
                return
            raw = current or None

    async def cas(
        self, key: str, field: str, expected: bytes | None, new: bytes
    ) -> tuple[bool, bytes]:
        """Set ``key[field]`` to ``new`` if it still holds ``expected`` (None: absent).
        Returns (written, the value found when not written; b'' when absent)."""
        reply: builtins.list[Any] = await self._cas_script(
            [key], [field, expected or b"", new])
        return bool(reply[0]), bytes(reply[1])
