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

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from tests.helpers import wait_for
from zart_es import Client, Context, Registry, Worker, durable, queue, schedule
from zart_es.engine import TimerPoller
from zart_es.engine._timers import MAX_DUE_MS, UnusableTimer, read_timer
from zart_es.ops import decode_state
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


# -- every other loop that reads what was written to Redis --------------------------------

_enc = msgspec.msgpack.Encoder()
_P = KEYS.partition_of("hostile-1")
_QP = KEYS.queue_slot("hq", "")


def _definition(**fields: Any) -> bytes:
    base = {"name": "evil", "workflow": "hello", "input": _enc.encode(None), "cron": "",
            "every_ms": 60_000, "timezone": "UTC", "overlap": "skip",
            "id_template": "{schedule}-{occurrence}", "paused": False, "created_ms": 0}
    return _enc.encode({**base, **fields})


def _progress(**fields: Any) -> bytes:
    base = {"last_ms": 0, "last_execution": "", "started": 0, "skipped": 0,
            "pending": False, "pending_cancel": ""}
    return _enc.encode({**base, **fields})


Write = list[tuple[str, tuple[Any, ...]]]
"""Raw redis commands (method name, arguments) that write one hostile entry."""

HOSTILE: dict[str, Write] = {
    # the work stream
    "work: no id": [("xadd", (KEYS.work(_P), {b"y": b"1"}))],
    "work: id not UTF-8": [("xadd", (KEYS.work(_P), {b"x": b"\xff\xfe"}))],
    "work: invalid id": [("xadd", (KEYS.work(_P), {b"x": b"bad id!"}))],
    # the scheduler
    "schedule: name not UTF-8": [("hset", (KEYS.schedules(), b"\x00\xff", _definition()))],
    "schedule: not msgpack": [("hset", (KEYS.schedules(), "evil", b"\xff\x00garbage"))],
    "schedule: id template of no field": [
        ("hset", (KEYS.schedules(), "evil", _definition(id_template="{0}{occurrence}")))],
    "schedule: every 1 ms": [("hset", (KEYS.schedules(), "evil", _definition(every_ms=1)))],
    "schedule: every -1 s": [("hset", (KEYS.schedules(), "evil", _definition(every_ms=-1000)))],
    "schedule: progress past year 9999": [
        ("hset", (KEYS.schedules(), "evil", _definition(cron="* * * * *", every_ms=0))),
        ("hset", (KEYS.schedule_state(), "evil", _progress(last_ms=2**62)))],
    "schedule: a declared one overwritten": [("hset", (KEYS.schedules(), "declared", b"\xff"))],
    # the archiver
    "ended: no id": [("xadd", (KEYS.ended(_P), {b"y": b"1"}))],
    "ended: id not UTF-8": [("xadd", (KEYS.ended(_P), {b"x": b"\xff"}))],
    "retention: not a number": [("hset", (KEYS.retention(), "zzz", "abc"))],
    "retention: name not UTF-8": [("hset", (KEYS.retention(), b"\xff", "1000"))],
    "retention: a declared one not UTF-8": [("hset", (KEYS.retention(), "hello", b"\xff"))],
    "archive due: member not UTF-8": [("zadd", (KEYS.archive_due(_P), {b"\xff": 0}))],
    "archive due: score -inf": [("zadd", (KEYS.archive_due(_P), {b"nope-3": -math.inf}))],
    "archive plan: not msgpack": [("hset", (KEYS.archiver(_P), "plan", b"\xff\x00"))],
    "archive cursor: no entry id": [("hset", (KEYS.archiver(_P), "cursor", "abc"))],
    "ended: meta with end not a number": [
        ("hset", (KEYS.meta("hostile-1"), "mapping", {"w": "hello", "end": "x", "v": "1"})),
        ("xadd", (KEYS.ended(_P), {b"x": b"hostile-1"}))],
    # the queue gate
    "queue index: not UTF-8": [("sadd", (KEYS.queue_index(), b"\xff\xfe"))],
    "queue running: not UTF-8": [("zadd", (_QP + "running", {b"\xff": 1})),
                                 ("sadd", (KEYS.queue_index(), b"hq "))],
    "queue waiting: not UTF-8": [("zadd", (_QP + "waiting", {b"\xff": 1})),
                                 ("sadd", (KEYS.queue_index(), b"hq "))],
    # the routes
    "route: task queue not UTF-8": [("hset", (KEYS.routes(), "zzz", b"\xff"))],
    "route: workflow not UTF-8": [("hset", (KEYS.routes(), b"\xff", "default"))],
    # the pause rules
    "pause rule: not UTF-8": [("hset", (KEYS.pauses(), b"\xff", "x"))],
    "paused member: not UTF-8": [("zadd", (KEYS.paused(_P), {b"\xff": 1}))],
    "paused member: meta version not a number": [
        ("hset", (KEYS.meta("hostile-1"), "mapping", {"st": "paused", "v": "abc"})),
        ("zadd", (KEYS.paused(_P), {b"hostile-1\nworkflow:gone": 1}))],
}


async def _write(redis: Redis, commands: Write) -> None:
    for method, args in commands:
        if args[1] == "mapping":
            await redis.hset(args[0], mapping=args[2])
        else:
            await getattr(redis, method)(*args)


@pytest.mark.parametrize("case", sorted(HOSTILE))
async def test_one_hostile_entry_and_the_rest_keeps_flowing(
    case: str, redis_url: str, redis: Redis, tmp_path: Any
) -> None:
    """Written before the worker starts (start-up reads it too), and read by every loop
    while normal work goes on: the worker starts, no loop crashes, a plain execution and
    a queued one complete, a schedule starts its occurrences, ended executions are
    archived, and a pause rule added now is seen."""
    await _write(redis, HOSTILE[case])
    registry = Registry()
    queue("hq", concurrency=2, registry=registry)

    @durable("hello", registry=registry, retention=0)
    async def hello(ctx: Context) -> str:
        return await ctx.step("greet", lambda: "hi")

    @durable("queued", queue="hq", registry=registry)
    async def queued(ctx: Context) -> str:
        return await ctx.step("work", lambda: "done")

    schedule("declared", "hello", every="1s", registry=registry)
    root = str(tmp_path / "archive")
    async with Worker(redis_url, registry=registry, lease_timeout=1, poll_interval=0.05,
                      archive_url=root, retention=0) as worker, Client(redis_url) as client:
        plain = await client.start("hello")
        lined = [await client.start("queued") for _ in range(3)]
        assert await client.result(plain, timeout=10) == "hi"
        assert [await client.result(e, timeout=10) for e in lined] == ["done"] * 3

        async def archived() -> bool:
            return not await redis.exists(KEYS.meta(plain))

        async def scheduled() -> bool:
            raw = await redis.hget(KEYS.schedule_state(), "declared")
            return raw is not None and decode_state(raw).started >= 1

        await wait_for(archived, timeout=15)
        await wait_for(scheduled, timeout=15)
        await client.pause(workflow="queued")
        await wait_for(lambda: _true(worker.pauses.covering("queued", "hq") is not None),
                       timeout=5)
        assert worker.loops.crashed_at == {}, worker.loops.findings()


async def _true(value: bool) -> bool:
    return value


@pytest.mark.pure
@pytest.mark.parametrize(("fields", "names"), [
    ({"every_ms": 1}, "at least 1s"),
    ({"every_ms": -1000}, "negative"),
    ({"every_ms": 0, "cron": ""}, "exactly one of cron or every"),
    ({"id_template": "{0}{occurrence}"}, "id template"),
    ({"overlap": "zzz"}, "overlap"),
    ({"created_ms": -5}, "created_ms"),
])
def test_a_stored_definition_is_held_to_the_checks_of_an_added_one(
    fields: dict[str, Any], names: str
) -> None:
    """Before: every_ms=1 made the scheduler spin at a third of a core; a bad template
    crashed it at the first occurrence."""
    from zart_es import ConfigError
    from zart_es.ops import decode_schedule

    with pytest.raises(ConfigError, match=names):
        decode_schedule(_definition(**fields))


async def test_an_infinite_archive_due_score_reads_as_long_due(redis: Redis) -> None:
    from zart_es.store import ArchiveQueue

    await redis.zadd(KEYS.archive_due(_P), {b"nope-3": -math.inf, b"\xff": 1})
    queue = ArchiveQueue(redis, KEYS)
    assert await queue.earliest(_P) == 0
    assert await queue.due(_P, 10, 10) == ["nope-3"]  # the bytes of no id left the set
    assert await redis.zrange(KEYS.archive_due(_P), 0, -1) == [b"nope-3"]
    await queue.aclose()
