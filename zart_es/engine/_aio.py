"""Small asyncio helpers shared by the worker's loops."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError


def reraise_if_cancelling(exc: BaseException) -> None:
    """Raise CancelledError if the current task was asked to stop.

    redis-py may turn a cancellation that interrupts a read into a connection error; a
    loop that retries on connection errors must not swallow its own cancellation.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from exc


async def tick_forever(
    tick: Callable[[], Awaitable[float]], wake: asyncio.Event, retry_after: float,
    log: Any, what: str,
) -> None:
    """Call ``tick`` forever (until cancelled); it returns the seconds to sleep before the
    next call, which ``wake.set()`` cuts short. Redis errors are logged and retried after
    ``retry_after`` seconds."""
    while True:
        try:
            wait = await tick()
        except (RedisError, OSError) as exc:
            reraise_if_cancelling(exc)
            log.warning(f"{what} failed, retrying", error=str(exc))
            wait = retry_after
        wake.clear()
        # a plain Event wait plus call_later: unlike wait_for/timeout on 3.11, it never
        # loses a cancellation that arrives together with the deadline
        alarm = asyncio.get_running_loop().call_later(wait, wake.set)
        try:
            await wake.wait()
        finally:
            alarm.cancel()
