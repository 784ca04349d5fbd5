"""zart_es.core._fold: ``fold`` is a pure function of the log; folding in parts equals folding
whole (the worker's cached state relies on it); concrete folds of each kind of record."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zart_es.core import _events as ev
from zart_es.core._fold import (
    CANCELLED,
    COMPLETED,
    FAILED,
    PENDING,
    RUNNING,
    SLEEPING,
    TERMINAL_STATES,
    TIMED_OUT,
    WAITING,
    ExecutionState,
    Failure,
    Timer,
    already_recorded,
    apply,
    fold,
    status_after,
)

pytestmark = pytest.mark.pure


def log(*bodies: ev.Event, start_ms: int = 1_000, step_ms: int = 10) -> list[ev.Event]:
    """Attach the envelope the reader would: seq from 0, increasing at_ms."""
    return [
        msgspec.structs.replace(body, seq=seq, at_ms=start_ms + seq * step_ms)
        for seq, body in enumerate(bodies)
    ]


START = ev.ExecutionStarted(execution_id="order-1", workflow="checkout", input=b"\x81\xa1n\x01")


# -- strategies ----------------------------------------------------------------------------

step_names = st.sampled_from(["fetch", "charge", "ship", "item-0", "item-1", "notify-0"])
timer_names = st.sampled_from(["sleep-0", "sleep-1", "retry:2:charge", "wait:pay:timer",
                               "timeout:60000"])
event_names = st.sampled_from(["paid", "shipped"])
texts = st.sampled_from(["", "ValueError", "boom", "network down"])
payloads = st.binary(max_size=6)
attempts = st.integers(min_value=1, max_value=6)
ms = st.integers(min_value=0, max_value=10**7)

middle_events: st.SearchStrategy[ev.Event] = st.one_of(
    st.builds(ev.StepCompleted, step=step_names, result=payloads, attempt=attempts),
    st.builds(ev.StepFailed, step=step_names, error_type=texts, message=texts, attempt=attempts),
    st.builds(ev.RetryScheduled, step=step_names, attempt=attempts, error_type=texts,
              message=texts, timer=timer_names, delay_ms=ms),
    st.builds(ev.TimerSet, timer=timer_names, delay_ms=ms,
              due_ms=st.just(0) | st.integers(min_value=1, max_value=10**10),
              purpose=st.sampled_from(["sleep", "retry", "event", "timeout"])),
    st.builds(ev.TimerFired, timer=timer_names),
    st.builds(ev.SignalReceived, name=event_names, payload=payloads),
    st.builds(ev.SignalConsumed, wait=st.sampled_from(["wait:paid#0", "wait:paid#1"]),
              name=event_names, index=st.integers(min_value=-1, max_value=3)),
    st.builds(ev.CancelRequested, reason=texts),
    st.builds(ev.ChildStarted, call=st.sampled_from(["child-0", "child-1"]),
              child_id=st.sampled_from(["order-1.c0", "order-1.c1"]), workflow=texts),
    st.builds(ev.ChildCompleted, child_id=st.sampled_from(["order-1.c0", "order-1.c1"]),
              status=st.sampled_from(["completed", "failed"]), result=payloads,
              error_type=texts, message=texts),
)
terminal_events: st.SearchStrategy[ev.Event] = st.one_of(
    st.builds(ev.ExecutionCompleted, result=payloads),
    st.builds(ev.ExecutionFailed, error_type=texts, message=texts),
    st.builds(ev.ExecutionTimedOut, timeout_ms=ms),
    st.builds(ev.ExecutionCancelled, reason=texts),
)
# what may still arrive from outside after the end (the store refuses the rest)
after_end_events: st.SearchStrategy[ev.Event] = st.one_of(
    st.builds(ev.SignalReceived, name=event_names, payload=payloads),
    st.builds(ev.CancelRequested, reason=texts),
    st.builds(ev.ChildCompleted, child_id=st.just("order-1.c0"), status=st.just("completed")),
)


@st.composite
def logs(draw: st.DrawFn) -> list[ev.Event]:
    """A valid-ish log: started, then anything, maybe an end and late outside events."""
    bodies: list[ev.Event] = [START, *draw(st.lists(middle_events, max_size=25))]
    if draw(st.booleans()):
        bodies.append(draw(terminal_events))
        bodies.extend(draw(st.lists(after_end_events, max_size=3)))
    at_ms = draw(st.integers(min_value=0, max_value=2**40))
    out: list[ev.Event] = []
    for seq, body in enumerate(bodies):
        at_ms += draw(st.integers(min_value=0, max_value=5_000))
        out.append(msgspec.structs.replace(body, seq=seq, at_ms=at_ms, prev_hash=f"h{seq}"))
    return out


# -- properties ----------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(logs(), st.data())
def test_fold_prefix_then_rest_equals_fold_all(events: list[ev.Event], data: st.DataObject) -> None:
    cut = data.draw(st.integers(min_value=0, max_value=len(events)), label="cut")
    whole = fold(events)
    prefix = fold(events[:cut])
    parts = fold(events[cut:], prefix)
    assert parts is prefix  # folded into the given state
    assert parts == whole
    assert whole.version == len(events)


@settings(max_examples=150, deadline=None)
@given(logs(), st.data())
def test_fold_in_many_chunks_equals_fold_all(events: list[ev.Event], data: st.DataObject) -> None:
    cuts = sorted(data.draw(
        st.lists(st.integers(min_value=0, max_value=len(events)), max_size=5), label="cuts"
    ))
    state = ExecutionState()
    for lo, hi in zip([0, *cuts], [*cuts, len(events)], strict=True):
        state = fold(events[lo:hi], state)
    assert state == fold(events)


@settings(max_examples=150, deadline=None)
@given(logs())
def test_fold_is_apply_one_at_a_time(events: list[ev.Event]) -> None:
    state = ExecutionState()
    for count, event in enumerate(events, start=1):
        assert apply(state, event) is state
        assert state.version == count
    assert state == fold(events)


@settings(max_examples=150, deadline=None)
@given(logs())
def test_fold_does_not_change_the_events(events: list[ev.Event]) -> None:
    before = [msgspec.msgpack.encode(e) for e in events]
    fold(events)
    assert [msgspec.msgpack.encode(e) for e in events] == before


@settings(max_examples=150, deadline=None)
@given(logs())
def test_folded_state_invariants(events: list[ev.Event]) -> None:
    state = fold(events)
    assert state.execution_id == "order-1"
    assert state.workflow == "checkout"
    assert state.started_ms == events[0].at_ms
    assert len(state.order) == len(set(state.order))
    assert set(state.order) == state.ordered
    ended = any(isinstance(e, ev.TERMINAL_EVENTS) for e in events)
    assert state.terminal == ended
    assert (state.status in TERMINAL_STATES) == ended
    for name, result in state.steps.items():
        last = [e for e in events if isinstance(e, ev.StepCompleted) and e.step == name][-1]
        assert result == last.result
        assert name in state.order
    for name, timer in state.timers.items():
        fired = [e for e in events if isinstance(e, ev.TimerFired) and e.timer == name]
        if not timer.fired:
            assert timer.fired_seq == -1
        else:
            assert fired
            assert timer.fired_seq in {e.seq for e in fired}
    received = [e for e in events if isinstance(e, ev.SignalReceived)]
    assert sum(len(v) for v in state.received.values()) == len(received)
    for name, entries in state.received.items():
        seqs = [r.seq for r in entries]
        assert seqs == sorted(seqs)
        assert seqs == [e.seq for e in received if e.name == name]


@settings(max_examples=150, deadline=None)
@given(logs())
def test_every_step_record_is_already_recorded_after_folding(events: list[ev.Event]) -> None:
    state = fold(events)
    for event in events:
        if isinstance(event, ev.StepCompleted | ev.StepFailed | ev.TimerSet
                      | ev.RetryScheduled | ev.SignalConsumed | ev.ChildStarted):
            assert already_recorded(state, event)
        if isinstance(event, ev.TERMINAL_EVENTS):
            assert already_recorded(state, event)


# -- concrete folds ------------------------------------------------------------------------


def test_empty_fold_is_a_pending_fresh_state() -> None:
    state = fold([])
    assert state == ExecutionState()
    assert state.status == PENDING
    assert state.version == 0
    assert not state.terminal


def test_started() -> None:
    state = fold(log(START, start_ms=42))
    assert (state.execution_id, state.workflow, state.input) == ("order-1", "checkout",
                                                                 START.input)
    assert state.started_ms == 42
    assert state.status == PENDING
    assert state.parent_id == ""
    child = ev.ExecutionStarted(execution_id="c", workflow="w", input=b"", parent_id="order-1")
    assert fold(log(child)).parent_id == "order-1"


def test_steps_are_recorded_in_order() -> None:
    state = fold(log(
        START,
        ev.StepCompleted(step="fetch", result=b"\x93\x01\x02\x03"),
        ev.StepCompleted(step="item-0", result=b"\xc3"),
        ev.StepCompleted(step="item-1", result=b"\xc2"),
    ))
    assert state.steps == {"fetch": b"\x93\x01\x02\x03", "item-0": b"\xc3", "item-1": b"\xc2"}
    assert state.order == ["fetch", "item-0", "item-1"]
    assert state.status == RUNNING
    assert state.version == 4
    assert already_recorded(state, ev.StepCompleted(step="fetch", result=b"\x00"))
    assert not already_recorded(state, ev.StepCompleted(step="ship", result=b"\x00"))


def test_step_failed() -> None:
    state = fold(log(
        START,
        ev.StepFailed(step="charge", error_type="CardDeclined", message="no", attempt=3),
    ))
    assert state.failed_steps == {"charge": Failure("CardDeclined", "no", 3)}
    assert "charge" not in state.steps
    assert state.order == ["charge"]
    # a failed step is recorded: neither a result nor another failure may follow
    assert already_recorded(state, ev.StepCompleted(step="charge", result=b"\x01"))
    assert already_recorded(
        state, ev.StepFailed(step="charge", error_type="X", message="y")
    )


def test_retry_schedules_an_attempt_and_a_timer() -> None:
    events = log(
        START,
        ev.RetryScheduled(step="charge", attempt=2, error_type="Timeout", message="slow",
                          timer="retry:2:charge", delay_ms=5_000),
        start_ms=1_000, step_ms=10,
    )
    state = fold(events)
    assert state.attempts == {"charge": 2}
    assert state.last_errors == {"charge": Failure("Timeout", "slow", 1)}
    assert state.timers == {"retry:2:charge": Timer(due_ms=1_010 + 5_000)}
    assert state.status == SLEEPING
    assert state.order == ["charge"]
    assert "charge" not in state.steps


def test_second_retry_moves_the_attempt_on() -> None:
    state = fold(log(
        START,
        ev.RetryScheduled(step="charge", attempt=2, error_type="E", message="1",
                          timer="retry:2:charge", delay_ms=1_000),
        ev.TimerFired(timer="retry:2:charge"),
        ev.RetryScheduled(step="charge", attempt=3, error_type="E", message="2",
                          timer="retry:3:charge", delay_ms=2_000),
        start_ms=0, step_ms=1_000,
    ))
    assert state.attempts == {"charge": 3}
    assert state.last_errors["charge"] == Failure("E", "2", 2)
    assert state.timers["retry:2:charge"] == Timer(due_ms=2_000, fired=True, fired_seq=2,
                                                   fired_ms=2_000)  # when it fired
    assert state.timers["retry:3:charge"] == Timer(due_ms=3_000 + 2_000)
    assert state.order == ["charge"]
    assert state.first_attempts == {"charge": 1_000}  # the first RetryScheduled's time


def test_step_completed_after_retries_clears_attempts() -> None:
    state = fold(log(
        START,
        ev.RetryScheduled(step="charge", attempt=2, error_type="E", message="m",
                          timer="retry:2:charge", delay_ms=100),
        ev.TimerFired(timer="retry:2:charge"),
        ev.StepCompleted(step="charge", result=b"\xa2ok", attempt=2),
    ))
    assert state.attempts == {}
    assert state.steps == {"charge": b"\xa2ok"}
    assert state.status == RUNNING
    assert state.order == ["charge"]


def test_step_failed_after_retries_clears_attempts() -> None:
    state = fold(log(
        START,
        ev.RetryScheduled(step="charge", attempt=2, error_type="E", message="m",
                          timer="retry:2:charge", delay_ms=100),
        ev.TimerFired(timer="retry:2:charge"),
        ev.StepFailed(step="charge", error_type="E", message="final", attempt=2),
    ))
    assert state.attempts == {}
    assert state.failed_steps == {"charge": Failure("E", "final", 2)}


def test_timer_set_relative_and_absolute() -> None:
    state = fold(log(
        START,
        ev.TimerSet(timer="sleep-0", delay_ms=300_000),
        ev.TimerSet(timer="wait:paid:timer", due_ms=9_999_999, delay_ms=5, purpose="event"),
        start_ms=10_000, step_ms=10,
    ))
    assert state.timers["sleep-0"] == Timer(due_ms=10_010 + 300_000)
    assert state.timers["wait:paid:timer"] == Timer(due_ms=9_999_999)  # due_ms wins
    assert state.status == WAITING  # a signal wait's timeout: it waits for a signal
    assert state.order == ["sleep-0"]  # only sleeps are durable calls of their own


def test_a_signal_wait_without_a_timeout_is_waiting_until_the_signal_is_taken() -> None:
    state = fold(log(
        START,
        ev.SignalAwaited(wait="event:paid#0", name="paid"),
        ev.SignalReceived(name="paid", payload=b"\xc3"),
    ))
    assert state.status == WAITING  # a signal alone does not run it: a worker must
    assert state.order == ["event:paid#0"]
    assert already_recorded(state, ev.SignalAwaited(wait="event:paid#0", name="paid"))
    apply(state, ev.SignalConsumed(wait="event:paid#0", name="paid", index=0))
    assert state.status == RUNNING
    assert state.order == ["event:paid#0"]


def test_timer_fired_marks_the_timer() -> None:
    events = log(START, ev.TimerSet(timer="sleep-0", delay_ms=1_000),
                 ev.TimerFired(timer="sleep-0"))
    state = fold(events)
    assert state.timers["sleep-0"].fired
    assert state.timers["sleep-0"].fired_seq == 2
    assert state.status == PENDING
    assert already_recorded(state, ev.TimerFired(timer="sleep-0"))
    assert not already_recorded(fold(events[:2]), ev.TimerFired(timer="sleep-0"))


def test_timer_fired_for_an_unknown_timer_changes_no_timer() -> None:
    state = fold(log(START, ev.TimerFired(timer="nope")))
    assert state.timers == {}
    assert not already_recorded(state, ev.TimerFired(timer="nope"))


def test_timeout_timer_keeps_the_status() -> None:
    """Armed before pause rules and queues are asked: a waiter is still pending."""
    state = fold(log(START, ev.TimerSet(timer="timeout:60000", delay_ms=60_000,
                                        purpose="timeout")))
    assert state.status == PENDING
    assert state.order == []
    assert "timeout:60000" in state.timers


@pytest.mark.parametrize(
    ("end", "status", "error"),
    [
        (ev.ExecutionCompleted(result=b"\x01"), COMPLETED, None),
        (ev.ExecutionFailed(error_type="TaskError", message="bad"), FAILED,
         Failure("TaskError", "bad")),
        (ev.ExecutionTimedOut(timeout_ms=60_000), TIMED_OUT,
         Failure("ExecutionTimedOut", "timed out after 60000ms")),
        (ev.ExecutionCancelled(reason="user"), CANCELLED, Failure("Cancelled", "user")),
        (ev.ExecutionCancelled(), CANCELLED, Failure("Cancelled", "cancelled")),
    ],
)
def test_terminal_statuses(end: ev.Event, status: str, error: Failure | None) -> None:
    state = fold(log(START, ev.StepCompleted(step="a", result=b"\x01"), end))
    assert state.status == status
    assert state.terminal
    assert state.error == error
    assert state.result == (b"\x01" if status == COMPLETED else None)
    for other in (ev.ExecutionCompleted(result=b""), ev.ExecutionFailed(error_type="", message=""),
                  ev.ExecutionTimedOut(timeout_ms=1), ev.ExecutionCancelled()):
        assert already_recorded(state, other)
    assert not already_recorded(fold(log(START)), end)


@pytest.mark.parametrize(
    "late",
    [ev.SignalReceived(name="paid", payload=b""), ev.CancelRequested(reason="late"),
     ev.ChildCompleted(child_id="c", status="completed")],
)
def test_outside_events_after_the_end_keep_the_status(late: ev.Event) -> None:
    state = fold(log(START, ev.ExecutionCompleted(result=b"\xc0"), late))
    assert state.status == COMPLETED
    assert state.terminal
    assert state.version == 3


def test_events_received_and_consumed() -> None:
    state = fold(log(
        START,
        ev.SignalReceived(name="paid", payload=b"\x01"),
        ev.SignalReceived(name="paid", payload=b"\x02"),
        ev.SignalConsumed(wait="wait:paid#0", name="paid", index=1),
        ev.SignalConsumed(wait="wait:paid#1", name="paid", index=-1),
    ))
    assert [(r.seq, r.payload) for r in state.received["paid"]] == [(1, b"\x01"), (2, b"\x02")]
    assert state.consumed == {"wait:paid#0": 1, "wait:paid#1": -1}
    assert state.order == ["wait:paid#0", "wait:paid#1"]
    assert already_recorded(state, ev.SignalConsumed(wait="wait:paid#0", name="paid", index=0))
    assert not already_recorded(state, ev.SignalReceived(name="paid", payload=b"\x01"))


def test_first_cancel_reason_stands() -> None:
    state = fold(log(START, ev.CancelRequested(reason="first"),
                     ev.CancelRequested(reason="second")))
    assert state.cancel_requested == "first"
    assert state.status == PENDING  # a request alone changes no status
    assert fold(log(START)).cancel_requested is None


def test_children() -> None:
    done = ev.ChildCompleted(child_id="order-1.c0", status="completed", result=b"\x05")
    state = fold(log(
        START,
        done,  # a child may end before its parent records the start
        ev.ChildStarted(call="child-0", child_id="order-1.c0", workflow="pay"),
        ev.ChildCompleted(child_id="order-1.c0", status="failed"),  # a duplicate: ignored
    ))
    assert state.children["child-0"].child_id == "order-1.c0"
    assert state.child_results["order-1.c0"].result == b"\x05"
    assert state.child_results["order-1.c0"].status == "completed"
    assert state.order == ["child-0"]
    assert already_recorded(state, ev.ChildStarted(call="child-0", child_id="x", workflow="w"))


@pytest.mark.parametrize(
    ("event", "status"),
    [
        (START, PENDING),
        (ev.StepCompleted(step="a", result=b""), RUNNING),
        (ev.StepFailed(step="a", error_type="E", message="m"), RUNNING),
        (ev.RetryScheduled(step="a", attempt=2, error_type="E", message="m", timer="t",
                           delay_ms=1), SLEEPING),
        (ev.TimerSet(timer="sleep-0", delay_ms=1), SLEEPING),
        (ev.TimerSet(timer="w:timer", delay_ms=1, purpose="event"), WAITING),
        (ev.SignalAwaited(wait="w", name="n"), WAITING),
        (ev.TimerSet(timer="timeout:1", delay_ms=1, purpose="timeout"), None),
        (ev.TimerFired(timer="t"), PENDING),
        (ev.ExecutionCompleted(result=b""), COMPLETED),
        (ev.ExecutionFailed(error_type="E", message="m"), FAILED),
        (ev.ExecutionTimedOut(timeout_ms=1), TIMED_OUT),
        (ev.ExecutionCancelled(), CANCELLED),
        (ev.SignalReceived(name="n", payload=b""), None),
        (ev.CancelRequested(), None),
        (ev.ChildCompleted(child_id="c", status="completed"), None),
    ],
)
def test_status_after(event: ev.Event, status: str | None) -> None:
    assert status_after(event) == status


def test_terminal_events_lead_to_terminal_states() -> None:
    examples: dict[type[ev.Event], Any] = {
        ev.ExecutionCompleted: ev.ExecutionCompleted(result=b""),
        ev.ExecutionFailed: ev.ExecutionFailed(error_type="", message=""),
        ev.ExecutionTimedOut: ev.ExecutionTimedOut(timeout_ms=0),
        ev.ExecutionCancelled: ev.ExecutionCancelled(),
    }
    assert set(examples) == set(ev.TERMINAL_EVENTS)
    assert {status_after(e) for e in examples.values()} == set(TERMINAL_STATES)


def test_never_recorded_kinds() -> None:
    state = fold(log(START, ev.SignalReceived(name="n", payload=b""), ev.CancelRequested()))
    # deliveries from outside are never deduplicated by the fold
    assert not already_recorded(state, ev.SignalReceived(name="n", payload=b""))
    assert not already_recorded(state, ev.CancelRequested())
