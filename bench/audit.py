"""What the keyed chain costs, and how long a seal takes.

* chain: ``steps.py``'s sequential shape (one execution, SEQ_N trivial steps, worker
  and client in this process) and its concurrent shape (500 executions x 20 steps on one
  worker), alternately with the chain unkeyed (no ``ZART_AUDIT_KEY``: SHA-1 in Redis) and
  keyed (HMAC-SHA256 computed by the worker), ROUNDS rounds each, in the same run on the
  same private Redis. Reported: steps/s keyed ÷ unkeyed (target >= 0.95 sequential), and
  CPU per step of this process (worker + client) and of redis-server (psutil), keyed ÷
  unkeyed (target <= 1.03 for the worker).
* seal: SEAL_EXECUTIONS executions written straight into Redis in the keyed format (a
  three-event log each, by the store's own append path in pipelines), then
  ``zart-es audit seal``'s code (``zart_es.audit.seal``) into a local archive directory:
  wall time (target < 30 s) and redis-server CPU of the seal.

    python bench/audit.py [--rounds N] [--seal-executions N] [--skip-seal]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time

import psutil
import uvloop
from common import ROUNDS, median, private_redis
from redis.asyncio import Redis
from steps import ours_concurrent, ours_sequential

from zart_es.core import ExecutionCompleted, ExecutionStarted, StepCompleted
from zart_es.store import Deployment

KEY = "bench:" + "42" * 32
SEAL_EXECUTIONS = 100_000
SEQ_N = 10_000
"""Steps of the sequential shape (more than steps.py's 3,000: CPU time is read in ticks)."""


def _keyed(on: bool) -> None:
    if on:
        os.environ["ZART_AUDIT_KEY"] = KEY
    else:
        os.environ.pop("ZART_AUDIT_KEY", None)


async def one_round(url: str, server: psutil.Process, shape: str,
                    keyed: bool) -> tuple[float, float, float]:
    """(steps/s, CPU µs per step of this process, of redis-server) of one run."""
    _keyed(keyed)
    me = psutil.Process()
    mine0, redis0 = sum(me.cpu_times()[:2]), sum(server.cpu_times()[:2])
    if shape == "sequential":
        rate, steps = await ours_sequential(url, SEQ_N), SEQ_N
    else:
        rate, steps = await ours_concurrent(url), 500 * 20
    mine = (sum(me.cpu_times()[:2]) - mine0) / steps * 1e6
    redis = (sum(server.cpu_times()[:2]) - redis0) / steps * 1e6
    return rate, mine, redis


async def chain(url: str, server: psutil.Process, rounds: int) -> None:
    redis = Redis.from_url(url)
    for shape in ("sequential", "concurrent"):
        figures: dict[bool, list[tuple[float, float, float]]] = {False: [], True: []}
        for r in range(rounds):
            for keyed in ((False, True) if r % 2 == 0 else (True, False)):
                figures[keyed].append(await one_round(url, server, shape, keyed))
                await redis.flushall()
            print(f"  [{shape}] round {r + 1}/{rounds}: unkeyed {figures[False][-1][0]:,.0f}, "
                  f"keyed {figures[True][-1][0]:,.0f} steps/s", flush=True)
        ratios = [k[0] / u[0] for k, u in zip(figures[True], figures[False], strict=True)]
        cpu = [k[1] / u[1] for k, u in zip(figures[True], figures[False], strict=True)]
        rcpu = [k[2] / u[2] for k, u in zip(figures[True], figures[False], strict=True)]
        print(f"== chain, {shape}: keyed {median([f[0] for f in figures[True]]):,.0f} vs "
              f"unkeyed {median([f[0] for f in figures[False]]):,.0f} steps/s; "
              f"ratio {median(ratios):.3f} (target >= 0.95)\n"
              f"   worker+client CPU per step: keyed "
              f"{median([f[1] for f in figures[True]]):.1f} µs, unkeyed "
              f"{median([f[1] for f in figures[False]]):.1f} µs; ratio {median(cpu):.3f} "
              f"(target <= 1.03)\n"
              f"   redis-server CPU per step: keyed {median([f[2] for f in figures[True]]):.1f}"
              f" µs, unkeyed {median([f[2] for f in figures[False]]):.1f} µs; ratio "
              f"{median(rcpu):.3f}\n   rounds' ratios: steps/s "
              f"{[round(x, 3) for x in ratios]}, CPU {[round(x, 3) for x in cpu]}",
              flush=True)
    await redis.aclose()


async def seal(url: str, server: psutil.Process, executions: int) -> None:
    from zart_es.audit import seal as run_seal

    _keyed(True)
    async with Deployment(url) as deployment:
        store = deployment.store
        started = time.perf_counter()
        batch = 500
        for first in range(0, executions, batch):
            ids = [f"seal-{i}" for i in range(first, min(first + batch, executions))]
            await asyncio.gather(*(store.create(
                ExecutionStarted(execution_id=i, workflow="w", input=b"\x90"), i, "w")
                for i in ids))
            await asyncio.gather(*(store.append(i, 1, StepCompleted(step="s", result=b"\x01"))
                                   for i in ids))
            await asyncio.gather(*(store.append(i, 2, ExecutionCompleted(result=b"\x01"))
                                   for i in ids))
        print(f"  wrote {executions:,} keyed executions in "
              f"{time.perf_counter() - started:.1f} s", flush=True)
        with tempfile.TemporaryDirectory(prefix="zart-seal-") as archive:
            redis0 = sum(server.cpu_times()[:2])
            started = time.perf_counter()
            done = await run_seal(deployment, archive)
            took = time.perf_counter() - started
            redis_cpu = sum(server.cpu_times()[:2]) - redis0
    print(f"== seal of {executions:,} executions: {took:.2f} s wall (target < 30 s), "
          f"redis-server CPU {redis_cpu:.2f} s; checkpoint {done.seq} with "
          f"{done.heads:,} heads", flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--seal-executions", type=int, default=SEAL_EXECUTIONS)
    parser.add_argument("--skip-seal", action="store_true")
    parser.add_argument("--skip-chain", action="store_true")
    args = parser.parse_args()
    with private_redis() as server:
        assert server.process is not None
        proc = psutil.Process(server.process.pid)
        print(f"private redis-server at {server.url}", flush=True)
        await ours_sequential(server.url, 500)  # warm-up
        if not args.skip_chain:
            await chain(server.url, proc, args.rounds)
        if not args.skip_seal:
            await Redis.from_url(server.url).flushall()
            await seal(server.url, proc, args.seal_executions)


if __name__ == "__main__":
    uvloop.run(main())
