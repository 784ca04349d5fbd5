"""What the archiver hands the archive: ended executions as read from Redis (no pyarrow
here, so the engine and the client import it without the archive's optional packages)."""

from __future__ import annotations

import datetime as dt

import msgspec

Entry = tuple[bytes, dict[bytes, bytes]]
"""A raw stream entry: its id and its fields, as Redis returns them."""


class ExecutionRecord(msgspec.Struct, frozen=True):
    """One ended execution as read from Redis for the archive: its meta hash and log."""

    execution_id: str
    meta: dict[bytes, bytes]
    entries: list[Entry]

    @property
    def version(self) -> int:
        """Events in its log when read (the purge re-checks it)."""
        return int(self.meta[b"v"])

    @property
    def ended_ms(self) -> int:
        """When it ended (ms, Redis' clock)."""
        return int(self.meta[b"end"])


def day_of(ms: int) -> str:
    """The UTC date of ``ms`` as ``YYYY-MM-DD`` (the ``date=`` folder)."""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d")
