"""Starting and cancelling executions: the writes a client and the scheduler both make.

Both are idempotent: a start is keyed on the execution id (the append script creates the
log only if it does not exist), a cancel on the ``cancel`` token of the execution's meta
hash. So a scheduler that crashed half-way, or a client that retries after a lost reply,
records each once.
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from zart_es.core import (
    DEFAULT_TASK_QUEUE,
    CancelRequested,
    ConfigError,
    Duration,
    ExecutionEnded,
    ExecutionExists,
    ExecutionStarted,
    RepairRefused,
    check_execution_id,
    check_priority,
    check_queue_key,
    check_task_queue,
    check_workflow_name,
    to_ms,
)
from zart_es.ops._audit_log import audit
from zart_es.ops._repairs import restart, terminate
from zart_es.ops._tracing import traceparent
from zart_es.store import Deployment

IF_ENDED = ("return", "reject", "reset")
"""What a start of an id whose execution has ended does: nothing (return the id),
refuse (:class:`ExecutionExists`), or run it again from scratch with the new input."""
IF_RUNNING = ("return", "fail", "terminate")
"""What a start of an id whose execution still runs does: nothing (return the id),
refuse, or end it (``cancelled``, no compensation) and run it again with the new input."""


class Started(msgspec.Struct, frozen=True):
    """What a submit did: the id, and whether this call created the execution (or, by
    its reuse policy, a new run of it)."""

    execution_id: str
    created: bool


async def submit_execution(
    deployment: Deployment, name: str, data: Any = None, execution_id: str | None = None, *,
    queue_key: str = "", priority: int | None = None, task_queue: str | None = None,
    debounce: Duration | None = None, debounce_key: str = "",
    if_ended: str = "return", if_running: str = "return",
) -> Started:
    """Record ``ExecutionStarted`` for workflow ``name`` with its work message, unless the
    id exists already (then a different workflow under that id is a ConfigError).

    The work goes to ``task_queue``, by default the one the workflow's code declares (as
    its workers recorded it; the default task queue if none has started yet).

    With ``debounce`` (a window: ``"5s"``), starts of ``name`` with the same
    ``debounce_key`` become one execution: the first opens the window (under a new id)
    and each start moves its end on; once no start came for the window's length it runs,
    with the last start's input. Every start of the window returns its id (``created``
    only for the one that opened it); a start after the window closed opens a new one. A
    steady stream of starts closer together than the window keeps it open.

    An id in use by an execution of the same workflow is reused by ``if_ended`` (it has
    ended: ``"return"`` it, ``"reject"`` the start, or ``"reset"`` it: a new run with
    this input, as Zart does) and ``if_running`` (``"return"``, ``"fail"``, or
    ``"terminate"`` it and run it again), as Temporal's WorkflowIdReusePolicy."""
    check_workflow_name(name)
    _check_reuse(if_ended, if_running)
    window_ms = _debounce_window(debounce, debounce_key, execution_id)
    if task_queue is not None:
        check_task_queue(task_queue)
    execution_id = check_execution_id(execution_id or uuid.uuid4().hex)
    check_queue_key(queue_key)
    if priority is not None:
        check_priority(priority)
    payload = deployment.payloads.encode(data, f"input of workflow {name!r}")
    await deployment.ready()
    task_queue = await _route(deployment, name, task_queue)
    opened = True
    if window_ms is not None:
        execution_id, opened = await deployment.store.debounces.start(
            name, debounce_key, execution_id, payload, window_ms)
    event = ExecutionStarted(execution_id=execution_id, workflow=name, input=payload,
                             traceparent=traceparent(execution_id, name),
                             task_queue=task_queue,
                             queue_key=queue_key, priority=priority,
                             debounce_ms=window_ms or 0, debounce_key=debounce_key)
    # a start that joined a window creates its execution too (a no-op when it exists):
    # the one that opened the window may have died before it did
    created = await deployment.store.create(event, execution_id, name) and opened
    if not created:
        meta = await deployment.store.meta(execution_id)
        existing = meta.get(b"w", b"").decode()
        if existing != name:
            raise ConfigError(
                f"execution id {execution_id!r} is already used by workflow {existing!r}"
            )
        if window_ms is None:
            created = await _reuse(deployment, execution_id, meta, payload,
                                   if_ended=if_ended, if_running=if_running)
    return Started(execution_id=execution_id, created=created)


async def _route(deployment: Deployment, name: str, task_queue: str | None) -> str:
    """The task queue a new execution's work goes to ("": decided once a worker knows)."""
    if task_queue is not None:  # the starter's choice
        if task_queue != DEFAULT_TASK_QUEUE:
            await deployment.routes.note(task_queue)  # listed before any worker serves it
        return task_queue
    declared = await deployment.routes.declared(name) or ""  # "" unknown: decided later
    return "" if declared == DEFAULT_TASK_QUEUE else declared


def _check_reuse(if_ended: str, if_running: str) -> None:
    if if_ended not in IF_ENDED:
        raise ConfigError(f"if_ended must be one of {', '.join(IF_ENDED)}, got {if_ended!r}")
    if if_running not in IF_RUNNING:
        raise ConfigError(f"if_running must be one of {', '.join(IF_RUNNING)}, "
                          f"got {if_running!r}")


def _debounce_window(debounce: Duration | None, debounce_key: str,
                     execution_id: str | None) -> int | None:
    """The debounce window in ms (None: no debounce), its settings checked."""
    window_ms = None if debounce is None else to_ms(debounce)
    if window_ms is not None and window_ms <= 0:
        raise ConfigError(f"a debounce window must be longer than 0, got {debounce!r}")
    if debounce_key and window_ms is None:
        raise ConfigError("debounce_key= needs debounce= (the window)")
    if debounce_key:
        check_workflow_name(debounce_key, what="debounce key")
    if window_ms is not None and execution_id is not None:
        raise ConfigError("a debounced start takes the id of its window: give no "
                          "execution_id with debounce=")
    return window_ms


async def _reuse(deployment: Deployment, execution_id: str, meta: dict[bytes, bytes],
                 payload: bytes, *, if_ended: str, if_running: str) -> bool:
    """Apply the reuse policy to an id in use; whether a new run was started."""
    status = meta.get(b"st", b"").decode()
    ended = b"end" in meta
    policy = if_ended if ended else if_running
    if policy == "return":
        return False
    if policy in ("reject", "fail"):
        raise ExecutionExists(execution_id, status,
                              f"if_ended={policy!r}" if ended else f"if_running={policy!r}")
    store = deployment.store
    if not ended and not await terminate(store, execution_id, deployment.payloads,
                                         by="start", reason="its id was started again"):
        # it ended meanwhile: what a start of an ended id does applies
        meta = await store.meta(execution_id)
        return await _reuse(deployment, execution_id, meta, payload, if_ended=if_ended,
                            if_running="return")
    try:
        await restart(store, execution_id, by="start", data=payload,
                      reason=f"started again ({'if_ended' if ended else 'if_running'}="
                             f"{policy!r})")
    except RepairRefused:
        return False  # a concurrent start reset it first: that run is this start's too
    return True


async def cancel_execution(
    deployment: Deployment, execution_id: str, reason: str | None = None, *, by: str = ""
) -> bool:
    """Record one ``CancelRequested`` (with a work message) and its entry in the operator
    trail; False if the execution ended."""
    await deployment.ready()
    try:
        appended = await deployment.store.append(
            check_execution_id(execution_id), -1,
            CancelRequested(reason=reason or "", by=by), token="cancel",
        )
    except ExecutionEnded:
        return False
    if appended is not None:
        await audit(deployment.store, "cancel", by=by, reason=reason or "",
                    execution_id=execution_id)
    return True
