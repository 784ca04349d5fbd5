"""Waiting for executions to end: one XREAD for all of a client's waits.

The append script adds ``x=<id>`` to its partition's ``ended`` stream with every terminal
event. A client reads those streams, all partitions in one blocking ``XREAD`` on one
connection, and wakes whoever waits for an id it sees. So an awaited execution costs the
client O(1) Redis work (a look at its last event before waiting and one after), not a read
per event of its log, and a thousand concurrent ``result()`` calls share one connection
instead of holding one each.

No end is missed: a waiter registers before it looks at the execution's last event, and
the reader's starting point was taken before that look, so an end is either seen by the
look or read from the stream. Waiters look again every few seconds all the same (an
``ended`` stream trimmed while the client was cut off from Redis).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import structlog

from zart_es.store import F_EXEC, Keys, RedisClient, RedisConnectionError, RedisTimeoutError

log = structlog.get_logger("zart_es.client")

BLOCK_MS = 5_000
BATCH = 1_000


class EndWatcher:
    """Wakes waiters when the executions they wait for end.

    On one Redis a single task reads every partition's stream in one XREAD; on a Redis
    Cluster (a command reaches one slot) one task per partition does."""

    def __init__(self, redis: RedisClient, keys: Keys, *, per_partition: bool) -> None:
        self._redis = redis
        self._keys = keys
        self._per_partition = per_partition
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._ready: asyncio.Future[None] | None = None

    async def start(self) -> None:
        """Begin reading, once (the starting point is taken now); raises what kept it
        from starting (Redis unreachable), and the next call tries again."""
        if self._ready is None or (self._ready.done() and self._ready.exception() is not None):
            self._ready = asyncio.get_running_loop().create_future()
            self._tasks = [asyncio.create_task(self._run(self._ready))]
        await asyncio.shield(self._ready)

    @contextlib.asynccontextmanager
    async def watch(self, execution_id: str) -> AsyncIterator[asyncio.Future[None]]:
        """A future done when ``execution_id`` is seen ending, from now on (call
        :meth:`start` first); look at the execution inside the block."""
        ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(execution_id, set()).add(ended)
        try:
            yield ended
        finally:
            waiting = self._waiters.get(execution_id)
            if waiting is not None:
                waiting.discard(ended)
                if not waiting:
                    del self._waiters[execution_id]

    async def aclose(self) -> None:
        """Stop reading."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._ready = None

    async def _run(self, ready: asyncio.Future[None]) -> None:
        try:
            last = await self._snapshot()
        except Exception as exc:
            ready.set_exception(exc)  # start() raises it; the next start() tries again
            return
        groups = [{k: v} for k, v in last.items()] if self._per_partition else [last]
        self._tasks += [asyncio.create_task(self._read(group)) for group in groups[1:]]
        ready.set_result(None)
        await self._read(groups[0])

    async def _read(self, last: dict[Any, Any]) -> None:
        pause = 0.05
        while True:
            try:
                reply: Any = await self._redis.xread(last, count=BATCH, block=BLOCK_MS)
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                log.warning("reading ended executions failed, retrying", error=str(exc))
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)
                continue
            pause = 0.05
            for key, entries in reply or ():
                for _entry_id, fields in entries:
                    # an entry zart-es did not write wakes nobody (no waiter has its id)
                    self._wake(fields.get(F_EXEC, b"").decode(errors="replace"))
                last[key] = entries[-1][0]

    async def _snapshot(self) -> dict[Any, Any]:
        """The newest entry id of every partition's ``ended`` stream (0-0 when empty)."""
        keys = [self._keys.ended(p) for p in range(self._keys.partitions)]
        pipe = self._redis.pipeline(transaction=False)
        for key in keys:
            pipe.xrevrange(key, count=1)
        tails: list[Any] = await pipe.execute()
        return {key.encode(): tail[0][0] if tail else b"0-0" for key, tail in zip(keys, tails,
                                                                                  strict=True)}

    def _wake(self, execution_id: str) -> None:
        for ended in self._waiters.pop(execution_id, ()):
            if not ended.done():
                ended.set_result(None)
