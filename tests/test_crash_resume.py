"""Kill -9 real worker processes mid-loop; every run resumes where it stopped.

Guarantees (DESIGN §3): a completed step is never re-executed; side effects run at least
once and are recorded exactly once; a worker crash anywhere lets the execution finish on
another worker.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path

import pytest
from redis.asyncio import Redis

from zart_es import Client
from zart_es.core import ExecutionCompleted, StepCompleted

from .helpers import count_effects, kill9, read_log, spawn_worker, stop_worker, wait_for

pytestmark = pytest.mark.processes

N = 50
# 12 crash points: 'before' = between steps, 'after' = inside a step (effect done, not recorded)
POINTS = ["0:after", "3:before", "7:after", "12:before", "18:after", "21:before",
          "27:after", "33:before", "38:after", "41:before", "45:after", "49:before"]


async def test_loop_survives_a_dozen_kill9s(
    redis_url: str, redis: Redis, effects: Path, tmp_path: Path
) -> None:
    env = {"CRASH_POINTS": ",".join(POINTS), "CRASH_DIR": str(tmp_path)}
    async with Client(redis_url) as client:
        eid = await client.start("crash-loop", {"n": N}, execution_id="crash-1")
        kills = 0
        while True:
            proc = spawn_worker(redis_url, "tests.apps.crash", env=env, log=tmp_path / "w.log")
            try:
                outcome = await _until_exit_or_done(proc, client, eid)
            finally:
                if proc.poll() is None:
                    stop_worker(proc)
            if outcome == "done":
                break
            assert outcome == -signal.SIGKILL, f"worker exited with {outcome}"
            kills += 1
            assert kills <= len(POINTS), "more crashes than crash points"
        assert kills == len(POINTS)
        assert await client.result(eid, timeout=5) == sum(range(N))

    runs = count_effects(effects, "done")
    in_flight = {int(p.split(":")[0]) for p in POINTS if p.endswith(":after")}
    assert runs["0"] == 1 or 0 in in_flight
    for i in range(N):
        expected = 2 if i in in_flight else 1
        assert runs[str(i)] == expected, f"item {i} ran {runs[str(i)]} times"

    events = await read_log(redis, eid)
    completed = [e.step for e in events if isinstance(e, StepCompleted)]
    assert completed == [f"item-{i}" for i in range(N)]  # once each, in order
    assert sum(isinstance(e, ExecutionCompleted) for e in events) == 1
    assert [e.seq for e in events] == list(range(len(events)))


async def test_external_kill9_at_random_moments(
    redis_url: str, redis: Redis, effects: Path, tmp_path: Path
) -> None:
    """SIGKILL from outside at 10 moments chosen by progress, while steps are in flight."""
    async with Client(redis_url) as client:
        eid = await client.start("crash-loop", {"n": 60, "step_seconds": 0.03},
                                 execution_id="crash-2")
        for target in range(4, 60, 6):  # 10 kills
            proc = spawn_worker(redis_url, "tests.apps.crash", log=tmp_path / "w.log")

            async def reached(target: int = target) -> bool:
                return (await client.status(eid)).version >= target + 1

            await wait_for(reached, timeout=30)
            kill9(proc)
        proc = spawn_worker(redis_url, "tests.apps.crash", log=tmp_path / "w.log")
        try:
            assert await client.result(eid, timeout=60) == sum(range(60))
        finally:
            stop_worker(proc)
    runs = count_effects(effects, "done")
    assert runs["0"] == 1
    assert all(runs[str(i)] in (1, 2) for i in range(60))
    assert sum(1 for i in range(60) if runs[str(i)] == 2) <= 10  # at most one per kill
    completed = [e.step for e in await read_log(redis, eid) if isinstance(e, StepCompleted)]
    assert completed == [f"item-{i}" for i in range(60)]


async def _until_exit_or_done(
    proc: subprocess.Popen[bytes], client: Client, eid: str
) -> int | str:
    while True:
        code = proc.poll()
        if code is not None:
            return code
        if (await client.status(eid)).done:
            return "done"
        await asyncio.sleep(0.05)
