"""Task queue routing: which task queue a workflow's work goes to, and which have workers.

A workflow's code declares its task queue (``@durable(name, task_queue="gpu")``). Workers
run that code, so every worker writes its registry's declarations into the deployment's
routes hash when it starts; a client or the scheduler, which may not import the code,
reads the hash to put a new execution's work on the right stream. Workers also say, on
every heartbeat, which task queues they serve, so ``status`` and ``/metrics`` can tell a
queue that has no worker from one that is merely busy.
"""

from __future__ import annotations

import time

from zart_es.core import DEFAULT_TASK_QUEUE, UNREADABLE, check_task_queue
from zart_es.store._clock import redis_now_ms
from zart_es.store._connection import RedisClient
from zart_es.store._hashes import Hash, Members
from zart_es.store._keys import Keys

ROUTES_TTL_S = 5.0
"""How long a process trusts its copy of the routes hash before reading it again."""
MISS_TTL_S = 1.0
"""How often a start of a workflow with no recorded route reads the hash again."""
WORKER_SEEN_MS = 30_000
"""A worker that has not said it serves a task queue for this long is not counted."""


class Routes:
    """The deployment's routes hash and task queue heartbeats, with a short-lived cache."""

    def __init__(self, redis: RedisClient, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._routes: dict[str, str] = {}
        self._read_at = float("-inf")

    async def announce(self, routes: dict[str, str]) -> None:
        """Record the task queue each workflow's code declares (a worker, at start)."""
        if routes:
            await Hash(self._redis, self._keys.routes()).put_all(routes)
            self._routes.update(routes)

    async def declared(self, workflow: str) -> str | None:
        """The task queue the code of ``workflow`` declares, as its workers recorded it (a
        copy at most ROUTES_TTL_S old); None when no worker with that code has started
        yet (its work then waits on the default queue, and a worker moves it once the
        route is known)."""
        age = time.monotonic() - self._read_at
        if age > ROUTES_TTL_S or (workflow not in self._routes and age > MISS_TTL_S):
            await self.refresh()
        return self._routes.get(workflow)

    async def refresh(self) -> dict[str, str]:
        """Read the routes hash now."""
        raw = await Hash(self._redis, self._keys.routes()).all()
        self._routes = dict(pair for pair in map(_route, raw.items()) if pair is not None)
        self._read_at = time.monotonic()
        return dict(self._routes)

    async def serving(self, consumer: str, task_queues: tuple[str, ...]) -> None:
        """Say that worker ``consumer`` serves ``task_queues`` (every heartbeat), and forget
        workers silent for ten times :data:`WORKER_SEEN_MS`."""
        now_ms = await redis_now_ms(self._redis)
        pipe = self._redis.pipeline(transaction=False)
        pipe.sadd(self._keys.task_queues(), *task_queues)
        for queue in task_queues:
            key = self._keys.task_queue_workers(queue)
            pipe.zadd(key, {consumer: now_ms})
            pipe.zremrangebyscore(key, "-inf", now_ms - 10 * WORKER_SEEN_MS)
        await pipe.execute()

    async def note(self, task_queue: str) -> None:
        """Remember a task queue a starter named (listed with the served and declared)."""
        await Members(self._redis, self._keys.task_queues()).add(task_queue)

    async def leaving(self, consumer: str, task_queues: tuple[str, ...]) -> None:
        """Say that worker ``consumer`` stopped (a clean stop; a killed one ages out)."""
        pipe = self._redis.pipeline(transaction=False)
        for queue in task_queues:
            pipe.zrem(self._keys.task_queue_workers(queue), consumer)
        await pipe.execute()

    async def task_queues(self) -> list[str]:
        """Every task queue a worker served or a workflow declared, sorted."""
        served = {m.decode() async for m in self._redis.sscan_iter(self._keys.task_queues())}
        declared = set((await self.refresh()).values())
        return sorted(served | declared | {DEFAULT_TASK_QUEUE})

    async def workers(self, task_queues: list[str]) -> dict[str, int]:
        """Live workers (heard from within :data:`WORKER_SEEN_MS`) of each task queue."""
        now_ms = await redis_now_ms(self._redis)
        pipe = self._redis.pipeline(transaction=False)
        for queue in task_queues:
            pipe.zcount(self._keys.task_queue_workers(queue), now_ms - WORKER_SEEN_MS, "+inf")
        counts: list[int] = await pipe.execute()
        return dict(zip(task_queues, counts, strict=True))


def _route(pair: tuple[bytes, bytes]) -> tuple[str, str] | None:
    """A stored (workflow, task queue) pair, or None for one zart-es cannot have written
    (not UTF-8, no valid task queue): that workflow then has no known route, as before
    any worker of it started, instead of every start failing."""
    try:
        return pair[0].decode(), check_task_queue(pair[1].decode())
    except UNREADABLE:
        return None
