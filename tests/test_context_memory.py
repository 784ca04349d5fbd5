"""What ``Context`` promises, on the in-memory journal (``zart_es.testing``): no Redis,
no worker, no waiting. Each ``run()`` is one replay pass from the top; between runs the
test plays the outside world (timers firing, events, cancels, a deploy of new code)."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from zart_es.core import (
    Cancelled,
    CancelRequested,
    ChildFailedError,
    ExecutionEnded,
    ExecutionFailedError,
    ExecutionStarted,
    RetryPolicy,
    RetryScheduled,
    SignalConsumed,
    SignalReceived,
    SignalTimeout,
    StepCompleted,
    StepFailed,
    StepFailedError,
    TaskError,
    TimerFired,
    TimerSet,
)
from zart_es.testing import MemoryJournal, WorkflowHarness
from zart_es.workflow import Context, Registry, durable

pytestmark = pytest.mark.pure

T0 = 1_700_000_000_000


@pytest.fixture
def registry() -> Registry:
    return Registry()


@pytest.fixture
def harness(registry: Registry) -> WorkflowHarness:
    return WorkflowHarness(registry, start_ms=T0)


def steps_of(harness: WorkflowHarness, eid: str | None = None) -> list[str]:
    return [e.step for e in harness.journal(eid).events if isinstance(e, StepCompleted)]


def of_type(harness: WorkflowHarness, kind: type[Any]) -> list[Any]:
    return [e for e in harness.events if isinstance(e, kind)]


async def yields(n: int) -> None:
    """Give the other gather branches ``n`` turns (no time passes)."""
    for _ in range(n):
        await asyncio.sleep(0)


class Point(msgspec.Struct, frozen=True):
    x: int
    y: int


@dataclasses.dataclass
class Box:
    label: str
    points: list[Point]


class ProcessDied(BaseException):
    """Stands for the worker process dying in the middle of a run."""


# -- the journal itself -------------------------------------------------------------------


async def test_journal_stamps_folds_and_fires_timers() -> None:
    now = [T0]
    journal = MemoryJournal(clock=lambda: now[0])
    journal.append(ExecutionStarted(execution_id="x", workflow="w", input=b"\xc0"))
    now[0] += 5
    await journal.record(TimerSet(timer="sleep-0", delay_ms=100))
    await journal.record(TimerSet(timer="sleep-0", delay_ms=100))  # recorded already
    assert [(e.seq, e.at_ms) for e in journal.events] == [(0, T0), (1, T0 + 5)]
    assert journal.state.started_ms == T0
    assert journal.state.timers["sleep-0"].due_ms == T0 + 105
    assert journal.timers == {"sleep-0": T0 + 105}
    now[0] = T0 + 104
    assert journal.fire_due() == []
    now[0] = T0 + 105
    assert journal.fire_due() == ["sleep-0"]
    assert journal.timers == {}
    assert journal.state.timers["sleep-0"].fired
    assert journal.has_work


# -- steps --------------------------------------------------------------------------------


async def test_steps_run_once_and_replays_read_them_from_the_log(
    registry: Registry, harness: WorkflowHarness
) -> None:
    calls: list[str] = []
    seen: list[list[Any]] = []
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    def point() -> Point:
        calls.append("point")
        return Point(1, 2)

    async def box() -> Box:
        calls.append("box")
        return Box("b", [Point(3, 4)])

    @durable("types", registry=registry)
    async def types(ctx: Context) -> list[str]:
        values = [
            await ctx.step("point", point),
            await ctx.step("box", box),
            await ctx.step("when", lambda: when, type=datetime),
            await ctx.step("raw", lambda: b"\x00\xff", type=bytes),
            await ctx.step("nested", lambda: {"a": [1, 2.5, None, True, "s"]}),
        ]
        seen.append(values)
        await ctx.sleep(1)  # the next run replays every step
        return [type(v).__name__ for v in values]

    harness.start("types")
    assert await harness.run() == "sleeping"
    assert await harness.run() == "sleeping"  # a replay with nothing new changes nothing
    harness.advance(1000)
    assert await harness.run() == "completed"
    assert harness.result() == ["Point", "Box", "datetime", "bytes", "dict"]
    assert calls == ["point", "box"]
    assert len(seen) == 3
    assert seen[0] == seen[1] == seen[2]
    assert seen[2][1] == Box("b", [Point(3, 4)])
    assert steps_of(harness) == ["point", "box", "when", "raw", "nested"]


async def test_input_is_decoded_to_the_annotated_type(
    registry: Registry, harness: WorkflowHarness
) -> None:
    @durable("typed-input", registry=registry)
    async def typed_input(ctx: Context, data: Point) -> int:
        return data.x * data.y

    harness.start("typed-input", Point(6, 7))
    await harness.run()
    assert harness.result() == 42


async def test_durable_loop_names_steps_and_resumes_at_the_first_missing(
    registry: Registry, harness: WorkflowHarness
) -> None:
    shouted: list[str] = []

    @durable("loop", registry=registry)
    async def loop(ctx: Context, items: list[str]) -> list[str]:
        def shout(i: int, item: str) -> str:
            shouted.append(item)
            if item == "c" and shouted.count("c") == 1:
                raise ProcessDied
            return f"{i}:{item.upper()}"

        return await ctx.durable_loop("shout", items, shout)

    harness.start("loop", ["a", "b", "c"])
    with pytest.raises(ProcessDied):
        await harness.run()
    assert steps_of(harness) == ["shout-0", "shout-1"]
    await harness.run()
    assert harness.result() == ["0:A", "1:B", "2:C"]
    assert shouted == ["a", "b", "c", "c"]


async def test_duplicate_step_name_fails_the_execution(
    registry: Registry, harness: WorkflowHarness
) -> None:
    @durable("dup", registry=registry)
    async def dup(ctx: Context) -> None:
        await ctx.step("same", lambda: 1)
        await ctx.step("same", lambda: 2)

    harness.start("dup")
    assert await harness.run() == "failed"
    with pytest.raises(ExecutionFailedError) as info:
        harness.result()
    assert info.value.error_type == "DuplicateStepName"
    assert "'same'" in info.value.message
    assert steps_of(harness) == ["same"]


async def test_workflow_failures_end_the_execution_with_their_error(
    registry: Registry, harness: WorkflowHarness
) -> None:
    @durable("job", registry=registry)
    async def job(ctx: Context) -> None:
        await ctx.step("work", lambda: "x")
        raise TaskError.custom("Job failed externally")

    @durable("wants-point", registry=registry)
    async def wants_point(ctx: Context, data: Point) -> int:
        return data.x

    @durable("bad-result", registry=registry)
    async def bad_result(ctx: Context) -> None:
        await ctx.step("lock", asyncio.Lock)

    cases = {
        harness.start("job"): ("TaskError", "Job failed externally"),
        harness.start("wants-point", {"x": "no"}): ("PayloadDecodeError",
                                                     "input of workflow 'wants-point'"),
        harness.start("bad-result"): ("PayloadNotEncodable", "result of step 'lock'"),
        harness.start("no-such-workflow"): ("UnknownWorkflow", "no-such-workflow"),
    }
    for eid, (error_type, text) in cases.items():
        assert await harness.run(eid) == "failed"
        with pytest.raises(ExecutionFailedError) as info:
            harness.result(eid)
        assert (info.value.error_type, text in info.value.message) == (error_type, True)
    unknown = next(eid for eid, case in cases.items() if case[0] == "UnknownWorkflow")
    assert [type(e).__name__ for e in harness.journal(unknown).events] == [
        "ExecutionStarted", "ExecutionFailed"]


async def test_a_failed_step_is_recorded_and_raised_the_same_on_every_replay(
    registry: Registry, harness: WorkflowHarness
) -> None:
    calls: list[str] = []
    raised: list[tuple[str, str, str, int]] = []

    def boom() -> int:
        calls.append("boom")
        raise ValueError("bad value")

    @durable("handles", registry=registry)
    async def handles(ctx: Context) -> str:
        try:
            await ctx.step("boom", boom)
        except StepFailedError as exc:
            raised.append((exc.step, exc.error_type, exc.message, exc.attempts))
            await ctx.sleep(1)  # the next run replays the failure
            return f"{exc.error_type}: {exc.message}"
        return "no error"

    @durable("lets-it-fail", registry=registry)
    async def lets_it_fail(ctx: Context) -> None:
        await ctx.step("boom", boom)

    harness.start("handles")
    await harness.run()
    harness.advance(1000)
    await harness.run()
    assert harness.result() == "ValueError: bad value"
    assert calls == ["boom"]
    assert raised == [("boom", "ValueError", "bad value", 1)] * 2
    failed = of_type(harness, StepFailed)
    assert [(e.step, e.error_type, e.message, e.attempt) for e in failed] == [
        ("boom", "ValueError", "bad value", 1)]

    other = harness.start("lets-it-fail")
    assert await harness.run(other) == "failed"
    with pytest.raises(ExecutionFailedError) as info:
        harness.result(other)
    assert info.value.error_type == "StepFailedError"
    assert "bad value" in info.value.message


# -- retries ------------------------------------------------------------------------------


async def test_step_with_retry_waits_its_backoff_on_a_durable_timer(
    registry: Registry, harness: WorkflowHarness
) -> None:
    tries: list[int] = []

    def flaky() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise ConnectionError(f"blip {len(tries)}")
        return "ok"

    @durable("retries", registry=registry)
    async def retries(ctx: Context) -> str:
        return str(await ctx.step_with_retry("flaky", flaky, retries=3, delay="1s"))

    eid = harness.start("retries", execution_id="r-1")
    policy = RetryPolicy.build(3, "exponential", "1s", "5m", True)
    first, second = (policy.delay_before(n, seed=f"{eid}:flaky") for n in (2, 3))
    assert 500 < first <= 1000 < second <= 2000  # exponential, jittered into [d/2, d]
    assert await harness.run() == "sleeping"
    assert harness.timers == {"retry:2:flaky": T0 + first}
    harness.advance(first - 1)
    assert await harness.run() == "sleeping"  # not before the timer fires
    assert len(tries) == 1
    assert harness.advance(1) == ["retry:2:flaky"]
    await harness.run()
    assert harness.timers == {"retry:3:flaky": T0 + first + second}
    harness.advance(second)
    assert await harness.run() == "completed"
    assert harness.result() == "ok"
    assert len(tries) == 3
    scheduled = of_type(harness, RetryScheduled)
    assert [(e.attempt, e.delay_ms, e.message) for e in scheduled] == [
        (2, first, "blip 1"), (3, second, "blip 2")]
    assert [e.attempt for e in of_type(harness, StepCompleted)] == [3]
    assert harness.journal().step_outcomes == ["retry", "retry", "completed"]


async def test_step_with_retry_fails_after_its_last_retry(
    registry: Registry, harness: WorkflowHarness
) -> None:
    @durable("gives-up", registry=registry)
    async def gives_up(ctx: Context) -> None:
        await ctx.step_with_retry("down", lambda: 1 / 0, retries=2, backoff="linear",
                                  delay="10s")

    harness.start("gives-up")
    await harness.run()
    assert harness.advance(10_000) == ["retry:2:down"]
    await harness.run()
    assert harness.advance(19_999) == []
    assert harness.advance(1) == ["retry:3:down"]
    assert await harness.run() == "failed"
    [failed] = of_type(harness, StepFailed)
    assert (failed.attempt, failed.error_type) == (3, "ZeroDivisionError")


# -- sleeps -------------------------------------------------------------------------------


async def test_sleep_suspends_until_its_timer_fires_and_not_before(
    registry: Registry, harness: WorkflowHarness
) -> None:
    after: list[int] = []

    @durable("napper", registry=registry)
    async def napper(ctx: Context) -> str:
        await ctx.step("before", lambda: 1)
        await ctx.sleep("1m")
        await ctx.step("after", lambda: after.append(1))
        return "awake"

    harness.start("napper")
    assert await harness.run() == "sleeping"
    assert harness.timers == {"sleep-0": T0 + 60_000}
    assert harness.advance(59_999) == []
    assert await harness.run() == "sleeping"
    assert after == []
    assert harness.advance(1) == ["sleep-0"]
    assert await harness.run() == "completed"
    assert harness.result() == "awake"
    assert after == [1]
    [set_] = of_type(harness, TimerSet)
    [fired] = of_type(harness, TimerFired)
    assert fired.at_ms - set_.at_ms == 60_000


async def test_now_and_uuid_are_stable_across_replays(
    registry: Registry, harness: WorkflowHarness
) -> None:
    seen: list[tuple[datetime, str]] = []

    @durable("stable", registry=registry)
    async def stable(ctx: Context) -> bool:
        seen.append((await ctx.now(), await ctx.uuid()))
        await ctx.sleep(1)
        return True

    harness.start("stable")
    await harness.run()
    harness.advance(1000)
    await harness.run()
    assert harness.result() is True
    assert len(seen) == 2
    assert seen[0] == seen[1]
    assert steps_of(harness) == ["now-0", "uuid-0"]


# -- gather -------------------------------------------------------------------------------


async def test_gather_records_each_branch_and_returns_results_in_call_order(
    registry: Registry, harness: WorkflowHarness
) -> None:
    @durable("fan-out", registry=registry)
    async def fan_out(ctx: Context) -> list[int]:
        async def square(i: int) -> int:
            await yields(5 - i)  # finish in reverse order
            return i * i

        return await ctx.gather(*(ctx.step(f"sq-{i}", functools.partial(square, i))
                                  for i in range(5)))

    harness.start("fan-out")
    await harness.run()
    assert harness.result() == [0, 1, 4, 9, 16]
    assert steps_of(harness) == [f"sq-{i}" for i in reversed(range(5))]


async def test_gather_names_calls_by_branch_whatever_order_they_arrive_in(
    registry: Registry, harness: WorkflowHarness
) -> None:
    seen: dict[tuple[int, int], str] = {}
    runs: list[int] = []

    @durable("branches", registry=registry)
    async def branches(ctx: Context) -> list[str]:
        run = len(runs)
        runs.append(run)

        async def branch(i: int) -> str:
            await yields(3 if (i == 0) == (run == 0) else 0)  # arrival order flips per run
            seen[(run, i)] = await ctx.uuid()
            await ctx.sleep(1)
            return seen[(run, i)]

        return await ctx.gather(branch(0), branch(1))

    harness.start("branches")
    assert await harness.run() == "sleeping"
    assert sorted(harness.timers) == ["g0-0.sleep-0", "g0-1.sleep-0"]
    assert steps_of(harness) == ["g0-1.uuid-0", "g0-0.uuid-0"]  # branch 1 got there first
    assert sorted(harness.advance(1000)) == ["g0-0.sleep-0", "g0-1.sleep-0"]
    assert await harness.run() == "completed"
    assert seen[(0, 0)] == seen[(1, 0)] != seen[(0, 1)] == seen[(1, 1)]
    assert harness.result() == [seen[(0, 0)], seen[(0, 1)]]


async def test_gather_after_a_crash_reruns_only_the_missing_branches(
    registry: Registry, harness: WorkflowHarness
) -> None:
    ran: list[int] = []

    @durable("gather-crash", registry=registry)
    async def gather_crash(ctx: Context, n: int) -> list[int]:
        def branch(i: int) -> int:
            ran.append(i)
            if i == 2 and ran.count(2) == 1:
                raise ProcessDied
            return i

        return await ctx.gather(*(ctx.step(f"branch-{i}", functools.partial(branch, i))
                                  for i in range(n)))

    harness.start("gather-crash", 5)
    with pytest.raises(ProcessDied):
        await harness.run()
    assert sorted(steps_of(harness)) == ["branch-0", "branch-1", "branch-3", "branch-4"]
    assert harness.status == "running"
    await harness.run()
    assert harness.result() == [0, 1, 2, 3, 4]
    assert sorted(ran) == [0, 1, 2, 2, 3, 4]


# -- events -------------------------------------------------------------------------------


async def test_events_sent_before_and_after_the_wait(
    registry: Registry, harness: WorkflowHarness
) -> None:
    @durable("approvals", registry=registry)
    async def approvals(ctx: Context) -> list[str]:
        first = await ctx.wait_for_signal("approve", type=str)
        second = await ctx.wait_for_signal("approve", type=str)
        return [first, second]

    harness.start("approvals")
    harness.send_signal("approve", "early")  # before the workflow ever ran
    await harness.run()
    assert harness.status != "completed"
    assert [e.wait for e in of_type(harness, SignalConsumed)] == ["event:approve#0"]
    await harness.run()  # a replay without the event: still waiting
    assert len(of_type(harness, SignalConsumed)) == 1
    harness.send_signal("approve", "late")
    assert await harness.run() == "completed"
    assert harness.result() == ["early", "late"]


async def test_an_event_sent_long_before_the_wait_is_kept(
    registry: Registry, harness: WorkflowHarness
) -> None:
    @durable("later", registry=registry)
    async def later(ctx: Context) -> int:
        await ctx.sleep(1)
        return int(await ctx.wait_for_signal("go", type=int))

    harness.start("later")
    await harness.run()
    harness.send_signal("go", 7)
    assert await harness.run() == "sleeping"
    harness.advance(1000)
    await harness.run()
    assert harness.result() == 7


async def test_event_ids_make_delivery_idempotent(
    registry: Registry, harness: WorkflowHarness
) -> None:
    @durable("one-event", registry=registry)
    async def one_event(ctx: Context) -> str:
        return str(await ctx.wait_for_signal("e", type=str))

    harness.start("one-event")
    assert harness.send_signal("e", "x", signal_id="evt-1") is True
    assert harness.send_signal("e", "x", signal_id="evt-1") is False
    await harness.run()
    assert harness.result() == "x"
    assert len(of_type(harness, SignalReceived)) == 1
    with pytest.raises(ExecutionEnded):
        harness.send_signal("e", "too late")


async def test_a_wait_times_out_on_its_durable_timer(
    registry: Registry, harness: WorkflowHarness
) -> None:
    @durable("impatient", registry=registry)
    async def impatient(ctx: Context) -> str:
        try:
            await ctx.wait_for_signal("reply", timeout="300ms")
        except SignalTimeout as exc:
            await ctx.sleep(1)  # a replay must resolve the wait the same way
            return f"gave up on {exc.name}"
        return "got it"

    harness.start("impatient")
    await harness.run()
    assert harness.timers == {"event:reply#0:timer": T0 + 300}
    assert harness.advance(299) == []
    assert await harness.run() != "completed"
    assert harness.advance(1) == ["event:reply#0:timer"]
    assert await harness.run() == "sleeping"
    harness.send_signal("reply", 1)  # too late: the wait is resolved
    harness.advance(1000)
    assert await harness.run() == "completed"
    assert harness.result() == "gave up on reply"
    consumed = of_type(harness, SignalConsumed)
    assert [(e.name, e.index) for e in consumed] == [("reply", -1)]
    with pytest.raises(ExecutionEnded):
        harness.send_signal("reply", 2)


async def test_an_event_before_the_timeout_takes_the_timer_off_the_wheel(
    registry: Registry, harness: WorkflowHarness
) -> None:
    @durable("waits-then-sleeps", registry=registry)
    async def waits(ctx: Context) -> None:
        await ctx.wait_for_signal("go", timeout="1s")
        await ctx.sleep(30)

    harness.start("waits-then-sleeps")
    await harness.run()
    assert list(harness.timers) == ["event:go#0:timer"]
    harness.send_signal("go", 1)
    assert await harness.run() == "sleeping"
    assert list(harness.timers) == ["sleep-0"]
    assert harness.advance(1500) == []
    assert harness.status == "sleeping"


async def test_concurrent_waits_for_one_event_name_take_different_events(
    registry: Registry, harness: WorkflowHarness
) -> None:
    @durable("two-waiters", registry=registry)
    async def two_waiters(ctx: Context) -> list[str]:
        await ctx.step("ready", lambda: 1)
        got = await ctx.gather(ctx.wait_for_signal("go", type=str),
                               ctx.wait_for_signal("go", type=str))
        return sorted(got)

    one_by_one = harness.start("two-waiters")
    await harness.run(one_by_one)
    harness.send_signal("go", "first", execution_id=one_by_one)
    await harness.run(one_by_one)
    harness.send_signal("go", "second", execution_id=one_by_one)
    await harness.run(one_by_one)
    assert harness.result(one_by_one) == ["first", "second"]
    both_early = harness.start("two-waiters")
    harness.send_signal("go", "first", execution_id=both_early)
    harness.send_signal("go", "second", execution_id=both_early)
    await harness.run(both_early)
    assert harness.result(both_early) == ["first", "second"]


async def test_a_gather_branch_waiting_does_not_stop_its_siblings(
    registry: Registry, harness: WorkflowHarness
) -> None:
    @durable("self-trigger", registry=registry)
    async def self_trigger(ctx: Context) -> str:
        def trigger() -> bool:
            return harness.send_signal("go", "triggered", execution_id=ctx.execution_id)

        got, _sent = await ctx.gather(ctx.wait_for_signal("go", type=str),
                                      ctx.step("trigger", trigger))
        return str(got)

    harness.start("self-trigger")
    await harness.run()
    await harness.run()
    assert harness.result() == "triggered"


# -- cancellation -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["step", "sleep", "event"])
async def test_cancel_runs_compensation_and_ends_cancelled(
    registry: Registry, harness: WorkflowHarness, mode: str
) -> None:
    log: list[str] = []

    def long_step() -> str:
        harness.cancel("customer asked")  # arrives while the step is in flight
        return "long"

    @durable("cancellable", registry=registry)
    async def cancellable(ctx: Context) -> str:
        try:
            await ctx.step("reserve", lambda: log.append("reserve"))
            if mode == "step":
                await ctx.step("long", long_step)
            elif mode == "sleep":
                await ctx.sleep(60)
            else:
                await ctx.wait_for_signal("never")
            await ctx.step("after", lambda: log.append("after"))
        except Cancelled:
            await ctx.step("compensate", lambda: log.append("compensate"))
            raise
        else:
            return "finished"
        finally:
            await ctx.step("cleanup", lambda: log.append("cleanup"))

    harness.start("cancellable")
    await harness.run()
    if mode != "step":
        assert harness.status != "cancelled"
        assert harness.cancel("customer asked") is True
        assert harness.cancel("twice") is True  # recorded once
        await harness.run()
    assert harness.status == "cancelled"
    with pytest.raises(ExecutionFailedError) as info:
        harness.result()
    assert (info.value.error_type, info.value.message) == ("Cancelled", "customer asked")
    assert log == ["reserve", "compensate", "cleanup"]
    assert len(of_type(harness, CancelRequested)) == 1
    expected = ["reserve", "long"] if mode == "step" else ["reserve"]
    assert steps_of(harness) == [*expected, "compensate", "cleanup"]
    assert harness.timers == {}  # the end took the sleep's timer off the wheel
    assert harness.cancel() is False  # already ended


async def test_a_compensation_that_waits_durably_ends_cancelled(
    registry: Registry, harness: WorkflowHarness
) -> None:
    """The compensation's retry suspends the run; the next run replays it and must be
    cancelled at the same call, not fail as nondeterministic ('release' is recorded where
    'charge' would be)."""
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
            await ctx.step("wait-a-bit", lambda: harness.cancel("customer asked"))
            await ctx.step("charge", lambda: "charged")  # Cancelled here
        except Cancelled:
            await ctx.step_with_retry("release", release, retries=3, backoff="fixed",
                                      delay="200ms")
            raise
        return "done"

    harness.start("compensate-with-retry")
    assert await harness.run() == "sleeping"
    assert harness.advance(200) == ["retry:2:release"]
    assert await harness.run() == "cancelled"
    assert len(tries) == 2
    assert "charge" not in steps_of(harness)


async def test_cancel_at_a_sleep_is_replayed_there_even_after_the_timer_fired(
    registry: Registry, harness: WorkflowHarness
) -> None:
    dies = [True]

    def undo_more() -> int:
        if dies.pop() if dies else False:
            raise ProcessDied
        return 2

    @durable("compensating", registry=registry)
    async def compensating(ctx: Context) -> str:
        try:
            await ctx.sleep(1)
            await ctx.step("after", lambda: 1)
        except Cancelled:
            await ctx.step("undo", lambda: 1)
            await ctx.step("undo-more", undo_more)
            raise
        return "finished"

    harness.start("compensating")
    await harness.run()
    harness.cancel()
    with pytest.raises(ProcessDied):
        await harness.run()
    assert harness.advance(1000) == ["sleep-0"]
    assert await harness.run() == "cancelled"
    with pytest.raises(ExecutionFailedError, match="Cancelled: cancelled"):
        harness.result()
    assert steps_of(harness) == ["undo", "undo-more"]


# -- determinism --------------------------------------------------------------------------


async def test_changed_code_is_detected_as_nondeterminism() -> None:
    v1, v2 = Registry(), Registry()

    @durable("evolving", registry=v1)
    async def evolving_v1(ctx: Context) -> str:
        await ctx.step("a", lambda: "a")
        await ctx.step("b", lambda: "b")
        await ctx.sleep(1)
        await ctx.step("c", lambda: "c")
        return "v1"

    @durable("evolving", registry=v2)
    async def evolving_v2(ctx: Context) -> str:
        await ctx.step("a", lambda: "a")
        await ctx.step("inserted", lambda: "x")  # a new step where "b" was recorded
        await ctx.step("b", lambda: "b")
        await ctx.sleep(1)
        return "v2"

    harness = WorkflowHarness(v1, start_ms=T0)
    harness.start("evolving")
    assert await harness.run() == "sleeping"
    harness.registry = v2  # a deploy while the execution sleeps
    harness.advance(1000)
    assert await harness.run() == "failed"
    with pytest.raises(ExecutionFailedError) as info:
        harness.result()
    assert info.value.error_type == "NondeterminismError"
    assert "'b'" in info.value.message
    assert "'inserted'" in info.value.message
    assert steps_of(harness) == ["a", "b"]  # nothing of the new code was recorded


# -- children and deadlines ---------------------------------------------------------------


async def test_child_calls_and_child_failure(registry: Registry, harness: WorkflowHarness) -> None:
    @durable("child", registry=registry)
    async def child(ctx: Context, n: int) -> int:
        if n < 0:
            raise ValueError("negative")
        return int(await ctx.step("double", lambda: n * 2))

    @durable("parent", registry=registry)
    async def parent(ctx: Context, ns: list[int]) -> list[int]:
        results = []
        for n in ns:
            try:
                results.append(await ctx.call("child", n, type=int))
            except ChildFailedError as exc:
                results.append(-1 if exc.error_type == "ValueError" else -2)
        return results

    harness.start("parent", [1, -5, 3], execution_id="family")
    assert await harness.run() == "running"  # waits for its first child
    await harness.settle()
    assert harness.result() == [2, -1, 6]
    assert harness.journal("family.child-1").state.status == "failed"
    assert harness.result("family.child-2") == 6


async def test_a_child_id_owned_by_another_execution_fails_the_call(
    registry: Registry, harness: WorkflowHarness
) -> None:
    @durable("kid", registry=registry)
    async def kid(ctx: Context) -> int:
        return 1

    @durable("claims-taken-id", registry=registry)
    async def claims(ctx: Context) -> int:
        return int(await ctx.call("kid", execution_id="taken-child"))

    harness.start("kid", execution_id="taken-child")
    eid = harness.start("claims-taken-id")
    await harness.settle()
    with pytest.raises(ExecutionFailedError, match="already belongs to another execution"):
        harness.result(eid)


async def test_a_deadline_ends_the_execution_and_its_parent_hears_of_it(
    registry: Registry, harness: WorkflowHarness
) -> None:
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

    eid = harness.start("waiting-parent")
    await harness.settle()
    child = harness.journal(f"{eid}.child-0")
    assert child.timers == {"timeout:300": T0 + 300, "sleep-0": T0 + 30_000}
    harness.advance(300)
    assert child.state.status == "timed_out"
    assert child.timers == {}
    await harness.settle()
    assert harness.result() == "timed_out"


async def test_gather_branches_keep_their_own_children_across_replays(
    registry: Registry, harness: WorkflowHarness
) -> None:
    """Child ids are numbered per branch: a replay reaching them in another order (the
    step is instant once recorded) must not swap the branches' results."""

    @durable("wf-a", registry=registry)
    async def wf_a(ctx: Context) -> str:
        return "A"

    @durable("wf-b", registry=registry)
    async def wf_b(ctx: Context) -> str:
        return "B"

    @durable("two-children", registry=registry)
    async def two_children(ctx: Context) -> list[str]:
        async def left() -> str:
            await ctx.step("slow", lambda: yields(3))  # recorded: instant on replay
            return str(await ctx.call("wf-a"))

        async def right() -> str:
            return str(await ctx.call("wf-b"))

        return await ctx.gather(left(), right())

    eid = harness.start("two-children")
    await harness.settle()
    assert harness.result() == ["A", "B"]
    assert harness.result(f"{eid}.g0-0.child-0") == "A"


async def test_a_step_takes_its_functions_arguments() -> None:
    registry = Registry()

    def scaled(value: int, *, factor: int = 1) -> int:
        return value * factor

    async def label(prefix: str, value: int) -> str:
        return f"{prefix}{value}"

    @durable("with-args", registry=registry)
    async def with_args(ctx: Context, items: list[int]) -> list[str]:
        out = []
        for i, item in enumerate(items):  # no `lambda item=item:` needed
            doubled = await ctx.step(f"scale-{i}", scaled, item, factor=2)
            out.append(await ctx.step_with_retry(f"label-{i}", label, "#", doubled,
                                                 retries=1))
        return out

    harness = WorkflowHarness(registry)
    harness.start("with-args", [1, 2, 3])
    await harness.settle()
    assert harness.result() == ["#2", "#4", "#6"]
