"""Steps per second: one execution stepping sequentially, and 500 executions at once.

Baselines, measured in the same run against the same Redis: raw redis-py XADD of an
entry of the same size, sequentially on one client, and from 100 concurrent coroutines.

    python bench/steps.py
"""

from __future__ import annotations

import asyncio
import time

import uvloop
from common import PAYLOAD, ROUNDS, private_redis, report
from redis.asyncio import Redis

from zart_es import Client, Context, Registry, Worker, durable

SEQ_STEPS = 3000
EXECUTIONS, STEPS_EACH = 500, 20

registry = Registry()
marks: dict[str, float] = {}
finished: list[float] = []
done = asyncio.Event()


@durable("sequential", registry=registry)
async def sequential(ctx: Context, n: int) -> int:
    marks["start"] = time.perf_counter()
    for i in range(n):
        await ctx.step(f"s-{i}", lambda: 1)
    marks["end"] = time.perf_counter()
    done.set()
    return n


@durable("twenty", registry=registry)
async def twenty(ctx: Context) -> int:
    for i in range(STEPS_EACH):
        await ctx.step(f"s-{i}", lambda: 1)
    finished.append(time.perf_counter())
    if len(finished) == EXECUTIONS:
        done.set()
    return STEPS_EACH


async def raw_sequential(redis: Redis) -> float:
    start = time.perf_counter()
    for _ in range(SEQ_STEPS):
        await redis.xadd("bench:raw", PAYLOAD)  # type: ignore[arg-type]
    return SEQ_STEPS / (time.perf_counter() - start)


async def raw_concurrent(redis: Redis) -> float:
    total = EXECUTIONS * STEPS_EACH

    async def writer(k: int) -> None:
        for _ in range(total // 100):
            await redis.xadd(f"bench:raw:{k}", PAYLOAD)  # type: ignore[arg-type]

    start = time.perf_counter()
    await asyncio.gather(*(writer(k) for k in range(100)))
    return total / (time.perf_counter() - start)


async def ours_sequential(url: str) -> float:
    marks.clear()
    done.clear()
    async with Client(url) as client, Worker(url, registry=registry):
        await client.start("sequential", SEQ_STEPS)
        await done.wait()  # no result() waiter reading every step in this process
    return SEQ_STEPS / (marks["end"] - marks["start"])


async def ours_concurrent(url: str) -> float:
    finished.clear()
    done.clear()
    async with Client(url) as client:
        for _ in range(EXECUTIONS):
            await client.start("twenty")
        async with Worker(url, registry=registry, concurrency=EXECUTIONS):
            start = time.perf_counter()
            await done.wait()
    return EXECUTIONS * STEPS_EACH / (max(finished) - start)


async def main() -> None:
    with private_redis() as server:
        redis = Redis.from_url(server.url)
        base_seq, ours_seq, base_con, ours_con = [], [], [], []
        for r in range(ROUNDS):
            print(f"round {r + 1}/{ROUNDS}", flush=True)
            base_seq.append(await raw_sequential(redis))
            ours_seq.append(await ours_sequential(server.url))
            base_con.append(await raw_concurrent(redis))
            ours_con.append(await ours_concurrent(server.url))
            await redis.flushall()
        await redis.aclose()
    report("sequential steps of one execution vs raw XADD", ours_seq, base_seq, 0.8, "steps/s")
    report(f"{EXECUTIONS} executions x {STEPS_EACH} steps vs XADD from 100 coroutines",
           ours_con, base_con, 0.5, "steps/s")


if __name__ == "__main__":
    uvloop.run(main())
