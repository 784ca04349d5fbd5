"""The client's read-through to the archive: an execution that left Redis reads the same.

``Client(redis_url, archive_url=...)`` (or ``$ZART_ARCHIVE_URL``) looks an execution up
here when Redis has no trace of it: its meta hash and raw log entries come back in
Redis' own shapes, so ``status``, ``result``, ``history`` and ``verify`` answer exactly
as before archiving. Archived executions are read-only: a repair raises
:class:`ExecutionArchived`.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from zart_es.archive import Entry, resolve_archive_url
from zart_es.core import (
    STATES,
    ExecutionArchived,
    ExecutionNotFound,
    ExecutionState,
    Status,
    fold,
)
from zart_es.ops import ExecutionSummary
from zart_es.store import Keys, to_event

if TYPE_CHECKING:
    from zart_es.archive import Archive, ArchivedExecution

CACHED = 256
"""Archived executions kept in memory (they never change)."""


class ArchiveReads:
    """Finds archived executions for one client (nothing, without an archive URL)."""

    def __init__(self, url: str | None, keys: Keys) -> None:
        self.url = resolve_archive_url(url)
        self._keys = keys
        self._archive: Archive | None = None
        self._found: OrderedDict[str, ArchivedExecution] = OrderedDict()

    def _open(self) -> Archive | None:
        if self.url is not None and self._archive is None:
            from zart_es.archive import Archive

            self._archive = Archive(self.url)
        return self._archive

    async def find(self, execution_id: str) -> ArchivedExecution | None:
        """The archived execution, or None (no archive, or not in it)."""
        if execution_id in self._found:
            self._found.move_to_end(execution_id)
            return self._found[execution_id]
        archive = self._open()
        if archive is None:
            return None
        found = await archive.find(execution_id, self._keys.partition_of(execution_id))
        if found is not None:
            self._found[execution_id] = found
            if len(self._found) > CACHED:
                self._found.popitem(last=False)
        return found

    async def meta(self, execution_id: str) -> dict[bytes, bytes]:
        """Its meta hash as archived (empty when it is not archived)."""
        found = await self.find(execution_id)
        return dict(found.meta) if found is not None else {}

    async def entries(self, execution_id: str) -> list[Entry]:
        """Its raw log entries as archived (empty when it is not archived)."""
        found = await self.find(execution_id)
        return list(found.entries) if found is not None else []

    async def folded(self, execution_id: str) -> ExecutionState:
        """Its folded state, from the archived log; ExecutionNotFound if not archived."""
        entries = await self.entries(execution_id)
        if not entries:
            raise ExecutionNotFound(execution_id)
        return fold(to_event(entry_id, fields, execution_id) for entry_id, fields in entries)

    @contextlib.asynccontextmanager
    async def repairing(self, execution_id: str) -> AsyncIterator[None]:
        """Around a repair: Redis' ExecutionNotFound becomes :class:`ExecutionArchived`
        for an execution that is in the archive (archived executions are read-only)."""
        try:
            yield
        except ExecutionNotFound:
            if await self.find(execution_id) is not None:
                raise ExecutionArchived(execution_id, self.url or "") from None
            raise

    async def summaries(self, *, status: str | None, name: str | None,
                        limit: int) -> list[ExecutionSummary]:
        """Archived executions, newest first, by status and workflow."""
        archive = self._open()
        if archive is None or (status is not None and status not in STATES):
            return []
        rows = (await archive.executions()).to_pylist()
        newest: dict[str, dict[str, object]] = {}
        for row in rows:
            key = (row["created"], row["version"], row["archived"])
            seen = newest.get(row["execution_id"])
            if seen is None or key > (seen["created"], seen["version"], seen["archived"]):
                newest[row["execution_id"]] = row
        out = [
            ExecutionSummary(execution_id=str(row["execution_id"]),
                             workflow=str(row["workflow"]), status=Status(str(row["status"])),
                             created_ms=_ms(row["created"]), updated_ms=_ms(row["updated"]),
                             version=int(str(row["version"])))
            for row in newest.values()
            if (status is None or row["status"] == status)
            and (name is None or row["workflow"] == name)
        ]
        out.sort(key=lambda s: s.created_ms, reverse=True)
        return out[:limit]


def _ms(value: object) -> int:
    timestamp = getattr(value, "timestamp", None)
    return round(timestamp() * 1000) if callable(timestamp) else 0
