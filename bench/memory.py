"""A worker holding 10,000 sleeping executions: its RSS growth over idle (< 100 MB).

The worker is a real subprocess (``zart-es worker``); sleeping executions live in Redis,
only a bounded cache of folded states stays in worker memory.

    python bench/memory.py
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import uvloop
from common import private_redis

from zart_es import Client

EXECUTIONS = 10_000
ROOT = Path(__file__).resolve().parent.parent


async def main() -> None:
    with private_redis() as server:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "ZART_LOG_LEVEL": "WARNING"}
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "zart_es", "worker", "--redis-url", server.url,
            "--app", "bench.apps", "--concurrency", "500",
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            proc = psutil.Process(worker.pid)
            await asyncio.sleep(2.0)
            idle = proc.memory_info().rss
            async with Client(server.url) as client:
                for i in range(EXECUTIONS):
                    await client.start("nap", None, execution_id=f"nap-{i}")
                started = time.monotonic()
                while True:
                    sleeping = len(await client.list(status="sleeping", limit=EXECUTIONS))
                    print(f"\r{sleeping:,}/{EXECUTIONS:,} sleeping", end="", flush=True)
                    if sleeping == EXECUTIONS or time.monotonic() - started > 120:
                        break
                    await asyncio.sleep(1.0)
            print()
            await asyncio.sleep(1.0)
            held = proc.memory_info().rss
        finally:
            worker.terminate()
            await worker.wait()
    growth = (held - idle) / 2**20
    verdict = "meets" if growth < 100 and sleeping == EXECUTIONS else "MISSES"
    print(f"worker RSS idle {idle / 2**20:.1f} MB, with {sleeping:,} sleeping executions "
          f"{held / 2**20:.1f} MB: growth {growth:.1f} MB (target < 100 MB: {verdict})")


if __name__ == "__main__":
    uvloop.run(main())
