"""Small asyncio helpers shared by the worker's loops."""

from __future__ import annotations

import asyncio


def reraise_if_cancelling(exc: BaseException) -> None:
    """Raise CancelledError if the current task was asked to stop.

    redis-py may turn a cancellation that interrupts a read into a connection error; a
    loop that retries on connection errors must not swallow its own cancellation.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from exc
