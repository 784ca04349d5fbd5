"""The "upgradable" workflow after an audit step was inserted into its loop: behind
``ctx.patched`` (or, with UPGRADE_UNPATCHED=1, the same change made carelessly)."""

from __future__ import annotations

import os

from zart_es import Context, durable

from .crash import effect


@durable("upgradable")
async def upgradable(ctx: Context) -> str:
    careless = os.environ.get("UPGRADE_UNPATCHED") == "1"
    audit = True if careless else await ctx.patched("audit-step")
    for i in range(3):
        await ctx.step(f"charge-{i}", lambda i=i: effect("charge", f"{ctx.execution_id}/{i}"))
        if audit:
            await ctx.step(f"audit-{i}", lambda i=i: effect("audit", f"{ctx.execution_id}/{i}"))
        await ctx.sleep("1s", name=f"wait-{i}")
    return "v2" if audit else "v2, old path"
