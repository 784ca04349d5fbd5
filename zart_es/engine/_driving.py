"""Driving one execution per work message: run it until it ends or waits, then ack.

A run that a store error stops is run again once Redis accepts writes (the breaker holds
every run meanwhile); a run that crashes the engine leaves its message pending, and the
execution is quarantined once it has crashed ``quarantine_after`` times. Work of a task
queue this worker does not serve moves to that queue's stream. The folds of waiting
executions that are due back soon, or have long logs, are kept in an LRU.
"""

from __future__ import annotations

import asyncio
import random
from collections import OrderedDict
from collections.abc import Callable

import structlog

from zart_es.core import (
    DEFAULT_TASK_QUEUE,
    ExecutionState,
    LeaseLost,
    StoreError,
    StoreRefused,
)
from zart_es.engine._aio import Supervisor, reraise_if_cancelling
from zart_es.engine._breaker import StoreBreaker, refusal_kind
from zart_es.engine._intake import InFlight, Intake, backoff
from zart_es.engine._metrics import WorkerMetrics
from zart_es.engine._pause_rules import PauseRules
from zart_es.engine._queue_gate import QueueGate
from zart_es.engine._queue_slots import QueueSlots
from zart_es.engine._runner import Outcome, StoreJournal, drive_execution
from zart_es.ops import ended_run, quarantine_if_crashed_too_often, run_span
from zart_es.store import Deployment, NoPermissionError, RedisError
from zart_es.workflow import Registry

log = structlog.get_logger("zart_es.worker")

UNKNOWN_PAUSE_S = 1.0
"""Longest pause before work of a workflow this worker does not serve is handed back."""
CACHE_HORIZON_MS = 60_000
CACHE_MIN_EVENTS = 64
"""A waiting execution's fold is kept only if it is due back within CACHE_HORIZON_MS (a
timer, a queue slot) or its log has CACHE_MIN_EVENTS events or more: a shorter log costs
~2 us an event to fold again, read in the one XRANGE a catch-up makes anyway."""


class Driver:
    """Drives the executions ``intake`` dispatches, one task each."""

    def __init__(self, deployment: Deployment, registry: Registry, intake: Intake, *,
                 parts: DriverParts, quarantine_after: int, cache_size: int,
                 draining: Callable[[], bool],
                 task_queues: Callable[[], tuple[str, ...]]) -> None:
        self.deployment, self.store = deployment, deployment.store
        self.registry = registry
        self.intake = intake
        self.parts = parts
        self.quarantine_after = quarantine_after
        self.cache: OrderedDict[str, StoreJournal] = OrderedDict()
        """Folds of waiting executions worth keeping, least recently used first."""
        self.cache_size = cache_size
        self._draining = draining
        self._task_queues = task_queues

    async def drive(self, execution_id: str, run: InFlight) -> None:
        """Drive ``execution_id`` until no message of it is left to run; always frees its
        room in the intake."""
        structlog.contextvars.bind_contextvars(execution_id=execution_id)
        try:
            await self._drive(execution_id, run)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # a bug or a corrupt log: keep the message pending; it is retried after the
            # lease, until the execution has crashed the engine quarantine_after times
            log.exception("execution run crashed; message left pending")
            await self._crashed(execution_id, run, exc)
        finally:
            self.intake.done(execution_id)

    async def _drive(self, execution_id: str, run: InFlight) -> None:
        failures = 0
        while True:
            run.again = False
            outcome = await self._attempt(execution_id, failures)
            if outcome is None:  # a store error: the same messages, once it clears
                failures += 1
                run.again = True
                continue
            if await self._not_acked(outcome, run):
                return
            if run.again:
                continue
            acked = set(run.messages)
            run.acking = True
            try:
                await self.intake.ack(list(acked))
            finally:
                run.acking = False
            # by identity, not position: the heartbeat may have replaced the list
            # meanwhile (dropping messages it found acked)
            run.messages = [m for m in run.messages if m not in acked]
            if not run.messages:
                return
            # a message came in while acking (an event, a timer): it is ours to run

    async def _attempt(self, execution_id: str, failures: int) -> Outcome | None:
        """One run; None when a store error stopped it (reported, and waited for)."""
        breaker = self.parts.breaker
        try:
            await breaker.wait()  # no new steps while Redis refuses writes
            outcome = await self._run_once(execution_id)
        except LeaseLost:
            return Outcome.ENDED
        except (RedisError, OSError, StoreRefused) as caught:
            exc = caught.error if isinstance(caught, StoreRefused) else caught
            reraise_if_cancelling(exc)
            self.cache.pop(execution_id, None)  # unknown what landed: re-read
            if refusal_kind(exc) == "other":  # an ACL, a bad command: no outage
                log.warning("redis refused a command to this user"
                            if isinstance(exc, NoPermissionError)
                            else "a store call failed", error=str(exc))
                self.parts.loops.report_failure("runs", exc)  # waiting will not fix it
                await asyncio.sleep(backoff(failures + 1))
            else:  # the run stops where it is; it resumes once Redis accepts writes
                breaker.trip(exc)
            return None
        breaker.ok()  # a whole run went through: Redis serves again
        return outcome

    async def _not_acked(self, outcome: Outcome, run: InFlight) -> bool:
        """True when the run's messages are not to be acknowledged here: handed back to
        the stream (draining), or left pending for a worker that serves the workflow."""
        if outcome is Outcome.WAITING:
            self.parts.wake_timers()
        if outcome is Outcome.HANDED_OFF:
            await self.intake.release(run.messages)
            return True
        if outcome is Outcome.UNKNOWN:
            # handed back to the stream after a random pause, for a worker that serves the
            # workflow to read (left pending instead, this worker's own reclaim loop took
            # it back every lease and starved the others); the pause bounds the bouncing
            self.parts.metrics.unknown.inc()
            await asyncio.sleep(random.uniform(UNKNOWN_PAUSE_S / 2, UNKNOWN_PAUSE_S))
            await self.intake.release(run.messages)
            return True
        return False

    async def _crashed(self, execution_id: str, run: InFlight, exc: Exception) -> None:
        """Count a crash of the engine on this execution; at ``quarantine_after`` of them
        record ``ExecutionQuarantined`` (it needs no readable log), note it in the audit
        log and acknowledge its messages: it is not retried until an operator releases it."""
        try:
            crashes = await quarantine_if_crashed_too_often(
                self.deployment, execution_id, exc, self.quarantine_after,
                by=self.intake.consumer)
            if crashes is None:
                return
            self.parts.metrics.quarantined.inc()
            log.error("execution quarantined: it crashed the engine too often",
                      crashes=crashes, error=f"{type(exc).__name__}: {exc}")
            await self.intake.ack(list(run.messages))
            run.messages = []
        except (RedisError, OSError, StoreError) as redis_exc:
            reraise_if_cancelling(redis_exc)
            log.warning("could not count the crash", error=str(redis_exc))

    def _journal(self, execution_id: str) -> StoreJournal:
        """The execution's cached fold, or a new journal that reads it."""
        parts = self.parts
        return self.cache.pop(execution_id, None) or StoreJournal(
            self.store, execution_id, draining=self._draining, metrics=parts.metrics,
            breaker=parts.breaker, pauses=parts.pauses, gate=parts.gate,
            task_queue_of=self.task_queue_of)

    async def _run_once(self, execution_id: str) -> Outcome:
        journal = self._journal(execution_id)
        async with self.intake.pooled:
            await journal.catch_up()
        state = journal.state
        if state.version == 0:
            log.warning("work message for an execution with no log; dropped")
            return Outcome.ENDED
        was_terminal = state.terminal
        if not was_terminal and await self._moved(execution_id, state):
            return Outcome.ENDED  # its work is on its own task queue's stream now
        metrics = self.parts.metrics
        if state.version == 1:
            metrics.executions.labels(state.workflow, "started").inc()
        with run_span(execution_id, state.workflow, state.restarts, state.traceparent) as span:
            outcome = await drive_execution(journal, self.registry,
                                            payloads=self.deployment.payloads)
            ended_run(span, outcome.value, state)
        if outcome is Outcome.ENDED and not was_terminal:
            metrics.executions.labels(state.workflow, state.status).inc()
        if outcome is Outcome.ENDED:
            await self.parts.slots.release(state)
        if outcome is Outcome.QUEUED:
            if journal.retry_in_ms is not None:  # only the rate window holds it: try again
                self.parts.slots.wake_later([execution_id], journal.retry_in_ms)
            self._keep(execution_id, journal)  # a release or the rate window wakes it
            return Outcome.WAITING
        if outcome is Outcome.WAITING and worth_keeping(journal):
            self._keep(execution_id, journal)
        return outcome

    async def _moved(self, execution_id: str, state: ExecutionState) -> bool:
        """Move work of a task queue this worker does not serve to that queue's stream
        instead of running it: the queue it was started on, else the one its workflow's
        code declares (here, or as a worker recorded it). Such work reaches another queue's
        stream when it started before any route was known, before task queues existed, or
        from a process of an earlier version (which sends all work to the default one)."""
        queue = state.task_queue or await self._declared(state.workflow) or DEFAULT_TASK_QUEUE
        if queue in self._task_queues():
            return False
        await self.store.move_to_task_queue(execution_id, queue)
        log.info("work moved to its task queue", workflow=state.workflow, task_queue=queue)
        return True

    def _keep(self, execution_id: str, journal: StoreJournal) -> None:
        self.cache[execution_id] = journal
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)

    async def _declared(self, workflow: str) -> str | None:
        """The task queue ``workflow`` declares: in this worker's code, else as a worker
        with its code recorded it; None when unknown."""
        if workflow in self.registry:
            return self.registry.get(workflow).task_queue
        return await self.deployment.routes.declared(workflow)

    async def task_queue_of(self, workflow: str) -> str:
        """What a new execution (a child, a failure handler) of ``workflow`` records as its
        task queue: the declared one ("" for the default queue or when unknown)."""
        queue = await self._declared(workflow)
        return "" if queue in (None, DEFAULT_TASK_QUEUE) else queue


class DriverParts:
    """What runs share with the rest of the worker: its metrics, its store breaker, its
    loops' supervisor, its copy of the pause rules, its queue gate and slots, and a way to
    have the timer poller look at the wheel again."""

    __slots__ = ("breaker", "gate", "loops", "metrics", "pauses", "slots", "wake_timers")

    def __init__(self, *, metrics: WorkerMetrics, breaker: StoreBreaker, loops: Supervisor,
                 pauses: PauseRules, gate: QueueGate, slots: QueueSlots,
                 wake_timers: Callable[[], None]) -> None:
        self.metrics, self.breaker, self.loops = metrics, breaker, loops
        self.pauses, self.gate, self.slots = pauses, gate, slots
        self.wake_timers = wake_timers


def worth_keeping(journal: StoreJournal) -> bool:
    """Whether a waiting execution's fold is worth its memory: its log is long, or one of
    its timers is due within CACHE_HORIZON_MS (of Redis' clock at its last entry)."""
    state = journal.state
    if state.version >= CACHE_MIN_EVENTS:
        return True
    if journal.last_entry is None:
        return False
    horizon = int(journal.last_entry.split(b"-", 1)[0]) + CACHE_HORIZON_MS
    return any(not timer.fired and timer.due_ms <= horizon for timer in state.timers.values())
