"""SQL over the archive with DuckDB (``zart-es archive query``).

The archive's Parquet objects are read through the archive's object store (a directory
or a bucket: no DuckDB extension, no network of its own) and offered as views:

- ``executions``: one row per archived execution (its newest snapshot): ``execution_id,
  workflow, status, version, created, updated, ended, task_queue, last_hash, error,
  batch, archived, date, partition``;
- ``events``: one row per event of those snapshots: ``execution_id, workflow, seq,
  entry_id, at, event_type, step, attempt, operator, body, prev_hash, batch, date, partition``;
- ``audit``: the operator audit stream: ``entry_id, at, what, operator, detail (JSON), date``.

``since``/``until`` (days) bound what is read: a query of last week reads last week's
objects only.
"""

from __future__ import annotations

import asyncio
from typing import Any

import duckdb
import pyarrow as pa

from zart_es.archive._archive import Archive
from zart_es.archive._tables import AUDIT, EVENTS, EXECUTIONS
from zart_es.core import ArchiveError

VIEWS = """
CREATE VIEW executions AS
  SELECT * EXCLUDE (_rank) FROM (
    SELECT *, row_number() OVER (PARTITION BY execution_id
                                 ORDER BY created DESC, version DESC, archived DESC) AS _rank
    FROM executions_raw) WHERE _rank = 1;
CREATE VIEW events AS
  SELECT e.* FROM events_raw e
  WHERE EXISTS (SELECT 1 FROM executions x
                WHERE x.execution_id = e.execution_id AND x.batch = e.batch);
CREATE VIEW audit AS SELECT * FROM audit_raw;
"""


async def query(archive: Archive, sql: str, *, since: str = "",
                until: str = "") -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run ``sql`` over the archive's views; (column names, rows). ArchiveError names a
    query DuckDB refused."""
    tables: dict[str, pa.Table] = {}
    for name, schema in (("events", EVENTS), ("executions", EXECUTIONS), ("audit", AUDIT)):
        found = await archive.table(name, since, until)
        tables[name] = found if found is not None else _empty(schema, name)
    return await asyncio.to_thread(_run, tables, sql)


def _empty(schema: pa.Schema, name: str) -> pa.Table:
    fields = [*schema, pa.field("date", pa.date32())]
    if name != "audit":
        fields.append(pa.field("partition", pa.int32()))
    return pa.schema(fields).empty_table()


def _run(tables: dict[str, pa.Table], sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    with duckdb.connect(":memory:") as db:
        for name, table in tables.items():
            db.register(f"{name}_raw", table)
        db.execute(VIEWS)
        try:
            cursor = db.execute(sql)
        except duckdb.Error as exc:
            raise ArchiveError(f"archive query failed: {str(exc).splitlines()[0]}") from None
        columns = [d[0] for d in cursor.description or []]
        return columns, cursor.fetchall()
