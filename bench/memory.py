"""Worker memory with 10,000 sleeping executions: RSS growth over its idle RSS (< 100 MB).

The worker is a subprocess of this script (``memory.py --worker URL``: a ``Worker`` with
``concurrency=500`` under uvloop), so its RSS is its own. Its idle RSS is read once it has
set up its consumer groups; then EXECUTIONS executions of a workflow that does one step
and sleeps an hour are started, and its RSS is read again once the listing says all of
them are ``sleeping`` (and at every poll before, for the peak). A sleeping execution
lives in Redis; the worker keeps only a bounded LRU of folded states.

    python bench/memory.py
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import psutil
import uvloop
from common import private_redis

from zart_es import Client, Context, Registry, Worker, durable

EXECUTIONS = 10_000
LIMIT_MB = 100.0
SETTLE_S = 2.0
DEADLINE_S = 90.0
MB = 2**20
SELF = str(Path(__file__).resolve())

registry = Registry()


@durable("nap", registry=registry)
async def nap(ctx: Context) -> str:
    await ctx.step("before", lambda: "ready")
    await ctx.sleep("1h")
    return "rested"


async def worker_main(url: str) -> None:
    """The child: run a worker until killed; say "ready" once it reads work."""
    async with Worker(url, registry=registry, concurrency=500):
        await asyncio.sleep(SETTLE_S)  # groups created, readers blocked on XREADGROUP
        print("ready", flush=True)
        await asyncio.Event().wait()


async def start_all(client: Client) -> None:
    """Start EXECUTIONS executions, 50 calls in flight."""
    ids = iter(range(EXECUTIONS))

    async def starter() -> None:
        for i in ids:
            await client.start("nap", None, execution_id=f"nap-{i}")

    await asyncio.gather(*(starter() for _ in range(50)))


async def main() -> int:
    with private_redis() as server:
        print(f"private redis-server at {server.url} (appendfsync everysec)", flush=True)
        child = await asyncio.create_subprocess_exec(
            sys.executable, SELF, "--worker", server.url,
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            if child.stdout is None:
                raise RuntimeError("no pipe to the worker")
            line = await asyncio.wait_for(child.stdout.readline(), 30)
            if line.strip() != b"ready":
                print(f"worker did not start (said {line!r})")
                return 1
            proc = psutil.Process(child.pid)
            idle = proc.memory_info().rss
            print(f"worker pid {child.pid} idle RSS {idle / MB:.1f} MB; starting "
                  f"{EXECUTIONS:,} executions", flush=True)
            peak = idle
            started = time.monotonic()
            async with Client(server.url) as client:
                await start_all(client)
                print(f"  started in {time.monotonic() - started:.1f} s", flush=True)
                while True:
                    sleeping = len(await client.list(status="sleeping", limit=EXECUTIONS))
                    peak = max(peak, proc.memory_info().rss)
                    print(f"  {sleeping:,}/{EXECUTIONS:,} sleeping, worker RSS "
                          f"{proc.memory_info().rss / MB:.1f} MB", flush=True)
                    if sleeping == EXECUTIONS or time.monotonic() - started > DEADLINE_S:
                        break
                    await asyncio.sleep(1.0)
            await asyncio.sleep(1.0)
            held = proc.memory_info().rss
            peak = max(peak, held)
        finally:
            child.kill()
            await child.wait()
    growth = (held - idle) / MB
    met = growth < LIMIT_MB and sleeping == EXECUTIONS
    print(f"worker RSS: idle {idle / MB:.1f} MB; with {sleeping:,} sleeping executions "
          f"{held / MB:.1f} MB (peak seen {peak / MB:.1f} MB); growth {growth:.1f} MB "
          f"(target < {LIMIT_MB:.0f} MB with all {EXECUTIONS:,} sleeping: "
          f"{'MET' if met else 'NOT MET'})")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        uvloop.run(worker_main(sys.argv[2]))
    else:
        sys.exit(uvloop.run(main()))
