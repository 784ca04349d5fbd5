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
    ExecutionEnded,
    ExecutionStarted,
    check_execution_id,
    check_priority,
    check_queue_key,
    check_task_queue,
    check_workflow_name,
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
) -> Started:
    """Record ``ExecutionStarted`` for workflow ``name`` with its work message, unless the
    id exists already (then a different workflow under that id is a ConfigError).

    The work goes to ``task_queue``, by default the one the workflow's code declares (as
    its workers recorded it; the default task queue if none has started yet)."""
    check_workflow_name(name)
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
    event = ExecutionStarted(execution_id=execution_id, workflow=name, input=payload,
                             traceparent=traceparent(execution_id, name),
                             task_queue=task_queue,
                             queue_key=queue_key, priority=priority)
    created = await deployment.store.create(event, execution_id, name)
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
