"""What a worker keeps in memory for executions it is not running: folds only of those
due back soon or with long logs, a connection pool that does not grow with a burst, and
about ``concurrency`` executions taken on at once (give or take a share of it per
partition's reader), not up to 100 more per partition."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from redis.asyncio import Redis

from zart_es import Client, Context, Registry, Worker, durable
from zart_es.engine._driving import CACHE_MIN_EVENTS
from zart_es.engine._intake import POOLED_CALLS

from .helpers import wait_for

pytestmark = pytest.mark.redis


async def _sleeping(client: Client, ids: list[str]) -> bool:
    return all([(await client.status(i)).status == "sleeping" for i in ids])


async def test_only_folds_worth_keeping_are_cached(env: tuple[Client, Registry],
                                                   worker: Worker) -> None:
    client, registry = env

    @durable("naps", registry=registry)
    async def naps(ctx: Context, plan: dict[str, Any]) -> str:
        for i in range(plan["steps"]):
            await ctx.step(f"s-{i}", lambda: "done")
        await ctx.sleep(plan["sleep"])
        return "rested"

    long_sleep = await client.start("naps", {"steps": 1, "sleep": "1h"})
    short_sleep = await client.start("naps", {"steps": 1, "sleep": "30s"})
    long_log = await client.start("naps", {"steps": CACHE_MIN_EVENTS, "sleep": "1h"})
    await wait_for(lambda: _sleeping(client, [long_sleep, short_sleep, long_log]))
    cached = set(worker.driver.cache)
    assert long_sleep not in cached  # two events: as cheap to read again as to catch up
    assert {short_sleep, long_log} <= cached

    quick = await client.start("naps", {"steps": 2, "sleep": "50ms"})  # re-read, not cached
    assert await client.result(quick, timeout=10) == "rested"


async def test_a_burst_grows_neither_the_pool_nor_the_runs_past_their_bounds(
    redis_url: str, registry: Registry
) -> None:
    """400 executions on a worker with concurrency 40: before, up to 100 per partition's
    reader were taken on at once and the pool grew to one connection per run."""

    @durable("burst", registry=registry)
    async def burst(ctx: Context) -> None:
        await ctx.step("one", lambda: 1)
        await ctx.sleep("1h")

    concurrency, executions = 40, 400
    peak = 0
    async with Client(redis_url) as client:
        ids = [await client.start("burst", None, execution_id=f"burst-{i}")
               for i in range(executions)]
        async with Worker(redis_url, registry=registry, concurrency=concurrency,
                          lease_timeout=5, poll_interval=0.05) as worker:

            async def watch() -> None:
                nonlocal peak
                while True:
                    peak = max(peak, len(worker.intake.in_flight))
                    await asyncio.sleep(0.001)

            watcher = asyncio.create_task(watch())
            try:
                await wait_for(lambda: _sleeping(client, ids), timeout=60, interval=0.2)
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            assert isinstance(worker.redis, Redis)
            pool: Any = worker.redis.connection_pool
            size = len(pool._available_connections) + len(pool._in_use_connections)
            partitions = worker.keys.partitions
    # the readers (one blocked per partition), the executions' calls, a few loops'
    assert size <= partitions + POOLED_CALLS + 8, size
    # a reader reads only while there is room, and asks for its share of it (at least
    # one message): each of the partitions' readers may overshoot by that much
    assert peak < concurrency + partitions * max(1, concurrency // partitions), peak
