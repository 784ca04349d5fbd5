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
    ExecutionStarted,
    check_execution_id,
    check_priority,
    check_queue_key,
    check_task_queue,
    check_workflow_name,
    to_ms,
)
from zart_es.ops._audit_log import audit
from zart_es.ops._tracing import traceparent
from zart_es.store import Deployment


class Started(msgspec.Struct, frozen=True):
    """What a submit did: the id, and whether this call created the execution."""

    execution_id: str
    created: bool


async def submit_execution(
    deployment: Deployment, name: str, data: Any = None, execution_id: str | None = None, *,
    queue_key: str = "", priority: int | None = None, task_queue: str | None = None,
    debounce: Duration | None = None, debounce_key: str = "",
) -> Started:
    """Record ``ExecutionStarted`` for workflow ``name`` with its work message, unless the
    id exists already (then a different workflow under that id is a ConfigError).

    The work goes to ``task_queue``, by default the one the workflow's code declares (as
    its workers recorded it; the default task queue if none has started yet).

    With ``debounce`` (a window: ``"5s"``), starts of ``name`` with the same
    ``debounce_key`` become one execution: the first opens the window (under a new id)
    and each start moves its end on; once no start came
    for the window's length it runs, with the last start's input. Every start of the
    window returns its id (``created`` only for the one that opened it)."""
    check_workflow_name(name)
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
    if task_queue is not None:
        check_task_queue(task_queue)
    execution_id = check_execution_id(execution_id or uuid.uuid4().hex)
    check_queue_key(queue_key)
    if priority is not None:
        check_priority(priority)
    payload = deployment.payloads.encode(data, f"input of workflow {name!r}")
    await deployment.ready()
    if task_queue not in (None, DEFAULT_TASK_QUEUE):
        await deployment.routes.note(task_queue)  # listed before any worker serves it
    if task_queue is None:  # the route its workers recorded ("" unknown: decided later)
        task_queue = await deployment.routes.declared(name) or ""
        if task_queue == DEFAULT_TASK_QUEUE:
            task_queue = ""
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
        existing = (await deployment.store.meta(execution_id)).get(b"w", b"").decode()
        if existing != name:
            raise ConfigError(
                f"execution id {execution_id!r} is already used by workflow {existing!r}"
            )
    return Started(execution_id=execution_id, created=created)


async def cancel_execution(
    deployment: Deployment, execution_id: str, reason: str | None = None, *, by: str = ""
) -> bool:
    """Record one ``CancelRequested`` (with a work message) and its entry in the operator
    trail; False if the execution ended."""
    await deployment.ready()
    try:
        appended = await deployment.store.append(
            check_execution_id(execution_id), -1,
            CancelRequested(reason=reason or "", by=by), enqueue=True, token="cancel",
        )
    except ExecutionEnded:
        return False
    if appended is not None:
        await audit(deployment.store, "cancel", by=by, reason=reason or "",
                    execution_id=execution_id)
    return True
