"""Workflows of the control-plane crash tests (run in worker subprocesses)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from zart_es import Context, SignalTimeout, durable

from .crash import effect


@durable("wait-or-timeout")
async def wait_or_timeout(ctx: Context, seconds: float) -> str:
    await ctx.step("before", lambda: effect("before", 0))
    try:
        value = await ctx.wait_for_signal("approve", timeout=seconds)
    except SignalTimeout:
        return "timed out"
    return f"approved: {value}"


@durable("gather-crash")
async def gather_crash(ctx: Context, n: int) -> list[int]:
    def branch(i: int) -> int:
        effect("branch", i)
        if i == 2:
            marker = Path(os.environ["CRASH_DIR"]) / "gather"
            try:
                marker.touch(exist_ok=False)
            except FileExistsError:
                return i
            os.kill(os.getpid(), signal.SIGKILL)
        return i

    async def run(i: int) -> int:
        return await ctx.step(f"branch-{i}", lambda: branch(i))

    return await ctx.gather(*(run(i) for i in range(n)))
