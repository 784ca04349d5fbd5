"""What admission through a queue costs: executions/s of a one-step workflow, plain and
through a queue (no cap, and a cap per tenant), as ratios to the plain run of each round.

Each round submits N executions before the worker starts, then times one in-process
worker until all N completed. A queued execution costs one admission script call, one
``QueueAdmitted`` append, and a release (plus wake-ups when capped).

    python bench/queues.py
"""

from __future__ import annotations

import time

import uvloop
from common import median, private_redis

from zart_es import Client, Context, Registry, Worker, durable, queue

EXECUTIONS = 1000
TENANTS = 4
ROUNDS = 5


def _registry() -> Registry:
    registry = Registry()
    queue("open", registry=registry)
    queue("capped", concurrency=25, registry=registry)

    for name, q in (("plain", None), ("open", "open"), ("capped", "capped")):
        @durable(name, queue=q, registry=registry)
        async def one_step(ctx: Context) -> int:
            return int(await ctx.step("s", lambda: 1))

    return registry


async def one_round(url: str, workflow: str, round_no: int) -> float:
    async with Client(url) as client:
        ids = [await client.start(workflow, execution_id=f"{workflow}-{round_no}-{i}",
                                  queue_key=f"t{i % TENANTS}")
               for i in range(EXECUTIONS)]
        start = time.perf_counter()
        async with Worker(url, registry=_registry(), concurrency=200, poll_interval=0.05,
                          queue_sweep_interval=0.5, run_scheduler=False):
            for eid in ids:
                await client.result(eid, timeout=120)
        return EXECUTIONS / (time.perf_counter() - start)


async def main() -> None:
    figures: dict[str, list[float]] = {"plain": [], "open": [], "capped": []}
    with private_redis() as server:
        for r in range(ROUNDS):
            for workflow, values in figures.items():
                values.append(await one_round(server.url, workflow, r))
            print(f"round {r + 1}/{ROUNDS}: " + ", ".join(
                f"{w} {v[-1]:,.0f}/s" for w, v in figures.items()), flush=True)
    for workflow in ("open", "capped"):
        ratios = [q / p for q, p in zip(figures[workflow], figures["plain"], strict=True)]
        print(f"{workflow:>6}: {median(figures[workflow]):,.0f} executions/s (median); "
              f"ratio to plain {median(ratios):.2f} (median of rounds' ratios)")
    print(f" plain: {median(figures['plain']):,.0f} executions/s (median)")


if __name__ == "__main__":
    uvloop.run(main())
