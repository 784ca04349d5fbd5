"""``state = fold(events)``: what an execution's log says, as a pure function.

No I/O and no clock. A worker keeps the folded state of recent executions and applies
only the events appended since (``apply``), so the cost of a step does not grow with the
length of the history. Folding a prefix and then the rest equals folding the whole log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import StrEnum
from typing import Any, TypeVar

import msgspec

from zart_es.core._events import (
    CancelRequested,
    ChildCompleted,
    ChildStarted,
    DebounceEnded,
    Event,
    ExecutionCancelled,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionPaused,
    ExecutionQuarantined,
    ExecutionReleased,
    ExecutionResumed,
    ExecutionStarted,
    ExecutionTimedOut,
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
)
from zart_es.core._timer_names import (
    RETRY_PREFIX,
    TIMEOUT_PREFIX,
    patch_call,
    retry_step_of,
    wait_timer,
)


class Status(StrEnum):
    """Where an execution stands. A ``str``: it compares equal to its value, which is what
    the meta hash, the status indexes, the API and the CLI carry."""

    PENDING = "pending"
    """Waiting for a worker to pick it up (new, woken by a timer, a signal or a repair)."""
    RUNNING = "running"
    SLEEPING = "sleeping"
    """Waiting on a durable timer (a sleep, a retry's backoff)."""
    WAITING = "waiting"
    """Waiting for a signal (``ctx.wait_for_signal``), with or without a timeout."""
    PAUSED = "paused"
    QUARANTINED = "quarantined"
    """Set aside after the engine crashed running it too often; an operator releases it."""
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def terminal(self) -> bool:
        """True for the four ends: nothing is appended after them but a repair."""
        return self in TERMINAL_STATES


PENDING = Status.PENDING
RUNNING = Status.RUNNING
SLEEPING = Status.SLEEPING
WAITING = Status.WAITING
COMPLETED = Status.COMPLETED
FAILED = Status.FAILED
CANCELLED = Status.CANCELLED
TIMED_OUT = Status.TIMED_OUT
PAUSED = Status.PAUSED
QUARANTINED = Status.QUARANTINED

STATES: tuple[Status, ...] = tuple(Status)
TERMINAL_STATES: frozenset[str] = frozenset({COMPLETED, FAILED, CANCELLED, TIMED_OUT})


class Timer(msgspec.Struct):
    """A durable timer of the execution: when it is due and whether it fired (at which
    position of the log)."""

    due_ms: int
    fired: bool = False
    fired_seq: int = -1
    fired_ms: int = 0
    """When it fired (Redis' clock: the ``TimerFired``'s time)."""


class Received(msgspec.Struct, frozen=True):
    """A ``SignalReceived``: its position in the log and its payload."""

    seq: int
    payload: bytes


class Child(msgspec.Struct):
    """A child execution: its id, and what its parent's end does to it (its cancel
    policy: ``cascade``, ``abandon`` or ``request``)."""

    child_id: str
    cancel: str = "cascade"


class Failure(msgspec.Struct, frozen=True):
    """A recorded failure: a step's final error, or the execution's."""

    error_type: str
    message: str
    attempt: int = 1


class ExecutionState(msgspec.Struct):
    """Everything the log says about one execution, updated one event at a time."""

    execution_id: str = ""
    workflow: str = ""
    input: bytes = b""
    version: int = 0
    """Number of events folded: the ``expected`` version of the next append."""
    started_ms: int = 0
    steps: dict[str, bytes] = msgspec.field(default_factory=dict)
    """Completed steps: name -> msgpack-encoded result."""
    failed_steps: dict[str, Failure] = msgspec.field(default_factory=dict)
    attempts: dict[str, int] = msgspec.field(default_factory=dict)
    """Steps with scheduled retries: name -> the attempt number that runs next."""
    last_errors: dict[str, Failure] = msgspec.field(default_factory=dict)
    stale: set[str] = msgspec.field(default_factory=set)
    """Steps a re-run kept (``preserve``) although recorded after its re-run point: their
    results may no longer match what the steps before them now return."""
    first_attempts: dict[str, int] = msgspec.field(default_factory=dict)
    """Steps with scheduled retries: name -> when their first attempt began (Redis'
    clock, from the first ``RetryScheduled``): what a ``total_timeout`` counts from."""
    timers: dict[str, Timer] = msgspec.field(default_factory=dict)
    status: Status = PENDING
    result: bytes | None = None
    error: Failure | None = None
    parent_id: str = ""
    received: dict[str, list[Received]] = msgspec.field(default_factory=dict)
    """Signals delivered from outside (updates too, under ``zart.update:<name>``), by
    name, in arrival order."""
    consumed: dict[str, int] = msgspec.field(default_factory=dict)
    """Resolved waits: wait key -> index into ``received[name]`` (-1: timed out)."""
    taken: dict[str, dict[int, str]] = msgspec.field(default_factory=dict)
    """Signals taken by resolved waits: signal name -> index -> the wait that took it."""
    cancel_requested: str | None = None
    """The reason given, once a ``CancelRequested`` arrived."""
    cancel_seq: int = -1
    """Position of that ``CancelRequested`` in the log."""
    children: dict[str, Child] = msgspec.field(default_factory=dict)
    """Child executions by call site."""
    child_results: dict[str, ChildCompleted] = msgspec.field(default_factory=dict)
    """Child endings by child id (they may arrive before the parent records the start)."""
    order: list[str] = msgspec.field(default_factory=list)
    """Durable calls (steps, sleeps, waits, children) in the order first recorded."""
    ordered: set[str] = msgspec.field(default_factory=set)
    """The names in ``order``, for O(1) membership."""
    restarts: int = 0
    """How often the execution was restarted from scratch (``RunRestarted``: by an
    operator, or a start that reset its id): the number of its current run."""
    retired_children: set[str] = msgspec.field(default_factory=set)
    """Ids of children whose calls were forgotten by a restart or re-run: a new call at
    the same place starts a new child instead of re-reading the ended one."""
    paused_by: str | None = None
    """The pause rule holding the execution, while it is paused."""
    quarantine: ExecutionQuarantined | None = None
    """Why the execution is quarantined, while it is."""
    queue_key: str = ""
    priority: int | None = None
    admitted: str | None = None
    """The queue whose slot the execution holds (``QueueAdmitted``), if any."""
    opened_seq: int = 0
    """Position of the event that last reopened the execution (a repair), 0 if none."""
    opened_ms: int = 0
    """When that was (0: never; the run started at ``started_ms``)."""
    traceparent: str = ""
    """The trace context the execution was started in (its runs' spans' parent)."""
    task_queue: str = ""
    """The task queue it was started on ("": the default one, or its workflow's)."""
    replies: dict[str, UpdateReplied] = msgspec.field(default_factory=dict)
    """Answered updates by update id."""
    debounce_ms: int = 0
    """The debounce window it was started with (0: none)."""
    debounce_key: str = ""
    debounced: bool = False
    """Whether its debounce window closed (``DebounceEnded``): it may run."""

    @property
    def admission(self) -> str:
        """What this run holds a queue slot as: the id, plus the reopening's position
        after a repair (a late release of the previous run must not free this run's)."""
        if self.opened_seq == 0:
            return self.execution_id
        return f"{self.execution_id} {self.opened_seq}"

    def pending_timers(self) -> tuple[str, ...]:
        """Timers on the wheel that have not fired (an end takes them off it)."""
        return tuple(name for name, timer in self.timers.items() if not timer.fired)

    @property
    def terminal(self) -> bool:
        """True once a terminal event was folded: nothing may be appended after it."""
        return self.status in TERMINAL_STATES


def status_after(event: Event) -> Status | None:
    """The status ``event`` gives an execution (None: unchanged).

    A paused execution stays ``paused`` through everything but ``ExecutionResumed`` and
    its end (see :func:`apply`; the append script applies the same rule).
    """
    if isinstance(event, _KEEPS_STATUS):
        return None
    if isinstance(event, TimerSet) and event.purpose != "sleep":
        # the deadline is armed when a worker first picks the execution up, before it
        # knows whether a pause rule or a queue lets it run: it does not run yet; a
        # signal wait's timeout means the execution waits for a signal
        return WAITING if event.purpose == "event" else None
    return _STATUS_AFTER.get(type(event), RUNNING)


_STATUS_AFTER: dict[type[Event], Status] = {
    ExecutionStarted: PENDING,
    StepCompleted: RUNNING,
    StepFailed: RUNNING,
    RetryScheduled: SLEEPING,
    SignalAwaited: WAITING,
    TimerSet: SLEEPING,
    TimerFired: PENDING,
    ExecutionCompleted: COMPLETED,
    ExecutionFailed: FAILED,
    ExecutionTimedOut: TIMED_OUT,
    ExecutionCancelled: CANCELLED,
    StepRetryRequested: PENDING,
    StepsInvalidated: PENDING,
    RunRestarted: PENDING,
    ExecutionPaused: PAUSED,
    ExecutionResumed: PENDING,
    ExecutionQuarantined: QUARANTINED,
    ExecutionReleased: PENDING,
}

# events that do not change the status (delivered from outside, while anything goes on)
_KEEPS_STATUS = (SignalReceived, CancelRequested, ChildCompleted, QueueAdmitted, UpdateReplied)


HELD: dict[str, type[Event]] = {PAUSED: ExecutionResumed, QUARANTINED: ExecutionReleased}
"""Statuses an execution keeps through everything but its end and the event that lifts
them (the append script applies the same rule)."""


def kept_through(event: Event) -> tuple[str, ...]:
    """The held statuses an execution keeps through ``event``: every one of :data:`HELD`
    but the one ``event`` lifts; none through its end. The fold and the append script
    (given it in :class:`~zart_es.core.Effects`) apply this one rule."""
    status = status_after(event)
    if status is None or status in TERMINAL_STATES:
        return ()
    return _KEPT.get(type(event), _HELD_STATUSES)


_HELD_STATUSES = tuple(HELD)
_KEPT: dict[type[Event], tuple[str, ...]] = {
    lifter: tuple(h for h in HELD if h != lifted) for lifted, lifter in HELD.items()}


def apply(state: ExecutionState, event: Event) -> ExecutionState:
    """Fold one event into ``state`` (in place, and returned for chaining)."""
    state.version += 1
    status = status_after(event)
    if status is not None and state.status not in kept_through(event):
        state.status = status
    fold_one = _APPLY.get(type(event))
    if fold_one is not None:
        fold_one(state, event)
    return state


def _started(state: ExecutionState, e: ExecutionStarted) -> None:
    state.execution_id, state.workflow, state.input = e.execution_id, e.workflow, e.input
    state.started_ms, state.parent_id = e.at_ms, e.parent_id
    state.queue_key, state.priority = e.queue_key, e.priority
    state.traceparent, state.task_queue = e.traceparent, e.task_queue
    state.debounce_ms, state.debounce_key = e.debounce_ms, e.debounce_key


def _step_completed(state: ExecutionState, e: StepCompleted) -> None:
    _ordered(state, e.step)
    state.steps[e.step] = e.result
    state.attempts.pop(e.step, None)


def _step_failed(state: ExecutionState, e: StepFailed) -> None:
    _ordered(state, e.step)
    state.failed_steps[e.step] = Failure(e.error_type, e.message, e.attempt)
    state.attempts.pop(e.step, None)


def _retry_scheduled(state: ExecutionState, e: RetryScheduled) -> None:
    _ordered(state, e.step)
    state.first_attempts.setdefault(e.step, e.at_ms - max(e.duration_us, 0) // 1000)
    state.attempts[e.step] = e.attempt
    state.last_errors[e.step] = Failure(e.error_type, e.message, e.attempt - 1)
    state.timers[e.timer] = Timer(e.at_ms + e.delay_ms)


def _timer_set(state: ExecutionState, e: TimerSet) -> None:
    if e.purpose == "sleep":
        _ordered(state, e.timer)
    state.timers[e.timer] = Timer(e.due_ms or e.at_ms + e.delay_ms)


def _timer_fired(state: ExecutionState, e: TimerFired) -> None:
    timer = state.timers.get(e.timer)
    if timer is not None:
        timer.fired = True
        timer.fired_seq = e.seq
        timer.fired_ms = e.at_ms


def _signal_received(state: ExecutionState, e: SignalReceived) -> None:
    state.received.setdefault(e.name, []).append(Received(e.seq, e.payload))


def _signal_consumed(state: ExecutionState, e: SignalConsumed) -> None:
    _ordered(state, e.wait)
    state.consumed[e.wait] = e.index
    if e.index >= 0:
        state.taken.setdefault(e.name, {})[e.index] = e.wait


def _cancel_requested(state: ExecutionState, e: CancelRequested) -> None:
    if state.cancel_requested is None:
        state.cancel_requested = e.reason
        state.cancel_seq = e.seq


def _child_started(state: ExecutionState, e: ChildStarted) -> None:
    _ordered(state, e.call)
    state.children[e.call] = Child(e.child_id, e.cancel or "cascade")


def _child_completed(state: ExecutionState, e: ChildCompleted) -> None:
    state.child_results.setdefault(e.child_id, e)


def _completed(state: ExecutionState, e: ExecutionCompleted) -> None:
    state.result = e.result


def end_failure(event: Event) -> Failure | None:
    """How an execution ended by ``event`` failed (failed, timed out, cancelled): the one
    reading of a terminal event's error the fold, the client and the archive share; None
    for any other event."""
    if isinstance(event, ExecutionFailed):
        return Failure(event.error_type, event.message)
    if isinstance(event, ExecutionTimedOut):
        return Failure("ExecutionTimedOut", f"timed out after {event.timeout_ms}ms")
    if isinstance(event, ExecutionCancelled):
        return Failure("Cancelled", event.reason or "cancelled")
    return None


def _ended_failing(state: ExecutionState, e: Event) -> None:
    state.error = end_failure(e)


def _reopened(state: ExecutionState, e: Event) -> None:
    # an operator reopened the ended execution: its end and any old cancel request go
    state.opened_seq, state.opened_ms = e.seq, e.at_ms
    state.result = None
    state.error = None
    state.cancel_requested = None
    state.cancel_seq = -1
    state.admitted = None  # its queue slot was given back when it ended
    state.paused_by = None  # a pause rule still in force holds the new run afresh
    # timers that never fired died with the end (the reopening append takes them off the
    # wheel); a call that needs one again records a new one. The deadline is armed anew,
    # counted from the reopening.
    dead = {*state.pending_timers(), *(n for n in state.timers if n.startswith(TIMEOUT_PREFIX))}
    for name in dead:
        del state.timers[name]


def _step_retry_requested(state: ExecutionState, e: StepRetryRequested) -> None:
    _reopened(state, e)
    _forget_calls(state, {e.step, *e.forgotten})


def _steps_invalidated(state: ExecutionState, e: StepsInvalidated) -> None:
    _reopened(state, e)
    _forget_calls(state, set(e.forgotten))
    # kept in the recorded order, but a replay may make new calls before meeting them
    # (the re-run ones): see ReplayTracker
    state.stale |= {name for name in e.preserved if name in state.steps}


def _forget_calls(state: ExecutionState, forgotten: set[str]) -> None:
    for name in forgotten:
        _forget_step(state, name)
        state.timers.pop(name, None)  # a sleep
        state.timers.pop(wait_timer(name), None)  # a signal wait's timeout
        if state.consumed.pop(name, None) is not None:
            for by_index in state.taken.values():
                for index in [i for i, wait in by_index.items() if wait == name]:
                    del by_index[index]
        child = state.children.pop(name, None)
        if child is not None:
            state.child_results.pop(child.child_id, None)
            state.retired_children.add(child.child_id)
    state.order = [name for name in state.order if name not in forgotten]
    state.ordered -= forgotten


def _run_restarted(state: ExecutionState, e: RunRestarted) -> None:
    retired = state.retired_children | {c.child_id for c in state.children.values()}
    # the signals delivered to the execution stay (none is taken yet in the new run): its
    # sender may never send them again, and their idempotency keys refuse a re-send; the
    # answers to updates stay too: an update is answered once, whichever run took it
    fresh = ExecutionState(
        execution_id=state.execution_id, workflow=state.workflow, input=e.input or state.input,
        version=state.version, started_ms=e.at_ms, status=state.status,
        parent_id=state.parent_id, restarts=e.run, retired_children=retired,
        received=state.received, replies=state.replies,
        opened_seq=e.seq, opened_ms=e.at_ms,
        queue_key=state.queue_key, priority=state.priority,
    )
    for field in ExecutionState.__struct_fields__:
        setattr(state, field, getattr(fresh, field))


def _forget_step(state: ExecutionState, name: str) -> None:
    state.steps.pop(name, None)
    state.stale.discard(name)
    state.first_attempts.pop(name, None)
    state.failed_steps.pop(name, None)
    state.attempts.pop(name, None)
    state.last_errors.pop(name, None)
    for timer in [t for t in state.timers
                  if t.startswith(RETRY_PREFIX) and retry_step_of(t) == name]:
        del state.timers[timer]


def _debounce_ended(state: ExecutionState, e: DebounceEnded) -> None:
    state.input = e.input
    state.debounced = True


def _update_replied(state: ExecutionState, e: UpdateReplied) -> None:
    state.replies.setdefault(e.update_id, e)


def _paused(state: ExecutionState, e: ExecutionPaused) -> None:
    state.paused_by = e.rule
    state.admitted = None  # a held execution gives its queue slot back (see runner._hold)


def _resumed(state: ExecutionState, _e: ExecutionResumed) -> None:
    state.paused_by = None


def _admitted(state: ExecutionState, e: QueueAdmitted) -> None:
    state.admitted = e.queue


_E = TypeVar("_E", bound=Event)
_R = TypeVar("_R")


def _on(
    kind: type[_E], handler: Callable[[ExecutionState, _E], _R]
) -> tuple[type[Event], Callable[[ExecutionState, Any], _R]]:
    """One row of a dispatch table. Typed so that mypy checks each handler against the
    event type it is registered for (a handler reading a field its event does not have,
    or registered under the wrong type, fails the type check); the table itself stays an
    O(1) lookup on the hot path of every step."""
    return kind, handler


_APPLY: dict[type[Event], Callable[[ExecutionState, Any], None]] = dict([
    _on(ExecutionStarted, _started),
    _on(StepCompleted, _step_completed),
    _on(StepFailed, _step_failed),
    _on(RetryScheduled, _retry_scheduled),
    _on(TimerSet, _timer_set),
    _on(TimerFired, _timer_fired),
    _on(SignalReceived, _signal_received),
    _on(SignalConsumed, _signal_consumed),
    _on(SignalAwaited, lambda state, e: _ordered(state, e.wait)),
    _on(PatchMarked, lambda state, e: _ordered(state, patch_call(e.patch))),
    _on(CancelRequested, _cancel_requested),
    _on(ChildStarted, _child_started),
    _on(ChildCompleted, _child_completed),
    _on(ExecutionCompleted, _completed),
    _on(ExecutionFailed, _ended_failing),
    _on(ExecutionTimedOut, _ended_failing),
    _on(ExecutionCancelled, _ended_failing),
    _on(StepRetryRequested, _step_retry_requested),
    _on(StepsInvalidated, _steps_invalidated),
    _on(RunRestarted, _run_restarted),
    _on(ExecutionPaused, _paused),
    _on(ExecutionResumed, _resumed),
    _on(QueueAdmitted, _admitted),
    _on(ExecutionQuarantined, lambda state, e: setattr(state, "quarantine", e)),
    _on(ExecutionReleased, lambda state, _e: setattr(state, "quarantine", None)),
    _on(UpdateReplied, _update_replied),
    _on(DebounceEnded, _debounce_ended),
])


def _ordered(state: ExecutionState, name: str) -> None:
    # the first record of a durable call fixes its position; a step's retries and final
    # result add nothing
    if name not in state.ordered:
        state.ordered.add(name)
        state.order.append(name)


def fold(events: Iterable[Event], state: ExecutionState | None = None) -> ExecutionState:
    """Fold ``events`` into ``state`` (a new one when omitted)."""
    current = state if state is not None else ExecutionState()
    for event in events:
        apply(current, event)
    return current


def already_recorded(state: ExecutionState, event: Event) -> bool:
    """Whether ``state`` already holds what ``event`` would record.

    A writer that lost an append race re-reads the log and asks this: if another worker
    recorded the same step, timer or end meanwhile, its record stands and ours is dropped
    (exactly one result per step name).
    """
    recorded = _RECORDED.get(type(event))
    return recorded is not None and recorded(state, event)


def _timer_fired_already(state: ExecutionState, e: TimerFired) -> bool:
    timer = state.timers.get(e.timer)
    return timer is not None and timer.fired


def _ended(state: ExecutionState, _e: Event) -> bool:
    return state.terminal


def _step_recorded(state: ExecutionState, step: str) -> bool:
    return step in state.steps or step in state.failed_steps


_RECORDED: dict[type[Event], Callable[[ExecutionState, Any], bool]] = dict([
    _on(StepCompleted, lambda s, e: _step_recorded(s, e.step)),
    _on(StepFailed, lambda s, e: _step_recorded(s, e.step)),
    _on(RetryScheduled, lambda s, e: e.timer in s.timers or _step_recorded(s, e.step)),
    _on(TimerSet, lambda s, e: e.timer in s.timers),
    _on(TimerFired, _timer_fired_already),
    # a wait is resolved once; a signal is taken by one wait (concurrent waits for the
    # same name decide under the journal's lock: the loser looks again)
    _on(SignalConsumed, lambda s, e: e.wait in s.consumed or e.index in s.taken.get(e.name, {})),
    _on(ChildStarted, lambda s, e: e.call in s.children),
    _on(SignalAwaited, lambda s, e: e.wait in s.ordered),
    _on(PatchMarked, lambda s, e: patch_call(e.patch) in s.ordered),
    _on(ExecutionCompleted, _ended),
    _on(ExecutionFailed, _ended),
    _on(ExecutionTimedOut, _ended),
    _on(ExecutionCancelled, _ended),
    _on(ExecutionPaused, lambda s, _e: s.paused_by is not None),
    _on(ExecutionResumed, lambda s, _e: s.paused_by is None),
    _on(QueueAdmitted, lambda s, _e: s.admitted is not None),
    _on(UpdateReplied, lambda s, e: e.update_id in s.replies),
    _on(DebounceEnded, lambda s, _e: s.debounced),
])
