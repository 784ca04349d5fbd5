"""The "upgradable" workflow as first deployed: charge, then wait, three times."""

from __future__ import annotations

from zart_es import Context, durable

from .crash import effect


@durable("upgradable")
async def upgradable(ctx: Context) -> str:
    for i in range(3):
        await ctx.step(f"charge-{i}", lambda i=i: effect("charge", f"{ctx.execution_id}/{i}"))
        await ctx.sleep("1s", name=f"wait-{i}")
    return "v1"
