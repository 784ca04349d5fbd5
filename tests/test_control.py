"""Steering executions from outside and composing them inside (issue: control plane)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from zart_es import (
    Cancelled,
    ChildFailedError,
    Client,
    Context,
    EventTimeout,
    ExecutionEnded,
    ExecutionFailedError,
    ExecutionNotFound,
    Registry,
    Worker,
    durable,
)
from zart_es.core._events import (
    CancelRequested,
    ChildCompleted,
    EventConsumed,
    StepCompleted,
    TimerFired,
    TimerSet,
)

from .helpers import count_effects, kill9, read_log, spawn_worker, stop_worker, wait_for


async def _status(client: Client, eid: str, state: str) -> bool:
    return (await client.status(eid)).state == state


# -- events -------------------------------------------------------------------------------


async def test_events_sent_before_and_after_the_wait(env: tuple[Client, Registry]) -> None:
    client, registry = env

    @durable("approvals", registry=registry)
    async def approvals(ctx: Context) -> list[str]:
        first = await ctx.wait_for_event("approve", type=str)
        second = await ctx.wait_for_event("approve", type=str)
        return [first, second]

    eid = await client.start("approvals")
    await client.send_event(eid, "approve", "early")  # may arrive before the first wait
    await wait_for(lambda: _status(client, eid, "running"), timeout=5)
    await asyncio.sleep(0.2)
    await client.send_event(eid, "approve", "late")
    assert await client.result(eid, timeout=5) == ["early", "late"]


async def test_event_sent_long_before_the_wait_is_kept(env: tuple[Client, Registry]) -> None:
    client, registry = env

    @durable("later", registry=registry)
    async def later(ctx: Context) -> int:
        await ctx.sleep(0.3)
        return await ctx.wait_for_event("go", type=int)

    eid = await client.start("later")
    await client.send_event(eid, "go", 7)
    assert await client.result(eid, timeout=5) == 7


async def test_event_idempotency_and_bad_targets(
    env: tuple[Client, Registry], redis: Redis
) -> None:
    client, registry = env

    @durable("one-event", registry=registry)
    async def one_event(ctx: Context) -> str:
        return await ctx.wait_for_event("e", type=str)

    eid = await client.start("one-event")
    assert await client.send_event(eid, "e", "x", event_id="evt-1") is True
    assert await client.send_event(eid, "e", "x", event_id="evt-1") is False
    assert await client.result(eid, timeout=5) == "x"
    received = [e for e in await read_log(redis, eid) if type(e).__name__ == "EventReceived"]
    assert len(received) == 1
    with pytest.raises(ExecutionEnded):
        await client.send_event(eid, "e", "too late")
    with pytest.raises(ExecutionNotFound):
        await client.send_event("no-such-execution", "e", 1)


async def test_wait_timeout_is_recorded(env: tuple[Client, Registry], redis: Redis) -> None:
    client, registry = env

    @durable("impatient", registry=registry)
    async def impatient(ctx: Context) -> str:
        try:
            await ctx.wait_for_event("reply", timeout="300ms")
        except EventTimeout as exc:
            await ctx.sleep(0.05)  # a replay must resolve the wait the same way
            return f"gave up on {exc.name}"
        return "got it"

    eid = await client.start("impatient")
    assert await client.result(eid, timeout=5) == "gave up on reply"
    consumed = [e for e in await read_log(redis, eid) if isinstance(e, EventConsumed)]
    assert [(e.name, e.index) for e in consumed] == [("reply", -1)]
    with pytest.raises(ExecutionEnded):  # the late reply finds the execution finished
        await client.send_event(eid, "reply", 1)


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


# -- cancellation -------------------------------------------------------------------------


def _cancellable(registry: Registry, mode: str, gate: asyncio.Event, log: list[str]) -> None:
    @durable(f"cancellable-{mode}", registry=registry)
    async def cancellable(ctx: Context) -> str:
        try:
            await ctx.step("reserve", lambda: log.append("reserve"))
            if mode == "step":
                await ctx.step("long", gate.wait)
            elif mode == "sleep":
                await ctx.sleep(60)
            else:
                await ctx.wait_for_event("never")
            await ctx.step("after", lambda: log.append("after"))
        except Cancelled:
            await ctx.step("compensate", lambda: log.append("compensate"))
            raise
        else:
            return "finished"
        finally:
            await ctx.step("cleanup", lambda: log.append("cleanup"))


@pytest.mark.parametrize("mode", ["step", "sleep", "event"])
async def test_cancel_runs_compensation_and_ends_cancelled(
    env: tuple[Client, Registry], redis: Redis, mode: str
) -> None:
    client, registry = env
    gate = asyncio.Event()
    log: list[str] = []
    _cancellable(registry, mode, gate, log)
    eid = await client.start(f"cancellable-{mode}")
    await wait_for(lambda: _has_step(redis, eid, "reserve"), timeout=5)
    await asyncio.sleep(0.1)
    assert await client.cancel(eid, reason="customer asked") is True
    gate.set()  # the step in flight finishes; its result is recorded; then Cancelled
    with pytest.raises(ExecutionFailedError) as info:
        await client.result(eid, timeout=5)
    assert info.value.error_type == "Cancelled"
    status = await client.status(eid)
    assert status.state == "cancelled"
    assert log == ["reserve", "compensate", "cleanup"]
    events = await read_log(redis, eid)
    assert sum(isinstance(e, CancelRequested) for e in events) == 1
    steps = [e.step for e in events if isinstance(e, StepCompleted)]
    expected = ["reserve", "long", "compensate", "cleanup"] if mode == "step" else [
        "reserve", "compensate", "cleanup"]
    assert steps == expected
    assert await client.cancel(eid) is False  # already finished: a no-op that says so


async def test_a_compensation_that_waits_durably_ends_cancelled(
    env: tuple[Client, Registry]
) -> None:
    """Cancelled at a new call; the compensation's retry waits on a durable timer, so the
    run suspends and a later run replays it: that replay must be cancelled at the same
    call, not fail as nondeterministic because the log has 'release' where 'charge' is."""
    client, registry = env
    gate = asyncio.Event()
    tries: list[int] = []

    def release() -> str:
        tries.append(1)
        if len(tries) == 1:
            raise ConnectionError("stock service blip")
        return "released"

    @durable("compensate-with-retry", registry=registry)
    async def order(ctx: Context) -> str:
        try:
            await ctx.step("reserve", lambda: "reserved")
            await ctx.step("wait-a-bit", gate.wait)  # the cancel arrives meanwhile
            await ctx.step("charge", lambda: "charged")  # Cancelled here
        except Cancelled:
            await ctx.step_with_retry("release", release, retries=3, backoff="fixed",
                                      delay="200ms")
            raise
        return "done"

    eid = await client.start("compensate-with-retry")
    await asyncio.sleep(0.3)
    await client.cancel(eid, reason="customer asked")
    gate.set()
    status = await client.wait(eid, 10)
    assert status.state == "cancelled", status
    assert len(tries) == 2


async def _has_step(redis: Redis, eid: str, step: str) -> bool:
    return any(isinstance(e, StepCompleted) and e.step == step for e in await read_log(redis, eid))


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
    assert (await client.status(eid)).state == "timed_out"
    steps = [e.step for e in await read_log(redis, eid) if isinstance(e, StepCompleted)]
    assert steps == ["quick"]  # the step that finished after the deadline is not recorded


# -- gather -------------------------------------------------------------------------------


async def test_gather_records_each_branch(env: tuple[Client, Registry], redis: Redis) -> None:
    client, registry = env

    @durable("fan-out", registry=registry)
    async def fan_out(ctx: Context) -> list[int]:
        async def square(i: int) -> int:
            await asyncio.sleep(0.01 * (5 - i))  # finish in reverse order
            return i * i

        return await ctx.gather(*(ctx.step(f"sq-{i}", lambda i=i: square(i)) for i in range(5)))

    eid = await client.start("fan-out")
    assert await client.result(eid, timeout=5) == [0, 1, 4, 9, 16]
    steps = [e.step for e in await read_log(redis, eid) if isinstance(e, StepCompleted)]
    assert sorted(steps) == [f"sq-{i}" for i in range(5)]


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
    assert (await client.status("family.child-1")).state == "failed"


async def test_child_in_another_partition(env: tuple[Client, Registry]) -> None:
    client, registry = env
    _family(registry)
    keys = client.keys
    parent_id = next(f"p{i}" for i in range(100)
                     if keys.partition_of(f"p{i}") != keys.partition_of(f"p{i}.child-0"))
    assert await client.result(await client.start("parent", [21], execution_id=parent_id),
                               timeout=10) == [42]


# -- determinism --------------------------------------------------------------------------


async def test_changed_code_is_detected_as_nondeterminism(redis_url: str, redis: Redis) -> None:
    v1, v2 = Registry(), Registry()

    @durable("evolving", registry=v1)
    async def evolving_v1(ctx: Context) -> str:
        await ctx.step("a", lambda: "a")
        await ctx.step("b", lambda: "b")
        await ctx.sleep(0.5)
        await ctx.step("c", lambda: "c")
        return "v1"

    @durable("evolving", registry=v2)
    async def evolving_v2(ctx: Context) -> str:
        await ctx.step("a", lambda: "a")
        await ctx.step("inserted", lambda: "x")  # a new step where "b" was recorded
        await ctx.step("b", lambda: "b")
        await ctx.sleep(0.5)
        return "v2"

    async with Client(redis_url) as client:
        async with Worker(redis_url, registry=v1, poll_interval=0.05):
            eid = await client.start("evolving")
            await wait_for(lambda: _status(client, eid, "sleeping"), timeout=5)
        async with Worker(redis_url, registry=v2, poll_interval=0.05):
            with pytest.raises(ExecutionFailedError) as info:
                await client.result(eid, timeout=5)
    assert info.value.error_type == "NondeterminismError"
    assert "'b'" in info.value.message
    assert "'inserted'" in info.value.message
    steps = [e.step for e in await read_log(redis, eid) if isinstance(e, StepCompleted)]
    assert steps == ["a", "b"]  # nothing of the new code was recorded


async def test_now_and_uuid_are_stable_across_replays(env: tuple[Client, Registry]) -> None:
    client, registry = env
    seen: list[tuple[object, str]] = []

    @durable("stable", registry=registry)
    async def stable(ctx: Context) -> bool:
        stamp, ident = await ctx.now(), await ctx.uuid()
        seen.append((stamp, ident))
        await ctx.sleep(0.05)
        return True

    assert await client.result(await client.start("stable"), timeout=5) is True
    assert len(seen) == 2
    assert seen[0] == seen[1]


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
        await ctx.wait_for_event("go", timeout="1s")
        await ctx.sleep(30)

    eid = await client.start("waits-then-sleeps")
    wheel = client.keys.timers(client.keys.partition_of(eid))

    async def timers_on_wheel(expected: list[str]) -> bool:
        members = await redis.zrange(wheel, 0, -1)
        return sorted(m.decode().split(" ", 1)[1] for m in members) == expected

    await wait_for(lambda: timers_on_wheel(["event:go#0:timer"]), timeout=5)
    await client.send_event(eid, "go", 1)
    await wait_for(lambda: timers_on_wheel(["sleep-0"]), timeout=5)
    await asyncio.sleep(1.3)
    assert (await client.status(eid)).state == "sleeping"


async def test_gather_branches_keep_their_own_children_across_replays(
    env: tuple[Client, Registry]
) -> None:
    """Regression: child ids came from one counter shared by gather's branches, so a
    replay that reached it in another order swapped the branches' results."""
    client, registry = env

    @durable("wf-a", registry=registry)
    async def wf_a(ctx: Context) -> str:
        return "A"

    @durable("wf-b", registry=registry)
    async def wf_b(ctx: Context) -> str:
        return "B"

    @durable("two-children", registry=registry)
    async def two_children(ctx: Context) -> list[str]:
        async def left() -> str:
            await ctx.step("slow", lambda: asyncio.sleep(0.05))  # recorded: instant on replay
            return str(await ctx.call("wf-a"))

        async def right() -> str:
            return str(await ctx.call("wf-b"))

        return await ctx.gather(left(), right())

    eid = await client.start("two-children")
    assert await client.result(eid, timeout=10) == ["A", "B"]


async def test_concurrent_waits_for_one_event_name_take_different_events(
    env: tuple[Client, Registry]
) -> None:
    client, registry = env

    @durable("two-waiters", registry=registry)
    async def two_waiters(ctx: Context) -> list[str]:
        await ctx.step("ready", lambda: 1)
        got = await ctx.gather(ctx.wait_for_event("go", type=str),
                               ctx.wait_for_event("go", type=str))
        return sorted(got)

    eid = await client.start("two-waiters")
    await client.send_event(eid, "go", "first")
    await client.send_event(eid, "go", "second")
    assert await client.result(eid, timeout=10) == ["first", "second"]


class _ProcessDied(BaseException):
    """Stands for the worker process dying in the middle of a compensation."""


async def test_cancel_at_a_sleep_is_replayed_there_even_after_the_timer_fired(
    redis_url: str, redis: Redis
) -> None:
    """A run got Cancelled at a pending sleep and recorded a compensation step, then died;
    the timer fired before the next run. The replay must get Cancelled at the same sleep
    (the cancel came first in the log), not walk past it into NondeterminismError."""
    from zart_es.engine._runner import StoreJournal, run_execution
    from zart_es.engine._timers import TimerPoller
    from zart_es.store._keys import Keys
    from zart_es.store._store import Store

    registry = Registry()
    dies = [True]

    def undo_more() -> int:
        if dies.pop() if dies else False:
            raise _ProcessDied
        return 2

    @durable("compensating", registry=registry)
    async def compensating(ctx: Context) -> str:
        try:
            await ctx.sleep(0.2)
            await ctx.step("after", lambda: 1)
        except Cancelled:
            await ctx.step("undo", lambda: 1)
            await ctx.step("undo-more", undo_more)
            raise
        return "finished"

    store = Store(redis, Keys())
    try:
        async with Client(redis_url) as client:
            eid = await client.start("compensating")
            await run_execution(await _journal(store, eid, StoreJournal), registry)
            await client.cancel(eid)
            with pytest.raises(_ProcessDied):
                await run_execution(await _journal(store, eid, StoreJournal), registry)
            await asyncio.sleep(0.3)
            assert await TimerPoller(store, Keys()).tick() >= 0  # the sleep's timer fires
            log = await read_log(redis, eid)
            assert any(isinstance(e, TimerFired) for e in log)
            await run_execution(await _journal(store, eid, StoreJournal), registry)
            status = await client.status(eid)
            assert (status.state, status.error) == ("cancelled", "Cancelled: cancelled")
    finally:
        await store.aclose()


async def _journal(store: Any, eid: str, cls: Any) -> Any:
    journal = cls(store, eid)
    await journal.catch_up()
    return journal


async def test_a_gather_branch_waiting_does_not_stop_its_siblings(
    env: tuple[Client, Registry]
) -> None:
    """Branch 0 waits for an event that branch 1's step sends: branch 1 must still run."""
    client, registry = env

    @durable("self-trigger", registry=registry)
    async def self_trigger(ctx: Context) -> str:
        async def trigger() -> bool:
            return await client.send_event(ctx.execution_id, "go", "triggered")

        got, _sent = await ctx.gather(ctx.wait_for_event("go", type=str),
                                      ctx.step("trigger", trigger))
        return str(got)

    eid = await client.start("self-trigger")
    assert await client.result(eid, timeout=10) == "triggered"
