"""Workflows the benchmarks run in worker subprocesses."""

from __future__ import annotations

from zart_es import Context, durable


@durable("nap")
async def nap(ctx: Context) -> str:
    await ctx.step("before", lambda: "ready")
    await ctx.sleep("1h")
    return "rested"
