"""An append's effects are decided once (``core.effects_of``) and done twice: by
``append.lua`` in Redis and by the in-memory journal of the test harness. This runs the
script on a real Redis for every event type, from every kind of prior state, and checks
that what it did (status, indexes, the end, the wheel, the work message) is what the
pure function said, and what the fold says; then the same for ``MemoryJournal``."""

from __future__ import annotations

import functools
import itertools
import operator
import typing
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from zart_es.core import (
    AnyEvent,
    CancelRequested,
    ChildCompleted,
    ChildStarted,
    DebounceEnded,
    Effects,
    Event,
    ExecutionCancelled,
    ExecutionCompleted,
    ExecutionEnded,
    ExecutionFailed,
    ExecutionPaused,
    ExecutionQuarantined,
    ExecutionReleased,
    ExecutionResumed,
    ExecutionStarted,
    ExecutionState,
    ExecutionTimedOut,
    PatchMarked,
    QueueAdmitted,
    RepairRefused,
    RetryScheduled,
    RunRestarted,
    SignalAwaited,
    SignalConsumed,
    SignalReceived,
    StepCompleted,
    StepFailed,
    StepRetryRequested,
    StepsInvalidated,
    TimerFired,
    TimerSet,
    UpdateReplied,
    apply,
    effects_of,
    fired,
)
from zart_es.store import Keys, Store
from zart_es.store._store import entry_ms
from zart_es.testing import MemoryJournal

pytestmark = pytest.mark.redis

SAMPLES: list[Event] = [
    ExecutionStarted(execution_id="other", workflow="w", input=b"\xc0"),
    StepCompleted(step="a", result=b"\xc0"),
    StepFailed(step="a", error_type="E", message="m"),
    RetryScheduled(step="a", attempt=2, error_type="E", message="m", timer="retry:2:a",
                   delay_ms=1500),
    TimerSet(timer="sleep-1", delay_ms=2500),
    TimerSet(timer="sleep:at", due_ms=4_102_444_800_000),
    TimerSet(timer="w2:timer", delay_ms=700, purpose="event"),
    TimerSet(timer="timeout:60000", due_ms=4_102_444_800_000, purpose="timeout"),
    TimerSet(timer="debounce-0", due_ms=4_102_444_800_000, purpose="debounce"),
    TimerFired(timer="sleep-0"),
    ExecutionCompleted(result=b"\xc0"),
    ExecutionFailed(error_type="E", message="m"),
    ExecutionTimedOut(timeout_ms=60_000),
    SignalReceived(name="go", payload=b"\xc0"),
    SignalConsumed(wait="w1", name="go", index=0),
    SignalAwaited(wait="w2", name="go"),
    PatchMarked(patch="p"),
    CancelRequested(reason="r"),
    ExecutionCancelled(),
    ChildStarted(call="c", child_id="kid", workflow="w"),
    ChildCompleted(child_id="kid", status="completed"),
    StepRetryRequested(step="a"),
    StepsInvalidated(steps=["a"], forgotten=[]),
    RunRestarted(run=1),
    ExecutionPaused(rule="r"),
    ExecutionResumed(),
    ExecutionQuarantined(crashes=3, error_type="E", message="m"),
    ExecutionReleased(),
    QueueAdmitted(queue="q"),
    UpdateReplied(update_id="u", name="n"),
    DebounceEnded(input=b"\xc0"),
]

PRIORS: dict[str, list[Event]] = {
    "running": [],
    "paused": [ExecutionPaused(rule="r")],
    "quarantined": [ExecutionQuarantined(crashes=3, error_type="E", message="m")],
    "ended": [ExecutionCompleted(result=b"\xc0")],
}
"""What the log holds before the sample, after a start with two pending timers."""

OPENING: list[Event] = [
    TimerSet(timer="sleep-0", delay_ms=60_000),
    SignalAwaited(wait="w1", name="go"),
    TimerSet(timer="w1:timer", delay_ms=60_000, purpose="event"),
]


@pytest.mark.pure
def test_the_samples_cover_every_event_type() -> None:
    assert {type(e) for e in SAMPLES} == set(typing.get_args(AnyEvent))


def expected_status(prior: str, fx: Effects) -> str:
    """The status the effects say the execution has after the append."""
    return prior if fx.status == "" or prior in fx.kept else fx.status


def refused(prior_ended: bool, fx: Effects) -> type[Exception] | None:
    """The error an append of these effects gets: only a repair follows an end, and a
    repair follows nothing else."""
    if prior_ended:
        return None if fx.reopens else ExecutionEnded
    return RepairRefused if fx.reopens else None


class Wheel:
    """What the append script touched besides the log, read back from Redis."""

    def __init__(self, redis: Redis, store: Store, execution_id: str) -> None:
        self.redis, self.store, self.id = redis, store, execution_id
        self.p = store.keys.partition_of(execution_id)

    async def read(self) -> tuple[dict[str, float], int, int, dict[bytes, bytes]]:
        keys = self.store.keys
        members = await self.redis.zrange(keys.timers(self.p), 0, -1, withscores=True)
        timers = {m.decode().partition(" ")[2]: score for m, score in members
                  if m.decode().partition(" ")[0] == self.id}
        work = await self.redis.xlen(self.store.work_stream(self.id, None))
        ended = await self.redis.xlen(keys.ended(self.p))
        return timers, work, ended, await self.store.meta(self.id)


async def prepared(store: Store, execution_id: str, prior: str) -> ExecutionState:
    """An execution whose log holds the opening and ``prior``; its folded state."""
    start = ExecutionStarted(execution_id=execution_id, workflow="w", input=b"\xc0")
    assert await store.create(start, execution_id, "w")
    state = apply(ExecutionState(), start)
    for event in OPENING + PRIORS[prior]:
        appended = await store.append(execution_id, state.version, event,
                                      effects_of(event, state, by_run=True))
        assert appended is not None
        apply(state, appended.event)
    return state


@pytest.fixture
async def store(redis: Redis) -> AsyncIterator[Store]:
    store = Store(redis, Keys(partitions=4))
    yield store
    await store.aclose()


@pytest.mark.parametrize("prior", list(PRIORS))
async def test_append_lua_does_what_effects_of_says(redis: Redis, store: Store,
                                                    prior: str) -> None:
    checked = 0
    for n, (event, by_run) in enumerate(itertools.product(SAMPLES, (False, True))):
        execution_id = f"fx-{prior}-{n}"
        state = await prepared(store, execution_id, prior)
        fx = effects_of(event, state, by_run=by_run)
        wheel = Wheel(redis, store, execution_id)
        timers, work, ended, meta = await wheel.read()
        # the end took the pending timers off the wheel
        assert set(timers) == (set() if state.terminal else set(state.pending_timers()))
        error = refused(prior == "ended", fx)
        if error is not None:
            with pytest.raises(error):
                await store.append(execution_id, state.version, event, fx)
            assert await wheel.read() == (timers, work, ended, meta), event
            continue
        appended = await store.append(execution_id, state.version, event, fx)
        assert appended is not None
        at = entry_ms(appended.entry_id)
        after_timers, after_work, after_ended, after_meta = await wheel.read()
        prior_status = meta[b"st"].decode()
        folded = apply(state, appended.event).status
        what = f"{type(event).__name__} after {prior} (by_run={by_run})"
        assert after_meta[b"st"].decode() == expected_status(prior_status, fx) == folded, what
        index = store.keys.index_prefix(wheel.p)
        assert await redis.zscore(index + folded, execution_id) is not None, what
        if folded != prior_status:
            assert await redis.zscore(index + prior_status, execution_id) is None, what
        assert (b"end" in after_meta) == (fx.terminal or (b"end" in meta and not fx.reopens))
        assert after_ended - ended == (1 if fx.terminal else 0), what
        assert after_work - work == (1 if fx.wakes else 0), what
        want = {name: due for name, due in timers.items() if name not in fx.drops}
        if fx.timer:
            want[fx.timer] = fx.due_ms or at + fx.delay_ms
        assert after_timers == want, what
        checked += 1
    assert checked > 0  # the loop did append, from this prior


@pytest.mark.pure
def test_effects_of_decides_each_rule() -> None:
    state = ExecutionState()
    for event in [ExecutionStarted(execution_id="x", workflow="w", input=b"\xc0"),
                  *OPENING]:
        apply(state, event)
    end = effects_of(ExecutionFailed(error_type="E", message="m"), state, by_run=True)
    assert end.terminal
    assert set(end.drops) == {"sleep-0", "w1:timer"}
    assert not end.wakes
    assert end.kept == ()  # an end moves even a held execution
    consumed = effects_of(SignalConsumed(wait="w1", name="go", index=0), state, by_run=True)
    assert consumed.drops == ("w1:timer",)
    assert effects_of(ExecutionFailed(error_type="E", message="m")).drops == ()  # no state
    assert effects_of(ExecutionResumed()).kept == ("quarantined",)
    assert effects_of(ExecutionReleased()).kept == ("paused",)
    assert effects_of(StepCompleted(step="a", result=b"")).kept == ("paused", "quarantined")
    assert effects_of(SignalReceived(name="go", payload=b"")) == Effects(wakes=True)
    quarantine = ExecutionQuarantined(crashes=3, error_type="E", message="m")
    assert not effects_of(quarantine).wakes
    assert effects_of(RunRestarted(run=1), state).reopens
    assert effects_of(RetryScheduled(step="a", attempt=2, error_type="E", message="m",
                                     timer="retry:2:a", delay_ms=9)).timer == "retry:2:a"
    assert fired("sleep-0") == TimerFired(timer="sleep-0")
    assert fired("timeout:500") == ExecutionTimedOut(timeout_ms=500)


@pytest.mark.pure
@pytest.mark.parametrize("prior", [p for p in PRIORS if p != "ended"])
def test_memory_journal_does_what_effects_of_says(prior: str) -> None:
    for event, by_run in itertools.product(SAMPLES, (False, True)):
        now = [1_000_000]
        journal = MemoryJournal(clock=functools.partial(operator.getitem, now, 0))
        for e in [ExecutionStarted(execution_id="x", workflow="w", input=b"\xc0"),
                  *OPENING, *PRIORS[prior]]:
            journal.append(e, by_run=True)
        fx = effects_of(event, journal.state, by_run=by_run)
        if fx.reopens:
            continue  # the harness does no repairs
        before, prior_status = dict(journal.timers), journal.state.status
        now[0] += 7
        journal.has_work = False
        journal.append(event, by_run=by_run)
        what = f"{type(event).__name__} after {prior} (by_run={by_run})"
        assert journal.state.status == expected_status(prior_status, fx), what
        want = {name: due for name, due in before.items() if name not in fx.drops}
        if fx.timer:
            want[fx.timer] = fx.due_ms or now[0] + fx.delay_ms
        assert journal.timers == want, what
        assert journal.has_work == fx.wakes, what
