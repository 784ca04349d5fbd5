"""Durable steps per second, against raw redis-py XADD on the same Redis in the same run.

* sequential: one execution doing SEQ_STEPS trivial ``await ctx.step(f"s-{i}", fn)`` in a
  loop; steps/s = SEQ_STEPS / (time of the last step's end - time before the first step),
  clocked inside the workflow. Baseline: SEQ_STEPS sequential ``await redis.xadd(...)`` of
  an entry of the same shape and size, through a redis-py asyncio client (hiredis parser,
  its connection pool), as an application would write. Target: ratio >= 0.8.
* concurrent: EXECUTIONS executions x STEPS_EACH steps, all started before one Worker
  (``concurrency=EXECUTIONS``) is entered; steps/s = all steps / (time from entering the
  worker, its start-up included, to the end of the last execution's last step).
  Baseline: the same number of XADDs from 100 concurrent coroutines on one client.
  Target: ratio >= 0.5.

Reference only (no target): the same sequential XADDs sent by hand on one pinned
connection (``send_command``/``read_response``, no pool checkout): the floor of what
redis-py can do per round trip, which the engine's auto-pipelined script calls also use.

    python bench/steps.py
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import uvloop
from common import (
    PAYLOAD,
    ROUNDS,
    median,
    place,
    placements,
    private_redis,
    report_ratio,
    unpin,
)
from redis.asyncio import Redis
from redis.typing import EncodableT

from zart_es import Client, Context, Registry, Worker, durable

SEQ_STEPS = 3000
EXECUTIONS, STEPS_EACH = 500, 20
RAW_WRITERS = 100

registry = Registry()
marks: dict[str, float] = {}
finished: list[float] = []
done = asyncio.Event()


def one() -> int:
    """The trivial step body."""
    return 1


@durable("sequential", registry=registry)
async def sequential(ctx: Context, n: int) -> int:
    marks["start"] = time.perf_counter()
    for i in range(n):
        await ctx.step(f"s-{i}", one)
    marks["end"] = time.perf_counter()
    done.set()
    return n


@durable("twenty", registry=registry)
async def twenty(ctx: Context) -> int:
    for i in range(STEPS_EACH):
        await ctx.step(f"s-{i}", one)
    finished.append(time.perf_counter())
    if len(finished) == EXECUTIONS:
        done.set()
    return STEPS_EACH


# -- baselines ---------------------------------------------------------------------------


async def raw_sequential(redis: Redis, n: int = SEQ_STEPS) -> float:
    """XADD/s, one after the other, through the client (pool checkout each call)."""
    start = time.perf_counter()
    for _ in range(n):
        await redis.xadd("bench:raw", PAYLOAD)
    return n / (time.perf_counter() - start)


async def raw_pinned(redis: Redis, n: int = SEQ_STEPS) -> float:
    """XADD/s, one after the other, hand-sent on one dedicated connection."""
    conn = redis.connection_pool.make_connection()  # type: ignore[no-untyped-call]
    await conn.connect()
    command: list[EncodableT] = ["XADD", "bench:pinned", "*"]
    for field, value in PAYLOAD.items():
        command += [field, value]
    try:
        start = time.perf_counter()
        for _ in range(n):
            await conn.send_command(*command)
            await conn.read_response()
        return n / (time.perf_counter() - start)
    finally:
        await conn.disconnect()


async def raw_concurrent(redis: Redis) -> float:
    """XADD/s of EXECUTIONS * STEPS_EACH entries written by RAW_WRITERS coroutines."""
    total = EXECUTIONS * STEPS_EACH

    async def writer(k: int) -> None:
        for _ in range(total // RAW_WRITERS):
            await redis.xadd(f"bench:raw:{k}", PAYLOAD)

    start = time.perf_counter()
    await asyncio.gather(*(writer(k) for k in range(RAW_WRITERS)))
    return total / (time.perf_counter() - start)


# -- zart-es -----------------------------------------------------------------------------


async def ours_sequential(url: str, n: int = SEQ_STEPS) -> float:
    """Durable steps/s of one execution, clocked inside the workflow."""
    marks.clear()
    done.clear()
    async with Client(url) as client, Worker(url, registry=registry):
        await client.start("sequential", n)
        await done.wait()  # no result() poller competing for the loop in this process
    return n / (marks["end"] - marks["start"])


async def ours_concurrent(url: str) -> float:
    """Durable steps/s of EXECUTIONS executions started beforehand, on one worker."""
    finished.clear()
    done.clear()
    async with Client(url) as client:
        for _ in range(EXECUTIONS):
            await client.start("twenty")
    async with Worker(url, registry=registry, concurrency=EXECUTIONS):
        start = time.perf_counter()
        await done.wait()
    return EXECUTIONS * STEPS_EACH / (max(finished) - start)


async def ours_concurrent_end_to_end(url: str) -> float:
    """Durable steps/s of EXECUTIONS executions started one by one while the worker runs:
    the start calls are inside the clock (the shape DBOS is measured in)."""
    finished.clear()
    done.clear()
    async with Client(url) as client, Worker(url, registry=registry, concurrency=EXECUTIONS):
        await asyncio.sleep(0.3)  # the worker has set up its consumer groups
        start = time.perf_counter()
        for _ in range(EXECUTIONS):
            await client.start("twenty")
        await done.wait()
    return EXECUTIONS * STEPS_EACH / (max(finished) - start)


async def bracketed(
    ours: Callable[[], Awaitable[float]], base: Callable[[], Awaitable[float]]
) -> tuple[float, float]:
    """(ours, baseline) of one round: the baseline is the mean of a run just before and
    one just after ours, so a change of the machine's load hits both sides."""
    before = await base()
    mine = await ours()
    after = await base()
    return mine, (before + after) / 2


class Figures:
    """The rounds of one CPU placement."""

    def __init__(self) -> None:
        self.base_seq: list[float] = []
        self.pinned: list[float] = []
        self.ours_seq: list[float] = []
        self.base_con: list[float] = []
        self.ours_con: list[float] = []


async def measure(url: str, redis: Redis, figures: Figures, label: str) -> None:
    """ROUNDS rounds of both shapes, each bracketed by its baseline."""
    for r in range(ROUNDS):
        mine, base = await bracketed(lambda: ours_sequential(url), lambda: raw_sequential(redis))
        figures.ours_seq.append(mine)
        figures.base_seq.append(base)
        figures.pinned.append(await raw_pinned(redis))
        mine, base = await bracketed(lambda: ours_concurrent(url), lambda: raw_concurrent(redis))
        figures.ours_con.append(mine)
        figures.base_con.append(base)
        print(f"  [{label}] round {r + 1}/{ROUNDS}: sequential {mine_seq(figures)}; "
              f"concurrent {figures.ours_con[-1]:,.0f} vs {figures.base_con[-1]:,.0f} steps/s",
              flush=True)
        await redis.flushall()


def mine_seq(figures: Figures) -> str:
    return f"{figures.ours_seq[-1]:,.0f} vs {figures.base_seq[-1]:,.0f} steps/s"


async def main() -> None:
    results: dict[str, Figures] = {}
    with private_redis() as server:
        url = server.url
        print(f"private redis-server at {url} (appendfsync everysec); {ROUNDS} rounds per "
              "CPU placement", flush=True)
        redis = Redis.from_url(url)
        try:
            await raw_sequential(redis, 500)  # warm-up: connections, script cache, imports
            await ours_sequential(url, 500)
            for label, (mine, theirs) in placements().items():
                place(server, mine, theirs)
                results[label] = Figures()
                await measure(url, redis, results[label], label)
        finally:
            unpin(server)
            await redis.aclose()
    for label, f in results.items():
        print(f"== {label} (this process and redis-server)")
        report_ratio(f"sequential: {SEQ_STEPS} steps of one execution vs sequential XADD",
                     f.ours_seq, f.base_seq, 0.8, "steps/s")
        report_ratio(f"concurrent: {EXECUTIONS} executions x {STEPS_EACH} steps, one worker, "
                     f"vs XADD from {RAW_WRITERS} coroutines", f.ours_con, f.base_con, 0.5,
                     "steps/s")
        print(f"reference: XADD hand-sent on one pinned connection {median(f.pinned):,.0f}/s; "
              f"sequential steps / that = {median(f.ours_seq) / median(f.pinned):.2f} "
              "(no target)")


if __name__ == "__main__":
    uvloop.run(main())
