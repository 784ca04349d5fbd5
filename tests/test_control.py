"""Steering executions from outside and composing them inside (issue: control plane)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from redis.asyncio import Redis

from zart_es import (
    ChildFailedError,
    Client,
    Context,
    ExecutionEnded,
    ExecutionFailedError,
    ExecutionNotFound,
    Registry,
    durable,
)
from zart_es.core import (
    ChildCompleted,
    StepCompleted,
    TimerFired,
    TimerSet,
)

from .helpers import count_effects, kill9, read_log, spawn_worker, stop_worker, wait_for

pytestmark = pytest.mark.processes


async def _status(client: Client, eid: str, state: str) -> bool:
    return (await client.status(eid)).status == state


# -- events -------------------------------------------------------------------------------


async def test_event_idempotency_and_bad_targets(
    env: tuple[Client, Registry], redis: Redis
) -> None:
    client, registry = env

    @durable("one-event", registry=registry)
    async def one_event(ctx: Context) -> str:
        return await ctx.wait_for_signal("e", type=str)

    eid = await client.start("one-event")
    assert await client.send_signal(eid, "e", "x", signal_id="evt-1") is True
    assert await client.send_signal(eid, "e", "x", signal_id="evt-1") is False
    assert await client.result(eid, timeout=5) == "x"
    received = [e for e in await read_log(redis, eid) if type(e).__name__ == "SignalReceived"]
    assert len(received) == 1
    with pytest.raises(ExecutionEnded):
        await client.send_signal(eid, "e", "too late")
    with pytest.raises(ExecutionNotFound):
        await client.send_signal("no-such-execution", "e", 1)


async def test_event_wait_timeout_survives_worker_restart(
    redis_url: str, redis: Redis, effects: Path, tmp_path: Path
) -> None:
    async with Client(redis_url) as client:
        eid = await client.start("wait-or-timeout", 2.5)
        first = spawn_worker(redis_url, "tests.apps.control", log=tmp_path / "w.log")

        async def timer_set() -> bool:
            return any(isinstance(e, TimerSet) for e in await read_log(redis, eid))

        await wait_for(timer_set, timeout=20)
        kill9(first)
        await asyncio.sleep(1.0)
        second = spawn_worker(redis_url, "tests.apps.control", log=tmp_path / "w.log")
        try:
            assert await client.result(eid, timeout=20) == "timed out"
        finally:
            stop_worker(second)
    events = await read_log(redis, eid)
    set_at = next(e.at_ms for e in events if isinstance(e, TimerSet))
    fired_at = next(e.at_ms for e in events if isinstance(e, TimerFired))
    assert 2500 <= fired_at - set_at <= 3500


# -- timeouts -------------------------------------------------------------------------------


async def test_execution_timeout_ends_it_and_drops_the_late_step(
    env: tuple[Client, Registry], redis: Redis
) -> None:
    client, registry = env
    release = asyncio.Event()

    @durable("deadline", registry=registry, timeout="500ms")
    async def deadline(ctx: Context) -> str:
        await ctx.step("quick", lambda: 1)
        await ctx.step("slow", release.wait)
        return "made it"

    eid = await client.start("deadline")
    with pytest.raises(ExecutionFailedError) as info:
        await client.result(eid, timeout=5)
    assert info.value.error_type == "ExecutionTimedOut"
    release.set()
    await asyncio.sleep(0.3)
    assert (await client.status(eid)).status == "timed_out"
    steps = [e.step for e in await read_log(redis, eid) if isinstance(e, StepCompleted)]
    assert steps == ["quick"]  # the step that finished after the deadline is not recorded


# -- gather -------------------------------------------------------------------------------


async def test_gather_crash_reruns_only_missing_branches(
    redis_url: str, redis: Redis, effects: Path, tmp_path: Path
) -> None:
    env = {"CRASH_DIR": str(tmp_path)}
    async with Client(redis_url) as client:
        eid = await client.start("gather-crash", 5)
        first = spawn_worker(redis_url, "tests.apps.control", env=env, log=tmp_path / "w.log")
        await asyncio.to_thread(first.wait, 20)  # branch 2 kills its worker
        second = spawn_worker(redis_url, "tests.apps.control", env=env, log=tmp_path / "w.log")
        try:
            assert await client.result(eid, timeout=20) == [0, 1, 2, 3, 4]
        finally:
            stop_worker(second)
    runs = count_effects(effects, "branch")
    recorded_before = {e.step for e in await read_log(redis, eid)
                       if isinstance(e, StepCompleted)}
    assert recorded_before == {f"branch-{i}" for i in range(5)}
    assert runs["2"] == 2  # the branch in flight ran again
    assert all(n in (1, 2) for n in runs.values())


# -- children -----------------------------------------------------------------------------


def _family(registry: Registry) -> None:
    @durable("child", registry=registry)
    async def child(ctx: Context, n: int) -> int:
        if n < 0:
            raise ValueError("negative")
        return await ctx.step("double", lambda: n * 2)

    @durable("parent", registry=registry)
    async def parent(ctx: Context, ns: list[int]) -> list[int]:
        results = []
        for n in ns:
            try:
                results.append(await ctx.call("child", n, type=int))
            except ChildFailedError as exc:
                results.append(-1 if exc.error_type == "ValueError" else -2)
        return results


async def test_child_calls_and_child_failure(env: tuple[Client, Registry], redis: Redis) -> None:
    client, registry = env
    _family(registry)
    eid = await client.start("parent", [1, -5, 3], execution_id="family")
    assert await client.result(eid, timeout=10) == [2, -1, 6]
    children = [e for e in await read_log(redis, eid) if isinstance(e, ChildCompleted)]
    assert [(c.child_id, c.status) for c in children] == [
        ("family.child-0", "completed"), ("family.child-1", "failed"),
        ("family.child-2", "completed")]
    assert (await client.status("family.child-1")).status == "failed"


async def test_child_in_another_partition(env: tuple[Client, Registry]) -> None:
    client, registry = env
    _family(registry)
    keys = client.keys
    parent_id = next(f"p{i}" for i in range(100)
                     if keys.partition_of(f"p{i}") != keys.partition_of(f"p{i}.child-0"))
    assert await client.result(await client.start("parent", [21], execution_id=parent_id),
                               timeout=10) == [42]


# -- determinism --------------------------------------------------------------------------


# -- listing ------------------------------------------------------------------------------


async def test_list_by_status_and_name(env: tuple[Client, Registry]) -> None:
    client, registry = env

    @durable("ok", registry=registry)
    async def ok(ctx: Context) -> int:
        return 1

    @durable("bad", registry=registry)
    async def bad(ctx: Context) -> int:
        await ctx.step("boom", lambda: 1 / 0)
        return 0

    @durable("waits", registry=registry)
    async def waits(ctx: Context) -> int:
        await ctx.sleep(60)
        return 0

    ids = []
    for i in range(5):
        ids.append(await client.start("ok", execution_id=f"ok-{i}"))
        await asyncio.sleep(0.003)  # distinct creation times: the index has ms resolution
    bad_id = await client.start("bad", execution_id="bad-1")
    wait_id = await client.start("waits", execution_id="waits-1")
    for eid in ids:
        await client.result(eid, timeout=5)
    with pytest.raises(ExecutionFailedError, match="StepFailedError"):
        await client.result(bad_id, timeout=5)
    await wait_for(lambda: _status(client, wait_id, "sleeping"), timeout=5)

    completed = await client.list(status="completed")
    assert [s.execution_id for s in completed] == list(reversed(ids))  # newest first
    assert [s.execution_id for s in await client.list(status="failed")] == ["bad-1"]
    assert [s.execution_id for s in await client.list(status="sleeping")] == ["waits-1"]
    assert len(await client.list()) == 7
    assert [s.execution_id for s in await client.list(name="ok", limit=2)] == ids[:-3:-1]
    with pytest.raises(Exception, match="unknown status"):
        await client.list(status="nope")


async def test_a_child_that_times_out_fails_the_parent_call(env: tuple[Client, Registry]) -> None:
    """Regression: the deadline used to close the child's log without a work message, so
    the parent was never told and waited forever."""
    client, registry = env

    @durable("slow-child", registry=registry, timeout="300ms")
    async def slow_child(ctx: Context) -> None:
        await ctx.sleep(30)

    @durable("waiting-parent", registry=registry)
    async def waiting_parent(ctx: Context) -> str:
        try:
            await ctx.call("slow-child")
        except ChildFailedError as exc:
            return exc.status
        return "child completed"

    eid = await client.start("waiting-parent")
    assert await client.result(eid, timeout=10) == "timed_out"


async def test_child_id_owned_by_someone_else_fails_clearly(
    env: tuple[Client, Registry]
) -> None:
    """Regression: ctx.call with an existing, unrelated execution id waited forever."""
    client, registry = env

    @durable("kid", registry=registry)
    async def kid(ctx: Context) -> int:
        return 1

    @durable("claims-taken-id", registry=registry)
    async def claims(ctx: Context) -> int:
        return int(await ctx.call("kid", execution_id="taken-child"))

    await client.start("kid", None, execution_id="taken-child")  # not a child of anyone
    eid = await client.start("claims-taken-id")
    with pytest.raises(ExecutionFailedError, match="already belongs to another execution"):
        await client.result(eid, timeout=10)


async def test_resolved_wait_takes_its_timer_off_the_wheel(
    env: tuple[Client, Registry], redis: Redis
) -> None:
    """Regression: a wait's timeout timer stayed on the wheel after the event came, then
    fired and set the status of a sleeping execution to pending."""
    client, registry = env

    @durable("waits-then-sleeps", registry=registry)
    async def waits(ctx: Context) -> None:
        await ctx.wait_for_signal("go", timeout="1s")
        await ctx.sleep(30)

    eid = await client.start("waits-then-sleeps")
    wheel = client.keys.timers(client.keys.partition_of(eid))

    async def timers_on_wheel(expected: list[str]) -> bool:
        members = await redis.zrange(wheel, 0, -1)
        return sorted(m.decode().split(" ", 1)[1] for m in members) == expected

    await wait_for(lambda: timers_on_wheel(["event:go#0:timer"]), timeout=5)
    await client.send_signal(eid, "go", 1)
    await wait_for(lambda: timers_on_wheel(["sleep-0"]), timeout=5)
    await asyncio.sleep(1.3)
    assert (await client.status(eid)).status == "sleeping"


