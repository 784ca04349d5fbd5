"""What a worker and a client cost Redis, against a real Redis: concurrent script calls
leave in shared writes round after round; awaited results cost O(1) reads each."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from zart_es import Client, Context, Registry, Worker, durable
from zart_es.store import script_caller
from zart_es.store._autopipe import ScriptPipe

pytestmark = pytest.mark.redis

ECHO = "return ARGV[1]"


async def test_concurrent_callers_keep_sharing_writes_round_after_round(redis: Redis) -> None:
    """Each of 200 callers calls again as soon as its reply is back (a worker's
    executions, step after step). Before, every caller whose reply had just come back took
    the direct path while the wire passed between tasks, and batching collapsed into one
    write per call after the first round."""
    pipe = script_caller(redis, ECHO)
    assert isinstance(pipe, ScriptPipe)
    writes = 0
    send_one, send = pipe._send_one, pipe._send

    async def counted_one(packed: bytes) -> object:
        nonlocal writes
        writes += 1
        return await send_one(packed)

    async def counted(batch: list[tuple[bytes, asyncio.Future[object]]]) -> None:
        nonlocal writes
        writes += 1
        await send(batch)

    pipe._send_one = counted_one  # type: ignore[method-assign]
    pipe._send = counted  # type: ignore[method-assign]

    async def caller(n: int) -> list[object]:
        return [await pipe(["k"], [f"{n}-{i}"]) for i in range(20)]

    try:
        results = await asyncio.gather(*(caller(n) for n in range(200)))
    finally:
        await pipe.aclose()
    assert results[7] == [f"7-{i}".encode() for i in range(20)]
    calls = 200 * 20
    assert writes < calls / 10, f"{writes} writes for {calls} calls"


async def test_awaiting_many_results_costs_o1_reads_each_and_shares_one_connection(
    redis_url: str, redis: Redis
) -> None:
    """Before: result() woke on every event of the execution's log (about one XREAD per
    step) and each waiting call held a connection of its own."""
    registry = Registry()

    @durable("twenty", registry=registry)
    async def twenty(ctx: Context) -> int:
        for i in range(20):
            await ctx.step(f"s{i}", lambda: None)
        return 20

    async with Client(redis_url) as client, Worker(redis_url, registry=registry,
                                                   concurrency=300, poll_interval=0.05):
        await client.result(await client.start("twenty"), timeout=20)  # warm up
        before = await _reads(redis)
        ids = [await client.start("twenty") for _ in range(300)]
        waiting = asyncio.gather(*(client.result(eid, timeout=60) for eid in ids))
        await asyncio.sleep(0.2)
        pool = client.redis.connection_pool  # the client's own (the worker has another)
        connected = len(pool._available_connections) + len(pool._in_use_connections)
        assert await waiting == [20] * 300
        reads = await _reads(redis) - before
    assert reads <= 3 * 300, f"{reads} log/ended reads for 300 awaited executions"
    assert connected <= 12, f"{connected} client connections while 300 results were awaited"


async def _reads(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))
               for name in ("xread", "xrevrange"))
