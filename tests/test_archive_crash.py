"""kill -9 of archivers mid-batch: every execution is in the archive exactly once."""

from __future__ import annotations

import asyncio
import collections
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from zart_es import Client, Worker
from zart_es.archive import Archive
from zart_es.workflow import Registry

from .helpers import ROOT, kill9, spawn_worker, wait_for

pytestmark = pytest.mark.processes

EXECUTIONS = 600


def _archiver(url: str, root: Path, log: Path,
              kill_at: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(kill_at or {})}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.apps.archiver_kill", "--redis-url", url, "archiver",
             "--archive-url", str(root), "--retention", "0", "--poll-interval", "0.05",
             "--lease-timeout", "0.5", "--batch", "10"],
            cwd=ROOT, env=env, start_new_session=True, stdout=out, stderr=out)


async def test_kill9_mid_batch_loses_and_duplicates_nothing(redis_url: str,
                                                            tmp_path: Path) -> None:
    from tests.apps import archived

    registry = Registry()
    registry.register("archived-steps", archived.archived_steps, retention=0)
    root = tmp_path / "archive"
    async with Client(redis_url) as client:
        async with Worker(redis_url, registry=registry, poll_interval=0.05):  # no archive
            ids = [await client.start("archived-steps", n) for n in range(EXECUTIONS)]
            for execution_id in ids:
                await client.result(execution_id, timeout=30)
        assert (await client.stats()).total == EXECUTIONS

        rng = random.Random(11)
        keys = client.keys
        plans = [keys.archiver(p) for p in range(keys.partitions)]

        async def mid_batch() -> bool:
            pipe = client.redis.pipeline(transaction=False)
            for key in plans:
                pipe.hexists(key, "plan")
            return any(await pipe.execute())

        kills = 0
        # each process dies by SIGKILL at a chosen point of a batch: after an object write
        # (between a batch's two objects, or before its purge), mid-purge, or at a random
        # moment while a batch is planned
        points = [{"ZART_TEST_KILL_PUT": "1"}, {"ZART_TEST_KILL_PUT": "2"},
                  {"ZART_TEST_KILL_PURGE": "4"}, {"ZART_TEST_KILL_PUT": "3"},
                  {"ZART_TEST_KILL_PURGE": "13"}, {}, {"ZART_TEST_KILL_PUT": "6"}, {}]
        for point in points:
            proc = _archiver(redis_url, root, tmp_path / "archiver.log", point)
            if point:
                await asyncio.to_thread(proc.wait, 30)
                assert proc.returncode == -9
            else:
                await wait_for(mid_batch, timeout=30, interval=0.001)
                await asyncio.sleep(rng.uniform(0, 0.02))  # somewhere in the batch
                kill9(proc)
            kills += 1
        proc = _archiver(redis_url, root, tmp_path / "archiver.log")  # the survivor
        try:
            async def emptied() -> bool:
                return (await client.stats()).total == 0
            await wait_for(emptied, timeout=60)
        finally:
            kill9(proc)
        assert kills >= 2

    archive = Archive(str(root))
    executions = await archive.table("executions")
    events = await archive.table("events")
    assert executions is not None
    assert events is not None
    per_execution = collections.Counter(executions["execution_id"].to_pylist())
    assert set(per_execution) == set(ids)
    assert set(per_execution.values()) == {1}, "an execution was archived twice"
    rows = collections.Counter(events["execution_id"].to_pylist())
    assert set(rows.values()) == {5}, "events lost or written twice"  # start, 3 steps, end
    async with Client(redis_url, archive_url=str(root)) as reader:
        for n in rng.sample(range(EXECUTIONS), 20):
            assert await reader.verify(ids[n]) is None
            assert await reader.result(ids[n], timeout=1) == 3 * n + 3


async def test_kill9_of_the_archiving_worker_hands_its_partitions_on(
        redis_url: str, tmp_path: Path) -> None:
    root = tmp_path / "archive"
    extra = ["--archive-url", str(root), "--retention", "0"]
    workers = [spawn_worker(redis_url, "tests.apps.archived", extra=extra,
                            log=tmp_path / f"w{i}.log") for i in range(2)]
    try:
        async with Client(redis_url, archive_url=str(root)) as client:
            ids = [await client.start("archived-steps", n) for n in range(200)]
            for n in (0, 50, 199):
                assert await client.result(ids[n], timeout=60) == 3 * n + 3
            # kill -9 the worker archiving partition 0: the other takes it after the 1 s lease
            lease = await client.redis.hget(client.keys.archiver(0), "lease")
            assert lease is not None
            holder = int(lease.decode().split()[0].split("-")[-2])  # <host>-<pid>-<hex>
            victim = next(proc for proc in workers if proc.pid == holder)
            kill9(victim)
            more = [await client.start("archived-steps", n) for n in range(200, 300)]

            async def all_archived() -> bool:
                return (await client.stats()).total == 0
            await wait_for(all_archived, timeout=60)

            async def taken_over() -> bool:
                lease = await client.redis.hget(client.keys.archiver(0), "lease")
                return int(lease.decode().split()[0].split("-")[-2]) != holder
            await wait_for(taken_over, timeout=10)
    finally:
        for proc in workers:
            kill9(proc)
    executions = await Archive(str(root)).table("executions")
    assert executions is not None
    counts = collections.Counter(executions["execution_id"].to_pylist())
    assert set(counts) == {*ids, *more}
    assert set(counts.values()) == {1}
