"""The timeline of one execution: which call ran when and for how long, folded from its log.

A pure function of the events and the current time (no I/O): the console's
``GET /executions/{id}/timeline`` returns it and ``zart-es history ID --timeline`` draws
it in a terminal. Every time is Redis' clock (``at_ms`` of the events); a step attempt
begins ``duration_us`` before the event that recorded its outcome (measured on the
worker's monotonic clock, so no worker's wall clock is compared with Redis'). A log
written before ``duration_us`` existed places each attempt at its outcome, as a point
(``estimated``).

One :class:`Row` per durable call, in the order first recorded (the execution itself
first): a step's attempts and the backoffs between them share its row, and so do the
attempts of a step an operator retried. Spans still going at the end of the log are open
(``end_ms`` None) and drawn up to :attr:`Timeline.end_ms`, the current time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from zart_es.core import (
    TERMINAL_EVENTS,
    UPDATE_SIGNAL_PREFIX,
    CancelRequested,
    ChildCompleted,
    ChildStarted,
    Event,
    ExecutionPaused,
    ExecutionQuarantined,
    ExecutionReleased,
    ExecutionResumed,
    ExecutionStarted,
    ExecutionState,
    PatchMarked,
    QueueAdmitted,
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
    timeout_of,
)

EXECUTION_ROW = "execution"
"""Name (and kind) of the first row: the runs, time queued for a slot, pauses."""


class Span(msgspec.Struct, omit_defaults=True):
    """A stretch of time on a row.

    ``kind`` is ``run``, ``queued`` or ``paused`` (the execution's row), ``attempt`` or
    ``backoff`` (a step's), ``sleep``, ``wait`` or ``child``. ``outcome``: for an attempt
    ``completed``, ``failed`` or ``retry``; for a timer ``fired``; for a wait ``signal`` or
    ``timed_out``; for a child its end status; for a run its end status; ``ended`` for
    anything the execution's end cut short; empty while open.
    """

    kind: str
    start_ms: int
    end_ms: int | None
    """None (always encoded, ``null`` in JSON) while the span is still going: drawn up to
    the timeline's end."""
    outcome: str = ""
    attempt: int = 0
    took_us: int = -1
    """An attempt's measured duration in µs (-1: not recorded, an old log)."""
    due_ms: int = 0
    """A timer's due time (sleeps, backoffs, waits with a timeout)."""
    detail: str = ""
    """An attempt's error (``Type: message``), a child's id, a wait's signal name, a
    pause's rule, a queue slot's ``queue key``."""
    estimated: bool = False
    """The start is not known (an attempt recorded before ``duration_us`` existed)."""


class Row(msgspec.Struct):
    """One durable call (or the execution itself) and its spans, oldest first."""

    name: str
    kind: str
    """``execution``, ``step``, ``sleep``, ``wait`` or ``child``."""
    spans: list[Span] = msgspec.field(default_factory=list)


class Mark(msgspec.Struct, frozen=True):
    """A moment on the timeline: a signal arrived, a cancel or a repair was asked, ..."""

    at_ms: int
    seq: int
    label: str


class Timeline(msgspec.Struct, frozen=True):
    """The waterfall of one execution, to scale from ``start_ms`` to ``end_ms``."""

    execution_id: str
    workflow: str
    status: str
    start_ms: int
    end_ms: int
    """The last event's time, or the current time while something is still going."""
    rows: list[Row]
    marks: list[Mark]


def build_timeline(events: Iterable[Event], now_ms: int) -> Timeline:
    """The timeline of the execution whose log is ``events`` (oldest first), as it
    stands at ``now_ms`` (Redis' clock)."""
    builder = _Builder()
    for event in events:
        builder.add(event)
    return builder.finish(now_ms)


class _Builder:
    """Folds events into rows, keeping the spans still open by what will close them."""

    def __init__(self) -> None:
        self.state = ExecutionState()
        self.rows: dict[str, Row] = {EXECUTION_ROW: Row(EXECUTION_ROW, EXECUTION_ROW)}
        self.marks: list[Mark] = []
        self.timers: dict[str, Span] = {}
        self.waits: dict[str, Span] = {}
        self.children: dict[str, Span] = {}
        self.early_children: dict[str, ChildCompleted] = {}
        self.run: Span | None = None
        self.pause: Span | None = None
        self.first_ms: int | None = None
        self.last_ms = 0

    def add(self, event: Event) -> None:
        apply(self.state, event)
        if self.first_ms is None:
            self.first_ms = event.at_ms
        self.last_ms = max(self.last_ms, event.at_ms)
        if isinstance(event, TERMINAL_EVENTS):
            self._ended(event)
            return
        handler = _HANDLERS.get(type(event))
        if handler is not None:
            handler(self, event)

    def finish(self, now_ms: int) -> Timeline:
        still_open = any(span.end_ms is None for row in self.rows.values() for span in row.spans)
        start = self.first_ms if self.first_ms is not None else now_ms
        end = max(self.last_ms, now_ms) if still_open else self.last_ms
        return Timeline(
            execution_id=self.state.execution_id, workflow=self.state.workflow,
            status=str(self.state.status), start_ms=start, end_ms=max(end, start),
            rows=list(self.rows.values()), marks=self.marks,
        )

    # -- helpers ---------------------------------------------------------------------

    def _row(self, name: str, kind: str) -> Row:
        row = self.rows.get(name)
        if row is None:
            row = self.rows[name] = Row(name, kind)
        return row

    def _mark(self, event: Event, label: str) -> None:
        self.marks.append(Mark(event.at_ms, event.seq, label))

    def _track(self, open_spans: dict[str, Span], key: str, span: Span) -> None:
        """Keep ``span`` open under ``key``; one still open there (a timer set again after
        a repair forgot its call) ends where the new one begins."""
        old = open_spans.get(key)
        if old is not None and old is not span and old.end_ms is None:
            old.end_ms, old.outcome = max(span.start_ms, old.start_ms), "superseded"
        open_spans[key] = span

    def _open_run(self, at_ms: int) -> None:
        if self.run is not None and self.run.end_ms is None:
            self.run.end_ms, self.run.outcome = at_ms, "reopened"
        self.run = Span("run", at_ms, None)
        self.rows[EXECUTION_ROW].spans.append(self.run)

    def _ended(self, event: Event) -> None:
        status = str(self.state.status)
        for span in self._open_spans():
            span.end_ms, span.outcome = event.at_ms, "ended"
        if self.run is not None:
            self.run.end_ms, self.run.outcome = event.at_ms, status
        self.run = self.pause = None
        self.timers.clear()
        self.waits.clear()
        self.children.clear()
        self._mark(event, status)

    def _open_spans(self) -> list[Span]:
        spans = [*self.timers.values(), *self.waits.values(), *self.children.values()]
        if self.pause is not None:
            spans.append(self.pause)
        return [span for span in spans if span.end_ms is None]

    # -- events ----------------------------------------------------------------------

    def started(self, e: ExecutionStarted) -> None:
        self._open_run(e.at_ms)

    def admitted(self, e: QueueAdmitted) -> None:
        since = self.run.start_ms if self.run is not None else e.at_ms
        # the gate's time of admission, kept within the run and the event (the same clock)
        at = min(max(e.admitted_ms or e.at_ms, since), e.at_ms)
        self.rows[EXECUTION_ROW].spans.append(Span(
            "queued", since, at, outcome="admitted", detail=f"{e.queue} {e.key}".strip()))

    def attempt(self, e: StepCompleted | StepFailed | RetryScheduled) -> None:
        took = e.duration_us
        if isinstance(e, StepCompleted):
            outcome, attempt, detail = "completed", e.attempt, ""
        elif isinstance(e, StepFailed):
            outcome, attempt, detail = "failed", e.attempt, f"{e.error_type}: {e.message}"
        else:
            outcome, attempt, detail = "retry", e.attempt - 1, f"{e.error_type}: {e.message}"
        start = e.at_ms - (took + 999) // 1000 if took >= 0 else e.at_ms
        row = self._row(e.step, "step")
        row.spans.append(Span("attempt", start, e.at_ms, outcome=outcome, attempt=attempt,
                              took_us=took, detail=detail, estimated=took < 0))
        if isinstance(e, RetryScheduled):
            backoff = Span("backoff", e.at_ms, None, attempt=e.attempt, due_ms=e.at_ms + e.delay_ms)
            row.spans.append(backoff)
            self._track(self.timers, e.timer, backoff)

    def timer_set(self, e: TimerSet) -> None:
        due = e.due_ms or e.at_ms + e.delay_ms
        if e.purpose == "sleep":
            span = Span("sleep", e.at_ms, None, due_ms=due)
            self._row(e.timer, "sleep").spans.append(span)
            self._track(self.timers, e.timer, span)
        elif e.purpose == "event":
            wait = e.timer.removesuffix(":timer")
            span = self.waits.get(wait) or Span("wait", e.at_ms, None)
            span.due_ms = due
            if wait not in self.waits:
                self._row(wait, "wait").spans.append(span)
                self.waits[wait] = span
            self._track(self.timers, e.timer, span)
        elif timeout_of(e.timer) is not None:
            self._mark(e, f"deadline set ({e.timer})")

    def timer_fired(self, e: TimerFired) -> None:
        span = self.timers.pop(e.timer, None)
        if span is None:
            if timeout_of(e.timer) is not None:
                self._mark(e, "deadline reached")
            return
        if span.kind == "wait":
            return  # the wait ends with its SignalConsumed (timed out), recorded next
        span.end_ms, span.outcome = e.at_ms, "fired"

    def awaited(self, e: SignalAwaited) -> None:
        if e.wait not in self.waits:
            span = Span("wait", e.at_ms, None, detail=e.name)
            self._row(e.wait, "wait").spans.append(span)
            self.waits[e.wait] = span

    def consumed(self, e: SignalConsumed) -> None:
        span = self.waits.pop(e.wait, None)
        if span is None:  # the signal was there already: the wait took no time
            span = Span("wait", e.at_ms, None)
            self._row(e.wait, "wait").spans.append(span)
        span.end_ms, span.detail = e.at_ms, e.name
        span.outcome = "signal" if e.index >= 0 else "timed_out"

    def received(self, e: SignalReceived) -> None:
        update = e.name.removeprefix(UPDATE_SIGNAL_PREFIX)
        self._mark(e, f"update {update}" if update != e.name else f"signal {e.name}")

    def replied(self, e: UpdateReplied) -> None:
        outcome = f" failed: {e.error_type}" if e.error_type else ""
        self._mark(e, f"update {e.name} answered{outcome}")

    def child_started(self, e: ChildStarted) -> None:
        span = Span("child", e.at_ms, None, detail=e.child_id)
        self._row(e.call, "child").spans.append(span)
        done = self.early_children.pop(e.child_id, None)
        if done is not None:  # its end arrived first (it may run in another partition)
            span.end_ms, span.outcome = e.at_ms, done.status
        else:
            self._track(self.children, e.child_id, span)

    def child_completed(self, e: ChildCompleted) -> None:
        span = self.children.pop(e.child_id, None)
        if span is None:
            self.early_children[e.child_id] = e
            return
        span.end_ms, span.outcome = e.at_ms, e.status

    def paused(self, e: ExecutionPaused) -> None:
        if self.pause is None:
            self.pause = Span("paused", e.at_ms, None, detail=e.rule)
            self.rows[EXECUTION_ROW].spans.append(self.pause)

    def resumed(self, e: ExecutionResumed) -> None:
        if self.pause is not None:
            self.pause.end_ms, self.pause.outcome = e.at_ms, "resumed"
            self.pause = None

    def reopened(self, e: StepRetryRequested | StepsInvalidated | RunRestarted) -> None:
        if isinstance(e, StepRetryRequested):
            label = f"retry-step {e.step}"
        elif isinstance(e, StepsInvalidated):
            label = f"rerun from {', '.join(e.steps)}"
        else:
            label = f"restart: run {e.run}"
        by = f" by {e.by}" if e.by else ""
        self._mark(e, label + by)
        self._open_run(e.at_ms)

    def cancel(self, e: CancelRequested) -> None:
        self._mark(e, f"cancel requested{': ' + e.reason if e.reason else ''}")

    def quarantined(self, e: ExecutionQuarantined) -> None:
        self._mark(e, f"quarantined after {e.crashes} crashes: {e.error_type}")

    def released(self, e: ExecutionReleased) -> None:
        self._mark(e, "released" + (f" by {e.by}" if e.by else ""))

    def patch(self, e: PatchMarked) -> None:
        self._mark(e, f"patch {e.patch}")


_HANDLERS: dict[type[Event], Callable[[_Builder, Any], None]] = {
    ExecutionStarted: _Builder.started, QueueAdmitted: _Builder.admitted,
    StepCompleted: _Builder.attempt, StepFailed: _Builder.attempt,
    RetryScheduled: _Builder.attempt,
    TimerSet: _Builder.timer_set, TimerFired: _Builder.timer_fired,
    SignalAwaited: _Builder.awaited, SignalConsumed: _Builder.consumed,
    SignalReceived: _Builder.received,
    ChildStarted: _Builder.child_started, ChildCompleted: _Builder.child_completed,
    ExecutionPaused: _Builder.paused, ExecutionResumed: _Builder.resumed,
    StepRetryRequested: _Builder.reopened, StepsInvalidated: _Builder.reopened,
    RunRestarted: _Builder.reopened,
    CancelRequested: _Builder.cancel, ExecutionQuarantined: _Builder.quarantined,
    ExecutionReleased: _Builder.released, PatchMarked: _Builder.patch,
    UpdateReplied: _Builder.replied,
}
