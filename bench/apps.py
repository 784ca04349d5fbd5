"""Workflows the benchmarks run in ``zart-es worker`` subprocesses (``--app bench.apps``)."""

from __future__ import annotations

from zart_es import Context, durable


@durable("steps20")
async def steps20(ctx: Context, n: int) -> int:
    for i in range(n):
        await ctx.step(f"s-{i}", lambda: 1)
    return n
