"""Compaction of the archive: files and bytes of a day before and after, and the time of
an audit query over it.

A day of EXECUTIONS executions of 5 steps (7 events each, real msgpack event bodies and
hash-chain links) is written the way the archiver writes it under a steady trickle: one
batch file per partition every 5 minutes (288 a day per partition and table), then
``compact_day`` merges it. Reported: Parquet files and bytes before and after, and the
median of ROUNDS runs of ``zart-es audit query``'s work (the archive read through its
object store and the SQL run by DuckDB) for three queries, before and after. No Redis.

    python bench/compaction.py [--executions 50000] [--partitions 4] [--batches 288]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import tempfile
import time
from pathlib import Path

from common import ROUNDS, median

from zart_es.archive import Archive, ExecutionRecord, compact_day, query
from zart_es.core import (
    Event,
    ExecutionCompleted,
    ExecutionStarted,
    StepCompleted,
    encode_event,
)

DAY = "2026-11-30"
DAY_MS = 1_796_000_000_000  # 2026-11-30 00:00 UTC (about)
QUERIES = {
    "audit query, count events by type":
        "SELECT event_type, count(*) FROM events GROUP BY ALL",
    "audit query, one execution's log":
        "SELECT seq, event_type FROM events WHERE execution_id = 'e-00000042' ORDER BY seq",
    "audit query, executions per workflow":
        "SELECT workflow, status, count(*) FROM executions GROUP BY ALL",
}

SAMPLE, SAMPLE_PARTITION = "e-00000000", 0  # the first execution of partition 0
FIND = "find one execution (the Client's read-through)"


def record(n: int, ended_ms: int) -> ExecutionRecord:
    execution_id = f"e-{n:08d}"
    events: list[Event] = [ExecutionStarted(execution_id=execution_id, workflow="checkout",
                               input=b"\x81\xa5order\xcd" + n.to_bytes(2, "big"))]
    events += [StepCompleted(step=f"step-{i}", result=b"\xa2ok", duration_us=1200 + i)
               for i in range(5)]
    events.append(ExecutionCompleted(result=b"\xc3"))
    entries, prev = [], ""
    for seq, event in enumerate(events):
        body = encode_event(event)
        entries.append((f"{ended_ms - len(events) + seq}-0".encode(),
                        {b"s": str(seq).encode(), b"p": prev.encode(), b"e": body}))
        prev = hashlib.sha1(prev.encode() + body, usedforsecurity=False).hexdigest()
    meta = {b"v": str(len(events)).encode(), b"st": b"completed", b"w": b"checkout",
            b"c": str(ended_ms - 50).encode(), b"u": str(ended_ms).encode(),
            b"end": str(ended_ms).encode(), b"h": prev.encode()}
    return ExecutionRecord(execution_id, meta, entries)


async def fill(archive: Archive, executions: int, partitions: int, batches: int) -> int:
    """Write the day; returns the executions written."""
    per = executions // (partitions * batches) or 1
    n = 0
    for b in range(batches):
        at = DAY_MS + b * 300_000
        for p in range(partitions):
            records = [record(n + i, at + i) for i in range(per)]
            n += per
            await archive.write_batch(p, DAY, f"{at:013d}-{p:04d}-b{b}", records,
                                      errors=[None] * per, archived_ms=at)
    return n


def files(root: Path) -> tuple[int, int]:
    found = list(root.rglob("*.parquet"))
    return len(found), sum(p.stat().st_size for p in found)


async def timed(url: str) -> dict[str, float]:
    """Median seconds of each query, a fresh Archive per run (as the CLI does)."""
    times: dict[str, list[float]] = {name: [] for name in QUERIES}
    for _ in range(ROUNDS):
        for name, sql in QUERIES.items():
            start = time.perf_counter()
            await query(Archive(url), sql)
            times[name].append(time.perf_counter() - start)
    for _ in range(ROUNDS):  # the client's read-through of one archived execution
        start = time.perf_counter()
        found = await Archive(url).find(SAMPLE, SAMPLE_PARTITION)
        if found is None or len(found.entries) != 7:
            raise SystemExit(f"{SAMPLE} did not read back: {found}")
        times.setdefault(FIND, []).append(time.perf_counter() - start)
    return {name: median(values) for name, values in times.items()}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=50_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--batches", type=int, default=288,
                        help="batches per partition and table in the day (288: one per 5 min)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "archive"
        written = await fill(Archive(str(root)), args.executions, args.partitions,
                             args.batches)
        count_before, bytes_before = files(root)
        before = await timed(str(root))
        start = time.perf_counter()
        await compact_day(Archive(str(root)), DAY)
        took = time.perf_counter() - start
        count_after, bytes_after = files(root)
        after = await timed(str(root))
        _, rows = await query(Archive(str(root)), "SELECT count(*) FROM events")
    print(f"a day of {written} executions (7 events each, {rows[0][0]} events), "
          f"{args.partitions} partitions, {args.batches} batches per partition")
    print(f"  files: {count_before} -> {count_after}; "
          f"bytes: {bytes_before:,} -> {bytes_after:,} "
          f"({bytes_after / bytes_before:.0%}); compaction took {took:.1f} s")
    for name in before:
        print(f"  {name}: {before[name] * 1000:.0f} ms -> "
              f"{after[name] * 1000:.0f} ms (median of {ROUNDS})")


if __name__ == "__main__":
    asyncio.run(main())
