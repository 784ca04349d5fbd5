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
