"""Redis bytes per sleeping execution (target: under 2.5 KB), and where they go.

Starts EXECUTIONS executions of a workflow that does one step and sleeps an hour on a
private redis-server, with a worker in this process, waits until all of them sleep, and
reports ``MEMORY USAGE`` of each key one sleeping execution owns (its log stream, its meta
hash) plus its share of the partitions' shared sets (status indexes, the timer wheel, the
work streams): their sum is the figure held to the target. ``used_memory`` growth per
execution is printed beside it as a cross-check (it moves by a few hundred bytes between
runs with the allocator's state). Redis' bytes, not the
worker's: ``bench/memory.py`` measures the worker.

    python bench/redis_memory.py [--executions 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from apps import sleepers
from common import private_redis
from redis.asyncio import Redis

from zart_es import Client, Worker
from zart_es.store import STREAM_NODE_MAX_BYTES

TARGET_BYTES = 2_500

async def used_memory(redis: Redis) -> int:
    info = await redis.info("memory")
    return int(info["used_memory"])


async def measure(url: str, executions: int) -> dict[str, float]:
    redis = Redis.from_url(url)
    async with Client(url) as client, Worker(url, registry=sleepers, concurrency=500):
        warm = await client.start("nap")  # groups, scripts and indexes exist from here on
        while (await client.status(warm)).status != "sleeping":
            await asyncio.sleep(0.05)
        before = await used_memory(redis)
        ids = [await client.start("nap") for _ in range(executions)]
        deadline = time.monotonic() + 120
        while (await client.stats()).by_state.get("sleeping", 0) < executions + 1:
            if time.monotonic() > deadline:
                raise SystemExit("executions did not all fall asleep within 120 s")
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # acks and index updates settle
        after = await used_memory(redis)
        sample = ids[0]
        keys = client.keys
        per_key = {
            "log stream": await redis.memory_usage(keys.log(sample), samples=0) or 0,
            "meta hash": await redis.memory_usage(keys.meta(sample), samples=0) or 0,
        }
        shared = {
            "status indexes": sum([await redis.memory_usage(f"{keys.index_prefix(q)}{s}",
                                                            samples=0) or 0
                                   for q in range(keys.partitions) for s in ("all", "sleeping")]),
            "timer wheel": sum([await redis.memory_usage(keys.timers(q), samples=0) or 0
                                for q in range(keys.partitions)]),
            "work streams": sum([await redis.memory_usage(keys.work(q), samples=0) or 0
                                 for q in range(keys.partitions)]),
        }
    await redis.aclose()
    out: dict[str, float] = {"used_memory per execution": (after - before) / executions}
    out.update({f"{k} (one execution)": float(v) for k, v in per_key.items()})
    out.update({f"{k} (share per execution)": v / (executions + 1) for k, v in shared.items()})
    return out


async def _configure(url: str, node_bytes: int) -> None:
    async with Redis.from_url(url) as redis:
        await redis.config_set("stream-node-max-bytes", node_bytes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=5_000)
    parser.add_argument("--stream-node-max-bytes", type=int, action="append",
                        help="redis-server setting to measure with (repeatable; default: "
                             "Redis' own 4096, then zart-es' recommended 1024)")
    args = parser.parse_args()
    for node_bytes in args.stream_node_max_bytes or [4096, STREAM_NODE_MAX_BYTES]:
        with private_redis() as server:
            asyncio.run(_configure(server.url, node_bytes))
            figures = asyncio.run(measure(server.url, args.executions))
        print(f"-- stream-node-max-bytes {node_bytes}, {args.executions} executions")
        for name, value in figures.items():
            print(f"{name:<40} {value:>9.0f} B")
        total = sum(v for k, v in figures.items() if k != "used_memory per execution")
        print(f"{'keys owned and shared, per execution':<40} {total:>9.0f} B")
        verdict = "meets" if total <= TARGET_BYTES else "misses"
        print(f"target: <= {TARGET_BYTES} B per sleeping execution: {verdict} ({total:.0f} B)")


if __name__ == "__main__":
    main()
