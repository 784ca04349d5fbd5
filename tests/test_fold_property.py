"""Property: folding a log in two parts equals folding it whole, for random logs of
every event kind (the worker's cached fold relies on it)."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zart_es.core import (
    ExecutionState,
    already_recorded,
    apply,
    decode_event,
    effects_of,
    encode_event,
    fold,
)
from zart_es.core import _events as ev

pytestmark = pytest.mark.pure

names = st.sampled_from(["a", "b", "c", "item-1", "sleep-0", "event:x#0"])
payloads = st.binary(max_size=8)
small = st.integers(min_value=0, max_value=5)

event_bodies = st.one_of(
    st.builds(ev.StepCompleted, step=names, result=payloads, attempt=small),
    st.builds(ev.StepFailed, step=names, error_type=names, message=names, attempt=small),
    st.builds(ev.RetryScheduled, step=names, attempt=small, error_type=names, message=names,
              timer=names, delay_ms=small),
    st.builds(ev.TimerSet, timer=names, delay_ms=small, due_ms=small,
              purpose=st.sampled_from(["sleep", "event", "timeout"])),
    st.builds(ev.TimerFired, timer=names),
    st.builds(ev.SignalReceived, name=names, payload=payloads),
    st.builds(ev.SignalConsumed, wait=names, name=names, index=st.integers(-1, 3)),
    st.builds(ev.CancelRequested, reason=names),
    st.builds(ev.ChildStarted, call=names, child_id=names, workflow=names,
              cancel=st.sampled_from(["", "abandon", "request"])),
    st.builds(ev.ChildCompleted, child_id=names, status=names, result=payloads),
    st.builds(ev.ExecutionCompleted, result=payloads),
    st.builds(ev.ExecutionFailed, error_type=names, message=names),
    st.builds(ev.ExecutionTimedOut, timeout_ms=small),
    st.builds(ev.ExecutionCancelled, reason=names),
    st.builds(ev.StepRetryRequested, step=names, forgotten=st.lists(names, max_size=3)),
    st.builds(ev.StepsInvalidated, steps=st.lists(names, max_size=2),
              forgotten=st.lists(names, max_size=4)),
    st.builds(ev.RunRestarted, run=small),
    st.builds(ev.ExecutionPaused, rule=names),
    st.builds(ev.ExecutionResumed, rule=names),
    st.builds(ev.QueueAdmitted, queue=names, key=names, admitted_ms=small),
    st.builds(ev.DebounceEnded, input=payloads, starts=small),
    st.builds(ev.UpdateReplied, update_id=names, name=names, result=payloads,
              error_type=st.sampled_from(["", "UpdateRejected"])),
)


@st.composite
def logs(draw: st.DrawFn) -> list[ev.Event]:
    start = ev.ExecutionStarted(execution_id="x", workflow="w", input=b"\x90")
    bodies = draw(st.lists(event_bodies, max_size=30))
    out: list[ev.Event] = []
    for seq, body in enumerate([start, *bodies]):
        # through the codec, as the reader sees them: envelope attached
        out.append(decode_event(encode_event(body), seq=seq, at_ms=1000 + seq * 7,
                                prev_hash=""))
    return out


@settings(max_examples=200, deadline=None)
@given(logs(), st.data())
def test_fold_in_two_parts_equals_fold_whole(log: list[ev.Event], data: st.DataObject) -> None:
    cut = data.draw(st.integers(min_value=0, max_value=len(log)))
    whole = fold(log)
    parts = fold(log[cut:], fold(log[:cut]))
    assert parts == whole
    assert whole.version == len(log)


@settings(max_examples=200, deadline=None)
@given(logs())
def test_fold_is_pure(log: list[ev.Event]) -> None:
    snapshot = copy.deepcopy(log)
    assert fold(log) == fold(log)
    assert log == snapshot


@settings(max_examples=200, deadline=None)
@given(logs())
def test_applied_records_count_as_recorded(log: list[ev.Event]) -> None:
    """After an event of a durable call is folded, the same record is 'already recorded'
    (the rule that makes a lost append race adopt the winner's record)."""
    state = ExecutionState()
    for event in log:
        apply(state, event)
        if isinstance(event, ev.StepCompleted | ev.StepFailed | ev.TimerSet | ev.SignalConsumed
                      | ev.ChildStarted):
            assert already_recorded(state, event)


@settings(max_examples=200, deadline=None)
@given(logs())
def test_the_effects_move_the_status_as_the_fold_does(log: list[ev.Event]) -> None:
    """The status the append script sets from an event's ``Effects`` (the named status,
    unless a held one it keeps) is the fold's, along any log; what the script's wheel
    holds is what the fold's pending timers say."""
    state = ExecutionState()
    wheel: set[str] = set()
    for event in log:
        fx = effects_of(event, state, by_run=True)
        prior = state.status
        apply(state, event)
        kept = fx.status == "" or prior in fx.kept
        assert state.status == (prior if kept else fx.status)
        wheel -= set(fx.drops)
        if fx.timer:
            wheel.add(fx.timer)
        if isinstance(event, ev.TimerFired):
            wheel.discard(event.timer)  # the poller consumed it
        if not state.terminal:
            assert wheel <= set(state.pending_timers()) | {
                name for name, t in state.timers.items() if t.fired}
