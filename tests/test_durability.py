"""Timers, retries, zombies and Redis restarts, with real worker and server processes."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest
from redis.asyncio import Redis

from zart_es import Client, Context, Registry, Worker, durable
from zart_es.core import (
    ExecutionCompleted,
    RetryPolicy,
    RetryScheduled,
    StepCompleted,
    TimerFired,
    TimerSet,
)
from zart_es.store import Keys, RedisServer

from .helpers import (
    count_effects,
    effect_times,
    kill9,
    read_log,
    spawn_worker,
    stop_worker,
    wait_for,
)

pytestmark = pytest.mark.processes


async def _has(redis: Redis, eid: str, kind: type) -> bool:
    return any(isinstance(e, kind) for e in await read_log(redis, eid))


async def test_sleep_fires_at_original_due_time_across_worker_restart(
    redis_url: str, redis: Redis, effects: Path, tmp_path: Path
) -> None:
    async with Client(redis_url) as client:
        eid = await client.start("sleeper", {"seconds": 3.0})
        first = spawn_worker(redis_url, "tests.apps.crash", log=tmp_path / "w.log")
        await wait_for(lambda: _has(redis, eid, TimerSet), timeout=20)
        kill9(first)
        await asyncio.sleep(1.0)  # no worker for a while; the timer keeps running in Redis
        second = spawn_worker(redis_url, "tests.apps.crash", log=tmp_path / "w.log")
        try:
            assert await client.result(eid, timeout=20) == "woke"
        finally:
            stop_worker(second)
    events = await read_log(redis, eid)
    set_at = next(e.at_ms for e in events if isinstance(e, TimerSet))
    fired_at = next(e.at_ms for e in events if isinstance(e, TimerFired))
    assert 3000 <= fired_at - set_at <= 4000, fired_at - set_at  # never early, ~on time
    assert count_effects(effects, "before")["0"] == 1


async def test_sleep_due_while_no_worker_runs_fires_when_one_starts(
    redis_url: str, redis: Redis, effects: Path, tmp_path: Path
) -> None:
    async with Client(redis_url) as client:
        eid = await client.start("sleeper", {"seconds": 1.0})
        first = spawn_worker(redis_url, "tests.apps.crash", log=tmp_path / "w.log")
        await wait_for(lambda: _has(redis, eid, TimerSet), timeout=20)
        kill9(first)
        await asyncio.sleep(2.0)
        assert not await _has(redis, eid, TimerFired)
        second = spawn_worker(redis_url, "tests.apps.crash", log=tmp_path / "w.log")
        try:
            assert await client.result(eid, timeout=20) == "woke"
        finally:
            stop_worker(second)
    events = await read_log(redis, eid)
    set_at = next(e.at_ms for e in events if isinstance(e, TimerSet))
    fired_at = next(e.at_ms for e in events if isinstance(e, TimerFired))
    assert fired_at - set_at >= 2000  # late (no worker was up), never early
    assert sum(isinstance(e, TimerFired) for e in events) == 1


async def test_retry_attempts_follow_backoff_and_survive_worker_restart(
    redis_url: str, redis: Redis, effects: Path, tmp_path: Path
) -> None:
    async with Client(redis_url) as client:
        eid = await client.start("retrier", {"failures": 3, "delay": "400ms"})
        first = spawn_worker(redis_url, "tests.apps.crash", log=tmp_path / "w.log")

        async def two_retries() -> bool:
            log = await read_log(redis, eid)
            return sum(isinstance(e, RetryScheduled) for e in log) >= 2

        await wait_for(two_retries, timeout=20)
        kill9(first)  # during the second backoff (800 ms)
        second = spawn_worker(redis_url, "tests.apps.crash", log=tmp_path / "w.log")
        try:
            assert await client.result(eid, timeout=20) == 4
        finally:
            stop_worker(second)
    attempts = effect_times(effects, "attempt")
    assert [k for k, _ in attempts] == ["1", "2", "3", "4"]  # the count was not reset
    events = await read_log(redis, eid)
    scheduled = [e for e in events if isinstance(e, RetryScheduled)]
    # exponential backoff with its deterministic jitter: each delay in [d/2, d]
    policy = RetryPolicy.build(10, "exponential", "400ms", "10s")
    expected = [policy.delay_before(a, seed=f"{eid}:flaky") for a in (2, 3, 4)]
    assert [(e.attempt, e.delay_ms) for e in scheduled] == list(zip((2, 3, 4), expected,
                                                                    strict=True))
    for full, delay in zip((400, 800, 1600), expected, strict=True):
        assert full // 2 <= delay <= full
    gaps = [b - a for (_, a), (_, b) in itertools.pairwise(attempts)]
    for gap, delay in zip(gaps, (d / 1000 for d in expected), strict=True):
        assert gap >= delay - 0.01, gaps  # spaced by the backoff
        assert gap <= delay + 1.5, gaps  # and the restart did not restart the wait
    assert scheduled[0].error_type == "ConnectionError"


async def test_zombie_workers_record_each_step_once(redis_url: str, redis: Redis) -> None:
    """Two workers run one execution at the same time; the log keeps one record per step."""
    registry = Registry()
    calls: list[str] = []

    @durable("contended", registry=registry)
    async def contended(ctx: Context) -> int:
        total = 0
        for i in range(20):
            async def work(i: int = i) -> int:
                calls.append(f"s-{i}")
                await asyncio.sleep(0.01)
                return i

            total += await ctx.step(f"s-{i}", work)
        return total

    keys = Keys()
    async with Client(redis_url) as client:
        eid = await client.start("contended", None, execution_id="zombie")
        # a second work message for the same execution: two workers will take one each
        await redis.xadd(keys.work(keys.partition_of(eid)), {"x": eid})
        async with Worker(redis_url, registry=registry, consumer="a", lease_timeout=5,
                          concurrency=1), \
                Worker(redis_url, registry=registry, consumer="b", lease_timeout=5,
                       concurrency=1):
            assert await client.result(eid, timeout=20) == sum(range(20))
            await asyncio.sleep(0.3)
    events = await read_log(redis, eid)
    steps = [e.step for e in events if isinstance(e, StepCompleted)]
    assert steps == [f"s-{i}" for i in range(20)]
    assert sum(isinstance(e, ExecutionCompleted) for e in events) == 1
    assert len(calls) > 20  # both really ran steps (at least once), yet one record each


async def test_direct_race_between_two_runners(redis_url: str, redis: Redis) -> None:
    """Two runners folded at the same version: the loser adopts the winner's result."""
    from zart_es.engine._runner import StoreJournal, drive_execution
    from zart_es.store import Store

    registry = Registry()
    values = iter(range(100))

    @durable("race", registry=registry)
    async def race(ctx: Context) -> int:
        async def pick() -> int:
            value = next(values)
            await asyncio.sleep(0.05 if value == 0 else 0)
            return value

        a = await ctx.step("pick", pick)
        b = await ctx.step("echo", lambda: a)
        assert a == b
        return a

    async with Client(redis_url) as client:
        eid = await client.start("race", None, execution_id="race")
        store = Store(redis, Keys())
        j1, j2 = StoreJournal(store, eid), StoreJournal(store, eid)
        await j1.catch_up()
        await j2.catch_up()
        try:
            await asyncio.gather(drive_execution(j1, registry), drive_execution(j2, registry),
                                 return_exceptions=True)
        finally:
            await store.aclose()
        result = await client.result(eid, timeout=5)
    events = await read_log(redis, eid)
    picks = [e for e in events if isinstance(e, StepCompleted) and e.step == "pick"]
    assert len(picks) == 1
    assert result in (0, 1)


async def test_redis_restart_loses_no_acknowledged_step(
    tmp_path: Path, effects: Path
) -> None:
    """kill -9 Redis (AOF, appendfsync always) mid-loop, restart it on the same data."""
    server = RedisServer(tmp_path / "data", appendfsync="always").start()
    worker = None
    try:
        async with Client(server.url) as client:
            eid = await client.start("crash-loop", {"n": 40, "step_seconds": 0.03})
            worker = spawn_worker(server.url, "tests.apps.crash", log=tmp_path / "w.log")

            async def progressed() -> bool:
                return (await client.status(eid)).version >= 15

            await wait_for(progressed, timeout=20)
            raw = Redis.from_url(server.url)
            before = await raw.xrange(Keys().log(eid))
            await raw.aclose()
            server.kill()
            await asyncio.sleep(0.5)
            server.start()
            result = await client.result(eid, timeout=60)
        assert result == sum(range(40))
        raw = Redis.from_url(server.url)
        after = await raw.xrange(Keys().log(eid))
        await raw.aclose()
        assert after[: len(before)] == before  # every acknowledged entry survived
        assert len(after) == 42  # started + 40 steps + completed, nothing twice
        runs = count_effects(effects, "done")
        assert all(runs[str(i)] >= 1 for i in range(40))
        assert sum(n - 1 for n in runs.values()) <= 1  # at most the step in flight re-ran
    finally:
        if worker is not None:
            stop_worker(worker)
        server.stop()


async def test_sigterm_finishes_the_step_in_flight_and_hands_the_execution_over(
    redis_url: str, redis: Redis, effects: Path, tmp_path: Path
) -> None:
    keys = Keys()
    async with Client(redis_url) as client:
        eid = await client.start("crash-loop", {"n": 12, "step_seconds": 0.3})
        # a long lease: the second worker can only take over this fast if the first
        # handed the execution back instead of leaving it to be reclaimed
        first = spawn_worker(redis_url, "tests.apps.crash", lease=60, log=tmp_path / "w.log")

        async def progressed() -> bool:
            return (await client.status(eid)).version >= 4

        await wait_for(progressed, timeout=20)
        loop = asyncio.get_running_loop()
        started = loop.time()
        code = await asyncio.to_thread(stop_worker, first, 10)
        assert code == 0
        assert loop.time() - started < 2.0  # one step (0.3 s), not the whole loop
        stream = keys.work(keys.partition_of(eid))
        pending = await redis.xpending(stream, "workers")
        assert pending["pending"] == 0  # nothing left waiting for a lease
        assert await redis.xlen(stream) == 1  # one fresh message for the next worker
        second = spawn_worker(redis_url, "tests.apps.crash", lease=60, log=tmp_path / "w.log")
        try:
            assert await client.result(eid, timeout=20) == sum(range(12))
        finally:
            stop_worker(second)
    assert count_effects(effects, "done") == {str(i): 1 for i in range(12)}
