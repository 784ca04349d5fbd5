"""Resuming must not re-read and re-fold the whole log: a 10,000-step loop with a short
durable sleep every 1,000 steps; time per step over the last 1,000 vs the first 1,000.

The last window starts at the end of the last sleep, so it includes that resume (the
replay of 9,000 recorded steps from the cached fold).

    python bench/resume.py
"""

from __future__ import annotations

import asyncio
import time

import uvloop
from common import ROUNDS, median, private_redis

from zart_es import Client, Context, Registry, Worker, durable

STEPS, EVERY = 10_000, 1_000
registry = Registry()
stamps: dict[int, float] = {}
done = asyncio.Event()


@durable("long-loop", registry=registry)
async def long_loop(ctx: Context) -> int:
    for i in range(STEPS):
        if i and i % EVERY == 0:
            await ctx.sleep("10ms")

        def work(i: int = i) -> int:
            stamps[i] = time.perf_counter()
            return i

        await ctx.step(f"s-{i}", work)
    stamps[STEPS] = time.perf_counter()
    done.set()
    return STEPS


async def one_round(url: str) -> tuple[float, float]:
    stamps.clear()
    done.clear()
    async with Client(url) as client, Worker(url, registry=registry, poll_interval=0.05):
        await client.start("long-loop")
        await done.wait()
    first = (stamps[EVERY] - stamps[0]) / EVERY  # includes the first sleep
    last = (stamps[STEPS] - stamps[STEPS - EVERY]) / EVERY  # includes the last resume
    return first, last


async def main() -> None:
    firsts, lasts = [], []
    with private_redis() as server:
        for r in range(ROUNDS):
            first, last = await one_round(server.url)
            firsts.append(first)
            lasts.append(last)
            print(f"round {r + 1}/{ROUNDS}: first 1,000 {first * 1e6:.0f} us/step, "
                  f"last 1,000 {last * 1e6:.0f} us/step", flush=True)
    ratio = median(lasts) / median(firsts)
    verdict = "meets" if ratio <= 1.5 else "MISSES"
    print(f"resume cost: last/first time per step = {ratio:.2f} (target <= 1.5: {verdict})")


if __name__ == "__main__":
    uvloop.run(main())
