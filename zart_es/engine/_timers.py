"""The timer wheel's poller: due timers become ``TimerFired`` events and work messages.

Every worker runs one poller over all partitions. Firing a timer is one call of the
append script that removes the member from the wheel first, so when several pollers see
the same due timer exactly one records it. Due times are Redis' clock, never a worker's.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from zart_es.core import (
    Event,
    ExecutionEnded,
    ExecutionNotFound,
    ExecutionTimedOut,
    InvalidExecutionId,
    TimerFired,
    TimerNotDue,
    timeout_of,
)
from zart_es.engine._aio import tick_forever
from zart_es.store import Keys, Store, redis_now_ms

log = structlog.get_logger("zart_es.timers")

FIRE_BATCH = 200


class TimerPoller:
    """Sleeps until the earliest timer of any partition is due (or ``poll_interval``)."""

    def __init__(self, store: Store, keys: Keys, *, poll_interval: float = 0.5) -> None:
        self._store = store
        self._keys = keys
        self._poll = poll_interval
        self._wake = asyncio.Event()
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
        keys = self._keys
        now_ms = await redis_now_ms(self._store.redis)
        pipe = self._store.redis.pipeline(transaction=False)
        for p in range(keys.partitions):
            pipe.zrange(keys.timers(p), 0, 0, withscores=True)
        replies: list[Any] = await pipe.execute()
        next_due: float | None = None
        for p, earliest in enumerate(replies):
            if not earliest:
                continue
            due = earliest[0][1]
            if due <= now_ms:
                due = await self._fire_due(p, now_ms)
            if due is not None and (next_due is None or due < next_due):
                next_due = due
        if next_due is None:
            return self._poll
        return float(max(0.001, min(self._poll, (next_due - now_ms) / 1000)))

    async def _fire_due(self, partition: int, now_ms: int) -> float | None:
        key = self._keys.timers(partition)
        while True:
            members: list[bytes] = await self._store.redis.zrangebyscore(
                key, "-inf", now_ms, start=0, num=FIRE_BATCH
            )
            await asyncio.gather(*(self._fire(partition, m.decode()) for m in members))
            if len(members) < FIRE_BATCH:
                break
        nxt: list[tuple[bytes, float]] = await self._store.redis.zrange(
            key, 0, 0, withscores=True
        )
        return float(nxt[0][1]) if nxt else None

    async def _fire(self, partition: int, member: str) -> None:
        try:
            execution_id, timer = self._keys.parse_timer_member(member)
            timeout_ms = timeout_of(timer)
        except (ValueError, InvalidExecutionId) as exc:
            await self._set_aside(partition, member, str(exc))
            return
        if self._keys.partition_of(execution_id) != partition:
            # firing it would consume it from its execution's partition, not this one: it
            # would stay due here and be polled again every millisecond
            await self._set_aside(partition, member, "its execution belongs to partition "
                                  f"{self._keys.partition_of(execution_id)}")
            return
        # a deadline ends the execution right here, even while a step of it is in flight
        # (that step's result then finds the log closed and is not recorded)
        event: Event = (TimerFired(timer=timer) if timeout_ms is None
                        else ExecutionTimedOut(timeout_ms=timeout_ms))
        try:
            # a work message either way: after a deadline, the next run finds the log
            # closed and reports to a parent execution, if there is one
            await self._store.append(execution_id, -1, event, enqueue=True, consume_timer=member)
        except (TimerNotDue, ExecutionEnded):
            return
        except ExecutionNotFound:
            await self._store.redis.zrem(self._keys.timers(partition), member)
            return
        self.fired += 1
        log.debug("timer fired", execution_id=execution_id, timer=timer)

    async def _set_aside(self, partition: int, member: str, reason: str) -> None:
        """Move a member zart-es cannot fire from the wheel to the partition's
        ``timers:bad`` set (same score), so polling goes on; logged once, kept for an
        operator to look at."""
        key = self._keys.timers(partition)
        due = await self._store.redis.zscore(key, member)
        pipe = self._store.redis.pipeline(transaction=True)
        pipe.zadd(self._keys.bad_timers(partition), {member: due if due is not None else 0})
        pipe.zrem(key, member)
        await pipe.execute()
        self.set_aside += 1
        log.error("timer member cannot be fired; moved aside", member=member, reason=reason,
                  partition=partition, moved_to=self._keys.bad_timers(partition))
