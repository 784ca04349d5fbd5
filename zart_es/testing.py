"""Run workflows in your tests, without Redis and without a worker.

:class:`MemoryJournal` is a :class:`~zart_es.workflow.Context`'s journal kept in a list:
each recorded event gets the envelope the Redis store gives it (``seq``, ``at_ms`` from a
clock the test controls) and is folded with the engine's own :func:`zart_es.core.apply`,
so the state a ``Context`` reads is the state it would read in production.

:class:`WorkflowHarness` drives executions over such journals the way a worker does. Each
:meth:`WorkflowHarness.run` is one *replay* of the workflow from the top over the folded
log, with a fresh ``Context``: recorded calls return what the log says, new ones do their
work and are recorded, and the replay stops at the execution's end or at a durable wait
(sleep, retry, signal, child). Between replays the test plays the outside world: it moves
the clock, which fires due timers as the timer poller would, sends signals, asks for a
cancel, even swaps the registry (a deploy of new code). Then it runs again::

    harness = WorkflowHarness(registry)
    harness.start("checkout", order, execution_id="order-1")
    assert await harness.run() == "sleeping"
    harness.advance(5 * 60_000)  # the 5-minute sleep's timer fires
    await harness.run()
    assert harness.result() == "shipped"

Like the engine (both call the same replay pass, :func:`zart_es.workflow.replay`): a returned
value ends the execution ``completed``; an exception it lets through ends it ``failed``
(``NondeterminismError`` and ``StepFailedError`` included); ``Cancelled`` let through
ends it ``cancelled`` after the compensation it ran; a workflow ``timeout`` arms a
deadline timer on the first run and ends the execution ``timed_out`` when it fires.
Children (``ctx.call`` / ``ctx.start_child``) are executions of the same harness: run them
with :meth:`WorkflowHarness.run` or :meth:`WorkflowHarness.settle`; an ended child reports
to its parent (``ChildCompleted``) as it does in production.

Left out, because only Redis and a fleet of workers make them: queues (``@durable(queue=)``
is ignored: no concurrency or rate limits, no admission), pause rules, leases, races
between workers and draining (a memory journal never raises ``Paused`` or
``Interrupted``), operator repairs (retry a step, re-run, restart), schedules, the hash chain of
the log (``prev_hash`` stays empty), and anything happening in the background: a timer
fires only when the test moves the clock (:meth:`WorkflowHarness.advance`) or calls
:meth:`WorkflowHarness.fire_due`, and an execution runs only when the test runs it.
``ctx.now()`` and ``ctx.sleep_until`` read the real clock, as they do in production; the
harness clock stamps events and decides when timers are due. It starts at the real time
unless given ``start_ms`` (leave it so for a workflow that calls ``ctx.sleep_until``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from zart_es.core import (
    COMPLETED,
    DEFAULT_MAX_PAYLOAD_BYTES,
    Cancelled,
    CancelRequested,
    ConfigError,
    Event,
    ExecutionCancelled,
    ExecutionEnded,
    ExecutionFailedError,
    ExecutionNotFound,
    ExecutionStarted,
    ExecutionState,
    ExecutionTimedOut,
    LeaseLost,
    PayloadError,
    Payloads,
    SignalReceived,
    UnknownWorkflow,
    already_recorded,
    answer_value,
    apply,
    check_execution_id,
    check_workflow_name,
    effects_of,
    end_notices,
    fired,
)
from zart_es.workflow import (
    Registry,
    ReplayVerdict,
    answer_query,
    check_history,
    deadline_passed,
    default_registry,
    failure,
    failure_handler_start,
    workflow_input,
)
from zart_es.workflow import replay as replay_pass

__all__ = ["Clock", "MemoryJournal", "WorkflowHarness", "wall_clock_ms"]

Clock = Callable[[], int]
"""Milliseconds since the epoch: the time an appended event is stamped with."""


def wall_clock_ms() -> int:
    """The real time in milliseconds (the default clock of a bare :class:`MemoryJournal`)."""
    return int(time.time() * 1000)


class MemoryJournal:
    """An execution's log in a list, and the one way to add to it: a
    :class:`~zart_es.workflow.Journal` for a ``Context`` without Redis.

    Every event appended is stamped (``seq``: its position; ``at_ms``: the clock) and
    folded into :attr:`state` with :func:`zart_es.core.apply`. :attr:`timers` is the
    timer wheel: the timers armed and not fired yet, by name, with their due time (ms).
    Nothing outlives the object: it is for tests.
    """

    def __init__(
        self, *, clock: Clock = wall_clock_ms,
        spawn: Callable[[ExecutionStarted], None] | None = None,
    ) -> None:
        self.events: list[Event] = []
        """The log: every event appended, with its envelope, in order."""
        self.state = ExecutionState()
        """The log folded by the engine's own fold."""
        self.timers: dict[str, int] = {}
        """Timers armed and not fired yet: name -> due time in ms."""
        self.step_outcomes: list[str] = []
        """Each step function's outcome, in order: completed, retry or failed."""
        self.spawned: list[ExecutionStarted] = []
        """Children the workflow asked for, when no ``spawn`` callback creates them."""
        self.has_work = False
        """Whether something from outside woke the execution (a work message would)."""
        self._clock = clock
        self._spawn = spawn if spawn is not None else self.spawned.append
        self._tokens: set[str] = set()

    @property
    def execution_id(self) -> str:
        """Id of the execution (empty until ``ExecutionStarted`` is appended)."""
        return self.state.execution_id

    # -- the Journal protocol ---------------------------------------------------------

    def interrupted(self) -> bool:
        """Never: no worker drains under a test."""
        return False

    def superseded(self) -> bool:
        """Never: no operator repairs the execution under a test."""
        return False

    def pause_rule(self, step: str | None = None) -> str | None:
        """None: pause rules live in Redis."""
        return None

    def observe_step(self, step: str, attempt: int, took_us: int, outcome: str) -> None:
        """Keep the step's outcome in :attr:`step_outcomes`."""
        self.step_outcomes.append(outcome)

    async def create_child(self, child_id: str, workflow: str, payload: bytes) -> None:
        """Hand the child's ``ExecutionStarted`` (this execution as its parent) to the
        ``spawn`` callback, or keep it in :attr:`spawned`."""
        self._spawn(ExecutionStarted(execution_id=child_id, workflow=workflow,
                                     input=payload, parent_id=self.execution_id))

    async def record(self, event: Event) -> None:
        """Append ``event`` as the run's own (see :func:`~zart_es.core.effects_of`)
        unless the log records it already.

        Raises :class:`~zart_es.core.LeaseLost` once the execution has ended, as the
        Redis journal does when the log was closed under it.
        """
        await asyncio.sleep(0)  # an append is a round trip: other gather branches go on
        if already_recorded(self.state, event):
            return
        try:
            self.append(event, by_run=True)
        except ExecutionEnded:
            raise LeaseLost from None

    # -- what the store and the timer poller do -----------------------------------------

    def append(self, event: Event, *, by_run: bool = False, token: str = "") -> Event | None:
        """Append ``event`` as the store's append does, with the effects
        :func:`~zart_es.core.effects_of` gives it; returns it with its envelope.

        The timer it arms goes on :attr:`timers` (due ``delay_ms`` after the event, or at
        ``due_ms``), the timers it drops leave it, and an event from outside the run
        (not ``by_run``) sets :attr:`has_work`. With ``token`` the append happens once:
        None when the token was seen. Raises :class:`~zart_es.core.ExecutionEnded`
        after the terminal event.
        """
        if self.state.terminal:
            raise ExecutionEnded(self.execution_id, self.state.version)
        if self._seen(token):
            return None
        effects = effects_of(event, self.state, by_run=by_run)
        for name in effects.drops:
            self.timers.pop(name, None)
        stored = msgspec.structs.replace(event, seq=len(self.events), at_ms=self._clock())
        self.events.append(stored)
        apply(self.state, stored)
        if effects.timer:
            self.timers[effects.timer] = effects.due_ms or stored.at_ms + effects.delay_ms
        self.has_work = self.has_work or effects.wakes
        return stored

    def _seen(self, token: str) -> bool:
        """Whether an append already carried ``token`` (it is noted now if not)."""
        if token in self._tokens:
            return True
        if token:
            self._tokens.add(token)
        return False

    def fire_due(self) -> list[str]:
        """Fire the timers due by the clock, earliest first, as the timer poller does:
        each is taken off the wheel and recorded (:func:`~zart_es.core.fired`: a
        deadline ends the execution), waking it. Returns the names fired."""
        now = self._clock()
        due = sorted((at, name) for name, at in self.timers.items() if at <= now)
        return [name for _at, name in due if self._fire(name)]

    def _fire(self, name: str) -> bool:
        if self.timers.pop(name, None) is None:
            return False  # an earlier firing (a deadline) took it off the wheel
        self.append(fired(name))
        return True


class WorkflowHarness:
    """Executions of registered workflows, run in memory as a worker runs them.

    Each :meth:`run` is one replay of the workflow from the top over its log; what it
    records is what a worker would record, and the execution ends (or waits) as it would.
    ``registry`` may be replaced between replays, to play a deploy of changed code.
    """

    def __init__(
        self, registry: Registry | None = None, *, start_ms: int | None = None,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        payloads: Payloads | None = None,
    ) -> None:
        self.registry = registry if registry is not None else default_registry
        self.now_ms = wall_clock_ms() if start_ms is None else start_ms
        """The harness clock (ms): it stamps events and decides which timers are due."""
        self.max_payload_bytes = max_payload_bytes
        self.payloads = payloads or Payloads(max_payload_bytes)
        """How values are encoded (pass one with a cipher to test encrypted logs)."""
        self._journals: dict[str, MemoryJournal] = {}
        self._first = ""

    # -- the outside world --------------------------------------------------------------

    def start(self, workflow: str, data: Any = None, *, execution_id: str | None = None) -> str:
        """Record ``ExecutionStarted`` for ``workflow`` with ``data`` encoded as its input;
        returns the id (a random one unless given). Idempotent on the id, like
        ``Client.start``; the same id for another workflow is a ConfigError."""
        check_workflow_name(workflow)
        eid = check_execution_id(execution_id or uuid.uuid4().hex)
        payload = self.payloads.encode(data, f"input of workflow {workflow!r}")
        existing = self._journals.get(eid)
        if existing is None:
            self._create(ExecutionStarted(execution_id=eid, workflow=workflow, input=payload))
        elif existing.state.workflow != workflow:
            raise ConfigError(
                f"execution id {eid!r} is already used by workflow {existing.state.workflow!r}"
            )
        return eid

    def advance(self, ms: int) -> list[str]:
        """Move the clock ``ms`` milliseconds forward and fire the timers due by then
        (see :meth:`fire_due`); returns their names."""
        if ms < 0:
            raise ValueError(f"the clock only moves forward, not by {ms}ms")
        self.now_ms += ms
        return self.fire_due()

    def fire_due(self) -> list[str]:
        """Record ``TimerFired`` for every timer due by the clock, in every execution,
        consuming it (a deadline's timer ends its execution ``timed_out``); returns the
        names of the timers fired. The executions run when the test runs them."""
        return [name for journal in list(self._journals.values()) for name in journal.fire_due()]

    def send_signal(
        self, name: str, payload: Any = None, *, execution_id: str | None = None,
        signal_id: str | None = None,
    ) -> bool:
        """Record ``SignalReceived(name)``: kept until a wait takes it, like
        ``Client.send_signal``. With ``signal_id`` the same id again records nothing
        (False). Raises :class:`~zart_es.core.ExecutionEnded` once the execution ended."""
        check_workflow_name(name, what="signal name")
        data = self.payloads.encode(payload, f"payload of signal {name!r}")
        token = f"event:{signal_id}" if signal_id else ""
        stored = self.journal(execution_id).append(
            SignalReceived(name=name, payload=data), token=token)
        return stored is not None

    def cancel(self, reason: str | None = None, *, execution_id: str | None = None) -> bool:
        """Record ``CancelRequested`` (once, however often asked): the workflow gets
        ``Cancelled`` at its next durable call. False if the execution has ended."""
        try:
            self.journal(execution_id).append(
                CancelRequested(reason=reason or ""), token="cancel")
        except ExecutionEnded:
            return False
        return True

    # -- running ------------------------------------------------------------------------

    async def run(self, execution_id: str | None = None) -> str:
        """One run of the execution (the first one started when omitted), as a worker
        makes it on a work message: from the top of the workflow to its end or to a
        durable wait. Returns the status it leaves the execution in.

        An ended execution does not run again; an ended child reports to its parent.
        Anything but an exception of the workflow (a ``BaseException`` a step raised, say,
        to play a crash) goes through, leaving the log as far as it was recorded.
        """
        journal = self.journal(execution_id)
        journal.has_work = False
        if not journal.state.terminal:
            with contextlib.suppress(LeaseLost):  # ended meanwhile: stop quietly
                await self._run(journal)
        if journal.state.terminal:
            self._deliver_end_notices(journal)
        if journal.state.terminal and journal.state.workflow in self.registry:
            start = failure_handler_start(self.registry.get(journal.state.workflow),
                                          journal.state, self.payloads)
            if start is not None and start.execution_id not in self._journals:
                self._create(start)
        return journal.state.status

    async def settle(self, *, max_runs: int = 1000) -> None:
        """Run the executions that have work until none has: each one started, woken by a
        fired timer, an event, a cancel request or a child's end, as by a work message.
        The clock does not move: executions left waiting on timers stay waiting."""
        for _ in range(max_runs):
            woken = next((j for j in self._journals.values() if j.has_work), None)
            if woken is None:
                return
            await self.run(woken.execution_id)
        raise RuntimeError(f"executions still had work after {max_runs} runs")

    # -- looking at the result ----------------------------------------------------------

    def journal(self, execution_id: str | None = None) -> MemoryJournal:
        """The journal of ``execution_id`` (the first execution started when omitted)."""
        eid = self._first if execution_id is None else execution_id
        journal = self._journals.get(eid)
        if journal is None:
            raise ExecutionNotFound(eid)
        return journal

    @property
    def status(self) -> str:
        """Status of the first execution started (pending, running, sleeping, ...)."""
        return self.journal().state.status

    @property
    def events(self) -> list[Event]:
        """The log of the first execution started, with its envelope."""
        return list(self.journal().events)

    @property
    def timers(self) -> dict[str, int]:
        """Pending timers of the first execution started: name -> due time (ms)."""
        return dict(self.journal().timers)

    async def query(self, name: str, *args: Any, execution_id: str | None = None,
                    type: Any = None) -> Any:
        """Ask query ``name`` (``ctx.on_query``) of the execution at the point it has
        reached, like ``Client.query``: a read-only replay, nothing recorded. Raises
        UnknownQuery or QueryFailed as the client does."""
        state = self.journal(execution_id).state
        workflow = self.registry.get(state.workflow)
        args_data = self.payloads.encode(list(args), f"arguments of query {name!r}")
        answer = await answer_query(state, workflow, self.payloads, name, args_data)
        return self.payloads.decode(answer_value(answer, state.execution_id, name), type,
                                    f"answer of query {name!r}")

    def result(self, execution_id: str | None = None, *, type: Any = None) -> Any:
        """The result of the ended execution, decoded to ``type``, like ``Client.result``:
        :class:`~zart_es.core.ExecutionFailedError` if it failed, timed out or was
        cancelled. RuntimeError while it has not ended (run it further)."""
        state = self.journal(execution_id).state
        if state.status == COMPLETED:
            return self.payloads.decode(state.result or b"", type,
                                        f"result of {state.execution_id!r}")
        if state.terminal and state.error is not None:
            raise ExecutionFailedError(state.execution_id, state.error.error_type,
                                       state.error.message)
        raise RuntimeError(f"execution {state.execution_id!r} has not ended: it is "
                           f"{state.status}")

    # -- internals: the runner's steps ----------------------------------------------------

    def _clock(self) -> int:
        return self.now_ms

    def _create(self, event: ExecutionStarted) -> None:
        journal = MemoryJournal(clock=self._clock, spawn=self._spawn_child)
        journal.append(event)
        self._journals[event.execution_id] = journal
        self._first = self._first or event.execution_id

    def _spawn_child(self, event: ExecutionStarted) -> None:
        existing = self._journals.get(event.execution_id)
        if existing is None:
            self._create(event)
        elif existing.state.parent_id != event.parent_id:
            # it would never report back to its caller: refuse rather than wait forever
            raise ConfigError(
                f"execution id {event.execution_id!r} already belongs to another execution; "
                "give ctx.call/start_child an unused execution_id"
            )

    async def _run(self, journal: MemoryJournal) -> None:
        try:
            workflow = self.registry.get(journal.state.workflow)
            data = workflow_input(workflow, journal.state, self.payloads)
        except (UnknownWorkflow, PayloadError) as exc:
            await journal.record(failure(exc))
            return
        if workflow.timeout_ms is not None and await deadline_passed(
                journal, workflow.timeout_ms, self._now):
            await journal.record(ExecutionTimedOut(timeout_ms=workflow.timeout_ms))
            return
        done = await replay_pass(journal, workflow, data, self.payloads)
        if isinstance(done.stopped, Cancelled):
            await journal.record(ExecutionCancelled(reason=done.stopped.reason))
        elif done.ending is not None:
            await journal.record(done.ending)

    async def _now(self) -> int:
        return self.now_ms

    def _deliver_end_notices(self, journal: MemoryJournal) -> None:
        """Tell the parent how the child ended and apply the children's cancel policies,
        as the engine does (each once: the tokens stop repeats)."""
        for notice in end_notices(journal.state, self.payloads):
            target = self._journals.get(notice.execution_id)
            if target is not None:  # one that is gone or done waits for nobody any more
                with contextlib.suppress(ExecutionEnded):
                    target.append(notice.event, token=notice.token)


async def check_replay(history: Iterable[Event], registry: Registry | None = None, *,
                 payloads: Payloads | None = None) -> ReplayVerdict:
    """Would ``registry``'s code (the default registry's when None) replay this recorded
    history? Runs no step and writes nothing; ``verdict.ok`` is False, with the position,
    what the log recorded and what the code asks for, where the code would fail the
    execution with NondeterminismError. The same check as ``zart-es replay``, for a test
    suite: record histories (``[e async for e in client.history(id)]``, or a harness's
    ``events``) and keep checking them against new code."""
    return await check_history(history, registry or default_registry, payloads)


replay = check_replay
"""The first name of :func:`check_replay`."""
