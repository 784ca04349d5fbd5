"""The durable timer wheel: one sorted set per partition (member ``"<execution id>
<timer>"``, score: the due time in ms on Redis' clock), and ``timers:bad`` beside it for
members that cannot be fired. Timers are added and consumed only by ``append.lua``; this is
what the poller reads, and how it drops or sets aside a member.
"""

from __future__ import annotations

from typing import Any

from zart_es.store._connection import RedisClient
from zart_es.store._keys import Keys

Member = tuple[bytes, float]
"""A wheel member and its score."""


class TimerWheel:
    """The timer wheels of a deployment's partitions."""

    def __init__(self, redis: RedisClient, keys: Keys) -> None:
        self.redis, self.keys = redis, keys

    async def ends(self, *, latest: bool) -> list[tuple[Member | None, Member | None]]:
        """Per partition, in one pipeline: its earliest member and (with ``latest``) its
        latest one (None: the wheel is empty, or the latest was not asked)."""
        keys = self.keys
        pipe = self.redis.pipeline(transaction=False)
        for p in range(keys.partitions):
            pipe.zrange(keys.timers(p), 0, 0, withscores=True)
            if latest:
                pipe.zrange(keys.timers(p), -1, -1, withscores=True)
        replies: list[Any] = await pipe.execute()
        step = 2 if latest else 1
        return [(_one(replies[i]), _one(replies[i + 1]) if latest else None)
                for i in range(0, len(replies), step)]

    async def due(self, partition: int, now_ms: int, limit: int) -> list[Member]:
        """Up to ``limit`` members due by ``now_ms``, earliest first."""
        members: list[Member] = await self.redis.zrangebyscore(
            self.keys.timers(partition), "-inf", now_ms, start=0, num=limit,
            withscores=True)
        return members

    async def beyond(self, partition: int, max_due_ms: int, limit: int) -> list[Member]:
        """Up to ``limit`` members scored past ``max_due_ms`` (no due time at all)."""
        members: list[Member] = await self.redis.zrangebyscore(
            self.keys.timers(partition), f"({max_due_ms}", "+inf", start=0, num=limit,
            withscores=True)
        return members

    async def earliest(self, partition: int) -> float | None:
        """The earliest due time on the partition's wheel (None: it is empty)."""
        first: list[Member] = await self.redis.zrange(
            self.keys.timers(partition), 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    async def drop(self, partition: int, member: bytes) -> None:
        """Take ``member`` off the wheel (its execution is gone)."""
        await self.redis.zrem(self.keys.timers(partition), member)

    async def set_aside(self, partition: int, member: bytes, score: float) -> str:
        """Move ``member`` to the partition's ``timers:bad`` set (same score), in one
        transaction; returns that set's key."""
        bad = self.keys.bad_timers(partition)
        pipe = self.redis.pipeline(transaction=True)
        pipe.zadd(bad, {member: score})
        pipe.zrem(self.keys.timers(partition), member)
        await pipe.execute()
        return bad


def _one(reply: list[Member]) -> Member | None:
    return (reply[0][0], float(reply[0][1])) if reply else None
