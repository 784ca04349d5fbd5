"""The archive of ended executions: write a batch once, find one execution, list them.

Writing a batch is two objects, events first, then executions: the executions object is
the batch's commit record (readers find an execution only through it), so a crash
between the two leaves nothing visible, and the retry writes the missing one under the
same name. Both are conditional puts (never replaced), so a retry, or a second archiver
racing for the same batch, writes nothing twice.

Reading an execution back gives its meta hash and its raw stream entries exactly as
Redis held them, so the client's status, result, history and ``verify_chain`` run on
them unchanged: the hash chain proves the archived log complete and unaltered.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import OrderedDict
from collections.abc import Sequence

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from zart_es.archive._objects import ObjectStore
from zart_es.archive._records import Entry, ExecutionRecord
from zart_es.archive._tables import (
    EXECUTIONS,
    audit_table,
    events_table,
    executions_table,
    from_parquet,
    object_path,
    to_parquet,
)
from zart_es.core import ArchiveError

READS_AT_ONCE = 16
"""Objects read concurrently when scanning the executions table."""
CACHED_ROWS = 200_000
"""Rows of the executions table a reader keeps in memory between lookups."""


class ArchivedExecution(msgspec.Struct, frozen=True):
    """One execution read back from the archive, in Redis' own shapes."""

    execution_id: str
    meta: dict[bytes, bytes]
    """Its meta hash as it was when archived (``v``, ``st``, ``w``, ``c``, ``u``, ``h``,
    ``end``, and ``q`` for a task queue other than the default)."""
    entries: list[Entry]
    """Its log's stream entries (id, ``s``/``p``/``e`` fields), oldest first."""


class Archive:
    """The archive at one URL (a directory, ``file://``, ``s3://bucket/prefix``, ...)."""

    def __init__(self, url: str) -> None:
        self.objects = ObjectStore(url)
        self.url = url
        self._ids: OrderedDict[str, pa.Table] = OrderedDict()
        """Executions objects read lately (objects never change): path -> its rows, at
        most CACHED_ROWS rows in all, the least recently used dropped first."""
        self._cached_rows = 0

    # -- writing ---------------------------------------------------------------------

    async def write_batch(self, partition: int, day: str, batch: str,
                          records: Sequence[ExecutionRecord], *,
                          errors: Sequence[str | None], archived_ms: int) -> bool:
        """Store ``records`` (all ended on ``day``) as batch ``batch``; False when that
        batch was already stored complete (a retry), in which case nothing is written."""
        executions = object_path("executions", day, partition, batch)
        if await self.objects.exists(executions):
            return False
        await self.objects.put_new(object_path("events", day, partition, batch),
                                   to_parquet(events_table(records, batch)))
        return await self.objects.put_new(
            executions, to_parquet(executions_table(records, batch, errors, archived_ms)))

    async def write_audit(self, day: str, batch: str, entries: Sequence[Entry]) -> bytes:
        """Store operator audit entries (all of ``day``) as batch ``batch``, once; returns
        the id of the last entry the stored batch holds: these entries' last, or, when an
        earlier attempt stored that batch already (a crash before the cursor moved), the
        last of what that attempt stored, where the next batch must begin."""
        path = object_path("audit", day, None, batch)
        if await self.objects.put_new(path, to_parquet(audit_table(entries, batch))):
            return entries[-1][0]
        stored = from_parquet(await self.objects.get(path), path, columns=["entry_id"])
        last: str = max(stored["entry_id"].to_pylist(), key=_entry_order)
        return last.encode()

    # -- reading ---------------------------------------------------------------------

    async def executions(self, partition: int | None = None) -> pa.Table:
        """The executions table (of one partition), one row per archived snapshot."""
        folder = "executions" if partition is None else f"executions/partition={partition}"
        paths = [path for path in await self.objects.list(folder) if path.endswith(".parquet")]
        limit = asyncio.Semaphore(READS_AT_ONCE)

        async def read(path: str) -> pa.Table:
            cached = self._ids.get(path)
            if cached is not None:
                self._ids.move_to_end(path)
                return cached
            async with limit:
                table = _with_path(from_parquet(await self.objects.get(path), path), path)
            self._ids[path] = table
            self._cached_rows += table.num_rows
            while self._cached_rows > CACHED_ROWS and len(self._ids) > 1:
                self._cached_rows -= self._ids.popitem(last=False)[1].num_rows
            return table

        tables = await asyncio.gather(*(read(path) for path in paths))
        if not tables:
            return _with_path(EXECUTIONS.empty_table(), "")
        return pa.concat_tables(tables)

    async def find(self, execution_id: str, partition: int) -> ArchivedExecution | None:
        """Execution ``execution_id`` (of ``partition``) as archived; None if it is not.

        When it was archived more than once (a repair reopened it while its batch was
        being written, or its id was reused after its retention), the newest snapshot."""
        table = await self.executions(partition)
        rows = table.filter(pc.equal(table["execution_id"], execution_id)).to_pylist()
        if not rows:
            return None
        row = max(rows, key=lambda r: (r["created"], r["version"], r["archived"]))
        path = row["_path"].replace("executions/", "events/", 1)
        events = from_parquet(await self.objects.get(path), path,
                              columns=["execution_id", "seq", "entry_id", "body", "prev_hash"])
        mine = events.filter(pc.equal(events["execution_id"], execution_id))
        entries: list[Entry] = [
            (entry_id.encode(), {b"s": str(seq).encode(), b"p": prev.encode(), b"e": body})
            for seq, entry_id, body, prev in sorted(zip(
                mine["seq"].to_pylist(), mine["entry_id"].to_pylist(),
                mine["body"].to_pylist(), mine["prev_hash"].to_pylist(), strict=True))
        ]
        return ArchivedExecution(execution_id, _meta_of(row), entries)

    async def audit(self) -> pa.Table:
        """Every archived operator audit entry, oldest first."""
        paths = [p for p in await self.objects.list("audit") if p.endswith(".parquet")]
        tables = await asyncio.gather(*(self._read(path) for path in paths))
        if not tables:
            return audit_table([], "")
        return pa.concat_tables(tables).sort_by("entry_id")

    async def table(self, name: str, since: str = "", until: str = "") -> pa.Table | None:
        """All of one table (``events``, ``executions``, ``audit``), each row with its
        ``date`` and ``partition`` from the object's path, of the days ``since`` ..
        ``until`` (``YYYY-MM-DD``, both included; "": open); None when it has no object."""
        paths = [p for p in await self.objects.list(name) if p.endswith(".parquet")
                 and since <= _day_in(p) and (not until or _day_in(p) <= until)]
        if not paths:
            return None
        tables = await asyncio.gather(*(self._read(path) for path in paths))
        return pa.concat_tables([_with_folders(t, p) for t, p in zip(tables, paths, strict=True)])

    async def _read(self, path: str) -> pa.Table:
        return from_parquet(await self.objects.get(path), path)


def _entry_order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _day_in(path: str) -> str:
    return path.partition("date=")[2][:10]


def _with_path(table: pa.Table, path: str) -> pa.Table:
    return table.append_column("_path", pa.array([path] * table.num_rows, pa.string()))


def _with_folders(table: pa.Table, path: str) -> pa.Table:
    """Add the ``date`` (and ``partition``) columns the object's path names."""
    folders = dict(part.split("=", 1) for part in path.split("/") if "=" in part)
    table = table.append_column("date", pa.array([folders.get("date")] * table.num_rows,
                                                 pa.string()).cast(pa.date32()))
    if "partition" in folders:
        table = table.append_column(
            "partition", pa.array([int(folders["partition"])] * table.num_rows, pa.int32()))
    return table


def _meta_of(row: dict[str, object]) -> dict[bytes, bytes]:
    """The meta hash an executions row records."""
    def ms(name: str) -> bytes:
        value = row[name]
        if not isinstance(value, dt.datetime):
            raise ArchiveError(f"archived execution {row['execution_id']!r} has no {name} time")
        return str(round(value.timestamp() * 1000)).encode()

    meta = {b"v": str(row["version"]).encode(), b"st": str(row["status"]).encode(),
            b"w": str(row["workflow"]).encode(), b"c": ms("created"), b"u": ms("updated"),
            b"end": ms("ended"), b"h": str(row["last_hash"]).encode()}
    if row["task_queue"]:
        meta[b"q"] = str(row["task_queue"]).encode()
    return meta
