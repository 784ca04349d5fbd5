"""Workflows the benchmarks run in ``zart-es worker`` subprocesses (``--app bench.apps``)."""

from __future__ import annotations

from zart_es import Context, Registry, durable


@durable("steps20")
async def steps20(ctx: Context, n: int) -> int:
    for i in range(n):
        await ctx.step(f"s-{i}", lambda: 1)
    return n


sleepers = Registry()
"""The memory benches' own registry: one step, then a durable hour's sleep."""


@durable("nap", registry=sleepers)
async def nap(ctx: Context) -> str:
    await ctx.step("before", lambda: "ready")
    await ctx.sleep("1h")
    return "rested"


@durable("long-log")
async def long_log(ctx: Context, n: int) -> int:
    """``n`` steps, then a wait for a signal: a log of about ``n`` events to query."""
    done = 0
    ctx.on_query("done", lambda: done)
    for i in range(n):
        done += await ctx.step(f"s-{i}", lambda: 1)
    await ctx.wait_for_signal("stop")
    return done
