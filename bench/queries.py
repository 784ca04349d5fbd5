"""Queries, as users run them: a ``zart-es worker`` process answers, a client in this
process asks, a private redis-server (AOF everysec); baselines measured in the same run.

For each log length (1,000 and 10,000 events: the ``long-log`` workflow's steps, then a
wait for a signal), after its first (cold) query, ROUNDS rounds of QUERIES sequential
``client.query(id, "done")`` calls, each round bracketed by QUERIES raw redis-py
``XRANGE`` reads of the whole log (what a query path without the worker's fold would
read at least, before any replay). Reported per length, medians of the rounds:

* latency per query (ms) and its ratio to a whole-log XRANGE (lower is better; target
  at 10,000 events: < 1, i.e. a query costs less than reading the log once);
* worker CPU per answer (psutil, the worker process) and redis-server CPU per answer
  (``INFO cpu``), which hold on any machine.

    python bench/queries.py [--rounds 5] [--queries 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import psutil
import uvloop
from common import median, private_redis
from redis.asyncio import Redis

from zart_es import Client

ROOT = Path(__file__).resolve().parent.parent
LENGTHS = (1_000, 10_000)
TARGET = 1.0


async def _redis_cpu(redis: Redis) -> float:
    info = await redis.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def _worker(url: str, log: Path) -> psutil.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ZART_LOG_LEVEL": "WARNING"}
    return psutil.Popen([sys.executable, "-m", "zart_es", "--redis-url", url, "worker",
                         "--app", "bench.apps", "--no-scheduler"],
                        cwd=ROOT, env=env, stdout=log.open("ab"), stderr=log.open("ab"))


async def _until(predicate: object, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("the bench's execution did not get there")
        await asyncio.sleep(0.05)


async def _one_length(client: Client, redis: Redis, worker: psutil.Popen, length: int, *,
                      rounds: int, queries: int) -> None:
    eid = f"long-{length}"
    await client.start("long-log", length, execution_id=eid)

    async def waiting() -> bool:
        return (await client.status(eid)).status == "waiting"

    await _until(waiting)
    events = (await client.status(eid)).version
    log_key = client.keys.log(eid)
    began = time.perf_counter()
    assert await client.query(eid, "done") == length
    cold_ms = (time.perf_counter() - began) * 1000

    async def xrange_ms() -> float:
        began = time.perf_counter()
        for _ in range(queries):
            await redis.xrange(log_key)
        return (time.perf_counter() - began) * 1000 / queries

    latency, base, worker_cpu, redis_cpu = [], [], [], []
    for _ in range(rounds):
        before = await xrange_ms()
        cpu0, rcpu0 = worker.cpu_times(), await _redis_cpu(redis)
        began = time.perf_counter()
        for _ in range(queries):
            assert await client.query(eid, "done") == length
        latency.append((time.perf_counter() - began) * 1000 / queries)
        cpu1, rcpu1 = worker.cpu_times(), await _redis_cpu(redis)
        worker_cpu.append(((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system))
                          * 1000 / queries)
        redis_cpu.append((rcpu1 - rcpu0) * 1000 / queries)
        base.append((before + await xrange_ms()) / 2)
    ratios = [q / b for q, b in zip(latency, base, strict=True)]
    ratio = median(ratios)
    verdict = "" if length != LENGTHS[-1] else (
        f" (target < {TARGET:g}: {'MET' if ratio < TARGET else 'NOT MET'})")
    print(f"log of {events:,} events:\n"
          f"    cold first query {cold_ms:.1f} ms (reads and folds the whole log)\n"
          f"    query {median(latency):.2f} ms, whole-log XRANGE {median(base):.2f} ms "
          f"(medians); ratio {ratio:.2f}{verdict}\n"
          f"    worker CPU {median(worker_cpu):.2f} ms/answer, redis-server CPU "
          f"{median(redis_cpu) * 1000:.0f} µs/answer\n"
          f"    rounds: query ms {[round(x, 2) for x in latency]}, "
          f"ratios {[round(x, 2) for x in ratios]}", flush=True)
    await client.send_signal(eid, "stop")


async def main(rounds: int, queries: int) -> None:
    with private_redis() as server:
        log = Path(server.data_dir) / "worker.log"
        worker = _worker(server.url, log)
        try:
            async with Client(server.url) as client:
                redis = Redis.from_url(server.url)
                try:
                    for length in LENGTHS:
                        await _one_length(client, redis, worker, length,
                                          rounds=rounds, queries=queries)
                finally:
                    await redis.aclose()
        finally:
            worker.terminate()
            worker.wait(15)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--queries", type=int, default=200)
    options = parser.parse_args()
    uvloop.run(main(options.rounds, options.queries))
