"""Small asyncio helpers shared by the worker's loops."""

from __future__ import annotations

import asyncio
import time
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


CRASHED_RECENTLY_S = 60.0
"""A loop that crashed less than this long ago makes the worker unhealthy."""


class Supervisor:
    """Keeps a worker's background loops running.

    A loop that raises (a bug, a corrupt record in Redis) is logged with its traceback and
    started again after a backoff (0.1 s, doubling, at most 30 s) instead of dying
    silently while the worker looks alive. A cancel stops it for good. :meth:`healthy` is
    False while any loop crashed within the last minute: the worker then stops touching
    its heartbeat file, so ``zart-es health`` (the liveness probe) reports it and a loop
    that keeps crashing gets its process restarted.
    """

    def __init__(self, log: Any, on_restart: Callable[[str], None] | None = None) -> None:
        self._log = log
        self._on_restart = on_restart
        self.crashed_at: dict[str, float] = {}
        """When each loop last crashed (monotonic seconds)."""

    def start(self, name: str, loop: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        """Run ``loop()`` as a supervised task named ``name``."""
        return asyncio.create_task(self._supervise(name, loop), name=name)

    def report_failure(self, name: str) -> None:
        """Count a failure a loop handled itself but that will not pass by waiting (Redis
        refusing a command to this user): the worker is unhealthy for the next minute."""
        self.crashed_at[name] = time.monotonic()

    def healthy(self) -> bool:
        """True unless some loop crashed within the last CRASHED_RECENTLY_S seconds."""
        now = time.monotonic()
        return all(now - at > CRASHED_RECENTLY_S for at in self.crashed_at.values())

    async def _supervise(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        pause = 0.1
        while True:
            try:
                await loop()
            except Exception:
                self.crashed_at[name] = time.monotonic()
                self._log.exception("background loop crashed; restarting it", loop=name,
                                    restart_in_s=pause)
                if self._on_restart is not None:
                    self._on_restart(name)
            else:
                return
            await asyncio.sleep(pause)
            pause = min(pause * 2, 30.0)
