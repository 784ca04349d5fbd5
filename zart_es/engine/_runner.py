"""Run one execution as far as it can go: to its end, or to a durable wait.

The runner replays the workflow from the top against the folded log (recorded steps come
back from the log, new ones run and are recorded) and records the terminal event. It
knows nothing of work streams, leases or timers' polling: that is the worker's job.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import msgspec
import structlog

from zart_es.core import (
    DEBOUNCE_PREFIX,
    Cancelled,
    ConfigError,
    DebounceEnded,
    Event,
    ExecutionCancelled,
    ExecutionEnded,
    ExecutionFailed,
    ExecutionPaused,
    ExecutionResumed,
    ExecutionStarted,
    ExecutionState,
    ExecutionTimedOut,
    Interrupted,
    LeaseLost,
    Paused,
    PayloadError,
    Payloads,
    Queue,
    QueueAdmitted,
    StoreRefused,
    TimerSet,
    UnknownWorkflow,
    VersionConflict,
    already_recorded,
    apply,
    debounce_timer,
    effects_of,
    end_notices,
)
from zart_es.engine._breaker import StoreBreaker, refusal_kind
from zart_es.engine._metrics import WorkerMetrics
from zart_es.engine._pause_rules import PauseRules
from zart_es.engine._queue_gate import QueueGate, execution_ids
from zart_es.ops import step_attempt, traceparent
from zart_es.store import DebounceOpen, RedisError, Store, redis_now_ms
from zart_es.workflow import (
    Registry,
    Workflow,
    deadline_passed,
    failure,
    failure_handler_start,
    replay,
    workflow_input,
)

log = structlog.get_logger("zart_es.runner")



class Outcome(enum.Enum):
    """Where a run stopped."""

    ENDED = "ended"
    """The log has its terminal event (recorded now or before)."""
    WAITING = "waiting"
    """The execution waits for a durable timer; a work message will wake it."""
    HANDED_OFF = "handed_off"
    """The worker is draining; the execution must be handed to another worker."""
    AGAIN = "again"
    """The run stopped for a pause rule that turned out to be lifted already: run again."""
    QUEUED = "queued"
    """The execution waits for a slot of its queue; a release (or the sweeper) wakes it."""
    UNKNOWN = "unknown"
    """This worker's code has no such workflow (an old pod during a rollout): another
    worker, or a later version of this one, must run it."""


class StoreJournal:
    """A :class:`~zart_es.workflow.Journal` over the Redis store, with the folded state.

    Keeps the id of the last entry folded, so that catching up reads only newer entries.
    """

    __slots__ = (
        "_execution_id",
        "_lock",
        "breaker",
        "draining",
        "gate",
        "last_entry",
        "metrics",
        "pauses",
        "queue",
        "replay_opened",
        "retry_in_ms",
        "state",
        "store",
        "task_queue_of",
    )

    def __init__(
        self,
        store: Store,
        execution_id: str,
        state: ExecutionState | None = None,
        last_entry: bytes | None = None,
        *,
        draining: Callable[[], bool] | None = None,
        metrics: WorkerMetrics | None = None,
        breaker: StoreBreaker | None = None,
        pauses: PauseRules | None = None,
        gate: QueueGate | None = None,
        task_queue_of: Callable[[str], Awaitable[str]] | None = None,
    ) -> None:
        self.store = store
        self._execution_id = execution_id
        self.draining: Callable[[], bool] = draining or _never
        """Whether the worker stops taking work (a run stops before its next new call)."""
        self.metrics = metrics
        self.breaker = breaker
        """The worker's breaker: a refused append waits there and is tried again."""
        self.pauses = pauses
        self.gate = gate
        self.queue: Queue | None = None
        """The queue of the execution's workflow (set once the workflow is known)."""
        self.retry_in_ms: int | None = None
        """Set when the queue's rate window (not its cap) keeps the execution waiting."""
        self.task_queue_of: Callable[[str], Awaitable[str]] = (task_queue_of
                                                              or _default_task_queue)
        """The task queue a new execution of a workflow goes to (a child, a handler): its
        name, or "" for the default one or one not known yet."""
        # one append at a time: concurrent branches (ctx.gather) must not fold twice
        self._lock = asyncio.Lock()
        self.state = state if state is not None else ExecutionState()
        self.last_entry = last_entry
        self.replay_opened = self.state.opened_seq
        """``opened_seq`` when the current replay began (see :meth:`superseded`)."""

    async def catch_up(self) -> int:
        """Fold the entries appended since the last one seen; returns how many."""
        with refusals():
            entries = await self.store.read(self._execution_id, self.last_entry)
        for entry_id, event in entries:
            apply(self.state, event)
            self.last_entry = entry_id
        return len(entries)

    def interrupted(self) -> bool:
        """Whether the worker running this journal is draining."""
        return self.draining()

    def superseded(self) -> bool:
        """Whether a repair reopened the execution since the current run began (a catch
        up after a lost append race folded it): the run's coroutine must stop."""
        return self.state.opened_seq != self.replay_opened

    def pause_rule(self, step: str | None = None) -> str | None:
        """The pause rule holding this execution (before ``step``, when it is about to
        run one), by the worker's cached copy. None once it was asked to cancel: a cancel
        goes through a pause (compensation runs)."""
        if self.pauses is None or self.state.cancel_requested is not None:
            return None
        return self.pauses.covering(self.state.workflow,
                                    None if self.queue is None else self.queue.name,
                                    self._execution_id, step)

    async def held(self, rule: str) -> bool:
        """Whether ``rule`` is really in force (the cached copy is refreshed if not)."""
        if self.pauses is None:
            return False
        with refusals():
            if await self.pauses.confirm(rule):
                return True
            await self.pauses.refresh()
        return False

    def observe_step(self, step: str, attempt: int, took_us: int, outcome: str) -> None:
        """Feed the worker's step-duration histogram, if it has one, and the trace."""
        if self.metrics is not None:
            self.metrics.step(self.state.workflow, took_us, outcome)
        step_attempt(self._execution_id, step, attempt, took_us, outcome)

    async def create_child(self, child_id: str, workflow: str, payload: bytes) -> None:
        """Create the child's log (a no-op if it exists: replays start it once)."""
        with refusals():
            await self._create_child(child_id, workflow, payload)

    async def _create_child(self, child_id: str, workflow: str, payload: bytes) -> None:
        event = ExecutionStarted(execution_id=child_id, workflow=workflow, input=payload,
                                 traceparent=traceparent(), parent_id=self._execution_id,
                                 task_queue=await self.task_queue_of(workflow))
        if await self.store.create(event, child_id, workflow):
            return
        first = await self.store.read_first(child_id)
        if not isinstance(first, ExecutionStarted) or first.parent_id != self._execution_id:
            # it would never report back to us: refuse rather than wait forever
            raise ConfigError(
                f"execution id {child_id!r} already belongs to another execution; "
                "give ctx.call/start_child an unused execution_id"
            )

    async def record(self, event: Event) -> None:
        """Append at the folded version; on a lost race, catch up and decide again."""
        async with self._lock:
            if already_recorded(self.state, event):  # a concurrent branch's catch-up saw it
                return
            try:  # refusals(), inlined: this is every step's path
                await self._record(event)
            except (RedisError, OSError) as exc:
                raise StoreRefused(exc) from exc

    async def _record(self, event: Event) -> None:
        while True:
            if self.superseded():
                # the run this coroutine belongs to ended and an operator's repair
                # reopened the execution: the new run is not ours to continue (its work
                # message starts it afresh, here or on another worker). Checked before
                # every append: a gather sibling or a `finally:` appends after the first
                # append that found out
                raise LeaseLost
            try:
                appended = await self.store.append(
                    self._execution_id, self.state.version, event,
                    effects_of(event, self.state, by_run=True))
            except (RedisError, OSError) as exc:
                if self.breaker is None or refusal_kind(exc) == "other":
                    raise  # no wait makes this one go away (an ACL, a bad command)
                # Redis refused it or the connection went: keep the event (a step's
                # result is not run again) and append it once Redis accepts writes. The
                # same expected version: one that landed shows as a conflict, caught up
                self.breaker.trip(exc)
                await self.breaker.wait()
                continue
            except VersionConflict:
                if self.metrics is not None:
                    self.metrics.conflicts.inc()
                await self.catch_up()
                if self.superseded():
                    raise LeaseLost from None
                if already_recorded(self.state, event):
                    return
                if self.state.terminal:
                    raise LeaseLost from None
                continue
            except ExecutionEnded:
                await self.catch_up()
                raise LeaseLost from None
            if self.breaker is not None:
                self.breaker.ok()
            if appended is not None:
                apply(self.state, appended.event)
                self.last_entry = appended.entry_id
            return


@contextlib.contextmanager
def refusals() -> Iterator[None]:
    """The journal boundary: a store error (Redis refusing a write, a lost connection, a
    timeout) becomes :class:`StoreRefused`, which workflow code cannot take for its own
    failure; the worker turns it back into the store error. What a step function raises
    never passes here: a user's own Redis error is the step's failure."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise StoreRefused(exc) from exc


async def drive_execution(
    journal: StoreJournal,
    registry: Registry,
    *,
    payloads: Payloads | None = None,
) -> Outcome:
    """Drive the execution whose log ``journal`` holds until it ends or waits.

    Raises :class:`LeaseLost` when another writer ended the execution meanwhile, and
    lets Redis errors through (nothing half-written: every record is one script call).
    An execution that has ended reports to its parent and applies its children's cancel
    policies on every replay (each is recorded once), so a crash in between loses
    nothing.
    """
    journal.replay_opened = journal.state.opened_seq  # a new replay, of the latest run
    payloads = payloads or Payloads()
    outcome = await _advance(journal, registry, payloads)
    if outcome is Outcome.ENDED:
        await deliver_end_notices(journal, payloads)
        await _start_failure_handler(journal, registry, payloads)
    return outcome


async def _start_failure_handler(
    journal: StoreJournal, registry: Registry, payloads: Payloads
) -> None:
    """Start the workflow's failure handler if the run failed or timed out (idempotent on
    its derived id: every replay of the ended execution asks, one start is made)."""
    if journal.state.workflow not in registry:
        return
    start = failure_handler_start(registry.get(journal.state.workflow), journal.state,
                                  payloads)
    if start is not None and await journal.store.create(
            msgspec.structs.replace(start, task_queue=await journal.task_queue_of(
                start.workflow)), start.execution_id, start.workflow):
        log.info("failure handler started", execution_id=journal.state.execution_id,
                 handler=start.execution_id)


async def _advance(journal: StoreJournal, registry: Registry, payloads: Payloads) -> Outcome:
    state = journal.state
    skipped = _not_for_this_worker(state, registry)
    if skipped is not None:
        return skipped
    if state.debounce_ms and not state.debounced and await _debouncing(journal):
        return Outcome.WAITING
    try:
        workflow = registry.get(state.workflow)
        data = workflow_input(workflow, state, payloads)
    except (UnknownWorkflow, PayloadError) as exc:
        log.error(  # noqa: TRY400 -- an expected failure: no traceback wanted
            "cannot run execution", execution_id=state.execution_id,
            workflow=state.workflow, error=str(exc),
        )
        return await _end(journal, failure(exc))
    journal.queue = None if workflow.queue is None else registry.queue(workflow.queue)
    held = await _held_before_running(journal, workflow)
    if held is not None:
        return held
    while True:
        # again after a pause that was lifted while it was recorded: that gave the slot back
        if journal.queue is not None and not await _admitted(journal, journal.queue):
            return Outcome.QUEUED
        outcome = await _replay_once(journal, workflow, data, payloads)
        if outcome is not Outcome.AGAIN:
            return outcome


async def _debouncing(journal: StoreJournal) -> bool:
    """Whether the execution's debounce window is still open (a timer waits for its end);
    once it has closed, record its last input (``DebounceEnded``) and go on."""
    state = journal.state
    debounces = journal.store.debounces
    with refusals():
        closed = await debounces.close(state.workflow, state.debounce_key,
                                       state.execution_id)
    if isinstance(closed, DebounceOpen):
        armed = [t for name, t in state.timers.items()
                 if name.startswith(DEBOUNCE_PREFIX) and not t.fired]
        if not any(t.due_ms == closed.due_ms for t in armed):
            name = debounce_timer(sum(n.startswith(DEBOUNCE_PREFIX) for n in state.timers))
            await journal.record(
                TimerSet(timer=name, due_ms=closed.due_ms, purpose="debounce"))
        return True
    # closed, or its record expired (no worker for a week): it runs with what it has
    await journal.record(DebounceEnded(input=state.input, starts=0) if closed is None
                         else DebounceEnded(input=closed.input, starts=closed.starts))
    with refusals():
        await debounces.forget(state.workflow, state.debounce_key, state.execution_id)
    return False


async def _held_before_running(journal: StoreJournal, workflow: Workflow) -> Outcome | None:
    """What keeps the execution from running now (its deadline, a pause rule), or None.

    The deadline is armed first, so it runs while the execution is paused or waits for a
    queue slot."""
    state = journal.state
    if workflow.timeout_ms is not None and await deadline_passed(
            journal, workflow.timeout_ms, lambda: redis_now_ms(journal.store.redis)):
        return await _end(journal, ExecutionTimedOut(timeout_ms=workflow.timeout_ms))
    rule = journal.pause_rule()
    if state.paused_by is not None:
        if rule is None and state.cancel_requested is None:
            rule = state.paused_by  # this worker's copy may not know the rule yet: ask Redis
        if rule is not None and await journal.held(rule):
            # still held: timers and events wait in the log. Its slot goes back (again:
            # harmless) in case the run that recorded the pause died before doing so
            await _give_slot_back(journal)
            return Outcome.WAITING
        await journal.record(ExecutionResumed(rule=state.paused_by))
    elif rule is not None and await _hold(journal, rule):
        return Outcome.WAITING  # a rule covers it: stop before running anything
    return None


async def _replay_once(
    journal: StoreJournal, workflow: Workflow, data: Any, payloads: Payloads
) -> Outcome:
    done = await replay(journal, workflow, data, payloads)
    if done.stopped is not None:
        return await _paused(journal, done.stopped)
    if done.ending is None:  # the workflow swallowed Suspend: still waiting
        return Outcome.WAITING
    if isinstance(done.ending, ExecutionFailed):
        log.warning("execution failed", execution_id=journal.state.execution_id,
                    workflow=workflow.name,
                    error=f"{done.ending.error_type}: {done.ending.message}")
    else:
        log.info("execution completed", execution_id=journal.state.execution_id,
                 workflow=workflow.name)
    return await _end(journal, done.ending)


async def _end(journal: StoreJournal, event: Event) -> Outcome:
    await journal.record(event)
    return Outcome.ENDED


async def _paused(journal: StoreJournal, pause: BaseException) -> Outcome:
    if isinstance(pause, Paused):
        return Outcome.WAITING if await _hold(journal, pause.rule) else Outcome.AGAIN
    if isinstance(pause, Cancelled):
        log.info("execution cancelled", execution_id=journal.state.execution_id,
                 reason=pause.reason)
        return await _end(journal, ExecutionCancelled(reason=pause.reason))
    return Outcome.HANDED_OFF if isinstance(pause, Interrupted) else Outcome.WAITING


async def _admitted(journal: StoreJournal, queue: Queue) -> bool:
    """Whether the execution holds a slot of ``queue`` (asking the gate for one if not).

    A cancelled execution needs no slot to end; without a gate (a runner used on its
    own) queues are not enforced."""
    state = journal.state
    if state.admitted is not None or journal.gate is None:
        return True
    if state.cancel_requested is not None:
        # it ends without a slot: out of the waiting line now, so the execution behind
        # it is not kept from a free slot while its compensation runs
        await _give_slot_back(journal)
        return True
    admission = await journal.gate.admit_detail(queue, state.queue_key, state.admission,
                                                state.priority, state.started_ms)
    if not admission.admitted:
        journal.retry_in_ms = admission.retry_in_ms
        return False
    await journal.record(QueueAdmitted(queue=queue.name, key=state.queue_key,
                                       admitted_ms=admission.at_ms or 0))
    return True


async def _hold(journal: StoreJournal, rule: str) -> bool:
    """Record that ``rule`` holds the execution, if it really is in force.

    A held execution gives its queue slot (or its place among the waiters) back, so a
    paused workflow does not block the others of its queue. If the rule was lifted while
    the pause was being recorded (a resume that ran in between may have missed it), the
    execution resumes itself at once.
    """
    if journal.pauses is None or not await journal.held(rule):
        return False
    state = journal.state
    execution_id = state.execution_id
    await journal.pauses.hold(execution_id, rule)
    await journal.record(ExecutionPaused(rule=rule))
    await _give_slot_back(journal)
    if not await journal.held(rule):
        await journal.record(ExecutionResumed(rule=rule))
        return False
    log.info("execution paused", execution_id=execution_id, rule=rule)
    return True


async def _give_slot_back(journal: StoreJournal) -> None:
    """Leave the queue (its slot, or its place among the waiters) and wake the waiters
    that fit now. Repeating it is harmless."""
    if journal.queue is not None and journal.gate is not None:
        state = journal.state
        wake = await journal.gate.release_detail(journal.queue, state.queue_key,
                                                 state.admission)
        await journal.store.wake(execution_ids(wake.ids))


async def deliver_end_notices(journal: StoreJournal, payloads: Payloads) -> None:
    """Tell the executions around the ended one: its parent how it ended, each live
    child what its cancel policy says (see :func:`~zart_es.core.end_notices`). Every
    replay of the ended execution delivers them again; their tokens record each once, so
    a worker killed half-way leaves the rest to the next replay."""
    await journal.store.deliver(end_notices(journal.state, payloads))


def _not_for_this_worker(state: ExecutionState, registry: Registry) -> Outcome | None:
    """Why this worker does not run the execution now: it ended, it is quarantined, or
    this worker's code does not serve its workflow (another worker's does)."""
    if state.terminal:
        return Outcome.ENDED
    if state.quarantine is not None:
        return Outcome.WAITING  # set aside until an operator releases it
    if state.workflow not in registry:
        log.warning("workflow not served by this worker; left for one that serves it",
                    execution_id=state.execution_id, workflow=state.workflow,
                    serves=registry.names())
        return Outcome.UNKNOWN
    return None


def _never() -> bool:
    return False


async def _default_task_queue(workflow: str) -> str:
    return ""
