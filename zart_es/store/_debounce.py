"""Debounce windows: starts of one workflow and key within a window become one execution.

The window is a small hash (one slot) changed only by two scripts: a start joins the
open window (its input replaces the previous one, the window's end moves on) or opens
one; the execution's worker closes it once its end has passed and takes the last input.
A start after the close opens a new window, so no start is lost between the two.
"""

from __future__ import annotations

from typing import Any

import msgspec

from zart_es.store._autopipe import script_caller
from zart_es.store._connection import RedisClient
from zart_es.store._hashes import Hash
from zart_es.store._keys import Keys
from zart_es.store._scripts import load_script

RECORD_TTL_MS = 7 * 24 * 3600 * 1000
"""How long a window's record outlives its last start (a closed window's input waits
that long for its execution to record it)."""


class DebounceClosed(msgspec.Struct, frozen=True):
    """The window has closed: its last start's input, and how many starts joined it."""

    input: bytes
    starts: int


class DebounceOpen(msgspec.Struct, frozen=True):
    """The window is open until ``due_ms`` (Redis' clock)."""

    due_ms: int


class Debounces:
    """The debounce windows of one deployment."""

    __slots__ = ("_close", "_start", "keys", "redis")

    def __init__(self, redis: RedisClient, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._start = script_caller(redis, load_script("debounce_start"), pipelined=False)
        self._close = script_caller(redis, load_script("debounce_close"), pipelined=False)

    async def start(self, workflow: str, key: str, new_id: str, data: bytes,
                    window_ms: int) -> tuple[str, bool]:
        """Join or open the window; its execution id, and whether this call opened it."""
        reply: list[Any] = await self._start(
            [self.keys.debounce(workflow, key)],
            [new_id, data, str(window_ms), str(window_ms + RECORD_TTL_MS)])
        return bytes(reply[0]).decode(), bool(reply[1])

    async def close(self, workflow: str, key: str, execution_id: str
                    ) -> DebounceClosed | DebounceOpen | None:
        """Close the window of ``execution_id`` if its end has passed (None: no record of
        it any more: it expired)."""
        reply: list[Any] = await self._close([self.keys.debounce(workflow, key)],
                                             [execution_id])
        kind = bytes(reply[0])
        if kind == b"closed":
            return DebounceClosed(bytes(reply[1]), int(reply[2]))
        if kind == b"open":
            return DebounceOpen(int(reply[1]))
        return None

    async def forget(self, workflow: str, key: str, execution_id: str) -> None:
        """Drop a closed window's input once its execution recorded it."""
        await Hash(self.redis, self.keys.debounce(workflow, key)).delete(
            f"c:{execution_id}", f"cn:{execution_id}")
