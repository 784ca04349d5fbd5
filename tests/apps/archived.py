"""Workflows archived as soon as they end (retention 0): the archive's crash tests."""

from __future__ import annotations

from zart_es import Context, durable


@durable("archived-steps", retention=0)
async def archived_steps(ctx: Context, n: int) -> int:
    total = 0
    for i in range(3):
        total += await ctx.step(f"add-{i}", lambda i=i: n + i)
    return total
