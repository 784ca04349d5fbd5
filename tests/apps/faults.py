"""Workflows whose step code misbehaves, run by real worker subprocesses."""

from __future__ import annotations

import asyncio
import sys

from zart_es import Context, StepFailedError, durable
from zart_es.core import FailureInfo

from .crash import effect


def _leave(execution_id: str) -> None:
    effect("exit", execution_id)
    sys.exit(7)


@durable("exits-in-step")
async def exits_in_step(ctx: Context) -> str:
    """A step calls sys.exit(7): its failure is recorded, the worker lives on."""
    try:
        await ctx.step("leave", lambda: _leave(ctx.execution_id))
    except StepFailedError as exc:
        return f"{exc.error_type}: {exc.message}"
    return "unreachable"


@durable("hangs-once")
async def hangs_once(ctx: Context) -> str:
    """The first attempt hangs past its 200 ms timeout; the retry answers."""
    return str(await ctx.step_with_retry("call", _hang_first, timeout="200ms", retries=2,
                                         delay="100ms", jitter=False))


_HUNG: set[str] = set()


async def _hang_first() -> str:
    """Hangs the first time this process calls it, answers after."""
    if "first" not in _HUNG:
        _HUNG.add("first")
        await asyncio.sleep(30)
    return "second attempt"


async def _handle(ctx: Context, failure: FailureInfo) -> str:
    await ctx.step("note", lambda: effect("handled", failure.execution_id))
    return failure.status


@durable("deadline-handled", timeout="300ms", on_failure=_handle)
async def deadline_handled(ctx: Context) -> None:
    """Sleeps past its deadline: its failure handler runs."""
    await ctx.sleep("1h")
