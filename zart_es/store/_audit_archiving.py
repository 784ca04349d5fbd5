"""The Redis half of archiving the operator audit stream: what is left to archive and
the trimming of what was.

The stream is read from the archiver's cursor; a batch (entries of one day) is written
to the archive, then the cursor moves past it, then archived entries older than the retention
are deleted from Redis. A crash before the cursor moves rewrites the same batch
under the same name (its first and last entry ids), which the archive's conditional
put turns into a no-op: nothing lost, nothing twice.
"""

from __future__ import annotations

from typing import Any

from zart_es.store._connection import RedisClient
from zart_es.store._hashes import Hash
from zart_es.store._keys import Keys

Entry = tuple[bytes, dict[bytes, bytes]]

TRIM_PAGE = 1000
"""Archived entries deleted per pass (XDEL: the ACL user has no XTRIM)."""


class AuditArchiveQueue:
    """The deployment's operator audit stream, as the archiver sees it."""

    def __init__(self, redis: RedisClient, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def pending(self, limit: int) -> list[Entry]:
        """Up to ``limit`` entries after the cursor, oldest first."""
        cursor = await Hash(self.redis, self.keys.audit_archive()).get("cursor")
        page: list[Any] = await self.redis.xrange(
            self.keys.audit(), min=b"(" + cursor if cursor else "-", count=limit)
        return [(entry_id, fields) for entry_id, fields in page]

    async def archived(self, last: bytes, keep_after_ms: int) -> None:
        """Entries up to ``last`` are in the archive: move the cursor, and trim those
        older than ``keep_after_ms`` (the stream keeps recent ones for ``audit log``)."""
        await Hash(self.redis, self.keys.audit_archive()).put("cursor", last)
        old: list[Any] = await self.redis.xrange(self.keys.audit(), max=last,
                                                 count=TRIM_PAGE)
        drop = [entry_id for entry_id, _ in old if int(entry_id.split(b"-")[0]) < keep_after_ms]
        if drop:
            await self.redis.xdel(self.keys.audit(), *drop)

    async def live(self, after: bytes | None, block_ms: int | None) -> list[Entry]:
        """Entries after ``after`` still in Redis (blocking up to ``block_ms`` for new)."""
        if block_ms is None:
            page: list[Any] = await self.redis.xrange(
                self.keys.audit(), min=b"(" + after if after else "-")
            return [(entry_id, fields) for entry_id, fields in page]
        reply: list[Any] = await self.redis.xread({self.keys.audit(): after or b"0-0"},
                                                  block=block_ms, count=1000)
        return [(entry_id, fields) for _, entries in reply for entry_id, fields in entries]
