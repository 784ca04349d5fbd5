"""The archive of ended executions: write a batch once, find one execution, list them.

Writing a batch is two objects, events first, then executions: the executions object is
the batch's commit record (readers find an execution only through it), so a crash
between the two leaves nothing visible, and the retry writes the missing one under the
same name. Both are conditional puts (never replaced), so a retry, or a second archiver
racing for the same batch, writes nothing twice.

Reading an execution back gives its meta hash and its raw stream entries exactly as
Redis held them, so the client's status, result, history and ``verify_chain`` run on
them unchanged: the hash chain proves the archived log complete and unaltered.

Every read goes through the reader rule of :mod:`._view` (each batch's rows from one
file, compacted or not), and a batch counts as stored when its own executions object
exists or a compacted file covers it, so compaction (:mod:`._compact`) never makes the
archiver write a batch twice.
"""

from __future__ import annotations

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
from zart_es.archive._view import LISTINGS, STALE, folder_of, is_compacted, listed_view, view
from zart_es.core import ArchiveError

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
        if (await self.objects.exists(executions)
                or await self.covering(folder_of(executions), batch) is not None):
            return False  # stored already (and maybe compacted since)
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
        covered = await self.covering(folder_of(path), batch)
        if covered is not None:  # stored, and compacted since
            stored = covered[1]
        elif await self.objects.put_new(path, to_parquet(audit_table(entries, batch))):
            return entries[-1][0]
        else:
            stored = from_parquet(await self.objects.get(path), path, columns=["entry_id"])
        last: str = max(stored["entry_id"].to_pylist(), key=_entry_order)
        return last.encode()

    # -- reading ---------------------------------------------------------------------

    async def executions(self, partition: int | None = None) -> pa.Table:
        """The executions table (of one partition), one row per archived snapshot."""
        folder = "executions" if partition is None else f"executions/partition={partition}"

        async def read(path: str) -> pa.Table | None:
            cached = self._ids.get(path)
            if cached is not None:
                self._ids.move_to_end(path)
                return cached
            table = await self._read_if_exists(path)
            if table is None:
                return None
            table = _with_path(table, path)
            self._ids[path] = table
            self._cached_rows += table.num_rows
            while self._cached_rows > CACHED_ROWS and len(self._ids) > 1:
                self._cached_rows -= self._ids.popitem(last=False)[1].num_rows
            return table

        taken = await listed_view(lambda: self.objects.list(folder), read)
        if not taken:
            return _with_path(EXECUTIONS.empty_table(), "")
        return pa.concat_tables([table for _, table in taken], promote_options="default")

    async def find(self, execution_id: str, partition: int) -> ArchivedExecution | None:
        """Execution ``execution_id`` (of ``partition``) as archived; None if it is not.

        When it was archived more than once (a repair reopened it while its batch was
        being written, or its id was reused after its retention), the newest snapshot."""
        for _ in range(LISTINGS):
            table = await self.executions(partition)
            rows = table.filter(pc.equal(table["execution_id"], execution_id)).to_pylist()
            if not rows:
                return None
            row = max(rows, key=lambda r: (r["created"], r["version"], r["archived"]))
            # a compacted executions file has its events twin of the same name
            path = row["_path"].replace("executions/", "events/", 1)
            events = await self._read_if_exists(path)
            if events is None:  # compacted meanwhile: look again
                continue
            mine = events.filter(pc.equal(events["execution_id"], execution_id))
            key_ids = (mine["key_id"].to_pylist() if "key_id" in mine.column_names
                       else [None] * mine.num_rows)
            entries: list[Entry] = [
                (entry_id.encode(), _fields(seq, prev, body, key_id))
                for seq, entry_id, body, prev, key_id in sorted(zip(
                    mine["seq"].to_pylist(), mine["entry_id"].to_pylist(),
                    mine["body"].to_pylist(), mine["prev_hash"].to_pylist(), key_ids,
                    strict=True), key=lambda row: row[0])
            ]
            return ArchivedExecution(execution_id, _meta_of(row), entries)
        raise ArchiveError(f"the archive kept changing while execution {execution_id!r} "
                           f"was read; try again")

    async def audit(self) -> pa.Table:
        """Every archived operator audit entry, oldest first."""
        taken = await listed_view(lambda: self.objects.list("audit"), self._read_if_exists)
        if not taken:
            return audit_table([], "")
        return pa.concat_tables([table for _, table in taken]).sort_by("entry_id")

    async def table(self, name: str, since: str = "", until: str = "") -> pa.Table | None:
        """All of one table (``events``, ``executions``, ``audit``), each row with its
        ``date`` and ``partition`` from the object's path, of the days ``since`` ..
        ``until`` (``YYYY-MM-DD``, both included; "": open); None when it has no object."""
        async def paths() -> list[str]:
            return [p for p in await self.objects.list(name) if p.endswith(".parquet")
                    and since <= _day_in(p) and (not until or _day_in(p) <= until)]

        taken = await listed_view(paths, self._read_if_exists)
        if not taken:
            return None
        return pa.concat_tables([_with_folders(t, p) for p, t in taken],
                                promote_options="default")

    async def days(self) -> list[str]:
        """The days (``YYYY-MM-DD``) the archive holds objects of, oldest first."""
        found = {_day_in(p) for table in ("events", "executions", "audit")
                 for p in await self.objects.list(table) if p.endswith(".parquet")}
        return sorted(found)

    async def covering(self, folder: str, batch: str) -> tuple[str, pa.Table] | None:
        """The compacted file of ``folder`` that covers ``batch`` (its rows of that batch
        only), or None when no compacted file covers it."""
        for _ in range(LISTINGS):
            paths = [p for p in await self.objects.list(folder) if is_compacted(p)
                     and p.endswith(".parquet") and folder_of(p) == folder]
            try:
                taken = await view(paths, self._read_if_exists)
            except STALE:
                continue
            for path, table in taken:
                mine = table.filter(pc.equal(table["batch"], batch))
                if mine.num_rows:
                    return path, mine
            return None
        raise ArchiveError(f"the archive folder {folder!r} kept changing; try again")

    async def _read_if_exists(self, path: str) -> pa.Table | None:
        data = await self.objects.get_if_exists(path)
        return None if data is None else from_parquet(data, path)


def _fields(seq: int, prev: str, body: bytes, key_id: str | None) -> dict[bytes, bytes]:
    """One archived event's stream fields, as Redis held them."""
    fields = {b"s": str(seq).encode(), b"p": prev.encode(), b"e": body}
    if key_id is not None:
        fields[b"k"] = key_id.encode()
    return fields


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
