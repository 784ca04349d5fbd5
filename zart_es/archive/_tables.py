"""The archive's tables: one row per event, one per execution, one per audit entry.

Each table is a set of Parquet files named ``<table>/partition=<p>/date=<YYYY-MM-DD>/
<batch>.parquet`` (Hive-style, so DuckDB, Spark or pandas read the date and partition
from the path; ``audit/date=<YYYY-MM-DD>/<batch>.parquet``): a day's audit is a few
files per partition, not millions, and finding one execution lists its partition's
folder only. The date is the UTC day the execution ended (of the entry, for the audit
stream).

An event row keeps the stream entry exactly as Redis held it: the msgpack ``body``, its
``seq`` and the ``prev_hash`` link, and the entry id (whose ms part is ``at``), so the
hash chain verifies after the move with the same function as before. The decoded columns
(``event_type``, ``step``, ``attempt``, ``by``) are for queries only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from zart_es.archive._records import Entry, ExecutionRecord
from zart_es.core import ArchiveError, PayloadDecodeError, decode_event

EVENTS = pa.schema([
    ("execution_id", pa.string()),
    ("workflow", pa.string()),
    ("seq", pa.int64()),
    ("entry_id", pa.string()),
    ("at", pa.timestamp("ms", tz="UTC")),
    ("event_type", pa.string()),
    ("step", pa.string()),
    ("attempt", pa.int32()),
    ("operator", pa.string()),
    ("body", pa.binary()),
    ("prev_hash", pa.string()),
    ("batch", pa.string()),
    ("key_id", pa.string()),
])
"""(``key_id``: the audit key that chained the event, null for an unkeyed link; files
written before it existed lack the column and read it as null.)"""

EXECUTIONS = pa.schema([
    ("execution_id", pa.string()),
    ("workflow", pa.string()),
    ("status", pa.string()),
    ("version", pa.int64()),
    ("created", pa.timestamp("ms", tz="UTC")),
    ("updated", pa.timestamp("ms", tz="UTC")),
    ("ended", pa.timestamp("ms", tz="UTC")),
    ("task_queue", pa.string()),
    ("last_hash", pa.string()),
    ("error", pa.string()),
    ("batch", pa.string()),
    ("archived", pa.timestamp("ms", tz="UTC")),
])

AUDIT = pa.schema([
    ("entry_id", pa.string()),
    ("at", pa.timestamp("ms", tz="UTC")),
    ("what", pa.string()),
    ("operator", pa.string()),
    ("detail", pa.string()),
    ("batch", pa.string()),
])

def object_path(table: str, day: str, partition: int | None, batch: str) -> str:
    """Where one batch of ``table`` is stored."""
    where = table if partition is None else f"{table}/partition={partition}"
    return f"{where}/date={day}/{batch}.parquet"


def events_table(records: Sequence[ExecutionRecord], batch: str) -> pa.Table:
    """One row per event of ``records``."""
    rows: dict[str, list[Any]] = {name: [] for name in EVENTS.names}
    for record in records:
        workflow = record.meta.get(b"w", b"").decode()
        for entry_id, fields in record.entries:
            seq = int(fields.get(b"s", b"-1"))
            body = fields.get(b"e", b"")
            key_id = fields.get(b"k")
            event_type, step, attempt, by = _describe(body, seq)
            for name, value in (
                ("execution_id", record.execution_id), ("workflow", workflow), ("seq", seq),
                ("entry_id", entry_id.decode()), ("at", int(entry_id.split(b"-")[0])),
                ("event_type", event_type), ("step", step), ("attempt", attempt),
                ("operator", by), ("body", body), ("prev_hash", fields.get(b"p", b"").decode()),
                ("batch", batch), ("key_id", key_id.decode() if key_id is not None else None),
            ):
                rows[name].append(value)
    return pa.Table.from_pydict(rows, schema=EVENTS)


def executions_table(records: Sequence[ExecutionRecord], batch: str, errors: Sequence[str | None],
                     archived_ms: int) -> pa.Table:
    """One row per execution of ``records`` (``errors``: each one's error summary)."""
    rows: dict[str, list[Any]] = {name: [] for name in EXECUTIONS.names}
    for record, error in zip(records, errors, strict=True):
        meta = record.meta
        for name, value in (
            ("execution_id", record.execution_id), ("workflow", meta[b"w"].decode()),
            ("status", meta[b"st"].decode()), ("version", record.version),
            ("created", int(meta[b"c"])), ("updated", int(meta[b"u"])),
            ("ended", record.ended_ms), ("task_queue", meta.get(b"q", b"").decode() or None),
            ("last_hash", meta.get(b"h", b"").decode()), ("error", error),
            ("batch", batch), ("archived", archived_ms),
        ):
            rows[name].append(value)
    return pa.Table.from_pydict(rows, schema=EXECUTIONS)


def audit_table(entries: Iterable[Entry], batch: str) -> pa.Table:
    """One row per operator audit entry (``what``, ``operator`` and the rest as JSON)."""
    rows: dict[str, list[Any]] = {name: [] for name in AUDIT.names}
    for entry_id, fields in entries:
        detail = {k.decode(): v.decode(errors="replace") for k, v in fields.items()}
        for name, value in (
            ("entry_id", entry_id.decode()), ("at", int(entry_id.split(b"-")[0])),
            ("what", detail.pop("what", "")), ("operator", detail.pop("by", "")),
            ("detail", msgspec.json.encode(detail).decode()), ("batch", batch),
        ):
            rows[name].append(value)
    return pa.Table.from_pydict(rows, schema=AUDIT)


def to_parquet(table: pa.Table) -> bytes:
    """The table as one Parquet file (zstd-compressed)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return bytes(sink.getvalue().to_pybytes())


def from_parquet(data: bytes, path: str, columns: list[str] | None = None) -> pa.Table:
    """The table in one Parquet file; ArchiveError (naming it) for one that is not."""
    try:
        # one object is small; arrow's thread pool would only add threads that must be
        # torn down at exit
        return pq.read_table(pa.BufferReader(data), columns=columns, use_threads=False)
    except (pa.ArrowException, OSError) as exc:
        raise ArchiveError(f"archive object {path!r} is not a readable Parquet file: "
                           f"{exc}") from None


def _describe(body: bytes, seq: int) -> tuple[str, str | None, int | None, str | None]:
    """The query columns of one event body: type, step, attempt, operator."""
    try:
        event = decode_event(body, seq=seq, at_ms=0, prev_hash="")
    except PayloadDecodeError:
        return "?", None, None, None
    tag = type(event).__struct_config__.tag
    step = getattr(event, "step", None)
    attempt = getattr(event, "attempt", None)
    by = getattr(event, "by", None)
    return (str(tag), step if isinstance(step, str) else None,
            attempt if isinstance(attempt, int) else None, by if isinstance(by, str) else None)
