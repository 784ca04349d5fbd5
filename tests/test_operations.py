"""Operating executions: repair (retry a step, re-run, restart) and pause rules, each on
real executions run by an in-process worker over a real Redis."""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis

from zart_es import Client, ConfigError, Context, InvalidExecutionId, Registry, Worker, durable
from zart_es.core import (
    ExecutionPaused,
    ExecutionResumed,
    RepairRefused,
    RunRestarted,
    StepCompleted,
    StepFailedError,
    StepRetryRequested,
    StepsInvalidated,
    TimerFired,
    TimerSet,
    UnknownStep,
)
from zart_es.engine._pause_rules import PauseRules
from zart_es.ops import resume_released

from .helpers import read_log, wait_for

pytestmark = pytest.mark.redis


class Calls:
    """How often each step function ran, and which ones should fail on their next run."""

    def __init__(self) -> None:
        self.runs: collections.Counter[str] = collections.Counter()
        self.failing: set[str] = set()

    def step(self, name: str, value: int) -> int:
        self.runs[name] += 1
        if name in self.failing:
            raise ConnectionError(f"{name} is down")
        return value


def _pipeline(registry: Registry, calls: Calls, name: str = "pipeline") -> None:
    @durable(name, registry=registry)
    async def pipeline(ctx: Context, base: int) -> int:
        a = await ctx.step("a", lambda: calls.step("a", base))
        b = await ctx.step("b", lambda: calls.step("b", a + 1))
        await ctx.sleep(0.02)
        return await ctx.step("c", lambda: calls.step("c", b * 10))


# -- retry a failed step --------------------------------------------------------------------


async def test_retry_step_resumes_from_the_failed_step(
    env: tuple[Client, Registry], redis: Redis
) -> None:
    client, registry = env
    calls = Calls()
    calls.failing.add("b")
    _pipeline(registry, calls)
    eid = await client.start("pipeline", 1)
    assert (await client.wait(eid, 10)).status == "failed"

    with pytest.raises(RepairRefused, match="did not fail"):
        await client.retry_step(eid, "a")
    with pytest.raises(UnknownStep, match="'nope'"):
        await client.retry_step(eid, "nope")

    calls.failing.clear()  # the outage is over
    assert await client.retry_step(eid, reason="db back", by="ops") == "b"
    assert await client.result(eid, timeout=10) == 20
    assert calls.runs == {"a": 1, "b": 2, "c": 1}  # a's result was kept
    log = await read_log(redis, eid)
    retry = next(e for e in log if isinstance(e, StepRetryRequested))
    assert (retry.step, retry.by, retry.reason) == ("b", "ops", "db back")
    assert await client.verify(eid) is None  # the chain holds across the repair


async def test_repairs_are_refused_while_running_or_for_the_wrong_end(
    env: tuple[Client, Registry]
) -> None:
    client, registry = env

    @durable("napper", registry=registry)
    async def napper(ctx: Context) -> str:
        await ctx.sleep(30)
        return "late"

    @durable("fine", registry=registry)
    async def fine(ctx: Context) -> int:
        return await ctx.step("one", lambda: 1)

    running = await client.start("napper")
    await wait_for(lambda: _state(client, running, "sleeping"))
    for repair in (client.retry_step(running), client.restart(running),
                   client.rerun(running, ["sleep-0"])):
        with pytest.raises(RepairRefused, match="only an ended execution"):
            await repair
    done = await client.start("fine")
    assert await client.result(done, timeout=10) == 1
    with pytest.raises(RepairRefused, match="not failed"):
        await client.retry_step(done)
    with pytest.raises(RepairRefused, match="at least one step"):
        await client.rerun(done, [])
    with pytest.raises(UnknownStep, match=r"'two'.*'one'"):
        await client.rerun(done, ["two"])
    assert (await client.status(running)).status == "sleeping"  # nothing was recorded


async def test_retry_step_of_a_workflow_failure_is_refused(env: tuple[Client, Registry]) -> None:
    client, registry = env

    @durable("raiser", registry=registry)
    async def raiser(ctx: Context) -> None:
        await ctx.step("ok", lambda: 1)
        raise ValueError("workflow logic said no")

    eid = await client.start("raiser")
    await client.wait(eid, 10)
    with pytest.raises(RepairRefused, match="no step failed"):
        await client.retry_step(eid)


# -- selective re-run -----------------------------------------------------------------------


async def test_rerun_forgets_the_chosen_step_and_everything_after(
    env: tuple[Client, Registry], redis: Redis
) -> None:
    client, registry = env
    calls = Calls()
    _pipeline(registry, calls)
    eid = await client.start("pipeline", 1)
    assert await client.result(eid, timeout=10) == 20

    forgotten = await client.rerun(eid, ["b"], reason="bad data in b")
    assert forgotten == ["b", "sleep-0", "c"]
    assert await client.result(eid, timeout=10) == 20
    assert calls.runs == {"a": 1, "b": 2, "c": 2}
    log = await read_log(redis, eid)
    assert sum(isinstance(e, StepsInvalidated) for e in log) == 1
    assert [e.step for e in log if isinstance(e, StepCompleted)] == ["a", "b", "c", "b", "c"]
    assert sum(isinstance(e, TimerFired) for e in log) == 2  # the sleep ran again too


async def test_rerun_starts_a_fresh_child_for_a_forgotten_child_call(
    env: tuple[Client, Registry]
) -> None:
    client, registry = env
    runs: list[str] = []

    @durable("child-work", registry=registry)
    async def child(ctx: Context, n: int) -> int:
        runs.append(ctx.execution_id)
        return await ctx.step("double", lambda: n * 2)

    @durable("parent-work", registry=registry)
    async def parent(ctx: Context) -> int:
        n = await ctx.step("n", lambda: 21)
        return int(await ctx.call("child-work", n))

    eid = await client.start("parent-work", execution_id="parent-1")
    assert await client.result(eid, timeout=10) == 42
    await client.rerun(eid, ["n"])
    assert await client.result(eid, timeout=10) == 42
    assert runs == ["parent-1.child-0", "parent-1.child-0.r1"]


# -- restart --------------------------------------------------------------------------------


async def test_restart_runs_again_from_scratch_and_keeps_the_old_run(
    env: tuple[Client, Registry], redis: Redis
) -> None:
    client, registry = env
    calls = Calls()
    calls.failing.add("c")
    _pipeline(registry, calls)
    eid = await client.start("pipeline", 4)
    assert (await client.wait(eid, 10)).status == "failed"
    calls.failing.clear()
    assert await client.restart(eid, by="ops") == 1
    assert await client.result(eid, timeout=10) == 50
    assert calls.runs == {"a": 2, "b": 2, "c": 2}
    assert await client.restart(eid) == 2  # a completed execution may run again too
    assert await client.result(eid, timeout=10) == 50
    log = await read_log(redis, eid)
    assert [e.run for e in log if isinstance(e, RunRestarted)] == [1, 2]
    assert await client.verify(eid) is None


async def test_a_restart_keeps_the_events_the_execution_was_sent(
    env: tuple[Client, Registry]
) -> None:
    """'go' arrived while the first run slept and 'a' then failed before any wait took
    it; 'seen' was taken by the first run. The restarted run takes both again (the
    sender of 'go' would find its re-send refused as a duplicate of 'go-1')."""
    client, registry = env
    calls = Calls()
    calls.failing.add("a")

    @durable("events-then-fail", registry=registry)
    async def events_then_fail(ctx: Context) -> str:
        seen = await ctx.wait_for_signal("seen", type=str)
        await ctx.sleep(0.3)
        await ctx.step("a", lambda: calls.step("a", 1))
        return seen + " " + await ctx.wait_for_signal("go", type=str)

    eid = await client.start("events-then-fail")
    await client.send_signal(eid, "seen", "first")
    await client.send_signal(eid, "go", "payload-1", signal_id="go-1")
    assert (await client.wait(eid, 10)).status == "failed"
    calls.failing.clear()
    await client.restart(eid)
    assert await client.result(eid, timeout=10) == "first payload-1"


async def test_a_restarted_run_can_be_cancelled_again(env: tuple[Client, Registry]) -> None:
    client, registry = env

    @durable("cancellable", registry=registry)
    async def cancellable(ctx: Context) -> None:
        await ctx.sleep(30)

    eid = await client.start("cancellable")
    await wait_for(lambda: _state(client, eid, "sleeping"))
    assert await client.cancel(eid)
    assert (await client.wait(eid, 10)).status == "cancelled"
    await client.restart(eid)
    await wait_for(lambda: _state(client, eid, "sleeping"))
    assert await client.cancel(eid)  # the first run's request does not count for this one
    assert (await client.wait(eid, 10)).status == "cancelled"


# -- pause rules ----------------------------------------------------------------------------


async def test_pause_holds_executions_and_resume_lets_them_finish(
    env: tuple[Client, Registry], redis: Redis
) -> None:
    client, registry = env
    ticks: collections.Counter[str] = collections.Counter()

    @durable("ticker", registry=registry)
    async def ticker(ctx: Context) -> int:
        for i in range(6):
            await ctx.step(f"tick-{i}", lambda: ticks.update([ctx.execution_id]))
            await ctx.sleep(0.15)
        return 6

    ids = [await client.start("ticker") for _ in range(3)]
    await wait_for(lambda: _all(client, ids, "sleeping"))
    assert await client.pause(workflow="ticker", reason="maintenance", by="ops")
    assert not await client.pause(workflow="ticker")  # already in force
    await wait_for(lambda: _all(client, ids, "paused"), timeout=10)
    held = dict(ticks)
    late = await client.start("ticker")  # started while paused: waits before its first step
    await wait_for(lambda: _state(client, late, "paused"), timeout=10)
    await asyncio.sleep(0.6)
    assert dict(ticks) == held
    assert late not in ticks
    for eid in ids:
        log = await read_log(redis, eid)
        paused_at = next(e.seq for e in log if isinstance(e, ExecutionPaused))
        assert not any(isinstance(e, StepCompleted) and e.seq > paused_at for e in log)
    assert [r.rule for r in await client.pauses()] == ["workflow:ticker"]

    assert await client.resume(workflow="ticker") == 4
    for eid in [*ids, late]:
        assert await client.result(eid, timeout=20) == 6
    assert all(ticks[eid] == 6 for eid in [*ids, late])
    assert await client.pauses() == []
    log = await read_log(redis, ids[0])
    assert sum(isinstance(e, ExecutionResumed) for e in log) == 1


async def test_timers_falling_due_while_paused_are_seen_on_resume(
    env: tuple[Client, Registry], worker: Worker, redis: Redis
) -> None:
    client, registry = env
    done: list[str] = []

    @durable("sleepy", registry=registry)
    async def sleepy(ctx: Context) -> str:
        await ctx.step("before", lambda: 1)
        await ctx.sleep(0.5)
        await ctx.step("after", lambda: done.append("after"))
        return "woke"

    eid = await client.start("sleepy")
    await wait_for(lambda: _state(client, eid, "sleeping"))
    await client.pause(workflow="sleepy")
    await worker.refresh_pause_rules()  # instead of waiting for its next poll
    await client.send_signal(eid, "poke")  # wakes it: the worker finds the rule and holds it
    await wait_for(lambda: _state(client, eid, "paused"), timeout=10)

    async def fired_while_paused() -> bool:
        log = await read_log(redis, eid)
        paused_at = next(e.seq for e in log if isinstance(e, ExecutionPaused))
        return any(isinstance(e, TimerFired) and e.seq > paused_at for e in log)

    await wait_for(fired_while_paused, timeout=10)
    assert (await client.status(eid)).status == "paused"
    assert not done
    await client.resume(workflow="sleepy")
    assert await client.result(eid, timeout=10) == "woke"
    assert done == ["after"]


async def test_workers_resume_what_a_lifted_rule_held(
    env: tuple[Client, Registry], worker: Worker, redis: Redis
) -> None:
    client, registry = env

    @durable("held", registry=registry)
    async def held(ctx: Context) -> str:
        await ctx.step("first", lambda: 1)
        return "done"

    await client.pause(workflow="held")
    await worker.refresh_pause_rules()  # instead of waiting for its next poll
    eid = await client.start("held")
    await wait_for(lambda: _state(client, eid, "paused"), timeout=10)
    # the rule disappears without a resume (a resume that crashed half-way)
    await redis.hdel(client.keys.pauses(), "workflow:held")  # type: ignore[misc]
    assert await client.result(eid, timeout=15) == "done"


async def test_a_paused_execution_can_be_cancelled(
    env: tuple[Client, Registry], worker: Worker
) -> None:
    client, registry = env
    compensated: list[str] = []

    @durable("pausable", registry=registry)
    async def pausable(ctx: Context) -> None:
        try:
            await ctx.step("work", lambda: 1)
        except BaseException:
            await ctx.step("undo", lambda: compensated.append("undo"))
            raise

    await client.pause(workflow="pausable")
    await worker.refresh_pause_rules()  # instead of waiting for its next poll
    eid = await client.start("pausable")
    await wait_for(lambda: _state(client, eid, "paused"), timeout=10)
    assert await client.cancel(eid, reason="not needed")
    assert (await client.wait(eid, 10)).status == "cancelled"
    await client.resume(workflow="pausable")


async def test_pause_scopes_one_execution_and_a_step_glob(
    env: tuple[Client, Registry], worker: Worker, redis: Redis
) -> None:
    client, registry = env
    ran: list[str] = []

    @durable("two-phase", registry=registry)
    async def two_phase(ctx: Context) -> int:
        await ctx.step("prepare", lambda: ran.append(f"{ctx.execution_id} prepare"))
        await ctx.sleep(0.1)
        await ctx.step("charge-card", lambda: ran.append(f"{ctx.execution_id} charge"))
        await ctx.step("ship", lambda: ran.append(f"{ctx.execution_id} ship"))
        return 1

    assert await client.pause(execution_id="held-one", by="ops")
    assert await client.pause(step="charge-*", reason="card provider down")
    await worker.refresh_pause_rules()
    await client.start("two-phase", execution_id="held-one")
    await client.start("two-phase", execution_id="free-one")
    await wait_for(lambda: _state(client, "held-one", "paused"), timeout=10)
    await wait_for(lambda: _state(client, "free-one", "paused"), timeout=10)
    assert "held-one prepare" not in ran  # held before its first step
    assert ran == ["free-one prepare"]  # held before the matching step only
    log = await read_log(redis, "free-one")
    assert [e.rule for e in log if isinstance(e, ExecutionPaused)] == ["step:charge-*"]
    assert sorted(r.rule for r in await client.pauses()) == [
        "execution:held-one", "step:charge-*"]

    assert await client.resume(step="charge-*") == 1
    assert await client.result("free-one", timeout=10) == 1
    assert (await client.status("held-one")).status == "paused"
    assert await client.resume(execution_id="held-one") == 1
    assert await client.result("held-one", timeout=10) == 1
    assert ran.count("held-one charge") == 1
    with pytest.raises(InvalidExecutionId, match="invalid execution id 'has space'"):
        await client.pause(execution_id="has space")


async def test_pause_needs_exactly_one_target(env: tuple[Client, Registry]) -> None:
    client, _ = env
    with pytest.raises(ConfigError, match="exactly one"):
        await client.pause()
    with pytest.raises(ConfigError, match="exactly one"):
        await client.pause(workflow="a", queue="b")
    with pytest.raises(ConfigError, match="queue name"):
        await client.resume(queue="")
    for never_a_queue in ("a:b", "a b", "{a}"):  # no queue can have such a name
        with pytest.raises(ConfigError, match="must not contain"):
            await client.pause(queue=never_a_queue)
    assert await client.pauses() == []


async def _state(client: Client, eid: str, state: str) -> bool:
    return (await client.status(eid)).status == state


async def _all(client: Client, ids: list[str], state: str) -> bool:
    return all([await _state(client, eid, state) for eid in ids])


async def test_retry_step_forgets_what_the_workflow_did_about_the_failure(
    env: tuple[Client, Registry]
) -> None:
    """The workflow handled the step's failure (a compensation) and failed; retrying the
    step runs the success path, not into a NondeterminismError."""
    client, registry = env
    calls = Calls()
    calls.failing.add("charge")

    @durable("compensated", registry=registry)
    async def compensated(ctx: Context) -> str:
        try:
            await ctx.step("charge", lambda: calls.step("charge", 1))
        except StepFailedError:
            await ctx.step("notify-failure", lambda: calls.step("notify-failure", 0))
            raise
        await ctx.step("ship", lambda: calls.step("ship", 2))
        return "shipped"

    eid = await client.start("compensated")
    assert (await client.wait(eid, 10)).status == "failed"
    calls.failing.clear()
    assert await client.retry_step(eid) == "charge"
    assert await client.result(eid, timeout=10) == "shipped"
    assert calls.runs == {"charge": 2, "notify-failure": 1, "ship": 1}


async def test_a_repaired_run_gets_a_fresh_deadline(
    env: tuple[Client, Registry], redis: Redis
) -> None:
    client, registry = env
    slow = {"first": True}

    async def maybe_slow() -> str:
        if slow.pop("first", False):
            await asyncio.sleep(2)
        return "fast"

    @durable("deadlined", registry=registry, timeout="600ms")
    async def deadlined(ctx: Context) -> str:
        await ctx.step("prepare", lambda: 1)
        return str(await ctx.step("work", maybe_slow))

    eid = await client.start("deadlined")
    assert (await client.wait(eid, 10)).status == "timed_out"
    await asyncio.sleep(1.6)  # the original deadline is long past; the slow step returned
    with pytest.raises(UnknownStep, match="'prepare'"):  # in flight, never recorded
        await client.rerun(eid, ["work"])
    await client.rerun(eid, ["prepare"])
    assert await client.result(eid, timeout=10) == "fast"  # a new 600 ms from the rerun


async def test_a_repair_takes_the_old_runs_pending_timers_off_the_wheel(
    env: tuple[Client, Registry], redis: Redis
) -> None:
    """The deadline ended the execution while a sleep was pending (the poller does not
    fold, so that timer stayed on the wheel); the repair removes it, so it cannot fire
    into the new run, which does not sleep."""
    client, registry = env
    runs: list[int] = []

    @durable("sleepy-deadline", registry=registry, timeout="300ms")
    async def sleepy_deadline(ctx: Context) -> str:
        runs.append(1)
        if len(runs) == 1:
            await ctx.sleep(60, name="long")
        return str(await ctx.wait_for_signal("go", type=str))

    eid = await client.start("sleepy-deadline")
    assert (await client.wait(eid, 10)).status == "timed_out"
    wheel = client.keys.timers(client.keys.partition_of(eid))
    member = client.keys.timer_member(eid, "sleep:long")
    assert await redis.zscore(wheel, member) is not None  # left behind by the deadline
    await client.restart(eid)
    assert await redis.zscore(wheel, member) is None
    await wait_for(lambda: _ran_twice(runs))
    await client.send_signal(eid, "go", "went")
    assert await client.result(eid, timeout=10) == "went"


async def _ran_twice(runs: list[int]) -> bool:
    return len(runs) >= 2


async def test_the_old_runs_step_in_flight_does_not_continue_the_repaired_run(
    env: tuple[Client, Registry], redis: Redis
) -> None:
    """The deadline ends the run while step 'b' is in flight; a restart reopens the log
    before 'b' returns. 'b's late result must not be recorded into the new run, nor the
    old coroutine go on with it: the new run starts from scratch, with its own deadline."""
    client, registry = env
    calls: collections.Counter[str] = collections.Counter()

    async def slow_b() -> int:
        calls["b"] += 1
        # returns after the restart; the new run then has most of its second left
        await asyncio.sleep(1.8 if calls["b"] == 1 else 0)
        return 2

    @durable("zombie-restart", registry=registry, timeout="1500ms")
    async def zombie_restart(ctx: Context) -> str:
        await ctx.step("a", lambda: calls.update(["a"]) or 1)
        await ctx.step("b", slow_b)
        await ctx.step("c", lambda: calls.update(["c"]) or 3)
        return "done"

    new_run = await _restart_after_timeout(client, redis, "zombie-restart")
    assert [e.step for e in new_run if isinstance(e, StepCompleted)] == ["a", "b", "c"]
    assert any(isinstance(e, TimerSet) and e.purpose == "timeout" for e in new_run)
    assert calls == {"a": 2, "b": 2, "c": 1}


async def test_a_deadline_ends_an_execution_held_since_before_its_first_run(
    env: tuple[Client, Registry]
) -> None:
    """Started while a rule covers its workflow, the execution is held before it runs
    anything; its deadline still counts from the start and ends it during the pause."""
    client, registry = env

    @durable("held-from-the-start", registry=registry, timeout="800ms")
    async def held_from_the_start(ctx: Context) -> str:
        return str(await ctx.step("work", lambda: "worked"))

    await client.pause(workflow="held-from-the-start", reason="incident")
    await asyncio.sleep(1.1)  # every worker's copy of the rules has it
    eid = await client.start("held-from-the-start")
    status = await client.wait(eid, 10)
    assert status.status == "timed_out", status
    assert (await client.pauses())[0].rule == "workflow:held-from-the-start"  # still paused
    await client.resume(workflow="held-from-the-start")
    assert (await client.status(eid)).status == "timed_out"


async def test_a_sweep_with_an_old_copy_of_the_rules_keeps_a_hold_being_recorded(
    redis_url: str, registry: Registry
) -> None:
    """A worker's sweep, with a copy of the rules from before a pause, runs right after
    another worker put a held execution in the paused set (before it recorded the
    pause): the member must stay, so the resume later finds the execution and frees it."""
    ran: list[int] = []

    @durable("swept-while-held", registry=registry)
    async def swept_while_held(ctx: Context) -> str:
        await ctx.step("work", lambda: ran.append(1) or 1)
        return "done"

    async with Client(redis_url) as client:
        worker = Worker(redis_url, registry=registry, lease_timeout=1, poll_interval=0.05)
        before = set(await PauseRules(client).refresh())  # no rules yet
        hold = worker.pauses.hold

        async def hold_then_old_sweep(execution_id: str, rule: str) -> None:
            await hold(execution_id, rule)
            await resume_released(worker.store, before)  # another worker's sweep, now

        worker.pauses.hold = hold_then_old_sweep  # type: ignore[method-assign]
        async with worker:
            await client.pause(workflow="swept-while-held")
            await asyncio.sleep(1.1)  # every worker's copy of the rules has it
            eid = await client.start("swept-while-held")
            await wait_for(lambda: _state_is(client, eid, "paused"))
            assert await client.resume(workflow="swept-while-held") == 1
            assert await client.result(eid, timeout=10) == "done"
    assert ran == [1]


async def _state_is(client: Client, execution_id: str, state: str) -> bool:
    return (await client.status(execution_id)).status == state


async def test_a_worker_with_an_old_copy_of_the_rules_keeps_a_paused_execution_paused(
    redis_url: str, registry: Registry
) -> None:
    """A worker whose copy of the rules does not know the rule yet (it refreshes at most
    every second) runs a paused execution because an event arrived: it must ask Redis
    about the rule that paused it, not resume it on its stale copy."""

    @durable("woken-while-paused", registry=registry)
    async def woken_while_paused(ctx: Context) -> str:
        await ctx.sleep(0.3)
        return str(await ctx.wait_for_signal("go", type=str))

    async with Client(redis_url) as client, Worker(
            redis_url, registry=registry, lease_timeout=1, poll_interval=0.05) as worker:
        eid = await client.start("woken-while-paused")
        await client.pause(workflow="woken-while-paused")
        await wait_for(lambda: _state_is(client, eid, "paused"))

        async def stale_refresh() -> frozenset[str]:
            worker.pauses.active = frozenset()  # a copy from before the pause
            return worker.pauses.active

        worker.pauses.refresh = stale_refresh  # type: ignore[method-assign]
        worker.pauses.active = frozenset()
        await client.send_signal(eid, "go", "went")  # a work message: the worker runs it
        await asyncio.sleep(0.5)
        assert (await client.status(eid)).status == "paused"
        assert not [e for e in await read_log(client.redis, eid)
                    if isinstance(e, ExecutionResumed)]
        await client.resume(workflow="woken-while-paused")
        assert await client.result(eid, timeout=10) == "went"


async def test_the_old_runs_finally_block_does_not_write_into_the_repaired_run(
    env: tuple[Client, Registry], redis: Redis
) -> None:
    """After its in-flight step's append is refused (a restart reopened the log), the old
    run's `finally:` calls another step: it must not run or be recorded into the new run."""
    client, registry = env
    calls: collections.Counter[str] = collections.Counter()
    runs: list[int] = []

    async def slow() -> int:
        calls["b"] += 1
        await asyncio.sleep(2.0 if calls["b"] == 1 else 0)
        return calls["b"]

    @durable("finally-zombie", registry=registry, timeout="1500ms")
    async def finally_zombie(ctx: Context) -> str:
        runs.append(len(runs) + 1)
        me = len(runs)
        try:
            await ctx.step("b", slow)
        finally:
            await ctx.step("cleanup", lambda: calls.update(["cleanup"]) or f"run #{me}")
        return "done"

    new_run = await _restart_after_timeout(client, redis, "finally-zombie")
    cleanups = [msgspec.msgpack.decode(e.result) for e in new_run
                if isinstance(e, StepCompleted) and e.step == "cleanup"]
    assert cleanups == ["run #2"]
    assert calls["cleanup"] == 1  # the old run's cleanup function never started


async def _restart_after_timeout(client: Client, redis: Redis, workflow: str) -> list[Any]:
    """Start ``workflow``, let its deadline end it, restart it, wait for "done"; the new
    run's events."""
    eid = await client.start(workflow)
    assert (await client.wait(eid, 10)).status == "timed_out"
    await client.restart(eid)
    assert await client.result(eid, timeout=15) == "done"
    log = await read_log(redis, eid)
    reopened = next(i for i, e in enumerate(log) if isinstance(e, RunRestarted))
    return log[reopened + 1:]
