"""Workflows of the cancel-cascade crash test, run in real worker subprocesses.

A parent starts ``n`` children that sleep an hour; each child's compensation writes a
``compensated <child id>`` effect. ``ZART_TEST_KILL_CASCADE=N`` makes the worker SIGKILL
itself right after the N-th cancel it delivers to a child (mid-cascade).
"""

from __future__ import annotations

import os
import signal
from typing import Any

from zart_es import Cancelled, Context, durable
from zart_es.core import CancelRequested
from zart_es.store import Store

from .crash import effect

_left = int(os.environ.get("ZART_TEST_KILL_CASCADE", "0"))
_append = Store.append


async def _append_then_maybe_die(self: Store, *args: Any, **kwargs: Any) -> Any:
    global _left
    result = await _append(self, *args, **kwargs)
    event = args[2] if len(args) > 2 else kwargs.get("event")
    if isinstance(event, CancelRequested) and event.by.startswith("parent:") and _left:
        _left -= 1
        if _left == 0:
            os.kill(os.getpid(), signal.SIGKILL)
    return result


Store.append = _append_then_maybe_die  # type: ignore[method-assign]


@durable("cascade-child")
async def cascade_child(ctx: Context, n: int) -> int:
    try:
        await ctx.sleep("1h")
    except Cancelled:
        await ctx.step("compensate", lambda: effect("compensated", ctx.execution_id))
        raise
    return n


@durable("cascade-parent")
async def cascade_parent(ctx: Context, n: int) -> None:
    for i in range(n):
        await ctx.start_child("cascade-child", i)
    await ctx.wait_for_signal("never")
