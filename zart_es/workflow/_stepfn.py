"""Step functions: calling them (sync or async) and finding their declared return type."""

from __future__ import annotations

import asyncio
import functools
import inspect
import typing
from collections.abc import Callable
from typing import Any

_return_types: dict[Any, Any] = {}


async def call_step_fn(fn: Callable[[], Any]) -> Any:
    """Call ``fn()`` and await its result if it is awaitable."""
    value = fn()
    if inspect.isawaitable(value):
        value = await value
    return value


def step_failure(exc: BaseException) -> bool:
    """Whether what a step function raised is the step's own failure, to be recorded (and
    retried by its policy), rather than engine control flow or the worker stopping.

    Every ``Exception`` is. So is ``SystemExit``: a ``sys.exit()`` in a step must not take
    down the worker, and with it every worker that picks the execution up next. So is a
    ``CancelledError`` the step's code raised itself (a cancelled future it awaited): only
    a cancel of the running task (``Task.cancelling()``: the worker stopping or losing its
    lease) stops the step unrecorded. ``KeyboardInterrupt`` and the engine's own
    ``BaseException`` signals (suspend, cancel, pause) pass through.
    """
    if isinstance(exc, Exception | SystemExit):
        return True
    if isinstance(exc, asyncio.CancelledError):
        task = asyncio.current_task()
        return task is None or task.cancelling() == 0
    return False


def return_type(fn: Callable[..., Any]) -> Any:
    """The declared return type of ``fn`` (unwrapping partials), or None."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    annotations = getattr(fn, "__annotations__", None)
    if not annotations or "return" not in annotations:
        return None
    code = getattr(fn, "__code__", fn)
    try:
        return _return_types[code]
    except (KeyError, TypeError):
        pass
    try:
        hint = typing.get_type_hints(fn).get("return")
    except Exception:
        hint = None
    if hint is type(None):
        hint = None
    if len(_return_types) < 4096:
        _return_types[code] = hint
    return hint
