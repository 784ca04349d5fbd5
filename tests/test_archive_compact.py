"""Compaction of the archive: a day's batch files merged into one file per folder and
table, with every reader seeing each row exactly once before, during and after."""

from __future__ import annotations

import asyncio
import collections
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from zart_es.archive import Archive, ExecutionRecord, ObjectStore, compact_day, query

from .helpers import ROOT
from .test_archive_s3 import s3  # noqa: F401 (the fixture)

pytestmark = pytest.mark.pure

DAY = "2026-11-30"
DAY_MS = 1_796_000_000_000  # 2026-11-30 (UTC)


class Crash(Exception):
    """An injected crash of the compactor."""


def _record(execution_id: str, events: int, ended_ms: int) -> ExecutionRecord:
    entries = [(f"{ended_ms - events + i}-0".encode(),
                {b"s": str(i).encode(), b"p": f"h{i}".encode(), b"e": f"body-{i}".encode()})
               for i in range(events)]
    meta = {b"v": str(events).encode(), b"st": b"completed", b"w": b"ship",
            b"c": str(ended_ms - 1000).encode(), b"u": str(ended_ms).encode(),
            b"end": str(ended_ms).encode(), b"h": b"last"}
    return ExecutionRecord(execution_id, meta, entries)


async def _fill(root: Path | str, *, partitions: int = 2, batches: int = 5, per: int = 4,
                first: int = 0) -> dict[str, int]:
    """Write ``batches`` batches per partition (and audit batches) for DAY; returns each
    execution's event count."""
    archive = Archive(str(root))
    counts: dict[str, int] = {}
    for p in range(partitions):
        for b in range(first, first + batches):
            records = [_record(f"p{p}-b{b}-e{i}", 2 + i % 3, DAY_MS + b * 1000 + i)
                       for i in range(per)]
            counts.update((r.execution_id, len(r.entries)) for r in records)
            assert await archive.write_batch(p, DAY, f"{DAY_MS + b * 1000:013d}-{p:04d}-b{b}",
                                             records, errors=[None] * per, archived_ms=DAY_MS)
    for b in range(first, first + batches):
        entries = [(f"{DAY_MS + b * 1000 + i}-0".encode(), {b"what": b"pause", b"by": b"al"})
                   for i in range(3)]
        await archive.write_audit(DAY, entries[0][0].decode(), entries)
    return counts


async def _seen(root: Path | str) -> dict[str, Any]:
    """What every reader sees: rows per execution through DuckDB, the executions table,
    each execution's log through ``find``, and the audit log."""
    archive = Archive(str(root))
    _, events = await query(archive, "SELECT execution_id, count(*) FROM events GROUP BY ALL")
    _, raw = await query(archive, "SELECT count(*) FROM executions_raw")
    _, audit_rows = await query(archive, "SELECT count(*) FROM audit")
    table = await archive.executions()
    found = {}
    for execution_id in table["execution_id"].to_pylist():
        partition = int(execution_id[1])
        hit = await archive.find(execution_id, partition)
        assert hit is not None
        found[execution_id] = [e[0] for e in hit.entries]
    return {"events": dict(events), "executions": raw[0][0], "table": table.num_rows,
            "found": found, "audit": audit_rows[0][0], "log": (await archive.audit()).num_rows}


def _files(root: Path) -> collections.Counter[str]:
    """Parquet files per folder."""
    return collections.Counter(str(p.parent.relative_to(root)) for p in root.rglob("*.parquet"))


async def _objects(url: str) -> collections.Counter[str]:
    """Parquet objects per folder, in any store."""
    store = ObjectStore(url)
    found: collections.Counter[str] = collections.Counter()
    for table in ("events", "executions", "audit"):
        found.update(p.rsplit("/", 1)[0] for p in await store.list(table) if p.endswith(".parquet"))
    return found


async def test_compaction_keeps_every_row_and_leaves_one_file_per_folder(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    counts = await _fill(root)
    before = await _seen(root)
    assert before["events"] == counts
    assert before["executions"] == len(counts) == before["table"]
    assert set(_files(root).values()) == {5}

    done = await compact_day(Archive(str(root)), DAY)
    assert sorted(c.folder for c in done) == [
        f"audit/date={DAY}", f"partition=0/date={DAY}", f"partition=1/date={DAY}"]
    assert all(c.files_after in (1, 2) and c.files_before in (5, 10) for c in done)
    assert await _seen(root) == before
    assert set(_files(root).values()) == {1}
    assert len(_files(root)) == 5  # events and executions of 2 partitions, audit
    assert await compact_day(Archive(str(root)), DAY) == []  # nothing left to do


async def test_new_batches_of_a_compacted_day_are_merged_next_time(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    counts = await _fill(root, batches=3)
    await compact_day(Archive(str(root)), DAY)
    # executions that ended that day with a longer retention arrive later
    counts.update(await _fill(root, batches=2, first=3))
    assert (await _seen(root))["events"] == counts
    await compact_day(Archive(str(root)), DAY)
    seen = await _seen(root)
    assert seen["events"] == counts
    assert seen["audit"] == 5 * 3
    assert set(_files(root).values()) == {1}


def _crashing(monkeypatch: pytest.MonkeyPatch, method: str, after: int) -> None:
    """Make the compactor crash right after its ``after``-th call of ``method``."""
    calls = 0
    real = getattr(ObjectStore, method)

    async def call(self: ObjectStore, *args: Any) -> Any:
        nonlocal calls
        result = await real(self, *args)
        calls += 1
        if calls == after:
            raise Crash(f"after {method} {after}")
        return result

    monkeypatch.setattr(ObjectStore, method, call)


@pytest.mark.parametrize(("method", "after"), [
    ("put_new", 1),   # the compacted events file written, not its executions twin
    ("put_new", 2),   # both written, no input deleted yet
    ("delete", 1),    # one executions input deleted
    ("delete", 5),    # all executions inputs of partition 0 deleted, its events not yet
    ("delete", 8),    # 3 of partition 0's 5 events inputs deleted
    ("delete", 12),   # partition 0 done, partition 1 started
    ("delete", 21),   # both partitions done, the audit folder started
])
async def test_a_crash_anywhere_shows_each_row_once_and_a_rerun_finishes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str, after: int) -> None:
    root = tmp_path / "archive"
    counts = await _fill(root)
    before = await _seen(root)
    with monkeypatch.context() as patch:
        _crashing(patch, method, after)
        with pytest.raises(Crash):
            await compact_day(Archive(str(root)), DAY)
    assert await _seen(root) == before  # the intermediate state reads the same
    await compact_day(Archive(str(root)), DAY)
    assert await _seen(root) == before
    assert (await _seen(root))["events"] == counts
    assert set(_files(root).values()) == {1}


async def test_overlapping_compacted_files_show_each_row_once(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    """Two compactors that listed the folder at different moments, neither deleting yet:
    the inputs, a compacted file of 3 batches and one of those and 2 more all exist."""
    root = tmp_path / "archive"
    counts = await _fill(root, batches=3)

    async def keep(self: ObjectStore, path: str) -> None:
        return None

    with monkeypatch.context() as patch:
        patch.setattr(ObjectStore, "delete", keep)
        await compact_day(Archive(str(root)), DAY)
        counts.update(await _fill(root, batches=2, first=3))
        await compact_day(Archive(str(root)), DAY)
    assert set(_files(root).values()) == {7}  # 5 batches, 2 compacted files
    seen = await _seen(root)
    assert seen["events"] == counts
    assert seen["executions"] == len(counts)
    assert seen["audit"] == 15
    await compact_day(Archive(str(root)), DAY)
    assert await _seen(root) == seen
    assert set(_files(root).values()) == {1}


async def test_the_archiver_does_not_write_a_compacted_batch_again(tmp_path: Path) -> None:
    """A batch stored, then compacted, then retried (an archiver killed before it cleared
    its plan) is found stored: nothing is written twice."""
    root = tmp_path / "archive"
    await _fill(root, batches=2, partitions=1)
    archive = Archive(str(root))
    await compact_day(archive, DAY)
    records = [_record(f"p0-b0-e{i}", 2 + i % 3, DAY_MS + i) for i in range(4)]
    assert not await archive.write_batch(0, DAY, f"{DAY_MS:013d}-0000-b0", records,
                                         errors=[None] * 4, archived_ms=DAY_MS)
    entries = [(f"{DAY_MS + i}-0".encode(), {b"what": b"pause", b"by": b"al"})
               for i in range(5)]  # the retry found more entries than the batch holds
    last = await archive.write_audit(DAY, entries[0][0].decode(), entries)
    assert last == f"{DAY_MS + 2}-0".encode()
    assert set(_files(root).values()) == {1}


@pytest.mark.redis  # the tier of the S3 tests (a moto server in a thread)
async def test_compaction_on_s3(s3: str,  # noqa: F811 (the fixture)
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The same crash and re-run over the S3 code path (moto's S3 server)."""
    s3 = f"{s3}-compaction"  # moto keeps buckets across servers of one process
    counts = await _fill(s3, batches=4)
    before = await _seen(s3)
    with monkeypatch.context() as patch:
        _crashing(patch, "delete", 3)
        with pytest.raises(Crash):
            await compact_day(Archive(s3), DAY)
    assert await _seen(s3) == before
    await compact_day(Archive(s3), DAY)
    seen = await _seen(s3)
    assert seen == before
    assert seen["events"] == counts
    assert set((await _objects(s3)).values()) == {1}
    assert len(await _objects(s3)) == 5


def _compactor(root: Path, log: Path, kill_at: dict[str, str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **kill_at}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.apps.compactor_kill", "archive", "compact",
             "--archive-url", str(root), "--day", DAY],
            cwd=ROOT, env=env, stdout=out, stderr=out)


@pytest.mark.processes
async def test_kill9_of_the_compactor_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    counts = await _fill(root, partitions=3, batches=6)
    before = await _seen(root)
    log = tmp_path / "compactor.log"
    # killed after the first compacted file, then mid-delete, then before a delete
    for point in ({"ZART_TEST_KILL_PUT": "1"}, {"ZART_TEST_KILL_DELETE": "4"},
                  {"ZART_TEST_KILL_PUT": "3"}, {"ZART_TEST_KILL_DELETE": "15"}):
        proc = _compactor(root, log, point)
        await asyncio.to_thread(proc.wait, 60)
        assert proc.returncode == -9, log.read_text()
        assert await _seen(root) == before
    proc = _compactor(root, log, {})
    await asyncio.to_thread(proc.wait, 60)
    assert proc.returncode == 0, log.read_text()
    seen = await _seen(root)
    assert seen == before
    assert seen["events"] == counts
    assert set(_files(root).values()) == {1}
    assert len(_files(root)) == 7


@pytest.mark.redis
async def test_compacted_executions_read_the_same_through_the_client_and_cli(
        env: tuple[Any, Any], tmp_path: Path) -> None:
    import json

    from zart_es.engine import Archiver
    from zart_es.store import Deployment

    from .helpers import zart
    from .test_archive import _register

    client, registry = env
    _register(registry)
    root = tmp_path / "archive"
    ids = [await client.start("ship", {"n": n}) for n in range(1, 9)]
    for execution_id in ids:
        await client.result(execution_id, timeout=10)
    async with Deployment(client.url) as deployment:
        archiver = Archiver(deployment, Archive(str(root)), retention_ms=None,
                            retentions=registry.retentions(), owner="test", batch=2)
        await archiver.queue.announce_retention(registry.retentions())
        for _ in range(10):
            await archiver.tick()
        await archiver.aclose()
    assert sum(_files(root).values()) > 4  # several batches

    async def read() -> list[Any]:
        async with type(client)(client.url, archive_url=str(root)) as reader:
            return [(await reader.status(i), await reader.result(i, timeout=1),
                     [e async for e in reader.history(i)], await reader.verify(i),
                     {s.execution_id for s in await reader.list(archived=True)})
                    for i in ids]

    before = await read()
    assert [row[0].status for row in before] == ["completed"] * len(ids)
    assert before[0][4] == set(ids)
    refused = zart(client.url, "archive", "compact", "--archive-url", str(root))
    assert refused.returncode == 0, refused.stderr  # today is not closed: nothing done
    assert "nothing to compact" in refused.stdout
    today = zart(client.url, "archive", "compact", "--day", day_of_now(), "--archive-url",
                 str(root))
    assert today.returncode == 1
    assert today.stderr.startswith(f"zart-es: error: day {day_of_now()} is not closed yet")
    done = zart(client.url, "--json", "archive", "compact", "--day", day_of_now(), "--force",
                "--archive-url", str(root))
    assert done.returncode == 0, done.stderr
    assert {row["rows"] for row in json.loads(done.stdout)} >= {1}
    assert set(_files(root).values()) == {1}
    assert await read() == before
    trail = [fields for _, fields in await client.redis.xrange(client.keys.audit())]
    assert {f[b"folder"].decode() for f in trail if f[b"what"] == b"archive.compact"} == {
        row["folder"] for row in json.loads(done.stdout)}  # compaction is in the trail


def day_of_now() -> str:
    import time

    from zart_es.archive import day_of

    return day_of(round(time.time() * 1000))


def test_the_cli_picks_days_and_refuses_a_bad_one(tmp_path: Path) -> None:
    import json

    from .helpers import zart

    root = tmp_path / "archive"
    asyncio.run(_fill(root, partitions=1, batches=2))

    def compact(*args: str) -> subprocess.CompletedProcess[str]:
        return zart("redis://127.0.0.1:1", "archive", "compact", "--archive-url", str(root),
                    *args)  # no Redis is needed (nor reached)

    assert "nothing to compact (0 day(s) looked at)" in compact("--before", DAY).stdout
    assert set(_files(root).values()) == {2}
    done = compact("--json", "--before", "2026-12-01")
    assert done.returncode == 0, done.stderr
    assert [row["folder"] for row in json.loads(done.stdout)] == [
        f"partition=0/date={DAY}", f"audit/date={DAY}"]
    assert set(_files(root).values()) == {1}
    bad = compact("--day", "30/11/2026")
    assert bad.returncode == 1
    assert bad.stderr == "zart-es: error: not a day: '30/11/2026' (use YYYY-MM-DD)\n"
