"""``Context``: the durable API a workflow calls.

Every method is deterministic over the execution's log: the first time through it does
the work and records an event; on every replay it returns what the log says without doing
the work again. A workflow therefore runs from the top on every resume, and the parts
already recorded cost a dictionary lookup each.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import time
import uuid as uuid_module
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TypeVar, overload

import structlog

from zart_es.core import (
    CASCADE,
    COMPLETED,
    DEFAULT_MAX_PAYLOAD_BYTES,
    Cancelled,
    ChildFailedError,
    ChildStarted,
    ConfigError,
    DuplicateStepName,
    Duration,
    ExecutionState,
    Interrupted,
    InvalidStepName,
    LeaseLost,
    NonRetryableError,
    PatchMarked,
    Paused,
    Payloads,
    RetryPolicy,
    RetryScheduled,
    SignalAwaited,
    SignalConsumed,
    SignalTimeout,
    StepCompleted,
    StepFailed,
    StepFailedError,
    StepTimedOut,
    StoreRefused,
    Suspend,
    TimerSet,
    UpdateReplied,
    check_cancel_policy,
    check_execution_id,
    check_workflow_name,
    decode_delivery,
    derived_id,
    format_ms,
    named_sleep_timer,
    patch_call,
    retry_timer,
    sleep_timer,
    to_ms,
    update_signal,
    wait_timer,
)
from zart_es.workflow._journal import Journal
from zart_es.workflow._replay import ReplayTracker
from zart_es.workflow._stepfn import call_step_fn, return_type, step_failure

T = TypeVar("T")
ItemT = TypeVar("ItemT")
MAX_STEP_NAME = 200

log = structlog.get_logger("zart_es.step")

StepFn = Callable[[], T | Awaitable[T]]
_CONTROL = (Suspend, Interrupted, LeaseLost, Cancelled, Paused, StoreRefused)


class Context:
    """Handed to every ``@durable`` function as its first argument.

    The context of one run of one execution; not shared between executions or threads.
    """

    def __init__(
        self, journal: Journal, *, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        payloads: Payloads | None = None, updates: frozenset[str] | None = None,
    ) -> None:
        self._journal = journal
        self._updates = updates
        """The update names the workflow declares (None: not checked, a bare Context)."""
        self._payloads = payloads or Payloads(max_payload_bytes)
        self._seen: set[str] = set()
        self._counters: dict[str, int] = {}
        self._suspended = False
        self._root_halt = [False]
        self._replay = ReplayTracker()
        self._patches: dict[str, bool] = {}
        self._queries: dict[str, Callable[..., Any]] = {}

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
        """True once this run stopped to wait for a durable timer or event."""
        return self._suspended

    @property
    def _state(self) -> ExecutionState:
        return self._journal.state

    # -- steps ------------------------------------------------------------------------

    @overload
    async def step(self, name: str, fn: Callable[..., Awaitable[T]], *args: Any,
                   type: Any = None, timeout: Duration | None = None, **kwargs: Any) -> T: ...
    @overload
    async def step(self, name: str, fn: Callable[..., T], *args: Any, type: Any = None,
                   timeout: Duration | None = None, **kwargs: Any) -> T: ...
    async def step(self, name: str, fn: Callable[..., Any], *args: Any, type: Any = None,
                   timeout: Duration | None = None, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` once and record its result under ``name``; replays
        return the record.

        ``fn`` may be sync or async; ``args`` and ``kwargs`` are passed to it (so a loop
        needs no ``lambda item=item:``; ``type`` and ``timeout`` are the step's own). The
        value returned is always the recorded one, decoded to ``type`` (or ``fn``'s return
        annotation): the first run and every replay see equal values. If ``fn`` raises,
        the failure is recorded and :class:`StepFailedError` is raised, now and on every
        replay. A crash while ``fn`` runs means it runs again (at least once); once
        recorded, never again.

        With ``timeout``, an attempt that runs longer fails with :class:`StepTimedOut`
        (recorded like any failure). It interrupts an async ``fn`` at its next ``await``; a
        sync ``fn`` cannot be interrupted (give it ``lambda: asyncio.to_thread(f)``: the
        thread runs on, but the step is recorded as timed out).
        """
        return await self._step(name, _bound(fn, args, kwargs), type, None,
                                _timeout_ms(timeout))

    @overload
    async def step_with_retry(
        self, name: str, fn: Callable[..., Awaitable[T]], *args: Any, retries: int = 10,
        backoff: str = "exponential", delay: Duration = "5s", max_delay: Duration = "5m",
        jitter: bool = True, type: Any = None, timeout: Duration | None = None,
        retry_on: tuple[type[BaseException], ...] | None = None,
        no_retry: tuple[type[BaseException], ...] = (),
        total_timeout: Duration | None = None, **kwargs: Any,
    ) -> T: ...
    @overload
    async def step_with_retry(
        self, name: str, fn: Callable[..., T], *args: Any, retries: int = 10,
        backoff: str = "exponential", delay: Duration = "5s", max_delay: Duration = "5m",
        jitter: bool = True, type: Any = None, timeout: Duration | None = None,
        retry_on: tuple[type[BaseException], ...] | None = None,
        no_retry: tuple[type[BaseException], ...] = (),
        total_timeout: Duration | None = None, **kwargs: Any,
    ) -> T: ...
    async def step_with_retry(
        self,
        name: str,
        fn: Callable[..., Any],
        *args: Any,
        retries: int = 10,
        backoff: str = "exponential",
        delay: Duration = "5s",
        max_delay: Duration = "5m",
        jitter: bool = True,
        type: Any = None,
        timeout: Duration | None = None,
        retry_on: tuple[type[BaseException], ...] | None = None,
        no_retry: tuple[type[BaseException], ...] = (),
        total_timeout: Duration | None = None,
        **kwargs: Any,
    ) -> Any:
        """Like :meth:`step` (``args`` and ``kwargs`` go to ``fn``), but a failure schedules
        a retry on a durable timer.

        Attempt n+1 waits ``delay`` (fixed), ``n * delay`` (linear) or ``2**(n-1) * delay``
        (exponential), capped at ``max_delay``. With ``jitter`` (the default) an
        exponential delay d is shortened to a value in [d/2, d] derived from the execution
        id, the step and the attempt, so executions that fail together spread out.
        Each failure appends ``RetryScheduled``: a restart neither resets the attempt
        count nor shortens the wait. After ``retries`` retries the step fails with
        :class:`StepFailedError` carrying the last exception's type and message.

        ``timeout`` bounds each attempt (a :class:`StepTimedOut` is a failure like any
        other, retried). A failure is not retried when it is a :class:`NonRetryableError`,
        an instance of a type in ``no_retry``, or (with ``retry_on``) of no type in it: the
        step fails at once, recorded as usual.

        ``total_timeout`` is one deadline across all attempts and backoffs, counted from
        the first attempt's start on Redis' clock (Zart's default ``timeout_scope``): an
        attempt is cut short at it, and no retry is scheduled that would start after it;
        the step then fails with :class:`StepTimedOut`.
        """
        policy = RetryPolicy.build(retries, backoff, delay, max_delay, jitter,
                                   retry_on=retry_on, no_retry=no_retry,
                                   total_timeout=total_timeout)
        return await self._step(name, _bound(fn, args, kwargs), type, policy,
                                _timeout_ms(timeout))

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
            await self._step(f"{prefix}-{i}", functools.partial(fn, i, item), type_, None, None)
            for i, item in enumerate(items)
        ]

    async def gather(self, *calls: Awaitable[Any]) -> list[Any]:
        """Run durable calls (steps, child calls, ...) concurrently; results in order.

        Each call is recorded on its own, so after a crash only the missing ones run
        again. Every branch runs to its own end (result, failure or wait) before this
        returns or raises: the first control signal (wait, cancel) wins, else the first
        error.
        """
        self._check_running()
        # each branch numbers its sleeps, waits, children, now() and uuid() in a scope of
        # its own: which branch reaches a counter first changes between runs
        scope = f"{_scope.get()}g{self._next('gather')}-"
        loop = asyncio.get_running_loop()
        branches = [loop.create_task(_awaited(call), context=_scoped(f"{scope}{i}."))
                    for i, call in enumerate(calls)]
        self._replay.concurrent += 1
        try:
            outcomes = await asyncio.gather(*branches, return_exceptions=True)
        finally:
            self._replay.concurrent -= 1
        for outcome in outcomes:
            if isinstance(outcome, Suspend):
                raise self._suspend()  # this scope waits too, now that its branches ended
            if isinstance(outcome, _CONTROL):
                raise outcome
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return list(outcomes)

    # -- time and events ----------------------------------------------------------------

    async def sleep(self, duration: Duration, *, name: str | None = None) -> None:
        """Wait ``duration`` on a durable timer (``timedelta``, seconds, or ``"5m"``).

        The timer lives in Redis: it keeps running while no worker is up, never fires
        early, and after a restart fires at the original due time. Sleeps are numbered
        in the order the workflow reaches them (``sleep-0``, ``sleep-1``, ...) unless
        given a ``name`` (unique in the execution, like a step name): a named sleep keeps
        its identity when sleeps are added or removed before it in a new code version.
        """
        self._check_running()
        delay_ms = to_ms(duration)
        await self._sleep(self._sleep_name(name), delay_ms=delay_ms)

    async def sleep_until(self, when: datetime, *, name: str | None = None) -> None:
        """Wait on a durable timer until ``when`` (a timezone-aware ``datetime``).

        Due at that instant on Redis' clock. The timer is recorded even when ``when`` looks
        past to this worker: whether it is due is Redis' decision (a worker whose clock
        runs fast must not skip the wait, or a worker with a correct clock replaying the
        log would find a sleep where the log has none). One already due on Redis' clock
        fires at the poller's next look, at once.
        """
        self._check_running()
        if not isinstance(when, datetime) or when.utcoffset() is None:
            raise ConfigError(
                f"sleep_until needs a timezone-aware datetime, got {when!r} "
                "(use datetime(..., tzinfo=UTC))"
            )
        due_ms = max(1, int(when.timestamp() * 1000))
        name_ = self._sleep_name(name)
        if name_ not in self._state.timers and self._replay.replaying(self._state):
            # recorded by a version before 0.4, which skipped a sleep_until it judged past
            # by its own clock and recorded nothing: walk past it again, as that run did
            return
        await self._sleep(name_, due_ms=due_ms)

    def _sleep_name(self, name: str | None) -> str:
        if name is None:
            return _scope.get() + sleep_timer(self._next("sleep"))
        if not isinstance(name, str) or not name:
            raise InvalidStepName(name, "a sleep's name must be a non-empty string")
        self._claim(f"sleep:{name}")
        return _scope.get() + named_sleep_timer(name)

    async def _sleep(self, name: str, *, delay_ms: int = 0, due_ms: int = 0) -> None:
        timer = self._state.timers.get(name)
        if timer is None:
            if delay_ms == 0 and due_ms == 0:
                return
            self._new_call(name)
            await self._journal.record(TimerSet(timer=name, delay_ms=delay_ms, due_ms=due_ms))
            timer = self._state.timers[name]
            log.info("sleeping", execution_id=self.execution_id, timer=name,
                     due_ms=timer.due_ms)
        else:
            self._replay.visit(self._state, name)
        self._replay.deliver_cancel_at_wait(self._state,
                                            timer.fired_seq if timer.fired else None)
        if not timer.fired:
            raise self._suspend()

    async def wait_for_signal(
        self, name: str, *, timeout: Duration | None = None, type: Any = None
    ) -> Any:
        """Wait for the next signal ``name`` (``Client.send_signal``) not taken by an
        earlier wait; returns its payload decoded to ``type``.

        Signals sent before the wait are kept and taken in arrival order. With
        ``timeout``, a durable timer races the signal: :class:`SignalTimeout` is raised if
        it fires first (a restart does not reset it). The outcome is recorded, so
        replays resolve the wait the same way. ``wait_for_event`` is its first name.
        """
        self._check_running()
        check_workflow_name(name, what="signal name")
        payload = await self._take_signal(name, timeout)
        return self._payloads.decode(payload, type, f"payload of signal {name!r}")

    async def _take_signal(self, name: str, timeout: Duration | None) -> bytes:
        """The payload of the next signal ``name`` this wait takes (see
        :meth:`wait_for_signal`), suspending until one arrives."""
        key = f"event:{_scope.get()}{name}#{self._next('event:' + name)}"
        state = self._state
        index = state.consumed.get(key)
        if index is None:
            if key in state.ordered:  # awaited before (SignalAwaited): the same wait again
                self._replay.visit(state, key)
                self._replay.deliver_cancel(state)
            else:
                self._new_call(key)
            index = await self._resolve_wait(key, name, timeout)
        else:
            self._replay.visit(state, key)
        if index < 0:
            raise SignalTimeout(name, to_ms(timeout or 0))
        return state.received[name][index].payload

    wait_for_event = wait_for_signal
    """The first name of :meth:`wait_for_signal`."""

    async def _resolve_wait(self, key: str, name: str, timeout: Duration | None) -> int:
        state = self._state
        timer_name = wait_timer(key)
        while True:
            taken = state.taken.get(name, {})
            arrived = state.received.get(name, [])
            candidate = next((i for i in range(len(arrived)) if i not in taken), None)
            timer = state.timers.get(timer_name)
            if candidate is None or (timer is not None and timer.fired
                                     and arrived[candidate].seq > timer.fired_seq):
                break
            await self._journal.record(SignalConsumed(wait=key, name=name, index=candidate))
            if key in state.consumed:
                return state.consumed[key]
            # a concurrent wait (a gather branch) took that event first: take the next
        timer = state.timers.get(timer_name)
        if timer is not None and timer.fired:
            await self._journal.record(SignalConsumed(wait=key, name=name, index=-1))
            return state.consumed[key]
        if timeout is not None and timer is None:
            delay_ms = to_ms(timeout)
            await self._journal.record(
                TimerSet(timer=timer_name, delay_ms=delay_ms, purpose="event"),
            )
        elif timeout is None and key not in state.ordered:
            await self._journal.record(SignalAwaited(wait=key, name=name))  # status: waiting
        raise self._suspend()

    # -- updates ----------------------------------------------------------------------

    async def wait_for_update(
        self, name: str, *, timeout: Duration | None = None, type: Any = None
    ) -> Update:
        """Wait for the next update ``name`` (``Client.update``) not taken by an earlier
        wait; answer it with ``await update.reply(value)`` or ``await update.fail(error)``.

        ``name`` must be one the workflow declares (``@durable(..., updates=[name])``).
        Updates sent before the wait are kept and taken in arrival order; with
        ``timeout``, :class:`SignalTimeout` is raised if none arrives in time. Taking it
        and answering it are both recorded, so a replay takes the same update and does
        not answer it twice; the caller's answer survives a crash of the worker.
        """
        self._check_running()
        check_workflow_name(name, what="update name")
        if self._updates is not None and name not in self._updates:
            shown = ", ".join(repr(u) for u in sorted(self._updates)) or "none"
            raise ConfigError(f"workflow {self.workflow!r} waits for update {name!r} but "
                              f"declares only {shown}: add it to @durable(updates=[...])")
        delivery = decode_delivery(await self._take_signal(update_signal(name), timeout))
        payload = self._payloads.decode(delivery.payload, type, f"payload of update {name!r}")
        return Update(self, name, delivery.update_id, payload)

    async def _reply(self, update: Update, *, result: bytes = b"", error_type: str = "",
                     message: str = "") -> None:
        """Record the answer to ``update`` (once: a replay finds it recorded)."""
        self._check_running()
        if update.update_id in self._state.replies:
            return
        await self._journal.record(UpdateReplied(
            update_id=update.update_id, name=update.name, result=result,
            error_type=error_type, message=message))

    # -- queries ----------------------------------------------------------------------

    def on_query(self, name: str, handler: Callable[..., Any]) -> None:
        """Answer query ``name`` (``Client.query``) with ``handler(*args)`` from here on.

        The handler must be synchronous and read-only: it runs on a read-only replay of
        the log, at the point the execution has reached (waiting, sleeping or ended),
        and sees the workflow's variables as they are there. Nothing it does is
        recorded; it cannot run a step. Registering the name again replaces the handler.
        """
        check_workflow_name(name, what="query name")
        if not callable(handler) or asyncio.iscoroutinefunction(handler):
            raise ConfigError(f"the handler of query {name!r} must be a plain (not async) "
                              f"callable, got {handler!r}")
        self._queries[name] = handler

    @property
    def query_handlers(self) -> dict[str, Callable[..., Any]]:
        """The query handlers registered so far in this run, by name (a copy)."""
        return dict(self._queries)

    # -- versioning running code -------------------------------------------------------

    async def patched(self, patch: str) -> bool:
        """Whether this execution takes the new code path of change ``patch``.

        True in executions that reach this point under the new code (a ``PatchMarked``
        marker is recorded, so their replays say True too); False when replaying a log
        that passed this point without the marker, i.e. written by the old code, which
        keeps its old path. So a step can be inserted into a loop that is running::

            if await ctx.patched("audit-step"):
                await ctx.step(f"audit-{i}", audit)

        Call it outside ``ctx.gather`` (a gather does not track the order of calls). Once
        no execution from before the change runs any more, replace it with
        :meth:`deprecate_patch` and drop the old branch.
        """
        self._check_running()
        key = patch_call(_check_name(patch))
        decided = self._patches.get(key)
        if decided is not None:
            return decided
        state = self._state
        if key in state.ordered:
            self._replay.visit(state, key)
            decided = True
        elif self._replay.replaying(state):
            decided = False  # the old code passed here and recorded no marker
        else:
            self._new_call(key)
            await self._journal.record(PatchMarked(patch=patch))
            decided = True
        self._patches[key] = decided
        return decided

    def deprecate_patch(self, patch: str) -> None:
        """Mark where ``ctx.patched(patch)`` stood, once only its new path is left: logs
        that recorded the marker replay through it; new executions record nothing. Keep it
        while executions that recorded the marker may still run."""
        self._check_running()
        key = patch_call(_check_name(patch))
        if key in self._state.ordered and key not in self._patches:
            self._replay.visit(self._state, key)
            self._patches[key] = True

    async def now(self) -> datetime:
        """The current time (UTC), recorded on first use: replays see the same instant."""
        return await self.step(f"{_scope.get()}now-{self._next('now')}", lambda: datetime.now(UTC),
                               type=datetime)

    async def uuid(self) -> str:
        """A random UUID (hex), recorded on first use: replays see the same value."""
        return await self.step(f"{_scope.get()}uuid-{self._next('uuid')}",
                               lambda: uuid_module.uuid4().hex,
                               type=str)

    # -- child executions ---------------------------------------------------------------

    async def start_child(
        self, workflow: str, data: Any = None, *, execution_id: str | None = None,
        cancel: str = CASCADE,
    ) -> str:
        """Start a child execution (once, however often this is replayed); returns its id.

        The id is derived from the parent's id and the call's position unless given.
        The child may live in another partition; its end is reported to the parent
        (``ChildCompleted``) at least once and recorded once.

        ``cancel`` says what the parent's end (any end: cancelled, completed, failed,
        timed out) does to the child while it still runs: ``"cascade"`` (the default)
        cancels it, so its own ``except Cancelled`` / ``finally`` compensation runs;
        ``"abandon"`` lets it run on; ``"request"`` sends it the signal
        ``zart.parent-ended`` (payload :class:`~zart_es.core.ParentEnded`) to handle.
        """
        self._check_running()
        check_workflow_name(workflow)
        policy = check_cancel_policy(cancel)
        n = f"{_scope.get()}child-{self._next('child')}"
        base = execution_id or _child_id(self.execution_id, n)
        child_id = check_execution_id(_unretired(base, self._state.retired_children))
        call = f"child:{child_id}"
        self._claim(call)
        if call in self._state.children:
            self._replay.visit(self._state, call)
            return child_id
        self._new_call(call)
        payload = self._payloads.encode(data, f"input of child workflow {workflow!r}")
        await self._journal.create_child(child_id, workflow, payload)
        await self._journal.record(ChildStarted(call=call, child_id=child_id, workflow=workflow,
                                                cancel="" if policy == CASCADE else policy))
        return child_id

    async def call(
        self,
        workflow: str,
        data: Any = None,
        *,
        execution_id: str | None = None,
        type: Any = None,
        cancel: str = CASCADE,
    ) -> Any:
        """Run a child execution and return its result; its failure raises
        :class:`ChildFailedError` here. The parent waits durably (no worker is held).
        ``cancel`` is the child's cancel policy (see :meth:`start_child`): cancelling a
        parent that waits here cancels the child by default."""
        child_id = await self.start_child(workflow, data, execution_id=execution_id,
                                          cancel=cancel)
        done = self._state.child_results.get(child_id)
        self._replay.deliver_cancel_at_wait(self._state, None if done is None else done.seq)
        if done is None:
            raise self._suspend()
        if done.status != COMPLETED:
            raise ChildFailedError(child_id, done.status, done.error_type, done.message)
        return self._payloads.decode(done.result, type, f"result of child execution {child_id!r}")

    # -- internals ----------------------------------------------------------------------

    def _next(self, counter: str) -> int:
        """The next number of ``counter`` in the current scope (a gather branch's own)."""
        key = _scope.get() + counter
        n = self._counters.get(key, 0)
        self._counters[key] = n + 1
        return n

    def _check_running(self) -> None:
        if (_halt.get() or self._root_halt)[0]:
            # a `finally:` or `except BaseException:` of the workflow called us after it
            # was suspended: do nothing durable, keep unwinding
            raise Suspend
        if self._journal.superseded():
            # a repair reopened the execution under this run (a gather sibling or a
            # `finally:` after the first refused append): start no more step functions
            raise LeaseLost

    def _suspend(self) -> Suspend:
        """Mark this run (and the current gather branch) suspended; the caller raises what
        this returns. Sibling branches go on to their own durable calls: one of them may
        be what the suspended branch waits for."""
        self._suspended = True
        (_halt.get() or self._root_halt)[0] = True
        return Suspend()

    def _new_call(self, name: str, *, step: bool = False) -> None:
        """Checks before a durable call that is not recorded yet does anything.

        A pending cancel comes first: the run that got it here recorded no call here but
        its compensation's, so a replay must be cancelled here too before the order of
        recorded calls is checked."""
        self._replay.deliver_cancel(self._state)
        self._replay.visit(self._state, name)
        if self._journal.interrupted():
            raise Interrupted  # the worker drains: new work goes to another worker
        rule = self._journal.pause_rule(name if step else None)
        if rule is not None:
            raise Paused(rule)  # stop at this step boundary until the rule is lifted

    def _claim(self, name: str) -> None:
        self._check_running()
        _check_name(name)
        if name in self._seen:
            raise DuplicateStepName(self.execution_id, name)
        self._seen.add(name)

    async def _step(
        self, name: str, fn: StepFn[Any], type_: Any, policy: RetryPolicy | None,
        timeout_ms: int | None,
    ) -> Any:
        self._claim(name)
        if type_ is None:
            type_ = return_type(fn)
        state = self._state
        recorded = state.steps.get(name)
        if recorded is not None:
            self._replay.visit(state, name)
            return self._decode(name, recorded, type_)
        failure = state.failed_steps.get(name)
        if failure is not None:
            self._replay.visit(state, name)
            raise StepFailedError(name, failure.error_type, failure.message, failure.attempt)

        attempt = state.attempts.get(name, 1)
        if attempt > 1 and not state.timers[retry_timer(name, attempt)].fired:
            self._replay.visit(state, name)
            self._replay.deliver_cancel(state)
            raise self._suspend()
        self._new_call(name, step=True)
        left_ms = _total_left(state, name, attempt, policy)
        if left_ms is not None and left_ms <= 0:  # the backoff outlasted the deadline
            await self._record_failure(name, attempt, _total_ran_out(name, policy, attempt - 1),
                                       None, 0)
            return self._decode(name, self._state.steps[name], type_)  # done elsewhere
        bound_ms = timeout_ms if left_ms is None else min(timeout_ms or left_ms, left_ms)
        started = time.perf_counter()
        try:
            value = await (call_step_fn(fn) if bound_ms is None
                           else _attempt(name, fn, bound_ms))
        except BaseException as exc:  # any failure of user code is recorded
            if not step_failure(exc):
                raise
            took_us = _micros_since(started)
            retrying = policy is not None and policy.retries_after(exc, attempt)
            if left_ms is not None and policy is not None and (retrying or bound_ms == left_ms):
                # no retry that would start past the total deadline
                gap = policy.delay_before(attempt + 1, seed=f"{self.execution_id}:{name}")
                if left_ms - -(-took_us // 1000) - (gap if retrying else 0) <= 0:
                    exc, retrying = _total_ran_out(name, policy, attempt), False
            self._journal.observe_step(name, attempt, took_us,
                                       "retry" if retrying else "failed")
            await self._record_failure(name, attempt, exc, policy if retrying else None,
                                       took_us)
            # only reached when another worker recorded a success of this step meanwhile
            return self._decode(name, self._state.steps[name], type_)
        took_us = _micros_since(started)
        self._journal.observe_step(name, attempt, took_us, "completed")
        encoded = self._payloads.encode(value, f"result of step {name!r}")
        await self._journal.record(StepCompleted(step=name, result=encoded, attempt=attempt,
                                                 duration_us=took_us))
        # the record may be another worker's (it won the race): return what the log says,
        # a success or a failure
        failure = self._state.failed_steps.get(name)
        if failure is not None:
            raise StepFailedError(name, failure.error_type, failure.message, failure.attempt)
        return self._decode(name, self._state.steps[name], type_)

    async def _record_failure(
        self, name: str, attempt: int, exc: BaseException, policy: RetryPolicy | None,
        took_us: int,
    ) -> None:
        """Record a failed attempt (its step function ran ``took_us``), then suspend (a
        retry, when ``policy`` is given) or raise StepFailedError.

        Returns only if the log shows the step completed by another worker meanwhile.
        """
        error_type = exc.error_type if isinstance(exc, NonRetryableError) else type(exc).__name__
        message = str(exc)
        bound = log.bind(execution_id=self.execution_id, step=name, attempt=attempt)
        if policy is not None:
            delay_ms = policy.delay_before(attempt + 1, seed=f"{self.execution_id}:{name}")
            timer = retry_timer(name, attempt + 1)
            bound.warning("step failed, retry scheduled", error=f"{error_type}: {message}",
                          delay=format_ms(delay_ms))
            await self._journal.record(
                RetryScheduled(step=name, attempt=attempt + 1, error_type=error_type,
                               message=message, timer=timer, delay_ms=delay_ms,
                               duration_us=took_us))
            if name in self._state.steps:
                return
            raise self._suspend()
        bound.warning("step failed", error=f"{error_type}: {message}")
        await self._journal.record(
            StepFailed(step=name, error_type=error_type, message=message, attempt=attempt,
                       duration_us=took_us)
        )
        failure = self._state.failed_steps.get(name)
        if failure is None:  # another worker recorded a success meanwhile
            return
        raise StepFailedError(name, failure.error_type, failure.message, failure.attempt)

    def _decode(self, name: str, data: bytes, type_: Any) -> Any:
        return self._payloads.decode(data, type_, f"recorded result of step {name!r}")


class Update:
    """An update taken by ``ctx.wait_for_update``: its ``payload``, and the way to answer
    it. Answer it once; the caller of ``Client.update`` is waiting."""

    __slots__ = ("_ctx", "name", "payload", "update_id")

    def __init__(self, ctx: Context, name: str, update_id: str, payload: Any) -> None:
        self._ctx = ctx
        self.name = name
        self.update_id = update_id
        """The caller's id for it (``Client.update(..., update_id=)``, else a random one)."""
        self.payload = payload

    async def reply(self, value: Any = None) -> None:
        """Answer with ``value`` (recorded; ``Client.update`` returns it)."""
        encoded = self._ctx._payloads.encode(value, f"reply to update {self.name!r}")
        await self._ctx._reply(self, result=encoded)

    async def fail(self, error: BaseException | str) -> None:
        """Answer with an error (recorded; ``Client.update`` raises UpdateFailed)."""
        if isinstance(error, BaseException):
            await self._ctx._reply(self, error_type=type(error).__name__, message=str(error))
        else:
            await self._ctx._reply(self, error_type="UpdateRejected", message=str(error))

    def __repr__(self) -> str:
        return f"Update({self.name!r}, update_id={self.update_id!r})"


def _bound(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
           ) -> StepFn[Any]:
    """``fn`` with a step's arguments bound (itself without any: the common case)."""
    return functools.partial(fn, *args, **kwargs) if args or kwargs else fn


def _check_name(name: object) -> str:
    """A step name (or a patch id): 1 to MAX_STEP_NAME printable characters."""
    if not isinstance(name, str) or not name:
        raise InvalidStepName(name, "must be a non-empty string")
    if len(name) > MAX_STEP_NAME:
        raise InvalidStepName(name, f"longer than {MAX_STEP_NAME} characters")
    if not name.isprintable():
        raise InvalidStepName(name, "has control characters")
    return name


def _total_left(state: ExecutionState, name: str, attempt: int,
                policy: RetryPolicy | None) -> int | None:
    """What is left of the step's ``total_timeout`` as attempt ``attempt`` starts, in ms
    (None: it has none): the first attempt has all of it; a retry what remains since the
    first attempt began, up to when its retry timer fired (both on Redis' clock). A retry
    that waits for a worker after its timer fired (none free, a pause) has that wait
    counted at its next failure, when its run time is added."""
    total = None if policy is None else policy.total_timeout_ms
    if total is None or attempt == 1:
        return total
    timer = state.timers.get(retry_timer(name, attempt))
    began = state.first_attempts.get(name)
    if timer is None or began is None:
        return total
    return total - max(0, timer.fired_ms - began)


def _total_ran_out(name: str, policy: RetryPolicy | None, attempts: int) -> StepTimedOut:
    total = 0 if policy is None or policy.total_timeout_ms is None else policy.total_timeout_ms
    return StepTimedOut(name, total, attempts=max(attempts, 1))


def _micros_since(started: float) -> int:
    """Microseconds since ``started`` (``time.perf_counter()``): an attempt's duration,
    recorded with its outcome so a timeline can place the attempt (see StepCompleted)."""
    return int((time.perf_counter() - started) * 1_000_000)


def _timeout_ms(timeout: Duration | None) -> int | None:
    """A step's timeout in ms (None: none); a ConfigError for zero."""
    if timeout is None:
        return None
    timeout_ms = to_ms(timeout)
    if timeout_ms <= 0:
        raise ConfigError(f"a step timeout must be longer than 0, got {timeout!r}")
    return timeout_ms


async def _attempt(name: str, fn: StepFn[Any], timeout_ms: int | None) -> Any:
    """One attempt of a step function, bounded by ``timeout_ms`` when given."""
    if timeout_ms is None:
        return await call_step_fn(fn)
    deadline = asyncio.timeout(timeout_ms / 1000)
    try:
        async with deadline:
            return await call_step_fn(fn)
    except TimeoutError:
        if deadline.expired():  # ours, not a TimeoutError of the step's own
            raise StepTimedOut(name, timeout_ms) from None
        raise


def _child_id(parent_id: str, call: str) -> str:
    """Deterministic id of a parent's child call (``child-0``, ``g0-1.child-0`` in a
    gather branch), shortened if it would be too long."""
    return derived_id(parent_id, f".{call}")


def _unretired(child_id: str, retired: set[str]) -> str:
    """A child id not used by a run an operator restarted or re-ran (``<id>.r<k>``): the
    old child has ended and would never report to this run."""
    candidate, k = child_id, 0
    while candidate in retired:
        k += 1
        candidate = f"{child_id}.r{k}"
    return candidate


_scope: ContextVar[str] = ContextVar("zart_gather_scope", default="")
_halt: ContextVar[list[bool] | None] = ContextVar("zart_gather_halt", default=None)
"""Whether the current gather branch was suspended (None outside gather: the run's own)."""


def _scoped(scope: str) -> contextvars.Context:
    context = contextvars.copy_context()
    context.run(_scope.set, scope)
    context.run(_halt.set, [False])
    return context


async def _awaited(call: Awaitable[Any]) -> Any:
    return await call

