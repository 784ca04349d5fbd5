"""Bounded Redis: bytes per retained step, a retention-0 soak, and the archive's size.

1. **Redis bytes per retained step** against the payload size: ``MEMORY USAGE`` of the
   log streams of executions of 20 steps minus that of executions of none, per step, for
   step results of 0 B to 10 KB (target: <= 2 x payload + 100 B); and the fixed cost of an
   ended execution (its meta hash, a start and an end event, its index entries).
2. **Soak**: EXECUTIONS executions of 5 steps on one worker with retention 0 and the
   archiver running beside it (a local archive directory), started in waves; Redis
   ``used_memory`` after the first 10% against the end (target: within 20 MB: flat),
   every execution's history then read back from the archive and its hash chain verified,
   and the archiver's throughput against the worker's completion rate.
3. **Archive bytes per event** (Parquet, zstd) against Redis bytes per event.

    python bench/archive.py [--executions 20000]    # the issue's figure: --executions 200000
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import tempfile
import time
from pathlib import Path

from common import private_redis
from redis.asyncio import Redis

from zart_es import Client, Context, Registry, Worker, durable
from zart_es.archive import Archive
from zart_es.core import TERMINAL_STATES
from zart_es.engine import Archiver
from zart_es.store import Deployment, verify_chain

registry = Registry()
STEPS = 20
WAVE = 2_000


@durable("payload", registry=registry, retention="none")
async def payload(ctx: Context, size: int) -> None:
    for i in range(STEPS):
        await ctx.step(f"s-{i}", lambda: "x" * size)


@durable("empty", registry=registry, retention="none")
async def empty(ctx: Context) -> None:
    return None


@durable("five", registry=registry, retention=0)
async def five(ctx: Context, n: int) -> int:
    for i in range(5):
        await ctx.step(f"s-{i}", lambda i=i: n + i)
    return n


async def memory_usage(redis: Redis, key: str) -> int:
    return int(await redis.memory_usage(key, samples=0) or 0)


async def per_step(url: str) -> None:
    redis = Redis.from_url(url)
    async with Client(url) as client, Worker(url, registry=registry, concurrency=200):
        zero = [await client.start("empty") for _ in range(50)]
        for execution_id in zero:
            await client.result(execution_id, timeout=60)
        keys = client.keys
        base = [await memory_usage(redis, keys.log(i)) for i in zero]
        meta = [await memory_usage(redis, keys.meta(i)) for i in zero]
        fixed_stream = sum(base) / len(base)
        fixed_meta = sum(meta) / len(meta)
        print(f"fixed cost of an ended execution: log of 2 events {fixed_stream:.0f} B + "
              f"meta hash {fixed_meta:.0f} B (+ its members in the status indexes)")
        print(f"{'payload':>9} {'Redis B/step':>13} {'target':>8}  ok")
        for size in (0, 100, 1_000, 10_000):
            ids = [await client.start("payload", size) for _ in range(20)]
            for execution_id in ids:
                await client.result(execution_id, timeout=120)
            streams = [await memory_usage(redis, keys.log(i)) for i in ids]
            step = (sum(streams) / len(streams) - fixed_stream) / STEPS
            target = 2 * size + 100
            print(f"{size:>9} {step:>13.0f} {target:>8} {'yes' if step <= target else 'NO'}")
    await redis.aclose()


async def used_memory(redis: Redis) -> int:
    return int((await redis.info("memory"))["used_memory"])


async def running(client: Client) -> int:
    """Executions not ended (never archived, so always counted in Redis)."""
    stats = await client.stats()
    return sum(count for state, count in stats.by_state.items() if state not in TERMINAL_STATES)


async def soak(url: str, executions: int, root: Path) -> float:
    """The retention-0 soak; returns the worker's completion rate (executions/s)."""
    redis = Redis.from_url(url)
    async with Deployment(url) as deployment, Client(url, archive_url=str(root)) as client, \
            Worker(url, registry=registry, concurrency=500):
        archiver = Archiver(deployment, Archive(str(root)), retention_ms=0,
                            retentions=registry.retentions(), owner="bench", poll_interval=0.2)
        archiving = asyncio.create_task(archiver.run())
        started = time.monotonic()
        first: int | None = None
        peak_in_redis = 0
        n = 0
        while n < executions:
            wave = [await client.start("five", n + i) for i in range(min(WAVE, executions - n))]
            while await running(client):  # ended ones may be archived already
                await asyncio.sleep(0.05)
            n += len(wave)
            peak_in_redis = max(peak_in_redis, (await client.stats()).total)
            if first is None and n >= executions // 10:
                first = await used_memory(redis)
                print(f"after {n:,} executions: used_memory {first / 1e6:.1f} MB")
        completed_at = time.monotonic()
        while (await client.stats()).total:
            await asyncio.sleep(0.1)
        drained_at = time.monotonic()
        archiving.cancel()
        await asyncio.gather(archiving, return_exceptions=True)
        end = await used_memory(redis)
        assert first is not None
        print(f"after {executions:,} executions: used_memory {end / 1e6:.1f} MB "
              f"(growth {(end - first) / 1e6:+.1f} MB; target within 20 MB: "
              f"{'yes' if abs(end - first) < 20e6 else 'NO'})")
        rate = executions / (completed_at - started)
        assert archiver.archived == executions
        print(f"worker: {rate:,.0f} executions/s completed; archiver: {archiver.archived:,} "
              f"archived, at most {peak_in_redis:,} ended executions in Redis at a wave's "
              f"end, drained {drained_at - completed_at:.1f} s after the last completed")
    await redis.aclose()
    return rate


async def backlog_capacity(url: str, root: Path, rate: float) -> int:
    """The archiver alone on a backlog: its capacity in executions/s. Returns the backlog."""
    async with Client(url) as client, Worker(url, registry=registry, concurrency=500):
        backlog = [await client.start("five", i) for i in range(5_000)]
        for execution_id in backlog:
            await client.result(execution_id, timeout=300)
    async with Deployment(url) as deployment:
        archiver = Archiver(deployment, Archive(str(root)), retention_ms=0,
                            retentions=registry.retentions(), owner="bench")  # its leases
        t0 = time.monotonic()
        while await archiver.tick() == 0.0 or archiver.archived < len(backlog):
            pass
        capacity = archiver.archived / (time.monotonic() - t0)
        await archiver.aclose()
        print(f"archiver alone on a backlog of {len(backlog):,}: {capacity:,.0f} executions/s "
              f"(>= the worker's {rate:,.0f}/s: {'yes' if capacity >= rate else 'NO'})")
    return len(backlog)


async def read_back(root: Path, total: int) -> None:
    """Every archived execution once, every chain intact; archive bytes per event."""
    archive = Archive(str(root))
    events = await archive.table("events")
    executions_table = await archive.table("executions")
    assert events is not None
    assert executions_table is not None
    counts = collections.Counter(executions_table["execution_id"].to_pylist())
    assert len(counts) == total, "lost"
    assert set(counts.values()) == {1}, "duplicated"
    chains: dict[str, list[dict[bytes, bytes]]] = collections.defaultdict(list)
    for row in sorted(zip(events["execution_id"].to_pylist(), events["seq"].to_pylist(),
                          events["prev_hash"].to_pylist(), events["body"].to_pylist(),
                          strict=True)):
        chains[row[0]].append({b"s": str(row[1]).encode(), b"p": row[2].encode(), b"e": row[3]})
    last = dict(zip(executions_table["execution_id"].to_pylist(),
                    executions_table["last_hash"].to_pylist(), strict=True))
    broken = [i for i, entries in chains.items() if verify_chain(entries, last[i]) is not None]
    print(f"read back from the archive: {len(chains):,} executions, {events.num_rows:,} "
          f"events, {len(broken)} broken chains")
    size = sum(p.stat().st_size for p in root.rglob("*.parquet"))  # noqa: ASYNC240 -- once, at the end
    print(f"archive: {size / events.num_rows:.0f} B per event (Parquet, zstd, both tables)")


async def redis_per_event(url: str) -> None:
    redis = Redis.from_url(url)
    async with Client(url) as client, Worker(url, registry=registry, concurrency=200):
        ids = [await client.start("payload", 0) for _ in range(200)]
        for execution_id in ids:
            await client.result(execution_id, timeout=120)
        keys = client.keys
        total = 0
        for i in ids:
            total += await memory_usage(redis, keys.log(i))
            total += await memory_usage(redis, keys.meta(i))
        print(f"Redis: {total / (len(ids) * (STEPS + 2)):.0f} B per event (log + meta, "
              f"executions of {STEPS} steps with empty results)")
    await redis.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=20_000)
    args = parser.parse_args()
    with private_redis() as server:
        await per_step(server.url)
        await redis_per_event(server.url)
    with private_redis() as server, tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "archive"
        rate = await soak(server.url, args.executions, root)
        backlog = await backlog_capacity(server.url, root, rate)
        await read_back(root, args.executions + backlog)


if __name__ == "__main__":
    asyncio.run(main())
