"""Small asyncio helpers shared by the worker's loops."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

from zart_es.store import RedisError


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
"""A loop that crashed less than this long ago is reported by ``zart-es health``."""


@dataclass(frozen=True, slots=True)
class LoopFinding:
    """A background loop that crashed recently: which, how often, and the last error."""

    loop: str
    crashes: int
    """Crashes within the last :data:`CRASHED_RECENTLY_S` seconds."""
    last_error: str
    last_crash_at: float
    """Wall-clock seconds (``time.time()``) of the last crash."""

    def describe(self) -> str:
        """One line for a probe's output."""
        return (f"background loop {self.loop!r} crashed {self.crashes} time"
                f"{'s' if self.crashes != 1 else ''} in the last {CRASHED_RECENTLY_S:g}s "
                f"(last error: {self.last_error})")


class Supervisor:
    """Keeps a worker's background loops running.

    A loop that raises (a bug, a corrupt record in Redis) is logged with its traceback and
    started again after a backoff (0.1 s, doubling, at most 30 s) instead of dying
    silently while the worker looks alive. A cancel stops it for good. :meth:`findings`
    lists the loops that crashed within the last minute, with how often and the last
    error; the worker writes them into its heartbeat file (which it keeps touching: one
    broken loop is not a dead worker), and ``zart-es health`` reports each one.
    """

    def __init__(self, log: Any, on_restart: Callable[[str], None] | None = None) -> None:
        self._log = log
        self._on_restart = on_restart
        self.crashed_at: dict[str, float] = {}
        """When each loop last crashed (monotonic seconds)."""
        self._crashes: dict[str, deque[float]] = {}
        self._errors: dict[str, tuple[str, float]] = {}

    def start(self, name: str, loop: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        """Run ``loop()`` as a supervised task named ``name``."""
        return asyncio.create_task(self._supervise(name, loop), name=name)

    def report_failure(self, name: str, error: BaseException | str = "failed") -> None:
        """Count a failure of loop ``name``: a crash, or one the loop handled itself but
        that will not pass by waiting (Redis refusing a command to this user)."""
        now = time.monotonic()
        self.crashed_at[name] = now
        times = self._crashes.setdefault(name, deque(maxlen=1000))
        times.append(now)
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        self._errors[name] = (text[:300], time.time())

    def findings(self) -> list[LoopFinding]:
        """The loops that crashed within the last CRASHED_RECENTLY_S seconds."""
        now = time.monotonic()
        found = []
        for name, at in sorted(self.crashed_at.items()):
            if now - at > CRASHED_RECENTLY_S:
                continue
            recent = sum(1 for t in self._crashes.get(name, ()) if now - t <= CRASHED_RECENTLY_S)
            error, wall = self._errors.get(name, ("unknown", time.time()))
            found.append(LoopFinding(name, max(recent, 1), error, wall))
        return found

    def healthy(self) -> bool:
        """True unless some loop crashed within the last CRASHED_RECENTLY_S seconds."""
        return not self.findings()

    async def _supervise(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        pause = 0.1
        while True:
            try:
                await loop()
            except Exception as exc:
                self.report_failure(name, exc)
                self._log.exception("background loop crashed; restarting it", loop=name,
                                    restart_in_s=pause)
                if self._on_restart is not None:
                    self._on_restart(name)
            else:
                return
            await asyncio.sleep(pause)
            pause = min(pause * 2, 30.0)


CANCEL_WAIT = 15.0
"""How long stopping waits for a cancelled loop before it names it and goes on."""


async def cancel_all(tasks: Iterable[asyncio.Task[Any]], log: Any) -> None:
    """Cancel ``tasks`` and wait for them (at most CANCEL_WAIT); a task that swallows its
    cancellation is named in the log, and left behind."""
    pending = [t for t in tasks if not t.done()]
    for task in pending:
        task.cancel()
    if not pending:
        return
    _, stuck = await asyncio.wait(pending, timeout=CANCEL_WAIT)
    for task in stuck:  # a loop that swallowed its cancellation: say where, do not hang
        frames = "; ".join(f"{f.f_code.co_filename}:{f.f_lineno}" for f in task.get_stack())
        log.error("task did not stop when cancelled; shutting down without it",
                  task=task.get_name(), at=frames)
    for task in pending:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: no "exception never retrieved" noise


class TaskSet:
    """Tasks started on the side (an ack, a wake-up), cancelled together at the end."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` as a task, kept until it is done."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def cancel(self, log: Any) -> None:
        """Cancel every task still running and wait for them (see :func:`cancel_all`)."""
        await cancel_all(list(self._tasks), log)
