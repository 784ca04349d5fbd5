"""Sending an update into a running execution and reading its answer back from the log.

The update is appended as a signal under a reserved name (see
:mod:`zart_es.core._updates`), idempotent on its ``update_id``; the answer is the log's
``UpdateReplied`` of that id, so a caller that retries with the same id (after a lost
reply, a timeout, a crash of either side) gets the same answer, recorded once.
"""

from __future__ import annotations

import math
import time
import uuid
from typing import Any

from zart_es.core import (
    REOPENING_EVENTS,
    TERMINAL_EVENTS,
    ConfigError,
    ExecutionEnded,
    SignalReceived,
    UnknownUpdate,
    UpdateDelivery,
    UpdateFailed,
    UpdateReplied,
    UpdateTimeout,
    check_execution_id,
    check_workflow_name,
    encode_delivery,
    update_signal,
)
from zart_es.ops._audit_log import audit
from zart_es.store import Deployment

MAX_UPDATE_SECONDS = 3600.0


async def send_update(deployment: Deployment, execution_id: str, name: str,
                      payload: Any = None, *, update_id: str | None = None,
                      timeout: float = 30.0, by: str = "") -> bytes:
    """Deliver update ``name`` and wait for its answer; its encoded value.

    Raises ExecutionNotFound, ExecutionEnded (ended before the update was delivered),
    :class:`UnknownUpdate`, :class:`UpdateFailed` (the workflow failed it, or ended
    without answering) or :class:`UpdateTimeout` (delivered, not answered yet)."""
    check_execution_id(execution_id)
    check_workflow_name(name, what="update name")
    update_id = update_id or uuid.uuid4().hex
    check_workflow_name(update_id, what="update id")
    if not (isinstance(timeout, int | float) and math.isfinite(timeout)
            and 0 < timeout <= MAX_UPDATE_SECONDS):
        raise ConfigError(f"an update timeout must be in (0, {MAX_UPDATE_SECONDS:g}] "
                          f"seconds, got {timeout!r}")
    data = deployment.payloads.encode(payload, f"payload of update {name!r}")
    delivery = SignalReceived(name=update_signal(name), by=by,
                              payload=encode_delivery(UpdateDelivery(update_id, data)))
    await deployment.ready()
    store = deployment.store
    try:
        appended = await store.append(execution_id, -1, delivery,
                                      token=f"update:{update_id}")
    except ExecutionEnded:
        # a retry after the end may find its answer in the log; a first call gets this
        found = await _recorded_answer(deployment, execution_id, update_id, timeout)
        if found is None:
            raise
        return found
    if appended is not None and by:
        await audit(store, "update", by=by, execution_id=execution_id, name=name,
                    update_id=update_id)
    # delivered now: its answer comes after it; delivered before (a retry): look from the top
    after = b"0-0" if appended is None else appended.entry_id
    answer = await _answer_after(deployment, execution_id, update_id, after, timeout)
    if answer is None:
        raise UpdateTimeout(execution_id, name, update_id, timeout)
    if isinstance(answer, UpdateReplied):
        return _answer(execution_id, answer)
    raise UpdateFailed(execution_id, name, update_id, "ExecutionEnded",
                       "the execution ended without answering the update")


async def _recorded_answer(deployment: Deployment, execution_id: str, update_id: str,
                           timeout: float) -> bytes | None:
    answer = await _answer_after(deployment, execution_id, update_id, b"0-0", timeout)
    return _answer(execution_id, answer) if isinstance(answer, UpdateReplied) else None


async def _answer_after(deployment: Deployment, execution_id: str, update_id: str,
                        after: bytes, timeout: float) -> UpdateReplied | bool | None:
    """The log's answer to ``update_id`` after entry ``after``; True if the log ends
    (terminal, nothing after it) without one; None once ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    ended = False
    while True:
        block_ms = round(max(deadline - time.monotonic(), 0.001) * 1000)
        entries = await deployment.store.follow(execution_id, after,
                                                1 if ended else block_ms)
        for entry_id, event in entries:
            after = entry_id
            if isinstance(event, UpdateReplied) and event.update_id == update_id:
                return event
            if isinstance(event, TERMINAL_EVENTS):
                ended = True
            elif isinstance(event, REOPENING_EVENTS):
                ended = False  # a repair reopened it: the new run may answer
        if ended and not entries:
            return True
        if not entries and time.monotonic() >= deadline:
            return None


def _answer(execution_id: str, reply: UpdateReplied) -> bytes:
    if reply.error_type == "UnknownUpdate":
        raise UnknownUpdate(execution_id, reply.name, reply.message)
    if reply.error_type:
        raise UpdateFailed(execution_id, reply.name, reply.update_id, reply.error_type,
                           reply.message)
    return reply.result
