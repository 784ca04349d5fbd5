"""Several worker processes share the partitions; two die mid-run; nothing is lost or
recorded twice. Plus the health probe."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from zart_es import Client
from zart_es.core import TERMINAL_EVENTS, StepCompleted
from zart_es.store import Keys, to_event

from .helpers import ROOT, kill9, spawn_worker, stop_worker

pytestmark = pytest.mark.processes

EXECUTIONS, STEPS = 1000, 5


async def test_four_workers_thousand_executions_two_killed(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    async with Client(redis_url) as client:
        workers = [spawn_worker(redis_url, "tests.apps.crash", log=tmp_path / f"w{i}.log")
                   for i in range(4)]
        try:
            ids = [await client.start("pooled", STEPS, execution_id=f"pool-{i}")
                   for i in range(EXECUTIONS)]
            keys = Keys()

            async def completed() -> int:
                return len(await client.list(status="completed", limit=EXECUTIONS))

            while await completed() < EXECUTIONS // 4:
                await asyncio.sleep(0.05)
            kill9(workers[0])
            kill9(workers[1])
            results = await asyncio.gather(*(client.result(i, timeout=120) for i in ids))
        finally:
            for worker in workers:
                stop_worker(worker)
    assert results == [sum(range(STEPS))] * EXECUTIONS
    pipe = redis.pipeline(transaction=False)
    for eid in ids:
        pipe.xrange(keys.log(eid))
    for eid, entries in zip(ids, await pipe.execute(), strict=True):
        events = [to_event(i, f) for i, f in entries]
        steps = [e.step for e in events if isinstance(e, StepCompleted)]
        assert steps == [f"p-{i}" for i in range(STEPS)], eid
        assert sum(isinstance(e, TERMINAL_EVENTS) for e in events) == 1, eid


def test_health_probe(redis_url: str, tmp_path: Path) -> None:
    def health(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "zart_es", "health", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=30, check=False)

    assert health("--redis-url", redis_url).stdout.strip() == "ok"
    down = health("--redis-url", "redis://127.0.0.1:1/0")
    assert down.returncode == 1
    assert down.stderr.startswith("zart-es: error: cannot reach Redis")
    beat = tmp_path / "alive"
    missing = health("--redis-url", redis_url, "--heartbeat-file", str(beat))
    assert "no heartbeat file" in missing.stderr
    worker = spawn_worker(redis_url, "tests.apps.crash", extra=["--heartbeat-file", str(beat)])
    try:
        deadline = time.monotonic() + 20
        while not beat.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert health("--redis-url", redis_url, "--heartbeat-file", str(beat)).returncode == 0
    finally:
        stop_worker(worker)
    old = time.time() - 120
    os.utime(beat, (old, old))
    stale = health("--redis-url", redis_url, "--heartbeat-file", str(beat), "--max-age", "30")
    assert stale.returncode == 1
    # 120 s plus the time the probe took to start on a loaded machine
    assert re.search(r"heartbeat is 1[2-4]\ds old \(max 30s\)", stale.stderr), stale.stderr
