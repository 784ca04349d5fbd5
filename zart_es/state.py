"""``state = fold(events)``: what an execution's log says, as a pure function.

No I/O and no clock. A worker keeps the folded state of recent executions and applies
only the events appended since (``apply``), so the cost of a step does not grow with the
length of the history. Folding a prefix and then the rest equals folding the whole log.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from .events import (
    Event,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionStarted,
    ExecutionTimedOut,
    RetryScheduled,
    StepCompleted,
    StepFailed,
    TimerFired,
    TimerSet,
)

PENDING = "pending"
RUNNING = "running"
SLEEPING = "sleeping"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
TIMED_OUT = "timed_out"

STATES = (PENDING, RUNNING, SLEEPING, COMPLETED, FAILED, CANCELLED, TIMED_OUT)
TERMINAL_STATES = frozenset({COMPLETED, FAILED, CANCELLED, TIMED_OUT})


class Timer(msgspec.Struct):
    """A durable timer of the execution: when it is due and whether it fired."""

    due_ms: int
    fired: bool = False


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
    timers: dict[str, Timer] = msgspec.field(default_factory=dict)
    status: str = PENDING
    result: bytes | None = None
    error: Failure | None = None

    @property
    def terminal(self) -> bool:
        """True once a terminal event was folded: nothing may be appended after it."""
        return self.status in TERMINAL_STATES


def status_after(event: Event) -> str:
    """The status an execution has right after ``event`` (stored in its meta hash)."""
    if isinstance(event, TimerSet) and event.purpose == "timeout":
        return RUNNING  # the deadline is armed when a worker first picks the execution up
    return _STATUS_AFTER.get(type(event), RUNNING)


_STATUS_AFTER: dict[type[Event], str] = {
    ExecutionStarted: PENDING,
    StepCompleted: RUNNING,
    StepFailed: RUNNING,
    RetryScheduled: SLEEPING,
    TimerSet: SLEEPING,
    TimerFired: PENDING,
    ExecutionCompleted: COMPLETED,
    ExecutionFailed: FAILED,
    ExecutionTimedOut: TIMED_OUT,
}


def apply(state: ExecutionState, event: Event) -> ExecutionState:
    """Fold one event into ``state`` (in place, and returned for chaining)."""
    state.version += 1
    state.status = status_after(event)
    match event:
        case ExecutionStarted():
            state.execution_id = event.execution_id
            state.workflow = event.workflow
            state.input = event.input
            state.started_ms = event.at_ms
        case StepCompleted():
            state.steps[event.step] = event.result
            state.attempts.pop(event.step, None)
        case StepFailed():
            state.failed_steps[event.step] = Failure(event.error_type, event.message, event.attempt)
            state.attempts.pop(event.step, None)
        case RetryScheduled():
            state.attempts[event.step] = event.attempt
            state.last_errors[event.step] = Failure(
                event.error_type, event.message, event.attempt - 1
            )
            state.timers[event.timer] = Timer(event.at_ms + event.delay_ms)
        case TimerSet():
            due = event.due_ms or event.at_ms + event.delay_ms
            state.timers[event.timer] = Timer(due)
        case TimerFired():
            timer = state.timers.get(event.timer)
            if timer is not None:
                timer.fired = True
        case ExecutionCompleted():
            state.result = event.result
        case ExecutionFailed():
            state.error = Failure(event.error_type, event.message)
        case ExecutionTimedOut():
            state.error = Failure("ExecutionTimedOut", f"timed out after {event.timeout_ms}ms")
        case _:
            pass
    return state


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
    match event:
        case StepCompleted() | StepFailed():
            return event.step in state.steps or event.step in state.failed_steps
        case RetryScheduled() | TimerSet():
            return event.timer in state.timers
        case TimerFired():
            timer = state.timers.get(event.timer)
            return timer is not None and timer.fired
        case ExecutionCompleted() | ExecutionFailed() | ExecutionTimedOut():
            return state.terminal
        case _:
            return False
