"""Workflows of a queue with a per-tenant cap, for tests with real worker subprocesses.

Each execution's one step writes ``begin <tenant> <time>`` and ``end <tenant> <time>`` to
``$ZART_DEMO_EFFECTS``, so a test can measure how many ran at once per tenant.
"""

from __future__ import annotations

import asyncio

import msgspec

from zart_es import Context, durable, queue

from .crash import effect

queue("tenants", concurrency=2)


class Job(msgspec.Struct, frozen=True):
    tenant: str
    seconds: float = 0.02


@durable("tenant-job", queue="tenants")
async def tenant_job(ctx: Context, job: Job) -> str:
    async def work() -> str:
        effect("begin", job.tenant)
        await asyncio.sleep(job.seconds)
        effect("end", job.tenant)
        return job.tenant

    return await ctx.step("work", work)
