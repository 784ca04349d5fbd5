"""Named sleeps, sleep_until, retry jitter, Client.wait and stats, on a real Redis."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from zart_es import Client, Context, Registry, durable
from zart_es.core import RetryPolicy, RetryScheduled, TimerSet

from .helpers import read_log

pytestmark = pytest.mark.redis


async def test_named_sleep_is_recorded_under_its_name(
    env: tuple[Client, Registry], redis: Redis
) -> None:
    client, registry = env

    @durable("named-sleep", registry=registry)
    async def named(ctx: Context) -> str:
        await ctx.sleep(0.05)
        await ctx.sleep("50ms", name="cool-down")
        await ctx.sleep(0.05)
        return "ok"

    eid = await client.start("named-sleep")
    assert await client.result(eid, timeout=10) == "ok"
    timers = [e.timer for e in await read_log(redis, eid) if isinstance(e, TimerSet)]
    assert timers == ["sleep-0", "sleep:cool-down", "sleep-1"]


@pytest.mark.parametrize(("name", "error"), [("", "InvalidStepName"),
                                             ("twice", "DuplicateStepName")])
async def test_bad_sleep_names_fail_clearly(
    env: tuple[Client, Registry], name: str, error: str
) -> None:
    client, registry = env

    @durable(f"bad-sleep-{error}", registry=registry)
    async def bad(ctx: Context) -> None:
        await ctx.sleep(0.01, name=name)
        await ctx.sleep(0.01, name=name)  # a second sleep of the same name

    eid = await client.start(f"bad-sleep-{error}")
    status = await client.wait(eid, 10)
    assert status.status == "failed"
    assert status.error is not None
    assert status.error.startswith(error)


async def test_sleep_until_waits_for_the_instant_and_records_it(
    env: tuple[Client, Registry], redis: Redis
) -> None:
    client, registry = env
    due = datetime.now(UTC) + timedelta(milliseconds=400)
    past = datetime.now(UTC) - timedelta(days=1)

    @durable("until", registry=registry)
    async def until(ctx: Context) -> float:
        await ctx.sleep_until(past)  # recorded; due on Redis' clock, so it fires at once
        await ctx.sleep_until(due, name="at-due")
        return time.time()

    eid = await client.start("until")
    woke = await client.result(eid, timeout=10)
    assert woke >= due.timestamp()
    sets = [e for e in await read_log(redis, eid) if isinstance(e, TimerSet)]
    assert [(e.timer, e.due_ms) for e in sets] == [
        ("sleep-0", int(past.timestamp() * 1000)),
        ("sleep:at-due", int(due.timestamp() * 1000))]


async def test_sleep_until_needs_an_aware_datetime(env: tuple[Client, Registry]) -> None:
    client, registry = env

    @durable("naive", registry=registry)
    async def naive(ctx: Context) -> None:
        await ctx.sleep_until(datetime(2030, 1, 1))

    status = await client.wait(await client.start("naive"), 10)
    assert status.status == "failed"
    assert status.error is not None
    assert "timezone-aware" in status.error


async def test_retry_delays_carry_deterministic_jitter(
    env: tuple[Client, Registry], redis: Redis
) -> None:
    client, registry = env
    failures = {"n": 0}

    def flaky() -> str:
        failures["n"] += 1
        if failures["n"] <= 2:
            raise RuntimeError("not yet")
        return "done"

    @durable("jittery", registry=registry)
    async def jittery(ctx: Context) -> str:
        return await ctx.step_with_retry("call", flaky, retries=3, delay="100ms",
                                         max_delay="1s")

    eid = await client.start("jittery", execution_id="jitter-1")
    assert await client.result(eid, timeout=10) == "done"
    scheduled = [e for e in await read_log(redis, eid) if isinstance(e, RetryScheduled)]
    policy = RetryPolicy.build(3, "exponential", "100ms", "1s")
    expected = [policy.delay_before(a, seed="jitter-1:call") for a in (2, 3)]
    assert [e.delay_ms for e in scheduled] == expected
    assert 50 <= expected[0] <= 100
    assert 100 <= expected[1] <= 200


async def test_wait_returns_the_status_without_raising(env: tuple[Client, Registry]) -> None:
    client, registry = env

    @durable("slow-then-fail", registry=registry)
    async def slow(ctx: Context) -> None:
        await ctx.sleep(0.5)
        await ctx.step("boom", lambda: 1 / 0)

    eid = await client.start("slow-then-fail")
    early = await client.wait(eid, 0.1)
    assert (early.done, early.status) == (False, "sleeping")
    late = await client.wait(eid, 10)
    assert (late.done, late.status) == (True, "failed")


async def test_stats_follow_every_status_change(env: tuple[Client, Registry]) -> None:
    client, registry = env

    @durable("counted", registry=registry)
    async def counted(ctx: Context, fail: bool) -> None:
        await ctx.sleep(0.05)
        if fail:
            raise ValueError("asked to")

    ids = [await client.start("counted", i % 3 == 0) for i in range(9)]
    for eid in ids:
        await client.wait(eid, 10)
    stats = await client.stats()
    assert stats.by_workflow["counted"] == {"completed": 6, "failed": 3}
    assert stats.by_state["completed"] == 6
    assert stats.by_state["running"] == 0
    assert stats.total == 9
