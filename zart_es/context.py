"""``Context``: the durable API a workflow calls (steps, loops, retries, sleep).

Every method is deterministic over the execution's log: the first time through it does
the work and records an event; on every replay it returns what the log says without doing
the work again. A workflow therefore runs from the top on every resume, and the parts
already recorded cost a dictionary lookup each.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar, overload

import structlog

from .backoff import RetryPolicy
from .codec import DEFAULT_MAX_PAYLOAD_BYTES, decode_value, encode_value
from .durations import Duration, format_ms, to_ms
from .errors import (
    DuplicateStepName,
    Interrupted,
    InvalidStepName,
    StepFailedError,
    Suspend,
)
from .events import RetryScheduled, StepCompleted, StepFailed, TimerSet
from .journal import Journal, NewTimer
from .state import ExecutionState

T = TypeVar("T")
ItemT = TypeVar("ItemT")
MAX_STEP_NAME = 200

log = structlog.get_logger("zart_es.step")

StepFn = Callable[[], T | Awaitable[T]]


class Context:
    """Handed to every ``@durable`` function as its first argument.

    The context of one run of one execution; not shared between executions or threads.
    """

    def __init__(
        self, journal: Journal, *, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    ) -> None:
        self._journal = journal
        self._max_payload = max_payload_bytes
        self._seen: set[str] = set()
        self._sleeps = 0
        self._suspended = False

    @property
    def execution_id(self) -> str:
        """Id of the running execution."""
        return self._state.execution_id

    @property
    def workflow(self) -> str:
        """Name of the running workflow."""
        return self._state.workflow

    @property
    def suspended(self) -> bool:
        """True once this run stopped to wait for a durable timer."""
        return self._suspended

    @property
    def _state(self) -> ExecutionState:
        return self._journal.state

    @overload
    async def step(self, name: str, fn: Callable[[], Awaitable[T]], *, type: Any = None) -> T: ...
    @overload
    async def step(self, name: str, fn: Callable[[], T], *, type: Any = None) -> T: ...
    async def step(self, name: str, fn: StepFn[Any], *, type: Any = None) -> Any:
        """Run ``fn`` once and record its result under ``name``; replays return the record.

        ``fn`` takes no arguments and may be sync or async. The value returned is always
        the recorded one, decoded to ``type`` (or ``fn``'s return annotation): the first
        run and every replay see equal values. If ``fn`` raises, the failure is recorded
        and :class:`StepFailedError` is raised, now and on every replay. A crash while
        ``fn`` runs means it runs again (at least once); once recorded, never again.
        """
        return await self._step(name, fn, type, None)

    @overload
    async def step_with_retry(
        self, name: str, fn: Callable[[], Awaitable[T]], *, retries: int = 10,
        backoff: str = "exponential", delay: Duration = "5s", max_delay: Duration = "5m",
        type: Any = None,
    ) -> T: ...
    @overload
    async def step_with_retry(
        self, name: str, fn: Callable[[], T], *, retries: int = 10,
        backoff: str = "exponential", delay: Duration = "5s", max_delay: Duration = "5m",
        type: Any = None,
    ) -> T: ...
    async def step_with_retry(
        self,
        name: str,
        fn: StepFn[Any],
        *,
        retries: int = 10,
        backoff: str = "exponential",
        delay: Duration = "5s",
        max_delay: Duration = "5m",
        type: Any = None,
    ) -> Any:
        """Like :meth:`step`, but a failure schedules a retry on a durable timer.

        Attempt n+1 waits ``delay`` (fixed), ``n * delay`` (linear) or ``2**(n-1) * delay``
        (exponential), capped at ``max_delay``. Each failure appends ``RetryScheduled``: a
        restart neither resets the attempt count nor shortens the wait. After ``retries``
        retries the step fails with :class:`StepFailedError` carrying the last exception's
        type and message.
        """
        policy = RetryPolicy.build(retries, backoff, delay, max_delay)
        return await self._step(name, fn, type, policy)

    @overload
    async def durable_loop(
        self, prefix: str, items: Iterable[ItemT], fn: Callable[[int, ItemT], Awaitable[T]], *,
        type: Any = None,
    ) -> list[T]: ...
    @overload
    async def durable_loop(
        self, prefix: str, items: Iterable[ItemT], fn: Callable[[int, ItemT], T], *,
        type: Any = None,
    ) -> list[T]: ...
    async def durable_loop(
        self,
        prefix: str,
        items: Iterable[Any],
        fn: Callable[[int, Any], Any],
        *,
        type: Any = None,
    ) -> list[Any]:
        """Run ``fn(i, item)`` as step ``f"{prefix}-{i}"`` for each item, in order.

        After a crash the loop skips the items already recorded and resumes at the first
        one that is not.
        """
        type_ = type if type is not None else return_type(fn)
        return [
            await self._step(f"{prefix}-{i}", functools.partial(fn, i, item), type_, None)
            for i, item in enumerate(items)
        ]

    async def sleep(self, duration: Duration) -> None:
        """Wait ``duration`` on a durable timer (``timedelta``, seconds, or ``"5m"``).

        The timer lives in Redis: it keeps running while no worker is up, never fires
        early, and after a restart fires at the original due time. Sleeps are numbered
        in the order the workflow reaches them (``sleep-0``, ``sleep-1``, ...).
        """
        self._check_running()
        delay_ms = to_ms(duration)
        name = f"sleep-{self._sleeps}"
        self._sleeps += 1
        timer = self._state.timers.get(name)
        if timer is None:
            if delay_ms == 0:
                return
            await self._journal.record(
                TimerSet(timer=name, delay_ms=delay_ms), timer=NewTimer(name, delay_ms)
            )
            log.info("sleeping", execution_id=self.execution_id, timer=name,
                     delay=format_ms(delay_ms))
            timer = self._state.timers[name]
        if not timer.fired:
            self._suspend()

    # -- internals ---------------------------------------------------------------------

    def _check_running(self) -> None:
        if self._suspended:
            # a `finally:` or `except BaseException:` of the workflow called us after it
            # was suspended: do nothing durable, keep unwinding
            raise Suspend

    def _suspend(self) -> typing.NoReturn:
        self._suspended = True
        raise Suspend

    def _claim(self, name: str) -> None:
        self._check_running()
        if not isinstance(name, str) or not name:
            raise InvalidStepName(name, "must be a non-empty string")
        if len(name) > MAX_STEP_NAME:
            raise InvalidStepName(name, f"longer than {MAX_STEP_NAME} characters")
        if not name.isprintable():
            raise InvalidStepName(name, "has control characters")
        if name in self._seen:
            raise DuplicateStepName(self.execution_id, name)
        self._seen.add(name)

    async def _step(
        self, name: str, fn: StepFn[Any], type_: Any, policy: RetryPolicy | None
    ) -> Any:
        self._claim(name)
        if type_ is None:
            type_ = return_type(fn)
        state = self._state
        recorded = state.steps.get(name)
        if recorded is not None:
            return self._decode(name, recorded, type_)
        failure = state.failed_steps.get(name)
        if failure is not None:
            raise StepFailedError(name, failure.error_type, failure.message, failure.attempt)

        attempt = state.attempts.get(name, 1)
        if attempt > 1 and not state.timers[retry_timer(name, attempt)].fired:
            self._suspend()
        if self._journal.interrupted():
            raise Interrupted  # the worker drains: new work goes to another worker
        try:
            value = await _call(fn)
        except Exception as exc:
            await self._record_failure(name, attempt, exc, policy)
            # only reached when another worker recorded a success of this step meanwhile
            return self._decode(name, self._state.steps[name], type_)
        encoded = encode_value(value, f"result of step {name!r}", self._max_payload)
        await self._journal.record(StepCompleted(step=name, result=encoded, attempt=attempt))
        # the record may be another worker's (it won the race): return what the log says
        return self._decode(name, self._state.steps[name], type_)

    async def _record_failure(
        self,
        name: str,
        attempt: int,
        exc: Exception,
        policy: RetryPolicy | None,
    ) -> None:
        """Record a failed attempt, then suspend (retry) or raise StepFailedError.

        Returns only if the log shows the step completed by another worker meanwhile.
        """
        error_type, message = type(exc).__name__, str(exc)
        bound = log.bind(execution_id=self.execution_id, step=name, attempt=attempt)
        if policy is not None and attempt <= policy.retries:
            delay_ms = policy.delay_before(attempt + 1)
            timer = retry_timer(name, attempt + 1)
            bound.warning("step failed, retry scheduled", error=f"{error_type}: {message}",
                          delay=format_ms(delay_ms))
            await self._journal.record(
                RetryScheduled(step=name, attempt=attempt + 1, error_type=error_type,
                               message=message, timer=timer, delay_ms=delay_ms),
                timer=NewTimer(timer, delay_ms),
            )
            if name in self._state.steps:
                return
            self._suspend()
        bound.warning("step failed", error=f"{error_type}: {message}")
        await self._journal.record(
            StepFailed(step=name, error_type=error_type, message=message, attempt=attempt)
        )
        failure = self._state.failed_steps.get(name)
        if failure is None:  # another worker recorded a success meanwhile
            return
        raise StepFailedError(name, failure.error_type, failure.message, failure.attempt)

    def _decode(self, name: str, data: bytes, type_: Any) -> Any:
        return decode_value(data, type_, f"recorded result of step {name!r}")


def retry_timer(step: str, attempt: int) -> str:
    """Name of the timer that releases ``attempt`` of ``step``."""
    return f"retry:{attempt}:{step}"


async def _call(fn: Callable[[], Any]) -> Any:
    value = fn()
    if inspect.isawaitable(value):
        value = await value
    return value


_return_types: dict[Any, Any] = {}


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
