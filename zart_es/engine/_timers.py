"""The timer wheel's poller: due timers become ``TimerFired`` events and work messages.

Every worker runs one poller over all partitions. Firing a timer is one call of the
append script that removes the member from the wheel first, so when several pollers see
the same due timer exactly one records it. Due times are Redis' clock, never a worker's.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from zart_es.core import (
    Event,
    ExecutionEnded,
    ExecutionNotFound,
    InvalidExecutionId,
    TimerNotDue,
    fired,
    timeout_of,
)
from zart_es.engine._aio import tick_forever
from zart_es.store import Keys, Store, redis_now_ms

log = structlog.get_logger("zart_es.timers")

FIRE_BATCH = 200

MAX_DUE_MS = 2**63 - 1
"""A due time zart-es can have written: an int64 of epoch milliseconds (durations are
capped at 100 years, so every real one is far below)."""


@dataclass(frozen=True, slots=True)
class DueTimer:
    """A wheel member that can be fired: whose execution, which timer, and the event."""

    member: str
    execution_id: str
    timer: str
    event: Event


class UnusableTimer(ValueError):
    """A wheel member zart-es did not write (or cannot fire): ``kind`` is a short label
    for metrics, the message says what is wrong."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


def read_timer(keys: Keys, partition: int, raw: bytes, score: float) -> DueTimer:
    """Decode one member of ``partition``'s wheel, whatever its bytes and score.

    The one place that decides whether a member can be fired; :class:`UnusableTimer` for
    anything else: bytes that are not UTF-8, no timer name, an invalid execution id, a
    deadline timer whose length is not a positive int64, a score that is not a due time
    (NaN, infinite, negative, beyond int64), or an execution of another partition (firing
    it would consume it from that partition's wheel, leaving this one due forever).
    """
    if not math.isfinite(score) or not 0 <= score <= MAX_DUE_MS:
        raise UnusableTimer("score", f"score {score!r} is not a due time in epoch ms")
    try:
        member = raw.decode()
    except UnicodeDecodeError:
        raise UnusableTimer("encoding", "the member is not UTF-8") from None
    try:
        execution_id, timer = keys.parse_timer_member(member)
        timeout_ms = timeout_of(timer)
    except (ValueError, InvalidExecutionId) as exc:
        raise UnusableTimer("name", str(exc)) from None
    if timeout_ms is not None and not 0 < timeout_ms <= MAX_DUE_MS:
        raise UnusableTimer("name", f"deadline length {timeout_ms} ms is out of range")
    home = keys.partition_of(execution_id)
    if home != partition:
        raise UnusableTimer("partition", f"its execution belongs to partition {home}")
    # a deadline ends the execution right here, even while a step of it is in flight
    # (that step's result then finds the log closed and is not recorded)
    return DueTimer(member, execution_id, timer, fired(timer))


def shown(raw: bytes, limit: int = 200) -> str:
    """A member as it can be logged: undecodable bytes escaped, long ones cut."""
    text = raw.decode("utf-8", "backslashreplace")
    return text if len(text) <= limit else f"{text[:limit]}... ({len(raw)} bytes)"


class TimerPoller:
    """Sleeps until the earliest timer of any partition is due (or ``poll_interval``)."""

    def __init__(
        self, store: Store, keys: Keys, *, poll_interval: float = 0.5,
        on_set_aside: Callable[[int, str], None] | None = None,
    ) -> None:
        self._store = store
        self._keys = keys
        self._poll = poll_interval
        self._wake = asyncio.Event()
        self._on_set_aside = on_set_aside
        """Called with (partition, kind) for each member moved aside (a metric)."""
        self._far_checked = 0.0
        self.fired = 0
        self.set_aside = 0
        """Members moved to ``timers:bad`` since this poller was built."""

    def wake(self) -> None:
        """A timer was added by this process: look at the wheel again now."""
        self._wake.set()

    async def run(self) -> None:
        """Poll forever (until cancelled); Redis errors are logged and retried."""
        await tick_forever(self.tick, self._wake, self._poll, log, "timer poll")

    async def tick(self) -> float:
        """Fire every due timer; return seconds until the next is due (capped)."""
        wheel = self._store.wheel
        now_ms = await redis_now_ms(self._store.redis)
        far = time.monotonic() - self._far_checked >= self._poll
        # now and then, the latest member too: a score beyond any due time
        ends = await wheel.ends(latest=far)
        if far:
            self._far_checked = time.monotonic()
            for p, (_, latest) in enumerate(ends):
                if latest is not None and not latest[1] <= MAX_DUE_MS:
                    await self._set_aside_beyond(p)
        next_due: float | None = None
        for p, (earliest, _) in enumerate(ends):
            if earliest is None:
                continue
            due: float | None = earliest[1]
            if earliest[1] <= now_ms:  # a negative or -inf score too: read_timer sets it aside
                due = await self._fire_due(p, now_ms)
            if due is not None and (next_due is None or due < next_due):
                next_due = due
        if next_due is None:
            return self._poll
        return float(max(0.001, min(self._poll, (next_due - now_ms) / 1000)))

    async def _fire_due(self, partition: int, now_ms: int) -> float | None:
        wheel = self._store.wheel
        while True:
            members = await wheel.due(partition, now_ms, FIRE_BATCH)
            await asyncio.gather(*(self._fire(partition, m, s) for m, s in members))
            if len(members) < FIRE_BATCH:
                break
        return await wheel.earliest(partition)

    async def _set_aside_beyond(self, partition: int) -> None:
        """Move aside the members whose score is past any due time (+inf, beyond int64):
        they would never fire, and nobody would learn why."""
        for raw, score in await self._store.wheel.beyond(partition, MAX_DUE_MS, FIRE_BATCH):
            await self._set_aside(partition, raw, score, UnusableTimer(
                "score", f"score {score!r} is not a due time in epoch ms"))

    async def _fire(self, partition: int, raw: bytes, score: float) -> None:
        try:
            due = read_timer(self._keys, partition, raw, score)
        except UnusableTimer as exc:
            await self._set_aside(partition, raw, score, exc)
            return
        try:
            # a work message either way: after a deadline, the next run finds the log
            # closed and reports to a parent execution, if there is one
            await self._store.append(due.execution_id, -1, due.event,
                                     consume_timer=due.member)
        except (TimerNotDue, ExecutionEnded):
            return
        except ExecutionNotFound:
            await self._store.wheel.drop(partition, raw)
            return
        self.fired += 1
        log.debug("timer fired", execution_id=due.execution_id, timer=due.timer)

    async def _set_aside(
        self, partition: int, raw: bytes, score: float, why: UnusableTimer
    ) -> None:
        """Move a member zart-es cannot fire from the wheel to the partition's
        ``timers:bad`` set (same score), so polling goes on; logged once, counted, and
        kept for an operator to look at."""
        bad = await self._store.wheel.set_aside(partition, raw, score)
        self.set_aside += 1
        if self._on_set_aside is not None:
            self._on_set_aside(partition, why.kind)
        log.error("timer member cannot be fired; moved aside", member=shown(raw),
                  reason=str(why), partition=partition,
                  moved_to=bad)
