"""Total throughput with 1, 2 and 4 worker processes, as ratios to 1 worker.

Each round starts N executions of 20 steps, then W ``zart-es worker`` subprocesses, and
times until all N are completed (read from Redis, not from any worker).

    python bench/pool.py
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import uvloop
from common import median, private_redis

from zart_es import Client

EXECUTIONS, STEPS = 1000, 20
ROUNDS = 3
ROOT = Path(__file__).resolve().parent.parent


async def one_round(url: str, workers: int, round_no: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ZART_LOG_LEVEL": "WARNING"}
    async with Client(url) as client:
        for i in range(EXECUTIONS):
            await client.start("steps20", STEPS, execution_id=f"pool-{workers}-{round_no}-{i}")
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-m", "zart_es", "worker", "--redis-url", url, "--app",
                "bench.apps", "--concurrency", "500", env=env, cwd=ROOT,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(workers)
        ]
        start = time.perf_counter()
        try:
            while len(await client.list(status="completed", name="steps20",
                                        limit=EXECUTIONS * 10)) < EXECUTIONS * (round_no + 1):
                await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - start
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                await proc.wait()
    return EXECUTIONS * STEPS / elapsed


async def main() -> None:
    figures: dict[int, list[float]] = {}
    for workers in (1, 2, 4):
        with private_redis() as server:
            figures[workers] = []
            for r in range(ROUNDS):
                figures[workers].append(await one_round(server.url, workers, r))
                print(f"{workers} worker(s), round {r + 1}/{ROUNDS}: "
                      f"{figures[workers][-1]:,.0f} steps/s", flush=True)
    base = median(figures[1])
    for workers, values in figures.items():
        print(f"{workers} worker process(es): {median(values):,.0f} steps/s, "
              f"ratio to 1 worker {median(values) / base:.2f}")
    print(f"(this machine has {os.cpu_count()} cores; Redis shares them)")


if __name__ == "__main__":
    uvloop.run(main())
