"""Hostile entries in Redis: whatever bytes someone with write access puts where a worker's
loop reads, that one entry is set aside (or skipped) and everything else keeps flowing.

Each loop that reads data written to Redis has a test here: the timer wheel (with a
hypothesis property over arbitrary members and scores), the work streams, the scheduler,
the archiver, the queue gate and the task-queue routes.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from tests.helpers import wait_for
from zart_es import Client, Context, Registry, Worker, durable
from zart_es.engine import TimerPoller
from zart_es.engine._timers import MAX_DUE_MS, UnusableTimer, read_timer
from zart_es.store import Keys

pytestmark = pytest.mark.redis

KEYS = Keys()


# -- the timer wheel ---------------------------------------------------------------------


def _member_on(partition: int, timer: str = "sleep-0") -> bytes:
    """A well-formed member of an execution that lives on ``partition``."""
    n = 0
    while KEYS.partition_of(f"x{n}") != partition:
        n += 1
    return KEYS.timer_member(f"x{n}", timer).encode()


@pytest.mark.pure
@pytest.mark.parametrize(("raw", "score", "kind"), [
    (b"\xff\xfe sleep-0", 1.0, "encoding"),
    (_member_on(0, "timeout:99999999999999999999999"), 1.0, "name"),
    (_member_on(0, "timeout:0"), 1.0, "name"),
    (_member_on(0, "timeout:-5"), 1.0, "name"),
    (_member_on(0), math.inf, "score"),
    (_member_on(0), -math.inf, "score"),
    (_member_on(0), math.nan, "score"),
    (_member_on(0), -1.0, "score"),
    (_member_on(0), 1e30, "score"),
    (_member_on(0), float(2**64), "score"),
    (b"", 1.0, "name"),
    (b"no-timer-name", 1.0, "name"),
    (_member_on(1), 1.0, "partition"),
])
def test_read_timer_names_what_is_wrong(raw: bytes, score: float, kind: str) -> None:
    with pytest.raises(UnusableTimer) as caught:
        read_timer(KEYS, 0, raw, score)
    assert caught.value.kind == kind


@pytest.mark.pure
@given(raw=st.binary(max_size=60), score=st.floats())
def test_read_timer_takes_any_bytes_and_any_score(raw: bytes, score: float) -> None:
    """It returns a timer or raises UnusableTimer: never anything else."""
    try:
        due = read_timer(KEYS, 0, raw, score)
    except UnusableTimer:
        return
    assert 0 <= score <= MAX_DUE_MS
    assert KEYS.partition_of(due.execution_id) == 0


async def test_a_non_utf8_member_and_an_overflowing_deadline_are_set_aside(
    env: tuple[Client, Registry], redis: Redis, worker: Worker
) -> None:
    """Before: either one crashed the poller over and over, and a 1 s sleeper of the same
    partition was not woken 15 s later."""
    client, registry = env

    @durable("napper", registry=registry)
    async def napper(ctx: Context) -> str:
        await ctx.sleep("300ms")
        return "woke"

    eid = await client.start("napper")
    p = client.keys.partition_of(eid)
    huge = _member_on(p, "timeout:99999999999999999999999")
    hostile = {b"\xc3\x28 sleep-0": 1.0, huge: 2.0, _member_on(p, "sleep-9"): 1e30,
               _member_on(p, "sleep-8"): -math.inf, _member_on(p, "sleep-7"): math.inf}
    await redis.zadd(client.keys.timers(p), hostile)
    assert await client.result(eid, timeout=10) == "woke"
    await wait_for(lambda: _count(redis, client.keys.bad_timers(p), len(hostile)), timeout=5)
    assert set(await redis.zrange(client.keys.timers(p), 0, -1)) == set()
    assert worker.loops.crashed_at == {}
    assert worker.metrics.timers_set_aside.labels(p, "score")._value.get() == 3
    assert worker.metrics.timers_set_aside.labels(p, "encoding")._value.get() == 1


async def _count(redis: Redis, key: str, n: int) -> bool:
    return int(await redis.zcard(key)) == n


_SCORES = st.one_of(
    st.floats(allow_nan=False),  # Redis refuses NaN scores: it cannot be in a wheel
    st.integers(-(2**70), 2**70).map(float),
    st.integers(0, 10**12).map(float),  # due long ago: fired (or set aside) at once
)
_MEMBERS = st.one_of(
    st.binary(max_size=40),
    st.builds(lambda eid, timer: f"{eid} {timer}".encode(),
              st.text("abcdef0123456789-", min_size=1, max_size=12),
              st.one_of(st.text(max_size=12), st.integers().map(lambda n: f"timeout:{n}"))),
)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hostile=st.lists(st.tuples(st.integers(0, 15), _MEMBERS, _SCORES), max_size=8),
       sleepers=st.integers(1, 3))
async def test_every_valid_sleeper_wakes_whatever_else_is_in_the_wheel(
    env: tuple[Client, Registry], redis: Redis, worker: Worker,
    hostile: list[tuple[int, bytes, float]], sleepers: int,
) -> None:
    client, registry = env
    if "sleeper" not in registry.names():
        @durable("sleeper", registry=registry)
        async def sleeper(ctx: Context) -> str:
            await ctx.sleep("50ms")
            return "woke"

    for partition, raw, score in hostile:
        await redis.zadd(client.keys.timers(partition), {raw: score})
    ids = [await client.start("sleeper") for _ in range(sleepers)]
    results = await asyncio.gather(*(client.result(e, timeout=15) for e in ids))
    assert results == ["woke"] * sleepers
    assert worker.loops.crashed_at == {}
    # what stays in a wheel is not due yet (a hostile member is set aside when it is)
    now_ms = (await redis.time())[0] * 1000
    for p in range(client.keys.partitions):
        for _, score in await redis.zrange(client.keys.timers(p), 0, -1, withscores=True):
            assert now_ms - 1000 < score <= MAX_DUE_MS


async def test_the_poller_ticks_on_when_setting_aside_a_member_of_every_kind(
    client_only: Client, redis: Redis
) -> None:
    keys = client_only.keys
    for p in range(keys.partitions):
        await redis.zadd(keys.timers(p), {b"\x80": 1, b"": 2, _member_on(p): math.inf})
    poller = TimerPoller(client_only.store, keys, poll_interval=0.5)
    await poller.tick()
    assert poller.set_aside == 3 * keys.partitions
    assert await poller.tick() == 0.5


@pytest.fixture
async def client_only(redis_url: str) -> Any:
    async with Client(redis_url) as c:
        yield c
