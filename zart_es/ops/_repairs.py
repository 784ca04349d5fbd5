"""Repairing ended executions: retry a failed step, re-run from chosen steps, restart.

Each operation is one event appended to the execution's own log, so its history says who
repaired what and when, and a fold of the log replays the repair like any other event:

* ``StepRetryRequested``: a failed execution forgets the failure of one step; the next
  run replays every recorded result and runs that step again.
* ``StepsInvalidated``: the chosen calls and everything recorded after the first of them
  are forgotten and run again (results before them are kept).
* ``RunRestarted``: a new run from scratch with the original input; the old run's events
  stay in the log above the marker.

Each is refused (:class:`RepairRefused`, nothing written) while the execution has not
ended, and names an unknown step (:class:`UnknownStep`). The plans are pure functions of
the folded state; the append is version-checked, so a concurrent change makes the
operation look again instead of acting on a stale view.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from zart_es.core import (
    FAILED,
    Event,
    ExecutionCancelled,
    ExecutionNotFound,
    ExecutionState,
    Payloads,
    RepairRefused,
    RunRestarted,
    StepRetryRequested,
    StepsInvalidated,
    UnknownStep,
    VersionConflict,
    effects_of,
    end_notices,
    fold,
)
from zart_es.ops._audit_log import audit
from zart_es.store import Store

E = TypeVar("E", bound=Event)


def plan_retry(state: ExecutionState, step: str | None) -> tuple[str, list[str]]:
    """The failed step to retry (the most recent failed one when ``step`` is None) and
    the calls recorded after it, which are forgotten with its failure (whatever the
    workflow did because the step failed: compensation steps, say)."""
    chosen = _failed_step(state, step)
    return chosen, state.order[state.order.index(chosen) + 1:]


def _failed_step(state: ExecutionState, step: str | None) -> str:
    _check_ended(state)
    if state.status != FAILED:
        raise RepairRefused(state.execution_id,
                            f"it ended {state.status}, not failed; use rerun or restart")
    failed = [name for name in state.order if name in state.failed_steps]
    if step is None:
        if not failed and state.error is not None and (
                state.error.error_type in STORE_ERROR_TYPES):
            raise RepairRefused(state.execution_id, "no step failed: a store error "
                                f"({state.error.error_type}) ended it; use reopen")
        if not failed:
            raise RepairRefused(state.execution_id, "no step failed (the workflow itself "
                                "raised); use rerun or restart")
        return failed[-1]
    if step in state.failed_steps:
        return step
    if step in state.ordered:
        raise RepairRefused(state.execution_id,
                            f"step {step!r} did not fail; use rerun to run it again")
    raise UnknownStep(state.execution_id, step, failed)


STORE_ERROR_TYPES = frozenset({
    "OutOfMemoryError", "ReadOnlyError", "BusyLoadingError", "ConnectionError",
    "TimeoutError", "ClusterDownError", "TryAgainError", "MasterDownError",
    "RedisClusterException", "StoreRefused"})
"""The error types an execution ended ``failed`` with before 0.4 when Redis refused a
write for it (the store's error reached the workflow): not the workflow's failure."""


def plan_reopen(state: ExecutionState) -> None:
    """Check that ``state`` ended failed by a store error and by nothing the workflow or
    a step did (RepairRefused otherwise)."""
    _check_ended(state)
    error = state.error
    if state.status != FAILED or error is None or error.error_type not in STORE_ERROR_TYPES:
        raise RepairRefused(state.execution_id, "it did not end failed by a store error "
                            f"({', '.join(sorted(STORE_ERROR_TYPES))}); use retry-step, "
                            "rerun or restart")


def plan_rerun(state: ExecutionState, steps: list[str],
               preserve: list[str] | None = None) -> list[str]:
    """The calls forgotten by a re-run from ``steps``: the first of them in recorded order
    and every call recorded after it, but the steps in ``preserve`` (recorded after it,
    kept: RepairRefused for one that is not such a step)."""
    _check_ended(state)
    if not steps:
        raise RepairRefused(state.execution_id, "name at least one step to re-run")
    for step in steps:
        if step not in state.ordered:
            raise UnknownStep(state.execution_id, step, state.order)
    first = min(state.order.index(step) for step in steps)
    later = state.order[first:]
    for kept in preserve or ():
        if kept in steps or kept not in later[1:] or kept not in state.steps:
            raise RepairRefused(state.execution_id, f"only a completed step recorded after "
                                f"the re-run point can be preserved, not {kept!r}")
    return [name for name in later if name not in (preserve or ())]


def plan_restart(state: ExecutionState) -> int:
    """The number of the new run."""
    _check_ended(state)
    return state.restarts + 1


def _check_ended(state: ExecutionState) -> None:
    if not state.terminal:
        raise RepairRefused(state.execution_id, f"it is {state.status}; only an ended "
                            "execution can be repaired (cancel it first)")


async def retry_step(
    store: Store, execution_id: str, step: str | None = None, *, by: str = "", reason: str = ""
) -> str:
    """Reopen a failed execution at its failed ``step``; returns the step."""

    def event(state: ExecutionState) -> StepRetryRequested:
        chosen, after = plan_retry(state, step)
        return StepRetryRequested(step=chosen, by=by, reason=reason, forgotten=after)

    chosen = (await _append_planned(store, execution_id, event)).step
    await audit(store, "retry-step", by=by, reason=reason, execution_id=execution_id,
                step=chosen)
    return chosen


async def rerun(
    store: Store, execution_id: str, steps: list[str], *, by: str = "", reason: str = "",
    preserve: list[str] | None = None,
) -> list[str]:
    """Reopen an ended execution from ``steps`` (keeping the later steps in ``preserve``);
    returns every call forgotten."""

    def event(state: ExecutionState) -> StepsInvalidated:
        return StepsInvalidated(steps=list(steps), forgotten=plan_rerun(state, steps, preserve),
                                by=by, reason=reason, preserved=list(preserve or ()))

    forgotten = (await _append_planned(store, execution_id, event)).forgotten
    await audit(store, "rerun", by=by, reason=reason, execution_id=execution_id,
                steps=",".join(steps))
    return forgotten


async def reopen(store: Store, execution_id: str, *, by: str = "", reason: str = "") -> None:
    """Reopen an execution that ended failed because Redis refused a write for it (before
    0.4, a store error reached the workflow code and ended it): nothing is forgotten, the
    next run replays every recorded result and goes on at the append that was refused."""

    def event(state: ExecutionState) -> StepsInvalidated:
        plan_reopen(state)
        return StepsInvalidated(steps=[], forgotten=[], by=by,
                                reason=reason or "reopened after a store error")

    await _append_planned(store, execution_id, event)
    await audit(store, "reopen", by=by, reason=reason, execution_id=execution_id)


async def restart(store: Store, execution_id: str, *, by: str = "", reason: str = "",
                  data: bytes = b"") -> int:
    """Start an ended execution over with its original input (or the encoded ``data``);
    returns the new run number."""

    def event(state: ExecutionState) -> RunRestarted:
        return RunRestarted(run=plan_restart(state), by=by, reason=reason, input=data)

    run = (await _append_planned(store, execution_id, event)).run
    await audit(store, "restart", by=by, reason=reason, execution_id=execution_id,
                run=str(run))
    return run


async def terminate(store: Store, execution_id: str, payloads: Payloads, *, by: str = "",
                    reason: str = "") -> bool:
    """End a running execution now, ``cancelled``, without running its compensation (a
    start that reuses its id with ``if_running="terminate"``); False if it had ended.
    The run in flight finds it ended at its next append and stops. Its end reaches its
    parent and its children (by their cancel policies) here, before anything reopens it."""

    def event(state: ExecutionState) -> ExecutionCancelled:
        if state.terminal:
            raise RepairRefused(execution_id, "it has ended")
        return ExecutionCancelled(reason=f"terminated: {reason}" if reason else "terminated")

    try:
        await _append_planned(store, execution_id, event)
    except RepairRefused:
        return False
    ended = fold(e for _, e in await store.read(execution_id))
    await store.deliver(end_notices(ended, payloads))
    await audit(store, "terminate", by=by, reason=reason, execution_id=execution_id)
    return True


async def _append_planned(
    store: Store, execution_id: str, plan: Callable[[ExecutionState], E]
) -> E:
    """Append the event ``plan`` builds from the folded log (which raises if the repair
    makes no sense); on a lost race, read and plan again. Returns the event appended."""
    while True:
        entries = await store.read(execution_id)
        if not entries:
            raise ExecutionNotFound(execution_id)
        state = fold(event for _, event in entries)
        repair = plan(state)
        try:
            # timers that never fired died with the end: off the wheel for good, so none
            # fires into the new run
            await store.append(execution_id, state.version, repair,
                               effects_of(repair, state))
        except VersionConflict:
            continue  # appended to meanwhile: plan again on the new state
        return repair
