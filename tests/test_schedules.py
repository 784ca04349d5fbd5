"""Recurring schedules (docs/schedules.md): validation, deterministic ids, the catch-up
rule, overlap policies against a real worker, restarts and racing schedulers."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from zart_es import (
    Client,
    ConfigError,
    Context,
    ExecutionFailedError,
    ExecutionNotFound,
    PayloadNotEncodable,
    Registry,
    Worker,
    durable,
    schedule,
)
from zart_es.core import ScheduleExists, ScheduleNotFound
from zart_es.core._schedule_times import (
    MISSED_COUNT_LIMIT,
    Schedule,
    ScheduleState,
    due,
    next_occurrence,
    occurrence_text,
    occurrences,
    render_id,
    schedule_to_dict,
)
from zart_es.engine import Scheduler
from zart_es.ops import Schedules
from zart_es.store import Keys, redis_now_ms

from .helpers import wait_for

pytestmark = pytest.mark.redis

HOUR = 3_600_000


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Client]:
    async with Client(redis_url) as c:
        yield c


@pytest.fixture
def schedules(client: Client) -> Schedules:
    return Schedules(client)


def _occurrence_of(execution_id: str) -> int:
    """The occurrence in an id ``<name>-<YYYYMMDDTHHMMSSZ>``, back in ms."""
    text = execution_id.rsplit("-", 1)[1]
    return int(datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
               * 1000)


async def _ids(client: Client, workflow: str) -> list[str]:
    return [e.execution_id for e in await client.list(name=workflow, limit=1000)]


# -- validation ---------------------------------------------------------------------------

GOOD: dict[str, Any] = {"name": "nightly", "workflow": "report", "cron": "0 2 * * *"}

BAD_SETTINGS: list[dict[str, Any]] = [
    {"name": ""},
    {"name": "has space"},
    {"name": "-leading-dash"},
    {"name": "x" * 190},  # the rendered ids would be over 200 characters
    {"name": 42},
    {"workflow": ""},
    {"workflow": "bad\nname"},
    {"cron": None},  # neither cron nor every
    {"every": "1h"},  # both
    {"cron": "bad"},
    {"cron": "* * * *"},
    {"cron": "* * * * * * 1969"},
    {"cron": "61 * * * *"},
    {"cron": "* * * * * 60"},
    {"cron": "H * * * *"},
    {"cron": "R * * * *"},
    {"cron": "0 0 h(0-5) * *"},
    {"cron": "@reboot"},
    {"cron": "0 0 30 2 *"},  # never fires
    {"cron": ""},
    {"cron": None, "every": "500ms"},
    {"cron": None, "every": 0},
    {"cron": None, "every": "1.5s"},
    {"cron": None, "every": "5 parsecs"},
    {"cron": None, "every": -5},
    {"cron": None, "every": True},
    {"cron": None, "every": "1h", "timezone": "Europe/Berlin"},
    {"timezone": "Mars/Olympus_Mons"},
    {"timezone": ""},
    {"timezone": "../../etc/passwd"},
    {"overlap": "queue"},
    {"id_template": "{schedule}"},
    {"id_template": "{schedule}-{occurrence}-{user}"},
    {"id_template": "{occurrence:>20}"},
    {"id_template": "{occurrence!r}"},
    {"id_template": "{0}-{occurrence}"},
    {"id_template": "{schedule.name}-{occurrence}"},
    {"id_template": "{occurrence} x"},
    {"id_template": "{occurrence"},
    {"workflow": "bad workflow", "id_template": "{workflow}-{occurrence}"},
]


@pytest.mark.parametrize("change", BAD_SETTINGS, ids=lambda c: repr(c)[:60])
async def test_bad_settings_are_config_errors(schedules: Schedules, change: dict[str, Any],
                                              redis: Redis) -> None:
    with pytest.raises(ConfigError):
        await schedules.add(**{**GOOD, **change})
    assert await schedules.list() == []
    assert await redis.xlen(Keys().audit()) == 0


async def test_names_input_and_lookups(schedules: Schedules) -> None:
    with pytest.raises(PayloadNotEncodable):
        await schedules.add(**GOOD, data=object())
    s = await schedules.add(**GOOD, data={"n": 1, "tags": ["a"]})
    assert s.cron == "0 2 * * *"
    assert s.every_ms == 0
    assert s.created_ms > 0
    with pytest.raises(ScheduleExists) as exists:
        await schedules.add(**GOOD)
    assert isinstance(exists.value, ConfigError)
    assert await schedules.get("nightly") == s
    assert schedule_to_dict(s) == {**msgspec.structs.asdict(s),
                                   "input": {"n": 1, "tags": ["a"]}}
    json.dumps(schedule_to_dict(s))
    for call in (schedules.get, schedules.pause, schedules.resume,
                 schedules.next_occurrences):
        with pytest.raises(ScheduleNotFound):
            await call("nope")
    with pytest.raises(ConfigError):
        await schedules.next_occurrences("nightly", 0)
    assert await schedules.remove("nope") is False
    assert [x.name for x in await schedules.list()] == ["nightly"]
    assert await schedules.remove("nightly") is True
    assert await schedules.list() == []
    with pytest.raises(ConfigError):
        Scheduler(schedules.deployment, poll_interval=0)


async def test_audit_trail(schedules: Schedules, redis: Redis) -> None:
    await schedules.add(**GOOD, by="ana")
    await schedules.add(**{**GOOD, "cron": "0 3 * * *"}, replace=True)
    await schedules.pause("nightly", by="bo")
    await schedules.pause("nightly")  # no change: no entry
    await schedules.resume("nightly")
    await schedules.remove("nightly")
    entries = await redis.xrange(Keys().audit())
    fields = [{k.decode(): v.decode() for k, v in f.items()} for _, f in entries]
    assert [f["what"] for f in fields] == ["schedule.add", "schedule.replace",
                                          "schedule.pause", "schedule.resume",
                                          "schedule.remove"]
    assert {f["name"] for f in fields} == {"nightly"}
    assert fields[0]["by"] == "ana"
    assert fields[2]["by"] == "bo"
    assert json.loads(fields[1]["detail"])["cron"] == "0 3 * * *"


# -- ids and the catch-up rule ------------------------------------------------------------


def test_occurrence_text_and_ids() -> None:
    at = int(datetime(2026, 11, 25, 2, 0, tzinfo=UTC).timestamp() * 1000)
    assert occurrence_text(at) == "20261125T020000Z"
    s = Schedule(name="nightly", workflow="report", input=b"\xc0", cron="0 2 * * *",
                 id_template="{workflow}.{schedule}.{occurrence}")
    assert render_id(s, at) == "report.nightly.20261125T020000Z"
    assert render_id(s, at + 999) == render_id(s, at)


async def test_ids_are_deterministic_and_started_once(client: Client, schedules: Schedules,
                                                      redis_url: str) -> None:
    s = await schedules.add("nightly", "report", {"day": 1}, cron="0 2 * * *",
                            timezone="Europe/Berlin")
    first = next_occurrence(s, s.created_ms)
    assert first is not None
    assert datetime.fromtimestamp(first / 1000, ZoneInfo("Europe/Berlin")).hour == 2
    expected = f"nightly-{occurrence_text(first)}"
    assert await Scheduler(client).tick(now_ms=first - 1) == []
    assert await Scheduler(client).tick(now_ms=first) == [expected]
    async with Client(redis_url) as other:
        assert await Scheduler(other).tick(now_ms=first) == []
        assert await Scheduler(other).tick(now_ms=first + 1000) == []
    status = await client.status(expected)
    assert (status.workflow, status.status) == ("report", "pending")
    assert await _ids(client, "report") == [expected]
    assert await schedules.state("nightly") == ScheduleState(
        last_ms=first, last_execution=expected, started=1)


@pytest.mark.parametrize("spec", [{"every": "1h"}, {"every": timedelta(hours=1)},
                                  {"cron": "0 * * * *"}, {"cron": "@hourly"}])
async def test_catch_up_starts_only_the_latest(client: Client, schedules: Schedules,
                                               spec: dict[str, Any]) -> None:
    s = await schedules.add("hourly", "report", overlap="always", **spec)
    first = next_occurrence(s, s.created_ms)
    assert first is not None
    assert first % HOUR == 0
    scheduler = Scheduler(client)
    # nothing ran for 4.5 hours: five occurrences are due, one starts
    assert await scheduler.tick(now_ms=first + 4 * HOUR + HOUR // 2) == [
        render_id(s, first + 4 * HOUR)]
    assert await schedules.state("hourly") == ScheduleState(
        last_ms=first + 4 * HOUR, last_execution=render_id(s, first + 4 * HOUR), started=1,
        skipped=4)
    assert await scheduler.tick(now_ms=first + 5 * HOUR) == [render_id(s, first + 5 * HOUR)]
    assert await scheduler.tick(now_ms=first + 5 * HOUR + 1) == []
    state = await schedules.state("hourly")
    assert state is not None
    assert (state.started, state.skipped) == (2, 4)
    assert len(await _ids(client, "report")) == 2


async def test_catch_up_counts_missed_cron_occurrences_up_to_a_limit(
        client: Client, schedules: Schedules) -> None:
    s = await schedules.add("each-second", "report", cron="* * * * * *")
    first = next_occurrence(s, s.created_ms)
    assert first is not None
    now = first + (MISSED_COUNT_LIMIT + 500) * 1000
    assert await Scheduler(client).tick(now_ms=now) == [render_id(s, now)]
    state = await schedules.state("each-second")
    assert state is not None
    assert state.skipped == MISSED_COUNT_LIMIT


async def test_a_claimed_occurrence_is_started_by_the_next_tick(
        client: Client, schedules: Schedules, redis: Redis) -> None:
    """A scheduler that died between its claim and the start loses nothing."""
    s = await schedules.add("hourly", "report", every="1h")
    first = next_occurrence(s, s.created_ms)
    assert first is not None
    claimed = ScheduleState(last_ms=first, last_execution=render_id(s, first), started=1,
                            pending=True)
    await redis.hset(Keys().schedule_state(), "hourly",  # type: ignore[misc]
                     msgspec.msgpack.encode(claimed))  # type: ignore[arg-type]
    assert await Scheduler(client).tick(now_ms=first + 10) == [render_id(s, first)]
    assert await schedules.state("hourly") == msgspec.structs.replace(claimed, pending=False)
    assert await Scheduler(client).tick(now_ms=first + 20) == []


async def test_an_occurrence_that_cannot_start_is_skipped(client: Client,
                                                          schedules: Schedules) -> None:
    s = await schedules.add("hourly", "report", every="1h", id_template="taken-{occurrence}")
    first = next_occurrence(s, s.created_ms)
    assert first is not None
    await client.start("other", execution_id=render_id(s, first))  # the id is taken
    await schedules.add("fine", "report", every="1h")
    started = await Scheduler(client).tick(now_ms=first)
    assert started == [f"fine-{occurrence_text(first)}"]  # the other schedules go on
    assert await schedules.state("hourly") == ScheduleState(last_ms=first, skipped=1)


async def test_replace_and_remove(client: Client, schedules: Schedules) -> None:
    s = await schedules.add("job", "report", every="1h")
    first = next_occurrence(s, s.created_ms)
    assert first is not None
    await Scheduler(client).tick(now_ms=first)
    new = await schedules.add("job", "report", cron="30 * * * *", overlap="always",
                              replace=True)
    assert new.created_ms >= s.created_ms
    assert new.cron == "30 * * * *"
    state = await schedules.state("job")
    assert state is not None
    assert state.started == 1
    assert await Scheduler(client).tick(now_ms=first + HOUR // 2) == [
        render_id(new, first + HOUR // 2)]
    assert await schedules.remove("job")
    assert await schedules.state("job") is None
    assert await Scheduler(client).tick(now_ms=first + 5 * HOUR) == []
    assert len(await _ids(client, "report")) == 2  # executions stay


async def test_occurrences_in_a_pause_are_not_started(client: Client,
                                                      schedules: Schedules) -> None:
    s = await schedules.add("beat", "report", every="1s", overlap="always")
    await schedules.pause("beat")
    assert (await schedules.get("beat")).paused
    scheduler = Scheduler(client)
    assert await scheduler.tick(now_ms=s.created_ms + 5000) == []
    await asyncio.sleep(1.2)  # at least one occurrence falls in the pause
    resumed = await schedules.resume("beat")
    assert not resumed.paused
    state = await schedules.state("beat")
    assert state is not None
    assert state.last_ms >= s.created_ms + 1000
    assert await scheduler.tick(now_ms=state.last_ms) == []  # not even the latest
    after = next_occurrence(s, state.last_ms)
    assert after is not None
    assert await scheduler.tick(now_ms=after) == [render_id(s, after)]
    final = await schedules.state("beat")
    assert final is not None
    assert (final.started, final.skipped) == (1, 0)


async def test_next_occurrences_in_the_schedule_time_zone(schedules: Schedules,
                                                          redis: Redis) -> None:
    await schedules.add("nightly", "report", cron="30 2 * * *", timezone="America/New_York")
    now = await redis_now_ms(redis)
    upcoming = await schedules.next_occurrences("nightly", 3)
    assert len(upcoming) == 3
    assert upcoming == sorted(upcoming)
    assert all(d.tzinfo == ZoneInfo("America/New_York") and (d.hour, d.minute) == (2, 30)
               for d in upcoming)
    assert upcoming[0].timestamp() * 1000 > now


def test_daylight_saving_time() -> None:
    s = Schedule(name="n", workflow="w", input=b"\xc0", cron="30 2 * * *",
                 timezone="Europe/Berlin")
    autumn = int(datetime(2026, 10, 24, 12, tzinfo=UTC).timestamp() * 1000)
    # 02:30 happens twice when the clocks go back: two instants, two ids
    both = occurrences(s, autumn, 2)
    assert [occurrence_text(t) for t in both] == ["20261025T003000Z", "20261025T013000Z"]
    spring = int(datetime(2026, 3, 28, 12, tzinfo=UTC).timestamp() * 1000)
    # 02:30 does not exist when they go forward: croniter runs it once, at 03:00 CEST
    assert [occurrence_text(t) for t in occurrences(s, spring, 2)] == [
        "20260329T010000Z", "20260330T003000Z"]


# -- overlap policies against a real worker ---------------------------------------------


@pytest.fixture
async def worker(redis_url: str, registry: Registry) -> AsyncIterator[Registry]:
    @durable("held", registry=registry)
    async def held(ctx: Context, data: dict[str, int]) -> dict[str, int]:
        await ctx.step("begin", lambda: 1)  # a wait alone records nothing: still "pending"
        await ctx.wait_for_signal("go")
        return data

    async with Worker(redis_url, registry=registry, lease_timeout=1, poll_interval=0.05):
        yield registry


async def _waiting(client: Client, execution_id: str) -> bool:
    return (await client.status(execution_id)).status in ("running", "sleeping", "waiting")


@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize("overlap", ["skip", "cancel_and_restart", "always"])
async def test_overlap_policies(client: Client, schedules: Schedules, overlap: str) -> None:
    s = await schedules.add("held", "held", {"n": 7}, every="1h", overlap=overlap)
    first = next_occurrence(s, s.created_ms)
    assert first is not None
    one, two, three = (render_id(s, first + i * HOUR) for i in range(3))
    scheduler = Scheduler(client)
    assert await scheduler.tick(now_ms=first) == [one]
    await wait_for(lambda: _waiting(client, one), timeout=10)

    started = await scheduler.tick(now_ms=first + HOUR)  # `one` still runs
    state = await schedules.state("held")
    assert state is not None
    if overlap == "skip":
        assert started == []
        assert (state.started, state.skipped, state.last_execution) == (1, 1, one)
        with pytest.raises(ExecutionNotFound):
            await client.status(two)
        await client.send_signal(one, "go")
        assert await client.result(one, timeout=10) == {"n": 7}
        # the previous one has ended: the next occurrence starts
        assert await scheduler.tick(now_ms=first + 2 * HOUR) == [three]
        assert (await client.status(three)).workflow == "held"
    elif overlap == "cancel_and_restart":
        assert started == [two]
        with pytest.raises(ExecutionFailedError) as stopped:
            await client.result(one, timeout=10)
        assert stopped.value.error_type == "Cancelled"
        assert stopped.value.message == (
            f"schedule held: overlapped by {occurrence_text(first + HOUR)}")
        await wait_for(lambda: _waiting(client, two), timeout=10)
        assert (state.started, state.skipped, state.last_execution) == (2, 0, two)
    else:
        assert started == [two]
        await wait_for(lambda: _waiting(client, two), timeout=10)
        assert await _waiting(client, one)  # both run
        for eid in (one, two):
            await client.send_signal(eid, "go")
            assert await client.result(eid, timeout=10) == {"n": 7}


# -- schedulers running for real -----------------------------------------------------------


async def _run_for(scheduler: Scheduler, seconds: float) -> None:
    task = asyncio.create_task(scheduler.run())
    await asyncio.sleep(seconds)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert task.cancelled()


async def test_restarted_scheduler_neither_duplicates_nor_loses(
        client: Client, schedules: Schedules, redis_url: str) -> None:
    s = await schedules.add("tick", "beat", cron="* * * * * *", overlap="always")
    first = Scheduler(client, poll_interval=0.2)
    await _run_for(first, 2.3)
    before = sorted(await _ids(client, "beat"))
    await asyncio.sleep(2.0)  # no scheduler: occurrences are missed
    async with Client(redis_url) as other:
        second = Scheduler(other, poll_interval=0.2)
        await _run_for(second, 1.6)
    ids = sorted(await _ids(client, "beat"))
    state = await schedules.state("tick")
    assert state is not None
    assert len(ids) == len(set(ids)) == state.started == first.started + second.started
    assert first.started == len(before) >= 2
    assert second.started >= 1
    times = [_occurrence_of(i) for i in ids]
    assert times[0] == next_occurrence(s, s.created_ms)
    assert times[-1] == state.last_ms
    # every occurrence up to the last one handled was started or counted as skipped
    assert state.started + state.skipped == (state.last_ms - times[0]) // 1000 + 1
    # the only occurrences not started are the ones missed while no scheduler ran,
    # except the latest of them (the catch-up rule): one gap, of `skipped` seconds
    gaps = [b - a for a, b in itertools.pairwise(times) if b - a > 1000]
    assert gaps == [(state.skipped + 1) * 1000]
    assert state.skipped >= 1


async def test_two_schedulers_never_start_an_occurrence_twice(
        client: Client, schedules: Schedules, redis_url: str) -> None:
    names = [f"s{i}" for i in range(12)]
    for name in names:
        await schedules.add(name, "report", every="1h", overlap="always")
    s0 = await schedules.get("s0")
    first = next_occurrence(s0, max(s.created_ms for s in await schedules.list()))
    assert first is not None
    async with Client(redis_url) as other:
        one, two = Scheduler(client), Scheduler(other)
        for hour in range(4):
            now = first + hour * HOUR + 7
            a, b = await asyncio.gather(one.tick(now_ms=now), two.tick(now_ms=now))
            assert len(a) + len(b) == len(set(a + b)) == len(names)
        # and running side by side on a per-second schedule
        fast = await schedules.add("fast", "beat", cron="* * * * * *", overlap="always")
        runners = Scheduler(client, poll_interval=0.05), Scheduler(other, poll_interval=0.05)
        await asyncio.gather(*(_run_for(r, 2.2) for r in runners))
    last = first + 3 * HOUR
    for name in names:
        assert await schedules.state(name) == ScheduleState(
            last_ms=last, last_execution=f"{name}-{occurrence_text(last)}", started=4)
    ids = await _ids(client, "beat")
    state = await schedules.state("fast")
    assert state is not None
    assert state.started == len(ids) == runners[0].started + runners[1].started >= 2
    start = next_occurrence(fast, fast.created_ms)
    assert start is not None
    assert state.last_ms == max(_occurrence_of(i) for i in ids)
    assert state.skipped + state.started == (state.last_ms - start) // 1000 + 1


async def test_run_keeps_trying_through_redis_errors_and_stops_when_cancelled() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = Client(f"redis://127.0.0.1:{port}/0")
    try:
        scheduler = Scheduler(client, poll_interval=0.05)
        await _run_for(scheduler, 0.3)
        assert scheduler.started == 0
    finally:
        await client.close()


# -- the pure part, by property --------------------------------------------------------------

CRONS = ["* * * * *", "*/7 * * * *", "0 2 * * *", "30 2 * * *", "0 */3 * * 1-5",
         "15,45 * * * * 30", "* * * * * */5", "0 0 1 * *", "0 0 29 2 *", "@hourly",
         "0 0 * * mon#2"]
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]

schedule_strategy = st.one_of(
    st.builds(lambda e: Schedule(name="p", workflow="w", input=b"\xc0", every_ms=e * 1000),
              st.integers(1, 2 * 86_400)),
    st.builds(lambda c, z: Schedule(name="p", workflow="w", input=b"\xc0", cron=c,
                                    timezone=z),
              st.sampled_from(CRONS), st.sampled_from(ZONES)),
)
instant = st.integers(1_700_000_000_000, 2_000_000_000_000)


@settings(max_examples=60, deadline=None)
@given(schedule_strategy, instant)
def test_occurrences_increase_and_ids_are_unique(s: Schedule, after: int) -> None:
    times = occurrences(s, after, 25)
    assert len(times) == 25
    assert all(t % 1000 == 0 for t in times)
    assert after < times[0]
    assert all(a < b for a, b in itertools.pairwise(times))
    assert len({render_id(s, t) for t in times}) == len(times)
    assert next_occurrence(s, after) == times[0]
    assert all(next_occurrence(s, a) == b for a, b in itertools.pairwise(times))


def _until(s: Schedule, after: int, now: int) -> list[int]:
    """Every occurrence in (after, now], one by one."""
    out: list[int] = []
    while (t := next_occurrence(s, out[-1] if out else after)) is not None and t <= now:
        out.append(t)
    return out


@settings(max_examples=60, deadline=None)
@given(schedule_strategy, instant,
       st.lists(st.integers(0, 20 * 60_000), min_size=1, max_size=6))
def test_catch_up_starts_at_most_one_per_tick(s: Schedule, after: int,
                                              steps: list[int]) -> None:
    """Simulated ticks: each starts at most the latest due occurrence; every occurrence up
    to the last handled is either started or counted as skipped."""
    last, started, skipped, now = after, [], 0, after
    for step in steps:
        now += step
        found = due(s, last, now)
        expected = _until(s, last, now)
        if found.latest is None:
            assert expected == []
            continue
        assert found.latest == expected[-1]
        assert found.missed == len(expected) - 1
        started.append(found.latest)
        skipped += found.missed
        last = found.latest
    assert len(started) <= len(steps)
    handled = _until(s, after, last)
    assert len(started) + skipped == len(handled)
    assert set(started) <= set(handled)



async def test_schedules_declared_in_code_are_stored_by_workers(redis_url: str) -> None:
    registry = Registry()

    @durable("declared-job", registry=registry)
    async def declared_job(ctx: Context, n: int) -> int:
        return n

    schedule("every-second", "declared-job", 7, every="1s", registry=registry)
    with pytest.raises(ConfigError, match="cron"):
        schedule("broken", "declared-job", cron="nope", registry=registry)
    async with Client(redis_url) as client:
        schedules = Schedules(client)
        async def stored_every() -> int:
            with contextlib.suppress(ScheduleNotFound):
                return (await schedules.get("every-second")).every_ms
            return 0

        async with Worker(redis_url, registry=registry, poll_interval=0.05):
            assert await wait_for(stored_every, timeout=10) == 1000

            async def started() -> bool:
                state = await schedules.state("every-second")
                return state is not None and state.started >= 1

            await wait_for(started, timeout=10)
        await schedules.pause("every-second")
        # a second start-up with the same declaration changes nothing (the pause stays)
        async with Worker(redis_url, registry=registry, poll_interval=0.05):
            await asyncio.sleep(0.3)
            assert (await schedules.get("every-second")).paused
        changed = Registry()
        changed.add_schedule(msgspec.structs.replace(registry.schedules()[0], every="2s"))
        async with Worker(redis_url, registry=changed, poll_interval=0.05):
            await wait_for(lambda: _is(stored_every, 2000), timeout=10)
            assert (await schedules.get("every-second")).paused  # updated, pause kept


async def _is(read: Any, value: Any) -> bool:
    return bool(await read() == value)


async def test_a_worker_without_a_scheduler_still_stores_declared_schedules(
        redis_url: str) -> None:
    """--no-scheduler keeps a worker from starting occurrences, not from storing the
    schedules its module declares (a separate Scheduler process starts them)."""
    registry = Registry()

    @durable("declared-elsewhere", registry=registry)
    async def declared_elsewhere(ctx: Context) -> int:
        return 1

    schedule("stored-by-any", "declared-elsewhere", every="1s", registry=registry)
    async with Client(redis_url) as client:
        schedules = Schedules(client)
        async with Worker(redis_url, registry=registry, poll_interval=0.05,
                          run_scheduler=False):
            async def stored() -> bool:
                with contextlib.suppress(ScheduleNotFound):
                    return (await schedules.get("stored-by-any")).every_ms == 1000
                return False

            await wait_for(stored, timeout=10)
            await asyncio.sleep(1.5)
            assert await schedules.state("stored-by-any") is None  # nothing started here


async def test_a_changed_declaration_keeps_the_pause_in_one_write(
        schedules: Schedules, redis: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker with a changed declaration of a paused schedule writes the new definition
    paused, in one write: dying at any point cannot leave it unpaused (before, it wrote
    it unpaused and paused it again in a second call)."""
    registry = Registry()
    spec = schedule("kept-paused", "some-job", every="1s", registry=registry)
    await schedules.ensure(spec)
    await schedules.pause("kept-paused", by="operator")

    async def dies(*_args: Any, **_kwargs: Any) -> Any:
        raise SystemExit("the worker died here")

    monkeypatch.setattr(Schedules, "pause", dies)  # a second write would die
    updated = await schedules.ensure(msgspec.structs.replace(spec, every="2s"), by="worker")
    assert (updated.every_ms, updated.paused) == (2000, True)
    stored = await schedules.get("kept-paused")
    assert (stored.every_ms, stored.paused) == (2000, True)


# -- backfill -----------------------------------------------------------------------------


async def test_backfill_starts_each_missed_occurrence_once(client: Client,
                                                           schedules: Schedules) -> None:
    s = await schedules.add("daily", "report", {"d": 1}, cron="0 3 * * *", overlap="always")
    start = datetime(2026, 11, 1, tzinfo=UTC)
    end = datetime(2026, 11, 8, tzinfo=UTC)
    counted = await schedules.backfill("daily", start, end, dry_run=True)
    assert (counted.occurrences, counted.started) == (7, [])
    assert await _ids(client, "report") == []
    seen: list[tuple[int, int]] = []
    done = await schedules.backfill("daily", start, end, by="ops",
                                    progress=lambda i, n: seen.append((i, n)))
    expected = [render_id(s, int(datetime(2026, 11, d, 3, tzinfo=UTC).timestamp() * 1000))
                for d in range(1, 8)]
    assert done.started == expected
    assert seen[-1] == (7, 7)
    assert sorted(await _ids(client, "report")) == sorted(expected)
    again = await schedules.backfill("daily", start, end + timedelta(days=1))
    assert (again.started, again.existed) == ([render_id(s, int(datetime(
        2026, 11, 8, 3, tzinfo=UTC).timestamp() * 1000))], expected)


async def test_backfill_follows_the_overlap_policy_among_its_occurrences(
    client: Client, schedules: Schedules
) -> None:
    await schedules.add("hourly", "report", every="1h")  # overlap: skip
    start, end = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 1, 4, tzinfo=UTC)
    skipped = await schedules.backfill("hourly", start, end)  # no worker: the first runs on
    assert (len(skipped.started), len(skipped.skipped)) == (1, 3)
    restarted = await schedules.backfill("hourly", start, end, overlap="cancel_and_restart")
    assert (len(restarted.started), restarted.existed) == (3, skipped.started)
    assert restarted.cancelled == [*skipped.started, *restarted.started[:2]]
    for eid in restarted.cancelled:
        assert (await client.status(eid)).status == "pending"  # cancel requested, not run


async def test_backfill_refuses_bad_ranges(schedules: Schedules) -> None:
    await schedules.add("minutely", "report", every="1s")
    now = datetime.now(UTC)
    with pytest.raises(ConfigError, match="must be after its start"):
        await schedules.backfill("minutely", now, now)
    with pytest.raises(ConfigError, match="timezone-aware"):
        await schedules.backfill("minutely", datetime(2026, 1, 1), now)
    with pytest.raises(ConfigError, match="more than 10,000 occurrences"):
        await schedules.backfill("minutely", now - timedelta(days=1), now)
    with pytest.raises(ConfigError, match="unknown overlap policy 'maybe'"):
        await schedules.backfill("minutely", now - timedelta(minutes=1), now, overlap="maybe")
    with pytest.raises(ScheduleNotFound):
        await schedules.backfill("nope", now - timedelta(minutes=1), now)


async def test_every_anchored_at_start_runs_at_registration_then_each_interval(
    client: Client, schedules: Schedules
) -> None:
    s = await schedules.add("delay", "report", every="10s", anchor="start", overlap="always")
    scheduler = Scheduler(client)
    assert await scheduler.tick(now_ms=s.created_ms) == [render_id(s, s.created_ms)]
    assert await scheduler.tick(now_ms=s.created_ms + 9_999) == []
    assert await scheduler.tick(now_ms=s.created_ms + 10_000) == [
        render_id(s, s.created_ms + 10_000)]
    assert next_occurrence(s, s.created_ms + 10_000) == s.created_ms + 20_000
    epoch = await schedules.add("aligned", "report", every="10s")
    assert next_occurrence(epoch, epoch.created_ms) == (epoch.created_ms // 10_000 + 1) * 10_000
    with pytest.raises(ConfigError, match="anchor applies to every schedules only"):
        await schedules.add("c", "report", cron="0 * * * *", anchor="start")
    with pytest.raises(ConfigError, match="unknown anchor 'later'"):
        await schedules.add("d", "report", every="1h", anchor="later")
