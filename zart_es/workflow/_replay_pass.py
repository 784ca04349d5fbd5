"""One replay of a workflow over its journal: the part of running an execution that needs
no Redis, shared by the engine's runner and :mod:`zart_es.testing`'s harness.

A replay runs the workflow function from the top with a fresh :class:`Context`; recorded
calls return from the log, the first new one runs. It ends in one of three ways: the
workflow returned or raised (:attr:`Replayed.ending` is the event that ends the
execution, not yet recorded), engine control flow stopped it (:attr:`Replayed.stopped`:
a durable wait, a cancel, a pause, a drain), or it swallowed the engine's ``Suspend`` and
still waits (both None). Recording the ending, holding a pause and handing work back are
the caller's: they differ between a worker and a test.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from zart_es.core import (
    FAILED,
    TIMED_OUT,
    Cancelled,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionStarted,
    ExecutionState,
    Failure,
    FailureInfo,
    Interrupted,
    Paused,
    PayloadError,
    Payloads,
    Suspend,
    TaskError,
    TimerSet,
    derived_id,
    timeout_timer,
    unknown_updates,
)
from zart_es.workflow._context import Context
from zart_es.workflow._journal import Journal
from zart_es.workflow._registry import RecoverFn, Workflow


@dataclass(frozen=True, slots=True)
class Replayed:
    """How one replay ended: an ending to record, or what stopped it, or neither."""

    ending: ExecutionCompleted | ExecutionFailed | None = None
    stopped: Suspend | Interrupted | Cancelled | Paused | None = None


async def replay(journal: Journal, workflow: Workflow, data: Any, payloads: Payloads
                 ) -> Replayed:
    """Run ``workflow`` once from the top over ``journal`` (see the module docstring).

    First, updates delivered under a name the workflow does not declare are answered
    with their rejection (recorded: the caller learns it, a retry gets the same)."""
    for rejection in unknown_updates(journal.state, workflow.updates):
        await journal.record(rejection)
    ctx = Context(journal, payloads=payloads, updates=workflow.updates)
    try:
        result = await workflow.fn(ctx, data)
    except (Suspend, Interrupted, Cancelled, Paused) as stopped:
        return Replayed(stopped=stopped)
    except (Exception, SystemExit) as exc:  # the workflow's own failure ends it (a
        # sys.exit() in workflow code too: it must not take the worker down)
        # unless it swallowed Suspend and raised something else while unwinding
        if ctx.suspended:
            return Replayed()
        if workflow.recover is None:
            return Replayed(ending=failure(exc))
        return await _recover(ctx, workflow, data, payloads, ending=failure(exc),
                              recover=workflow.recover)
    if ctx.suspended:  # the workflow swallowed Suspend (except BaseException): still waiting
        return Replayed()
    return Replayed(ending=completion(workflow, result, payloads))


async def _recover(ctx: Context, workflow: Workflow, data: Any, payloads: Payloads, *,
                   ending: ExecutionFailed, recover: RecoverFn) -> Replayed:
    """Run the inline failure handler (``failure_mode="inline"``) in the same run, after
    the workflow raised: its value completes the execution, its error fails it. Its
    durable calls are recorded in the same log, so a replay reaches them again the same
    way (the workflow raises again where it did, from its recorded failure)."""
    info = FailureInfo(execution_id=ctx.execution_id, workflow=workflow.name,
                       status=str(FAILED), error_type=ending.error_type,
                       message=ending.message)
    try:
        result = await recover(ctx, data, info)
    except (Suspend, Interrupted, Cancelled, Paused) as stopped:
        return Replayed(stopped=stopped)
    except (Exception, SystemExit) as exc:
        return Replayed() if ctx.suspended else Replayed(ending=failure(exc))
    if ctx.suspended:
        return Replayed()
    return Replayed(ending=completion(workflow, result, payloads))


def workflow_input(workflow: Workflow, state: ExecutionState, payloads: Payloads) -> Any:
    """The execution's input decoded to the workflow's declared type (PayloadError if not)."""
    return payloads.decode(state.input, workflow.input_type,
                           f"input of workflow {workflow.name!r}")


def completion(workflow: Workflow, result: Any, payloads: Payloads
               ) -> ExecutionCompleted | ExecutionFailed:
    """The event that records a returned ``result``: a failure if it cannot be stored."""
    try:
        encoded = payloads.encode(result, f"result of workflow {workflow.name!r}")
    except PayloadError as exc:
        return failure(exc)
    return ExecutionCompleted(result=encoded)


def failure(exc: BaseException) -> ExecutionFailed:
    """The event that records ``exc`` as the execution's failure."""
    if isinstance(exc, TaskError):
        return ExecutionFailed(error_type="TaskError", message=exc.message)
    return ExecutionFailed(error_type=type(exc).__name__, message=str(exc))


def failure_handler_start(workflow: Workflow, state: ExecutionState,
                          payloads: Payloads) -> ExecutionStarted | None:
    """The ``ExecutionStarted`` of ``workflow``'s failure handler for this ended run, or
    None (no handler, or the run did not fail or time out). Its id is derived from the
    execution's and from the run (``<id>.on-failure``, ``<id>.on-failure-<n>`` after a
    repair), so creating it on every replay of the ended execution starts it once."""
    if workflow.on_failure is None or state.status not in (FAILED, TIMED_OUT):
        return None
    error = state.error or Failure("", "")
    info = FailureInfo(execution_id=state.execution_id, workflow=workflow.name,
                       status=str(state.status), error_type=error.error_type,
                       message=error.message)
    suffix = ".on-failure" + (f"-{state.opened_seq}" if state.opened_seq else "")
    return ExecutionStarted(
        execution_id=derived_id(state.execution_id, suffix), workflow=workflow.on_failure,
        input=payloads.encode(info, f"input of {workflow.on_failure!r}"),
        traceparent=state.traceparent)


async def deadline_passed(journal: Journal, timeout_ms: int,
                          now_ms: Callable[[], Awaitable[int]]) -> bool:
    """On the first run (of the execution or of a repair), put the deadline on the wheel
    (due = start + timeout) before anything else, pause rules and queues included: the
    timer poller ends the execution ``timed_out`` when it fires, whatever it is doing or
    waiting for. True if it was due already (a backlog kept every worker from the
    execution that long): the caller ends it now, before running anything.

    ``now_ms`` is the deployment's clock (Redis' in a worker), read only when needed."""
    state = journal.state
    name = timeout_timer(timeout_ms)
    if name in state.timers:
        return False
    due = (state.opened_ms or state.started_ms) + timeout_ms
    if due <= await now_ms():
        return True
    await journal.record(TimerSet(timer=name, due_ms=due, purpose="timeout"))
    return False
