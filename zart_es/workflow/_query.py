"""Answer a query: replay the workflow read-only over its folded log, call the handler.

The replay is the one a worker makes, over a journal that refuses every write
(:class:`~zart_es.workflow.HistoryJournal`): recorded calls return what the log says,
the first call the log does not have stops it. The handlers the code registered up to
there (``ctx.on_query``) see the workflow's variables as they stand at that point.
"""

from __future__ import annotations

import inspect
from typing import Any

from zart_es.core import (
    Cancelled,
    ExecutionState,
    Interrupted,
    LeaseLost,
    NondeterminismError,
    Paused,
    PayloadError,
    Payloads,
    QueryAnswer,
    StoreRefused,
    Suspend,
)
from zart_es.workflow._context import Context
from zart_es.workflow._registry import Workflow
from zart_es.workflow._replay_check import HistoryJournal
from zart_es.workflow._replay_pass import workflow_input

_STOPS = (Suspend, Interrupted, Cancelled, Paused, LeaseLost, StoreRefused)


async def answer_query(state: ExecutionState, workflow: Workflow, payloads: Payloads,
                       name: str, args: bytes) -> QueryAnswer:
    """What query ``name`` with ``args`` (a payload-encoded list) answers at the point
    the execution ``state`` has reached. Writes nothing and runs no step."""
    ctx = Context(HistoryJournal(state=state), payloads=payloads,
                  updates=workflow.updates)
    try:
        await workflow.fn(ctx, workflow_input(workflow, state, payloads))
    except _STOPS:
        pass  # the point the log has reached
    except (NondeterminismError, PayloadError) as exc:
        return _failed(exc)  # the code cannot replay this log: no honest answer
    except (Exception, SystemExit):
        pass  # the workflow's own failure, as its log recorded it
    handler = ctx.query_handlers.get(name)
    if handler is None:
        return QueryAnswer(outcome="unknown", registered=sorted(ctx.query_handlers))
    try:
        value = _call(handler, _arguments(payloads, args, name))
        return QueryAnswer(value=payloads.encode(value, f"answer of query {name!r}"))
    except Exception as exc:
        return _failed(exc)


def _call(handler: Any, args: list[Any]) -> Any:
    value = handler(*args)
    if inspect.isawaitable(value):
        close = getattr(value, "close", None)
        if callable(close):
            close()  # a coroutine never awaited: no "never awaited" warning
        raise TypeError("a query handler must return a value, not an awaitable")
    return value


def _arguments(payloads: Payloads, args: bytes, name: str) -> list[Any]:
    decoded = payloads.decode(args, list[Any], f"arguments of query {name!r}")
    return list(decoded)


def _failed(exc: BaseException) -> QueryAnswer:
    return QueryAnswer(outcome="failed", error_type=type(exc).__name__, message=str(exc))

