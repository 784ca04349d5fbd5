"""A readable picture of one execution, folded from its log (for the API and the CLI)."""

from __future__ import annotations

from typing import Any

import msgspec

from zart_es.core import DEFAULT_TASK_QUEUE, TERMINAL_STATES, ExecutionState, Status


class ExecutionStatus(msgspec.Struct, frozen=True):
    """Where an execution stands: its :class:`Status`; ``result`` is set when completed,
    ``error`` ("Type: message") when failed, timed out or cancelled."""

    execution_id: str
    workflow: str
    status: Status
    version: int
    created_ms: int
    updated_ms: int
    result: Any = None
    error: str | None = None
    task_queue: str = DEFAULT_TASK_QUEUE
    """The task queue whose workers run it."""

    @property
    def done(self) -> bool:
        """True once the execution has ended, whichever way."""
        return self.status in TERMINAL_STATES

    @property
    def state(self) -> Status:
        """The old name of :attr:`status` (kept for code written against 0.3)."""
        return self.status


class PendingTimer(msgspec.Struct, frozen=True):
    """A timer set and not fired yet."""

    name: str
    due_ms: int


class ExecutionDetail(msgspec.Struct, frozen=True):
    """Status plus steps done, the current step and pending timers."""

    execution_id: str
    workflow: str
    status: Status
    version: int
    created_ms: int
    updated_ms: int
    steps_done: list[str]
    current_step: str | None
    timers_pending: list[PendingTimer]
    result: Any = None
    error: str | None = None
    cancel_requested: bool = False
    done: bool = False
    """True once the execution has ended, whichever way."""
    task_queue: str = DEFAULT_TASK_QUEUE
    """The task queue whose workers run it."""
    task_queue_workers: int | None = None
    """Live workers serving that task queue (not read once it has ended): 0 means its work
    waits until one starts."""
    stale_steps: list[str] = msgspec.field(default_factory=list)
    """Results a re-run kept (``preserve``) although recorded after its re-run point:
    potentially stale (as Zart's force_rerun marks them)."""

    @property
    def state(self) -> Status:
        """The old name of :attr:`status` (kept for code written against 0.3)."""
        return self.status


def describe(status: ExecutionStatus, state: ExecutionState,
             task_queue_workers: int | None = None) -> ExecutionDetail:
    """Combine a status with the fold of the execution's log."""
    done = [name for name in state.order if name in state.steps]
    done += sorted(state.stale - set(done))
    current = next((name for name in reversed(state.order) if name not in state.steps
                    and name not in state.failed_steps), None)
    return ExecutionDetail(
        execution_id=status.execution_id,
        workflow=status.workflow,
        status=status.status,
        version=status.version,
        created_ms=status.created_ms,
        updated_ms=status.updated_ms,
        steps_done=done,
        current_step=None if status.done else current,
        stale_steps=sorted(state.stale),
        timers_pending=[PendingTimer(name, t.due_ms) for name, t in state.timers.items()
                        if not t.fired and not status.done],
        result=status.result,
        error=status.error,
        cancel_requested=state.cancel_requested is not None,
        done=status.done,
        task_queue=status.task_queue,
        task_queue_workers=None if status.done else task_queue_workers,
    )


def event_record(event: Any) -> dict[str, Any]:
    """An event as a JSON-able dict: its type, envelope and fields; msgpack payloads are
    decoded to plain values (or hex when they are not msgpack)."""
    out: dict[str, Any] = {"type": type(event).__name__}
    for field in event.__struct_fields__:
        value = getattr(event, field)
        if isinstance(value, bytes):
            try:
                value = msgspec.msgpack.decode(value)
            except msgspec.DecodeError:
                value = value.hex()
        out[field] = value
    return out
