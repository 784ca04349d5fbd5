"""Workflows the crash tests run in real worker subprocesses.

Side effects go to ``$ZART_DEMO_EFFECTS`` as ``kind key unix-time`` lines. A crash point
``item:mode`` in ``$CRASH_POINTS`` makes the worker SIGKILL itself the first time it gets
there: ``before`` = at the start of the step function (the previous step is recorded,
this one has done nothing: between steps), ``after`` = after the side effect, before the
result is recorded (inside a step). Markers in ``$CRASH_DIR`` make each point fire once.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import msgspec

from zart_es import Context, durable


class LoopData(msgspec.Struct, frozen=True):
    n: int
    step_seconds: float = 0.0


def effect(kind: str, key: object) -> None:
    path = os.environ["ZART_DEMO_EFFECTS"]
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{kind} {key} {time.time():.6f}\n".encode())
    finally:
        os.close(fd)


def maybe_crash(item: int, mode: str) -> None:
    points = os.environ.get("CRASH_POINTS", "")
    if f"{item}:{mode}" not in points.split(","):
        return
    marker = Path(os.environ["CRASH_DIR"]) / f"{item}-{mode}"
    try:
        marker.touch(exist_ok=False)
    except FileExistsError:
        return
    os.kill(os.getpid(), signal.SIGKILL)


@durable("crash-loop")
async def crash_loop(ctx: Context, data: LoopData) -> int:
    total = 0
    for i in range(data.n):
        def work(i: int = i) -> int:
            maybe_crash(i, "before")
            if data.step_seconds:
                time.sleep(data.step_seconds)
            effect("done", i)
            maybe_crash(i, "after")
            return i
        total += await ctx.step(f"item-{i}", work)
    return total


class SleepData(msgspec.Struct, frozen=True):
    seconds: float


@durable("sleeper")
async def sleeper(ctx: Context, data: SleepData) -> str:
    await ctx.step("before", lambda: effect("before", 0))
    await ctx.sleep(data.seconds)
    await ctx.step("after", lambda: effect("after", 0))
    return "woke"


class RetryData(msgspec.Struct, frozen=True):
    failures: int
    delay: str
    backoff: str = "exponential"


@durable("retrier")
async def retrier(ctx: Context, data: RetryData) -> int:
    def attempt() -> int:
        path = Path(os.environ["ZART_DEMO_EFFECTS"])
        tries = sum(1 for line in path.read_text().splitlines() if line.startswith("attempt "))
        effect("attempt", tries + 1)
        if tries < data.failures:
            raise ConnectionError(f"attempt {tries + 1} failed")
        return tries + 1

    return await ctx.step_with_retry("flaky", attempt, retries=10, backoff=data.backoff,
                                     delay=data.delay, max_delay="10s")


@durable("pooled")
async def pooled(ctx: Context, n: int) -> int:
    total = 0
    for i in range(n):
        total += await ctx.step(f"p-{i}", lambda i=i: i)
    return total
