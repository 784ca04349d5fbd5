"""Workflows whose step code misbehaves, run by real worker subprocesses."""

from __future__ import annotations

import sys

from zart_es import Context, StepFailedError, durable

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
