"""The events of an execution's log: frozen, tagged msgspec Structs.

An execution is nothing but the ordered list of these. The schema evolves only by adding
fields with defaults at the end of a class (old logs keep decoding; see
``tests/histories/``). The envelope fields ``seq``, ``at_ms`` and ``prev_hash`` are not
encoded in the event body: the append script stores them beside it in the stream entry
and the reader fills them in, so the writer never has to know them in advance.
"""

from __future__ import annotations

import msgspec


class Event(msgspec.Struct, frozen=True, kw_only=True, tag=True, omit_defaults=True):
    """Base of all events. ``seq`` counts from 0; ``at_ms`` is Redis' clock at append."""

    seq: int = -1
    at_ms: int = 0
    prev_hash: str = ""


class ExecutionStarted(Event, frozen=True, kw_only=True, tag=True, omit_defaults=True):
    """First event of every log: which workflow, with which (msgpack-encoded) input."""

    execution_id: str
    workflow: str
    input: bytes
    parent_id: str = ""
    """Set for a child execution: its parent hears of its end (``ChildCompleted``)."""
    queue_key: str = ""
    """The key (tenant) whose concurrency and rate limits of the workflow's queue apply."""
    priority: int | None = None
    """Admission priority in the workflow's queue (None: the queue's own)."""
    task_queue: str = ""
    """The task queue it was started on: the starter's choice, or the one its workflow
    declared when it started; "" when that was the default queue or not known yet (its
    workflow's declaration then decides). Only workers serving it run the execution."""
    traceparent: str = ""
    """The W3C trace context it was started in (a client's span, a parent's run): every
    run's span is a child of it, so one execution is one trace ("": none)."""
    debounce_ms: int = 0
    """Started with ``debounce=``: it runs once its debounce window (of its workflow and
    ``debounce_key``) has closed, with the window's last input (0: no debounce)."""
    debounce_key: str = ""


class StepCompleted(Event, frozen=True, kw_only=True, tag=True, omit_defaults=True):
    """A step returned; ``result`` is its msgpack-encoded value. Recorded once per name."""

    step: str
    result: bytes
    attempt: int = 1
    duration_us: int = -1
    """How long the attempt's step function ran, in µs, on the worker's monotonic clock
    (-1: recorded before the field existed). The attempt began ``at_ms`` minus this,
    within the append's round trip: no worker's wall clock is compared with Redis'."""


class StepFailed(Event, frozen=True, kw_only=True, tag=True, omit_defaults=True):
    """A step raised and has no retries left; replays raise the same StepFailedError."""

    step: str
    error_type: str
    message: str
    attempt: int = 1
    duration_us: int = -1
    """How long the attempt's step function ran, in µs, on the worker's monotonic clock
    (-1: recorded before the field existed). The attempt began ``at_ms`` minus this,
    within the append's round trip: no worker's wall clock is compared with Redis'."""


class RetryScheduled(Event, frozen=True, kw_only=True, tag=True, omit_defaults=True):
    """Attempt ``attempt - 1`` of ``step`` failed; ``attempt`` runs when ``timer`` fires."""

    step: str
    attempt: int
    error_type: str
    message: str
    timer: str
    delay_ms: int
    duration_us: int = -1
    """How long the failed attempt's step function ran, in µs, on the worker's monotonic
    clock (-1: recorded before the field existed). The attempt began ``at_ms`` minus this,
    within the append's round trip: no worker's wall clock is compared with Redis'."""


class TimerSet(Event, frozen=True, kw_only=True, tag=True, omit_defaults=True):
    """A durable timer: due ``delay_ms`` after this event, or at ``due_ms`` when given."""

    timer: str
    delay_ms: int = 0
    due_ms: int = 0
    purpose: str = "sleep"
    """``sleep`` (a durable call), ``event`` (a signal wait's timeout: the stored word
    is its first name, kept so every log reads the same), ``timeout`` (the deadline) or
    ``debounce`` (the end of a debounce window)."""


class TimerFired(Event, frozen=True, kw_only=True, tag=True, omit_defaults=True):
    """The timer wheel released ``timer`` (at or after its due time, exactly once)."""

    timer: str


class ExecutionCompleted(Event, frozen=True, kw_only=True, tag=True, omit_defaults=True):
    """The workflow returned; ``result`` is its msgpack-encoded value. Terminal."""

    result: bytes


class ExecutionFailed(Event, frozen=True, kw_only=True, tag=True, omit_defaults=True):
    """The workflow raised (or could not run). Terminal."""

    error_type: str
    message: str


class ExecutionTimedOut(Event, frozen=True, kw_only=True, tag=True, omit_defaults=True):
    """The workflow's deadline timer fired before it finished. Terminal."""

    timeout_ms: int


class SignalReceived(Event, frozen=True, kw_only=True, tag="EventReceived", omit_defaults=True):
    """A signal delivered from outside (``Client.send_signal``); kept until a wait takes it.
    Stored under its first name, ``EventReceived``, so every log stays readable."""

    name: str
    payload: bytes
    by: str = ""
    """The operator who sent it (empty: the application)."""


class SignalConsumed(Event, frozen=True, kw_only=True, tag="EventConsumed", omit_defaults=True):
    """Wait ``wait`` resolved: it took the ``index``-th ``SignalReceived(name)``, or timed
    out (``index`` = -1). Recorded once, so every replay resolves the wait the same way.
    Stored under its first name, ``EventConsumed``."""

    wait: str
    name: str
    index: int


class SignalAwaited(Event, frozen=True, kw_only=True, tag=True, omit_defaults=True):
    """Wait ``wait`` for signal ``name`` (without a timeout) found none: the execution
    waits (status ``waiting``) until one arrives. Recorded once per wait; a wait with a
    timeout records its timer instead (``TimerSet``, purpose ``signal``)."""

    wait: str
    name: str


class PatchMarked(Event, frozen=True, kw_only=True, tag=True, omit_defaults=True):
    """``ctx.patched(patch)`` took the new code path in this execution: every replay takes
    it again. A log that passed the same point without this marker was written by the old
    code, whose replays take the old path."""

    patch: str


class CancelRequested(Event, frozen=True, kw_only=True, tag=True, omit_defaults=True):
    """Someone asked the execution to stop; the workflow sees ``Cancelled`` at its next
    durable call and may run compensation steps."""

    reason: str = ""
    by: str = ""
    """Who asked (an operator's name; empty when not given)."""


class ExecutionCancelled(Event, frozen=True, kw_only=True, tag=True, omit_defaults=True):
    """The workflow let ``Cancelled`` propagate. Terminal."""

    reason: str = ""


class ChildStarted(Event, frozen=True, kw_only=True, tag=True, omit_defaults=True):
    """The workflow started child execution ``child_id`` (at the call site ``call``)."""

    call: str
    child_id: str
    workflow: str
    cancel: str = ""
    """What the parent's end does to the child while it runs: ``cascade`` ("", the
    default) cancels it, ``abandon`` leaves it, ``request`` signals it
    (``zart.parent-ended``)."""


class ChildCompleted(Event, frozen=True, kw_only=True, tag=True, omit_defaults=True):
    """Child ``child_id`` ended: ``status`` with ``result`` or ``error_type``/``message``."""

    child_id: str
    status: str
    result: bytes = b""
    error_type: str = ""
    message: str = ""


class StepRetryRequested(Event, frozen=True, kw_only=True, tag=True, omit_defaults=True):
    """An operator asked to run failed step ``step`` again: the failed execution reopens
    and resumes from that step. Results recorded before it are kept; ``forgotten`` lists
    the calls recorded after it (a compensation that handled the failure, say), which run
    again if the code reaches them."""

    step: str
    by: str = ""
    reason: str = ""
    forgotten: list[str] = []


class StepsInvalidated(Event, frozen=True, kw_only=True, tag=True, omit_defaults=True):
    """An operator asked to re-run from ``steps``: the durable calls in ``forgotten`` (the
    chosen ones and every call recorded after the first of them) are forgotten and run
    again; the ended execution reopens."""

    steps: list[str]
    forgotten: list[str]
    by: str = ""
    reason: str = ""
    preserved: list[str] = []
    """Steps recorded after the re-run point whose results are kept (``rerun(...,
    preserve=)``): they are not run again, and read as potentially stale."""


class RunRestarted(Event, frozen=True, kw_only=True, tag=True, omit_defaults=True):
    """An operator restarted the ended execution from scratch with its original input.
    Everything before this event is the history of run ``run - 1``, kept for audit."""

    run: int
    by: str = ""
    reason: str = ""
    input: bytes = b""
    """The new run's input (a start that reset the id: ``if_ended="reset"``); empty: the
    original input."""


class ExecutionPaused(Event, frozen=True, kw_only=True, tag=True, omit_defaults=True):
    """The pause rule ``rule`` (``workflow:<name>`` / ``queue:<name>``) stopped the
    execution at a step boundary; it waits for ``ExecutionResumed``."""

    rule: str


class ExecutionResumed(Event, frozen=True, kw_only=True, tag=True, omit_defaults=True):
    """The pause rule was lifted; the execution continues (timers that fell due meanwhile
    have fired and are seen now)."""

    rule: str = ""


class ExecutionQuarantined(Event, frozen=True, kw_only=True, tag=True, omit_defaults=True):
    """The engine crashed ``crashes`` times running the execution (a log it cannot read, a
    bug outside any step): it is set aside, status ``quarantined``, until an operator
    releases it (``ExecutionReleased``). Timers and signals are still recorded meanwhile."""

    crashes: int
    error_type: str
    message: str


class ExecutionReleased(Event, frozen=True, kw_only=True, tag=True, omit_defaults=True):
    """An operator released a quarantined execution (after fixing what crashed): it runs
    again from its log."""

    by: str = ""
    reason: str = ""


class QueueAdmitted(Event, frozen=True, kw_only=True, tag=True, omit_defaults=True):
    """The execution got a slot of queue ``queue`` for key ``key`` and may run; it holds the
    slot until it ends. ``admitted_ms`` is when the queue's gate admitted it (Redis' clock:
    the one its rate window counts in; ``at_ms`` is the later append); 0 where a log was
    written before the field existed."""

    queue: str
    key: str = ""
    admitted_ms: int = 0


class UpdateReplied(Event, frozen=True, kw_only=True, tag=True, omit_defaults=True):
    """The answer to update ``update_id`` (``ctx.wait_for_update`` then ``reply`` or
    ``fail``; or the engine's rejection of a name the workflow does not declare): its
    encoded ``result``, or ``error_type`` and ``message``. Recorded once per update; the
    caller of ``Client.update`` reads it back from the log."""

    update_id: str
    name: str
    result: bytes = b""
    error_type: str = ""
    message: str = ""


class DebounceEnded(Event, frozen=True, kw_only=True, tag=True, omit_defaults=True):
    """The debounce window closed: ``input`` (the last start's) replaces the input the
    execution was started with; ``starts`` joined the window."""

    input: bytes
    starts: int = 1


class FailureInfo(msgspec.Struct, frozen=True, kw_only=True):
    """The input of a workflow's failure handler (``@durable(..., on_failure=handler)``):
    which execution ended how. Not an event: the handler is an execution of its own."""

    execution_id: str
    workflow: str
    status: str
    """``failed`` or ``timed_out``."""
    error_type: str
    message: str


AnyEvent = (
    ExecutionStarted
    | StepCompleted
    | StepFailed
    | RetryScheduled
    | TimerSet
    | TimerFired
    | ExecutionCompleted
    | ExecutionFailed
    | ExecutionTimedOut
    | SignalReceived
    | SignalConsumed
    | SignalAwaited
    | PatchMarked
    | CancelRequested
    | ExecutionCancelled
    | ChildStarted
    | ChildCompleted
    | StepRetryRequested
    | StepsInvalidated
    | RunRestarted
    | ExecutionPaused
    | ExecutionResumed
    | ExecutionQuarantined
    | ExecutionReleased
    | QueueAdmitted
    | UpdateReplied
    | DebounceEnded
)

REOPENING_EVENTS: tuple[type[Event], ...] = (StepRetryRequested, StepsInvalidated, RunRestarted)
"""Admin events that may follow a terminal event: they reopen the ended execution."""

TERMINAL_EVENTS: tuple[type[Event], ...] = (
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionTimedOut,
    ExecutionCancelled,
)

EventReceived = SignalReceived
"""The first name of :class:`SignalReceived` (a signal is the outside's message; an event is
a record of the log)."""
EventConsumed = SignalConsumed
"""The first name of :class:`SignalConsumed`."""
