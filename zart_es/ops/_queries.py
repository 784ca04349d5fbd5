"""Asking a running (or ended) execution a query: route it, wait for the answer.

The request goes to the execution's task queue, where any worker serving it answers
from a read-only replay (see :mod:`zart_es.engine`); nothing is written to the log.
"""

from __future__ import annotations

import math
import time
from typing import Any

import msgspec

from zart_es.core import (
    DEFAULT_TASK_QUEUE,
    MAX_QUERY_SECONDS,
    ConfigError,
    ExecutionNotFound,
    QueryFailed,
    QueryRequest,
    QueryTimeout,
    answer_value,
    check_execution_id,
    check_workflow_name,
    decode_answer,
)
from zart_es.store import M_TASK_QUEUE, Deployment


async def ask_query(deployment: Deployment, execution_id: str, name: str,
                    args: tuple[Any, ...] = (), *, timeout: float = 5.0) -> bytes:
    """The encoded value query ``name`` answers with ``args`` at the execution's
    current point. :class:`ExecutionNotFound`, :class:`UnknownQuery` (naming the
    registered ones), :class:`QueryFailed` (the handler raised) or :class:`QueryTimeout`
    (no worker of its task queue answered in time)."""
    check_execution_id(execution_id)
    check_workflow_name(name, what="query name")
    if not (isinstance(timeout, int | float) and math.isfinite(timeout)
            and 0 < timeout <= MAX_QUERY_SECONDS):
        raise ConfigError(f"a query timeout must be in (0, {MAX_QUERY_SECONDS:g}] seconds, "
                          f"got {timeout!r}")
    encoded = deployment.payloads.encode(list(args), f"arguments of query {name!r}")
    await deployment.ready()
    meta = await deployment.store.meta(execution_id)
    if not meta:
        raise ExecutionNotFound(execution_id)
    task_queue = (meta.get(M_TASK_QUEUE.encode(), b"").decode()
                  or await deployment.routes.declared(meta[b"w"].decode())
                  or DEFAULT_TASK_QUEUE)
    channel = deployment.queries
    reply = channel.reply_key(task_queue)
    await channel.ask(task_queue, QueryRequest(
        execution_id=execution_id, name=name, args=encoded, reply=reply,
        deadline_ms=round((time.time() + timeout) * 1000)))
    data = await channel.wait_answer(reply, timeout)
    if data is None:
        raise QueryTimeout(execution_id, name, timeout, task_queue)
    try:
        answer = decode_answer(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise QueryFailed(execution_id, name, "UnreadableAnswer", str(exc)) from None
    return answer_value(answer, execution_id, name)
