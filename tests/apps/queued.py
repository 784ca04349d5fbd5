"""Workflows of a queue with a per-tenant cap, for tests with real worker subprocesses.

Each execution's one step writes ``begin <tenant> <time>`` and ``end <tenant> <time>`` to
``$ZART_DEMO_EFFECTS``, so a test can measure how many ran at once per tenant.
"""

from __future__ import annotations

import asyncio
import os
import signal

import msgspec

from zart_es import Context, durable, queue
from zart_es.engine import _runner as runner

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


# -- a paused execution and its neighbour in a queue of one slot ---------------------------

queue("one-slot", concurrency=1)


@durable("holdable", queue="one-slot")
async def holdable(ctx: Context) -> str:
    await ctx.step("a", lambda: 1)
    await ctx.sleep(0.5)  # a pause rule catches it here
    return await ctx.step("b", lambda: "held done")


@durable("neighbour", queue="one-slot")
async def neighbour(ctx: Context) -> str:
    return await ctx.step("s", lambda: "neighbour done")


def _die_between_pause_and_slot_return() -> None:
    """kill -9 this worker right after it recorded a pause, before it gave the queue slot
    back (the two writes of runner._hold)."""
    original = runner._give_slot_back

    async def give_slot_back(journal: runner.StoreJournal) -> None:
        if journal.state.paused_by is not None:
            os.kill(os.getpid(), signal.SIGKILL)
        await original(journal)

    runner._give_slot_back = give_slot_back  # type: ignore[assignment]


if os.environ.get("QUEUED_DIE_BEFORE_SLOT_RETURN"):
    _die_between_pause_and_slot_return()
