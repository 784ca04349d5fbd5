"""The worker's store breaker: while Redis refuses writes, start no new steps.

A write that meets a store error (out of memory, READONLY after a failover, LOADING,
BUSY, a lost connection, a timeout while recording) opens the breaker. Every run then
waits in :meth:`StoreBreaker.wait` before it starts, and a run whose append was refused
waits there holding the event (a step's result is kept, not run again) to retry the same
append. One waiter at a time is the probe, after a backoff with jitter (0.1 s doubling
to 5 s); the first write that lands closes the breaker. One log line per change of
state, not one per attempt; refusals are counted by kind.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable

import structlog

from zart_es.store import (
    BusyLoadingError,
    ClusterDownError,
    MasterDownError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisConnectionError,
    ResponseError,
    TryAgainError,
)
from zart_es.store import RedisTimeoutError as RedisTimeout

log = structlog.get_logger("zart_es.worker")

PROBE_FIRST_S = 0.1
PROBE_MAX_S = 5.0
STALE_PROBE_S = 30.0


_KINDS: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...] = (
    (OutOfMemoryError, "oom"),
    (ReadOnlyError, "readonly"),
    (BusyLoadingError, "loading"),
    ((RedisTimeout, TimeoutError), "timeout"),
    ((RedisConnectionError, OSError), "connection"),
    # redis-py drops the reply's code from the message of the errors it has a class for
    (MasterDownError, "masterdown"),
    (ClusterDownError, "clusterdown"),
    (TryAgainError, "tryagain"),
    (NoScriptError, "noscript"),
)
_REPLIES = frozenset({"BUSY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "NOSCRIPT"})


def refusal_kind(exc: BaseException) -> str:
    """A short label of a store error, for the metric and the log."""
    for types, kind in _KINDS:
        if isinstance(exc, types):
            return kind
    word = str(exc).split(" ", 1)[0].upper()
    return word.lower() if isinstance(exc, ResponseError) and word in _REPLIES else "other"


class StoreBreaker:
    """Open while Redis refuses this worker's writes.

    While open, :meth:`wait` lets one caller through at a time, after a backoff with
    jitter: its own write is the probe (a probe of another size could land where the
    real write does not). It reports back with :meth:`ok` (closes the breaker) or
    :meth:`trip` (stays open, the next probe waits longer); the other callers wait. A probe
    that never reports (its run was cancelled) is given up after ``STALE_PROBE_S``.
    """

    def __init__(self, on_refusal: Callable[[str], None] | None = None) -> None:
        self._on_refusal = on_refusal
        self._closed = asyncio.Event()
        self._closed.set()
        self._pause = PROBE_FIRST_S
        self._probe_since: float | None = None
        self.error: str | None = None
        """The last store error, while the breaker is open."""
        self.opened_at: float | None = None

    @property
    def open(self) -> bool:
        """Whether the worker is holding its runs back."""
        return not self._closed.is_set()

    def trip(self, exc: BaseException) -> None:
        """A write met store error ``exc``: open (or stay open, backing off further)."""
        kind = refusal_kind(exc)
        if self._on_refusal is not None:
            self._on_refusal(kind)
        self.error = f"{type(exc).__name__}: {exc}"
        if self._probe_since is not None:
            self._probe_since = None
            self._pause = min(self._pause * 2, PROBE_MAX_S)
        if self.open:
            return
        self.opened_at = time.monotonic()
        self._closed.clear()
        log.error("store refusing writes; holding runs until it accepts one",
                  kind=kind, error=self.error)

    def ok(self) -> None:
        """A write landed: close (one log line if it was open)."""
        if not self.open:
            return
        held = time.monotonic() - (self.opened_at or time.monotonic())
        log.info("store accepts writes again; runs resume", held_s=round(held, 1))
        self.error, self.opened_at, self._probe_since = None, None, None
        self._pause = PROBE_FIRST_S
        self._closed.set()

    async def wait(self) -> None:
        """Return at once while closed; while open, return to be the probe, or when a
        probe closed the breaker."""
        while self.open:
            now = time.monotonic()
            if self._probe_since is not None and now - self._probe_since < STALE_PROBE_S:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._pause):
                        await self._closed.wait()
                continue
            self._probe_since = now
            await asyncio.sleep(self._pause * random.uniform(0.5, 1.0))
            if self.open:
                self._probe_since = time.monotonic()
                return
