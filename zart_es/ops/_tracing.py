"""OpenTelemetry traces of executions (the ``otel`` extra), one trace per execution.

When the application configures a tracer provider, workers record a span per run of an
execution and per step attempt, its timers and waits as span events; the trace context
is carried in the log.

One execution is one trace, whichever worker runs it and however often it is resumed:
every run's span has the same parent, the context the execution was started in (the
client's span, or the parent execution's run for a child), recorded in its
``ExecutionStarted`` as a W3C ``traceparent``. Started outside any span, the execution's
runs share a parent derived from its id. Without opentelemetry installed every function
here is a no-op, and without a configured provider spans are not recorded.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterator
from typing import Any

from zart_es.core import ExecutionState, Status

try:
    from opentelemetry import propagate, trace
except ImportError:  # the extra is not installed: tracing costs nothing
    trace = None  # type: ignore[assignment]
    propagate = None  # type: ignore[assignment]

TRACER = "zart_es"
EXECUTION_ID, WORKFLOW, STEP, ATTEMPT, OUTCOME, RUN, STATUS = (
    "zart.execution_id", "zart.workflow", "zart.step", "zart.attempt", "zart.outcome",
    "zart.run", "zart.status")
TIMER, DUE_MS, CHILD_ID = "zart.timer", "zart.due_ms", "zart.child_id"


def traceparent(execution_id: str = "", workflow: str = "") -> str:
    """The trace context an execution started now records (a W3C ``traceparent``): the
    current span's; outside any span, that of a ``start <workflow>`` root span made here,
    so the application's sampler decides once for every run of the execution ("" when no
    tracer provider is configured in this process)."""
    if propagate is None:
        return ""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    if not carrier.get("traceparent") and workflow and _configured():
        with trace.get_tracer(TRACER).start_as_current_span(
                f"start {workflow}", attributes={EXECUTION_ID: execution_id, WORKFLOW: workflow}):
            propagate.inject(carrier)
    return carrier.get("traceparent", "")


@contextlib.contextmanager
def run_span(execution_id: str, workflow: str, run: int, parent: str) -> Iterator[Any]:
    """The span of one run of an execution (current while it runs): a child of the
    context it was started in (``parent``, a traceparent), else of one derived from its
    id. Yields the span, or None when tracing is off."""
    if trace is None or not _configured():
        yield None
        return
    context = _parent_context(execution_id, parent)
    tracer = trace.get_tracer(TRACER)
    with tracer.start_as_current_span(
            f"run {workflow}", context=context,
            attributes={EXECUTION_ID: execution_id, WORKFLOW: workflow, RUN: run},
            record_exception=False, set_status_on_exception=False) as span:
        yield span


def ended_run(span: Any, outcome: str, state: ExecutionState) -> None:
    """Note where a run stopped: its outcome and status, and what the execution waits
    for now, as span events: each pending timer (a sleep, a retry's backoff, a deadline)
    with its due time, each child not ended, a signal."""
    if span is None or not span.is_recording():
        return
    span.set_attributes({OUTCOME: outcome, STATUS: str(state.status)})
    if state.terminal:
        return
    for name, timer in state.timers.items():
        if not timer.fired:
            span.add_event("timer", {TIMER: name, DUE_MS: timer.due_ms})
    for child in state.children.values():
        if child.child_id not in state.child_results:
            span.add_event("child", {CHILD_ID: child.child_id})
    if state.status is Status.WAITING:
        span.add_event("signal", {})


def step_attempt(execution_id: str, step: str, attempt: int, took_us: int,
                 outcome: str) -> None:
    """Record one step attempt that ended now after ``took_us`` (the duration its outcome
    event records) as a span under the current run's span (nothing when that one is not
    recording)."""
    if trace is None:
        return
    current = trace.get_current_span()
    if not current.is_recording():
        return
    took_ns = took_us * 1000
    end_ns = time.time_ns()
    span = trace.get_tracer(TRACER).start_span(
        f"step {step}", start_time=end_ns - took_ns,
        attributes={EXECUTION_ID: execution_id, STEP: step, ATTEMPT: attempt,
                    OUTCOME: outcome})
    if outcome != "completed":
        span.set_status(trace.Status(trace.StatusCode.ERROR, outcome))
    span.end(end_time=end_ns)


def _configured() -> bool:
    """Whether the application set a tracer provider (else every span would be a
    non-recording one: skip making them)."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def _parent_context(execution_id: str, parent: str) -> Any:
    if parent:
        extracted = propagate.extract({"traceparent": parent})
        if trace.get_current_span(extracted).get_span_context().is_valid:
            return extracted
    digest = hashlib.sha256(execution_id.encode()).digest()
    derived = trace.SpanContext(
        trace_id=int.from_bytes(digest[:16], "big") or 1,
        span_id=int.from_bytes(digest[16:24], "big") or 1,
        is_remote=True, trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED))
    return trace.set_span_in_context(trace.NonRecordingSpan(derived))
