"""What a reader takes from a folder of the archive: each batch's rows from one file only.

A folder (``events/partition=P/date=D``, ``executions/...``, ``audit/date=D``) holds batch
files (``<batch>.parquet``, rows of that batch only) and, once compacted, files named
``compacted-<hash>.parquet`` whose Parquet metadata lists the batches they cover
(``zart.covers``). A batch's rows are the same in every file that holds them (they are
copied verbatim), so the rule only has to pick one file per batch: the compacted file
covering it that covers the most batches (ties: the greatest name), else its own file.
Batch files a compacted file covers are not even read. Compaction writes the merged file
before deleting anything, so at every moment each committed batch is in some file and
the rule sees its rows exactly once: before, during and after a compaction.

An object deleted between a listing and its read (a compactor finished meanwhile) makes
the view ask for a new listing (:data:`STALE`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

from zart_es.core import ArchiveError

COMPACTED: Final = "compacted-"
"""The name prefix of a compacted file (batch names never start with it)."""
COVERS: Final = b"zart.covers"
"""The Parquet metadata key of a compacted file: the JSON list of batches it covers."""
READS_AT_ONCE: Final = 16
"""Objects read concurrently."""
LISTINGS: Final = 5
"""Listings a reader tries before it gives up on a folder that keeps changing."""


class _Stale(Exception):
    """An object listed was gone when read: list again."""


STALE = _Stale
Read = Callable[[str], Awaitable[pa.Table | None]]
"""Reads one object as a table (its schema metadata intact); None if it is gone."""


def batch_of(path: str) -> str:
    """The batch (or compacted file) name of an object path."""
    return path.rsplit("/", 1)[-1].removesuffix(".parquet")


def folder_of(path: str) -> str:
    return path.rsplit("/", 1)[0]


def is_compacted(path: str) -> bool:
    return batch_of(path).startswith(COMPACTED)


def covers_of(table: pa.Table, path: str) -> list[str]:
    """The batches a compacted file covers (from its metadata)."""
    raw = (table.schema.metadata or {}).get(COVERS)
    if raw is None:
        raise ArchiveError(f"compacted archive object {path!r} does not list what it covers")
    covers: list[str] = json.loads(raw)
    return covers


def with_covers(table: pa.Table, covers: list[str]) -> pa.Table:
    """``table`` carrying the metadata of a compacted file covering ``covers``."""
    return table.replace_schema_metadata({COVERS: json.dumps(sorted(covers)).encode()})


async def view(paths: list[str], read: Read) -> list[tuple[str, pa.Table]]:
    """The files a reader takes of ``paths`` (one listing, any folders), each with the
    rows it is the source of and no schema metadata. Raises :data:`STALE` when an object
    vanished since the listing."""
    limit = asyncio.Semaphore(READS_AT_ONCE)

    async def load(path: str) -> pa.Table:
        async with limit:
            table = await read(path)
        if table is None:
            raise _Stale(path)
        return table

    paths = [p for p in paths if p.endswith(".parquet")]
    compacted = [p for p in paths if is_compacted(p)]
    tables = dict(zip(compacted, await asyncio.gather(*(load(p) for p in compacted)),
                      strict=True))
    covers = {path: covers_of(table, path) for path, table in tables.items()}
    source: dict[tuple[str, str], str] = {}  # (folder, batch) -> the compacted file taken
    for path in sorted(compacted, key=lambda p: (len(covers[p]), p)):
        for batch in covers[path]:
            source[folder_of(path), batch] = path  # the biggest (then greatest) wins
    plain = [p for p in paths if not is_compacted(p) and (folder_of(p), batch_of(p)) not in source]
    tables.update(zip(plain, await asyncio.gather(*(load(p) for p in plain)), strict=True))
    taken: list[tuple[str, pa.Table]] = []
    for path in sorted(tables):
        table = tables[path].replace_schema_metadata(None)
        if path in covers:
            mine = [b for b in covers[path] if source[folder_of(path), b] == path]
            if not mine:
                continue
            if len(mine) < len(covers[path]):  # compactors raced: take only what it wins
                table = table.filter(pc.is_in(table["batch"], pa.array(mine, pa.string())))
        taken.append((path, table))
    return taken


async def listed_view(list_paths: Callable[[], Awaitable[list[str]]],
                      read: Read) -> list[tuple[str, pa.Table]]:
    """:func:`view` of a fresh listing, listed again while objects vanish under it."""
    for _ in range(LISTINGS):
        try:
            return await view(await list_paths(), read)
        except _Stale:
            continue
    raise ArchiveError(f"the archive kept changing during {LISTINGS} listings; try again")
