"""The timeline of an execution (zart_es.ops._timeline) and its terminal drawing
(``zart-es history ID --timeline``): attempts placed by their recorded durations, retries,
sleeps, waits, children, repairs; open spans; logs from before durations were recorded."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from zart_es import Context, Registry, durable
from zart_es.cli._timeline import bar, duration_text, render, took
from zart_es.core import TERMINAL_EVENTS, decode_event, encode_event
from zart_es.core import _events as ev
from zart_es.ops import Row, Span, Timeline, build_timeline
from zart_es.store import to_event
from zart_es.testing import WorkflowHarness

from .test_fold_property import logs

pytestmark = pytest.mark.pure

START = ev.ExecutionStarted(execution_id="x-1", workflow="order", input=b"\xc0")


def log(*stamped: tuple[int, ev.Event]) -> list[ev.Event]:
    """Attach the envelope the reader would: seq from 0, the given Redis times."""
    return [msgspec.structs.replace(body, seq=seq, at_ms=ms)
            for seq, (ms, body) in enumerate(stamped)]


def rows(timeline: Timeline) -> dict[str, Row]:
    return {row.name: row for row in timeline.rows}


def test_a_whole_execution_is_drawn_to_scale() -> None:
    events = log(
        (1_000, START),
        (1_500, ev.StepCompleted(step="fetch", result=b"\xc0", duration_us=400_000)),
        (2_000, ev.RetryScheduled(step="charge", attempt=2, error_type="Timeout",
                                  message="slow", timer="retry:2:charge", delay_ms=1_000,
                                  duration_us=100_000)),
        (3_000, ev.TimerFired(timer="retry:2:charge")),
        (3_200, ev.StepCompleted(step="charge", result=b"\xc0", attempt=2,
                                 duration_us=150_000)),
        (3_300, ev.TimerSet(timer="sleep-0", delay_ms=5_000)),
        (8_300, ev.TimerFired(timer="sleep-0")),
        (8_400, ev.SignalAwaited(wait="event:approval#0", name="approval")),
        (9_000, ev.SignalReceived(name="approval", payload=b"\xc3")),
        (9_010, ev.SignalConsumed(wait="event:approval#0", name="approval", index=0)),
        (9_100, ev.ChildStarted(call="child:x-1.child-0", child_id="x-1.child-0",
                                workflow="invoice")),
        (9_500, ev.ChildCompleted(child_id="x-1.child-0", status="completed")),
        (9_600, ev.ExecutionCompleted(result=b"\xc0")),
    )
    timeline = build_timeline(events, now_ms=50_000)
    assert (timeline.execution_id, timeline.workflow, timeline.status) == ("x-1", "order",
                                                                           "completed")
    # an ended log ends at its last event, whatever the time now
    assert (timeline.start_ms, timeline.end_ms) == (1_000, 9_600)
    by_name = rows(timeline)
    assert list(by_name) == ["execution", "fetch", "charge", "sleep-0", "event:approval#0",
                             "child:x-1.child-0"]
    assert by_name["execution"].spans == [Span("run", 1_000, 9_600, outcome="completed")]
    assert by_name["fetch"].spans == [Span("attempt", 1_100, 1_500, outcome="completed",
                                           attempt=1, took_us=400_000)]
    first, backoff, second = by_name["charge"].spans
    assert (first.start_ms, first.end_ms, first.outcome, first.attempt) == (1_900, 2_000,
                                                                           "retry", 1)
    assert first.detail == "Timeout: slow"
    assert (backoff.kind, backoff.start_ms, backoff.end_ms, backoff.due_ms) == ("backoff",
                                                                              2_000, 3_000,
                                                                              3_000)
    assert (second.start_ms, second.end_ms, second.attempt) == (3_050, 3_200, 2)
    assert by_name["sleep-0"].spans == [Span("sleep", 3_300, 8_300, outcome="fired",
                                             due_ms=8_300)]
    assert by_name["event:approval#0"].spans == [Span("wait", 8_400, 9_010, outcome="signal",
                                                      detail="approval")]
    assert by_name["child:x-1.child-0"].spans == [Span("child", 9_100, 9_500,
                                                       outcome="completed",
                                                       detail="x-1.child-0")]
    assert [(m.at_ms, m.label) for m in timeline.marks] == [(9_000, "signal approval"),
                                                           (9_600, "completed")]


def test_what_still_goes_on_is_open_up_to_now() -> None:
    events = log(
        (1_000, START),
        (1_200, ev.TimerSet(timer="sleep-0", delay_ms=60_000)),
    )
    timeline = build_timeline(events, now_ms=5_000)
    sleep = rows(timeline)["sleep-0"].spans[0]
    assert (sleep.end_ms, sleep.due_ms) == (None, 61_200)
    assert rows(timeline)["execution"].spans[0].end_ms is None
    assert timeline.end_ms == 5_000
    assert timeline.status == "sleeping"


def test_a_log_from_before_durations_places_attempts_at_their_outcome() -> None:
    events = log(
        (1_000, START),
        (1_500, ev.StepCompleted(step="fetch", result=b"\xc0")),
        (1_600, ev.ExecutionCompleted(result=b"\xc0")),
    )
    attempt = rows(build_timeline(events, now_ms=2_000))["fetch"].spans[0]
    assert (attempt.start_ms, attempt.end_ms, attempt.took_us, attempt.estimated) == (
        1_500, 1_500, -1, True)


def test_a_wait_that_times_out_and_an_end_that_cuts_spans_short() -> None:
    events = log(
        (1_000, START),
        (1_100, ev.TimerSet(timer="event:ok#0:timer", delay_ms=500, purpose="event")),
        (1_600, ev.TimerFired(timer="event:ok#0:timer")),
        (1_610, ev.SignalConsumed(wait="event:ok#0", name="ok", index=-1)),
        (1_700, ev.TimerSet(timer="sleep-0", delay_ms=10_000)),
        (1_800, ev.CancelRequested(reason="asked")),
        (1_900, ev.ExecutionCancelled(reason="asked")),
    )
    timeline = build_timeline(events, now_ms=9_000)
    wait = rows(timeline)["event:ok#0"].spans[0]
    assert (wait.start_ms, wait.end_ms, wait.outcome, wait.due_ms) == (1_100, 1_610,
                                                                      "timed_out", 1_600)
    sleep = rows(timeline)["sleep-0"].spans[0]
    assert (sleep.end_ms, sleep.outcome) == (1_900, "ended")
    assert timeline.end_ms == 1_900
    assert [m.label for m in timeline.marks] == ["cancel requested: asked", "cancelled"]


def test_a_repaired_step_gets_its_new_attempt_on_the_same_row_in_a_new_run() -> None:
    events = log(
        (1_000, START),
        (1_200, ev.StepFailed(step="charge", error_type="Declined", message="no",
                              duration_us=50_000)),
        (1_300, ev.ExecutionFailed(error_type="StepFailedError", message="charge")),
        (5_000, ev.StepRetryRequested(step="charge", by="ops")),
        (5_400, ev.StepCompleted(step="charge", result=b"\xc0", duration_us=200_000)),
        (5_500, ev.ExecutionCompleted(result=b"\xc0")),
    )
    timeline = build_timeline(events, now_ms=9_000)
    runs = rows(timeline)["execution"].spans
    assert [(r.start_ms, r.end_ms, r.outcome) for r in runs] == [(1_000, 1_300, "failed"),
                                                                (5_000, 5_500, "completed")]
    attempts = rows(timeline)["charge"].spans
    assert [(a.start_ms, a.outcome) for a in attempts] == [(1_150, "failed"),
                                                           (5_200, "completed")]
    assert "retry-step charge by ops" in [m.label for m in timeline.marks]


def test_queue_admission_pauses_and_a_child_that_ended_first() -> None:
    events = log(
        (1_000, START),
        (1_100, ev.ExecutionPaused(rule="workflow:order")),
        (2_100, ev.ExecutionResumed(rule="workflow:order")),
        (2_500, ev.QueueAdmitted(queue="emails", key="t1", admitted_ms=2_400)),
        (2_600, ev.ChildCompleted(child_id="c", status="failed", error_type="E")),
        (2_700, ev.ChildStarted(call="child:c", child_id="c", workflow="w")),
    )
    timeline = build_timeline(events, now_ms=3_000)
    spans = rows(timeline)["execution"].spans
    assert [(s.kind, s.start_ms, s.end_ms) for s in spans] == [
        ("run", 1_000, None), ("paused", 1_100, 2_100), ("queued", 1_000, 2_400)]
    child = rows(timeline)["child:c"].spans[0]
    assert (child.start_ms, child.end_ms, child.outcome) == (2_700, 2_700, "failed")


HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.msgpack"))


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
def test_logs_of_earlier_versions_make_closed_timelines(path: Path) -> None:
    logs: dict[str, Any] = msgspec.msgpack.decode(path.read_bytes())
    for execution_id, recorded in logs.items():
        raw = [{k.encode(): v if isinstance(v, bytes) else str(v).encode()
                for k, v in fields.items()} for _, fields in recorded["entries"]]
        events = [to_event(entry_id.encode(), fields)
                  for (entry_id, _), fields in zip(recorded["entries"], raw, strict=True)]
        timeline = build_timeline(events, now_ms=10**13)
        assert timeline.execution_id == execution_id
        assert timeline.end_ms == max(e.at_ms for e in events)  # ended: not drawn to now
        for row in timeline.rows:
            for span in row.spans:
                assert span.end_ms is not None, (execution_id, row.name)
                assert timeline.start_ms <= span.start_ms <= span.end_ms <= timeline.end_ms
        render(timeline, Console(file=io.StringIO(), width=120))
        attempts = [s for row in timeline.rows for s in row.spans if s.kind == "attempt"]
        assert attempts
        # logs recorded since attempts carry their duration place each one; older ones
        # draw them as points
        timed = "timing" in path.stem
        assert all((s.took_us >= 0) == timed and s.estimated != timed for s in attempts)


async def test_the_context_records_each_attempts_duration() -> None:
    registry = Registry()
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.03)
        if calls == 1:
            raise TimeoutError("slow")
        return "ok"

    @durable("timed", registry=registry)
    async def timed(ctx: Context) -> str:
        await ctx.step("quick", lambda: 1)
        return await ctx.step_with_retry("flaky", flaky, retries=2, backoff="fixed",
                                         delay="2s")

    harness = WorkflowHarness(registry, start_ms=1_000_000)
    harness.start("timed", execution_id="t-1")
    assert await harness.run() == "sleeping"
    harness.advance(2_000)
    await harness.run()
    assert harness.result() == "ok"
    recorded = {(type(e).__name__, getattr(e, "step", "")): e for e in harness.events}
    retry = recorded["RetryScheduled", "flaky"]
    done = recorded["StepCompleted", "flaky"]
    assert isinstance(retry, ev.RetryScheduled)
    assert isinstance(done, ev.StepCompleted)
    assert 30_000 <= retry.duration_us < 2_000_000
    assert 30_000 <= done.duration_us < 2_000_000
    quick = recorded["StepCompleted", "quick"]
    assert isinstance(quick, ev.StepCompleted)
    assert 0 <= quick.duration_us < 30_000
    # a recorded duration survives the codec: old readers ignore it, new ones read it
    assert decode_event(encode_event(done), seq=done.seq, at_ms=done.at_ms,
                        prev_hash=done.prev_hash) == done
    spans = rows(build_timeline(harness.events, harness.now_ms))["flaky"].spans
    assert [s.kind for s in spans] == ["attempt", "backoff", "attempt"]
    assert spans[1].end_ms is not None
    assert spans[1].end_ms - spans[1].start_ms == 2_000


def test_the_terminal_drawing_puts_each_span_where_it_belongs() -> None:
    timeline = Timeline(
        execution_id="x", workflow="w", status="running", start_ms=0, end_ms=100, marks=[],
        rows=[Row("a", "step", [Span("attempt", 0, 10, outcome="retry", took_us=10_000),
                                Span("backoff", 10, 50, outcome="fired"),
                                Span("attempt", 50, 60, outcome="completed",
                                     took_us=10_000)]),
              Row("sleep-0", "sleep", [Span("sleep", 60, None, due_ms=500)])])
    drawn = bar(timeline.rows[0], timeline, 20).plain
    assert drawn == "██" + "░" * 8 + "██" + " " * 8
    assert bar(timeline.rows[1], timeline, 20).plain == " " * 12 + "─" * 8
    assert took(timeline.rows[0], 100) == "2 attempts, 20ms"
    assert took(timeline.rows[1], 100) == "40ms…"
    out = io.StringIO()
    render(timeline, Console(file=out, width=120))
    text = out.getvalue()
    assert "x · w · running" in text
    assert "sleep-0" in text
    assert "open, due in 400ms" in text


@pytest.mark.parametrize(("ms", "text"), [(0.4, "0.4ms"), (120, "120ms"), (2_500, "2.5s"),
                                          (185_000, "3m05s"), (7_800_000, "2h10m")])
def test_durations_read_like_people_write_them(ms: float, text: str) -> None:
    assert duration_text(ms) == text


@settings(max_examples=200, deadline=None)
@given(logs(), st.integers(min_value=0, max_value=10**7))
def test_any_log_makes_a_timeline_whose_spans_hold_together(
    events: list[ev.Event], now_ms: int
) -> None:
    timeline = build_timeline(events, now_ms)
    assert timeline.start_ms == events[0].at_ms
    assert timeline.end_ms >= max(e.at_ms for e in events)
    spans = [span for row in timeline.rows for span in row.spans]
    outcomes = (ev.StepCompleted, ev.StepFailed, ev.RetryScheduled)
    assert sum(s.kind == "attempt" for s in spans) == sum(isinstance(e, outcomes)
                                                          for e in events)
    for span in spans:
        if span.kind != "attempt":  # an attempt starts before its event (its duration)
            assert span.start_ms >= timeline.start_ms
        if span.end_ms is not None:
            assert span.start_ms <= span.end_ms <= timeline.end_ms
    if isinstance(events[-1], TERMINAL_EVENTS):
        assert all(span.end_ms is not None for span in spans)
        assert timeline.end_ms == events[-1].at_ms
    assert [m.seq for m in timeline.marks] == sorted(m.seq for m in timeline.marks)
