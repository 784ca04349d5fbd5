"""Compaction: a day's batch files of each table merged into one file per folder.

The archiver writes one file per batch, so a busy day leaves hundreds of small files per
partition and table. :func:`compact_day` merges each folder of a day (``events/`` and
``executions/partition=P/date=D``, ``audit/date=D``) into ``compacted-<hash>.parquet``:

1. take the folder's reader view (:mod:`._view`): the committed batches (those of the
   executions folder; events of a batch whose executions object is not written yet stay
   where they are, the archiver is still writing that batch);
2. write the events file, then the executions file (the commit record, as for a batch),
   both named by the hash of the batches they cover and listing them in their metadata,
   with the never-replace put, and make them durable;
3. only then delete the inputs (every file whose batches the new file covers).

A kill anywhere leaves files the reader rule resolves to each row once; a re-run takes
the same view, so it writes under the same name (a put that finds it is a no-op) and
finishes the deletes. Batches archived into the day later (an execution that ended that
day and had a longer retention) are new batch files beside the compacted one, merged by
the next compaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from zart_es.archive._archive import Archive
from zart_es.archive._view import (
    COMPACTED,
    batch_of,
    covers_of,
    folder_of,
    is_compacted,
    listed_view,
    with_covers,
)
from zart_es.core import ArchiveError

ROW_GROUP = 65_536
"""Rows per Parquet row group of a compacted file."""


class Compacted(msgspec.Struct, frozen=True):
    """What compacting one folder (of both tables, or of the audit table) did."""

    folder: str
    """``partition=P/date=D`` or ``audit/date=D``."""
    files_before: int
    files_after: int
    bytes_before: int
    bytes_after: int
    rows: int
    """Executions rows (audit entries for the audit folder) now in the compacted file."""


async def compact_day(archive: Archive, day: str) -> list[Compacted]:
    """Compact every folder of ``day``; what was done, per folder (already compacted
    folders are left alone and not reported)."""
    partitions = sorted({p.split("/")[1] for p in await archive.objects.list("executions")
                         if f"/date={day}/" in p})
    done: list[Compacted] = []
    for partition in partitions:
        result = await _compact_pair(archive, f"{partition}/date={day}")
        if result is not None:
            done.append(result)
    audit = await _compact_audit(archive, f"audit/date={day}")
    if audit is not None:
        done.append(audit)
    return done


def compacted_name(batches: Iterable[str]) -> str:
    """The name of the file covering ``batches``: the same for the same batches."""
    digest = hashlib.sha256("\n".join(sorted(batches)).encode()).hexdigest()[:20]
    return f"{COMPACTED}{digest}"


async def _compact_pair(archive: Archive, where: str) -> Compacted | None:
    executions_dir, events_dir = f"executions/{where}", f"events/{where}"
    listed = {folder: await _listing(archive, folder) for folder in (executions_dir, events_dir)}
    if _done(listed[executions_dir], listed[events_dir]):
        return None
    executions = await _taken(archive, executions_dir)
    batches = sorted(_batches(executions))
    if not batches:
        return None
    events = await _taken(archive, events_dir)
    missing = set(batches) - _batches(events)
    if missing:
        raise ArchiveError(f"archive folder {events_dir!r} lacks the events of committed "
                           f"batches {sorted(missing)[:3]}: not compacted")
    name = compacted_name(batches)
    events_table = pa.concat_tables([t for _, t in events], promote_options="default")
    events_table = events_table.filter(pc.is_in(events_table["batch"],
                                                pa.array(batches, pa.string())))
    executions_table = pa.concat_tables([t for _, t in executions])
    # events first, executions last: the executions file is the commit record
    await _put(archive, f"{events_dir}/{name}.parquet",
               events_table.sort_by([("execution_id", "ascending"), ("batch", "ascending"),
                                     ("seq", "ascending")]), batches)
    await _put(archive, f"{executions_dir}/{name}.parquet",
               executions_table.sort_by([("execution_id", "ascending"),
                                         ("batch", "ascending")]), batches)
    covered = set(batches)
    before = _size(listed[executions_dir]) + _size(listed[events_dir])
    for folder in (executions_dir, events_dir):  # executions first: readers find through them
        await _delete_covered(archive, folder, name, covered)
    after = {folder: await _listing(archive, folder) for folder in (executions_dir, events_dir)}
    return Compacted(where, len(listed[executions_dir]) + len(listed[events_dir]),
                     len(after[executions_dir]) + len(after[events_dir]), before,
                     _size(after[executions_dir]) + _size(after[events_dir]),
                     executions_table.num_rows)


async def _compact_audit(archive: Archive, folder: str) -> Compacted | None:
    listed = await _listing(archive, folder)
    if _done(listed):
        return None
    taken = await _taken(archive, folder)
    batches = sorted(_batches(taken))
    name = compacted_name(batches)
    table = pa.concat_tables([t for _, t in taken]).sort_by("entry_id")
    await _put(archive, f"{folder}/{name}.parquet", table, batches)
    await _delete_covered(archive, folder, name, set(batches))
    after = await _listing(archive, folder)
    return Compacted(folder, len(listed), len(after), _size(listed), _size(after),
                     table.num_rows)


async def _listing(archive: Archive, folder: str) -> dict[str, int]:
    """The folder's Parquet objects and their sizes."""
    return {path: size for path, size in (await archive.objects.sizes(folder)).items()
            if path.endswith(".parquet") and folder_of(path) == folder}


def _done(listed: dict[str, int], twin: dict[str, int] | None = None) -> bool:
    """Nothing to merge: an empty folder, or one compacted file (and, for a pair, the
    events folder holding just its twin of the same name)."""
    if not listed:
        return True
    if len(listed) != 1 or not is_compacted(next(iter(listed))):
        return False
    return twin is None or [batch_of(p) for p in twin] == [batch_of(p) for p in listed]


async def _taken(archive: Archive, folder: str) -> list[tuple[str, pa.Table]]:
    async def paths() -> list[str]:
        return [p for p in await archive.objects.list(folder) if folder_of(p) == folder]

    async def read(path: str) -> pa.Table | None:
        data = await archive.objects.get_if_exists(path)
        return None if data is None else pq.read_table(pa.BufferReader(data), use_threads=False)

    return await listed_view(paths, read)


def _size(listed: dict[str, int]) -> int:
    return sum(listed.values())


def _batches(taken: list[tuple[str, pa.Table]]) -> set[str]:
    found: set[str] = set()
    for _, table in taken:
        found.update(table["batch"].unique().to_pylist())
    return found


async def _put(archive: Archive, path: str, table: pa.Table, batches: list[str]) -> None:
    sink = pa.BufferOutputStream()
    pq.write_table(with_covers(table, batches), sink, compression="zstd",
                   row_group_size=ROW_GROUP)
    await archive.objects.put_new(path, bytes(sink.getvalue().to_pybytes()))
    archive.objects.make_durable(path)  # durable before any input is deleted


async def _delete_covered(archive: Archive, folder: str, name: str, covered: set[str]) -> None:
    """Delete the files of ``folder`` whose batches all are in the new file ``name``."""
    for path in await _listing(archive, folder):
        if batch_of(path) == name:
            continue
        if is_compacted(path):
            data = await archive.objects.get_if_exists(path)
            if data is None:
                continue
            mine = set(covers_of(pq.read_schema(pa.BufferReader(data)).empty_table(), path))
        else:
            mine = {batch_of(path)}
        if mine <= covered:
            await archive.objects.delete(path)
