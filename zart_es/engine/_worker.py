"""``Worker``: reads work messages of its task queues on every partition, drives executions.

One process runs many executions at once: each work message starts a task that replays
its execution until it ends or waits for a timer, then acknowledges the message. A message
stays in the consumer group's pending list until then, so a worker killed at any point
loses nothing: another worker reclaims the message once its lease (idle time) runs out.
A worker holding a message heartbeats it, so a long step keeps its lease.
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
import socket
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import structlog
from redis.exceptions import NoPermissionError, RedisError, ResponseError

from zart_es.core import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    DEFAULT_TASK_QUEUE,
    Duration,
    ExecutionState,
    LeaseLost,
    StoreError,
    StoreRefused,
    check_task_queue,
)
from zart_es.engine._aio import Supervisor, reraise_if_cancelling
from zart_es.engine._archiver import archiver_for
from zart_es.engine._breaker import StoreBreaker, refusal_kind
from zart_es.engine._heartbeat import write_heartbeat
from zart_es.engine._metrics import WorkerMetrics
from zart_es.engine._pause_rules import PauseRules
from zart_es.engine._queries import QueryServer
from zart_es.engine._queue_gate import QueueGate, execution_ids
from zart_es.engine._runner import Outcome, StoreJournal, drive_execution
from zart_es.engine._scheduler import Scheduler
from zart_es.engine._timers import TimerPoller
from zart_es.ops import (
    Schedules,
    ended_run,
    quarantine_if_crashed_too_often,
    resume_released,
    run_span,
)
from zart_es.store import (
    DEFAULT_PREFIX,
    F_EXEC,
    GROUP,
    Deployment,
    RedisClient,
    load_script,
    script_caller,
)
from zart_es.workflow import Registry, default_registry

log = structlog.get_logger("zart_es.worker")

READ_BLOCK_MS = 2000
PAUSE_SWEEP_EVERY = 10
"""Refreshes of the pause rules between two sweeps for executions whose rule is gone."""
RETRY_BACKOFF = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
UNKNOWN_PAUSE_S = 1.0
"""Longest pause before work of a workflow this worker does not serve is handed back."""
POOLED_CALLS = 32
"""Executions' commands on the shared connection pool at once (the catch-up read, the
ack): the pool grows to about this plus one per reader and background loop, not to one
per execution in flight (a connection costs ~18 KB of RSS, not given back after a burst)."""
CACHE_HORIZON_MS = 60_000
CACHE_MIN_EVENTS = 64
"""A waiting execution's fold is kept only if it is due back within CACHE_HORIZON_MS (a
timer, a queue slot) or its log has CACHE_MIN_EVENTS events or more: a shorter log costs
~2 us an event to fold again, read in the one XRANGE a catch-up makes anyway."""

Message = tuple[str, bytes]  # (work stream, work message id)


class _InFlight:
    """One execution being driven by this process, and the messages it will ack."""

    __slots__ = ("acking", "again", "messages", "task")

    def __init__(self, message: Message) -> None:
        self.messages: list[Message] = [message]
        self.again = False
        self.acking = False
        """True while its messages are being acknowledged: a heartbeat then finds them
        gone, which is not a lost lease."""
        self.task: asyncio.Task[None] | None = None


class Worker:
    """A worker process's engine; embed it with ``async with Worker(url) as w:`` or ``run()``.

    ``concurrency`` caps the executions driven at once (sleeping ones cost nothing: they
    live in Redis; the folds of those due back soon, or with long logs, are kept in an LRU
    of ``cache_size``). ``lease_timeout`` is how long a silent worker keeps its messages
    before another reclaims them; heartbeats renew it every third of that.
    ``grace_period`` is how long ``stop()`` lets in-flight executions run before handing
    them back. ``task_queues`` are the task queues whose work it reads; by default the
    default queue and every queue its registry's workflows declare.
    """

    _reserved: int = 0
    """Room taken by the reads in flight (what they may bring back)."""
    _streams: dict[int, dict[str, str]]
    """Per partition: work stream -> its task queue (the streams this worker reads; set by
    :meth:`run`)."""

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        registry: Registry | None = None,
        concurrency: int = 100,
        lease_timeout: float = 30.0,
        poll_interval: float = 0.5,
        grace_period: float = 10.0,
        partitions: int | None = None,
        prefix: str = DEFAULT_PREFIX,
        consumer: str | None = None,
        cache_size: int = 1000,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        payload_keys: str | None = None,
        redis: RedisClient | None = None,
        deployment: Deployment | None = None,
        metrics: WorkerMetrics | None = None,
        heartbeat_file: str | None = None,
        queue_sweep_interval: float = 1.0,
        run_scheduler: bool = True,
        quarantine_after: int = 5,
        task_queues: Iterable[str] | None = None,
        archive_url: str | None = None,
        retention: Duration | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if quarantine_after < 1:
            raise ValueError(f"quarantine_after must be >= 1, got {quarantine_after}")
        self.quarantine_after = quarantine_after
        """Engine crashes on one execution before it is quarantined."""
        # and where ended executions go once their retention passed (docs: retention)
        self._task_queues, self._archive = _check_task_queues(task_queues), (archive_url,
                                                                             retention)
        if lease_timeout <= 0:
            raise ValueError(f"lease_timeout must be > 0, got {lease_timeout}")
        self._own_deployment = deployment is None
        self.deployment = deployment or Deployment(
            redis_url, partitions=partitions, prefix=prefix,
            max_payload_bytes=max_payload_bytes, payload_keys=payload_keys, redis=redis)
        """The deployment handle this worker works through (shareable with a client)."""
        self.url = self.deployment.url
        self.registry = registry or default_registry
        self.concurrency = concurrency
        self.lease_timeout = lease_timeout
        self.grace_period = grace_period
        self.keys = self.deployment.keys
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.redis = self.deployment.redis
        self.store = self.deployment.store
        self.poller = TimerPoller(
            self.store, self.keys, poll_interval=poll_interval,
            on_set_aside=lambda p, kind: self.metrics.timers_set_aside.labels(p, kind).inc())
        self.pauses = PauseRules(self.deployment)
        self.gate = QueueGate(self.deployment)
        self._queue_sweep = queue_sweep_interval
        self._later: set[asyncio.TimerHandle] = set()
        self.run_scheduler = run_scheduler
        """Start the occurrences of recurring schedules (any number of workers may)."""
        self._poll_interval = poll_interval
        self._lease, self._release_script = (
            script_caller(self.redis, load_script(name), pipelined=False)
            for name in ("lease", "release"))
        self.metrics = metrics or WorkerMetrics()
        self.breaker = self._breaker()  # open while Redis refuses writes: runs wait
        self.loops = Supervisor(log, lambda loop: self.metrics.loop_restarts.labels(loop).inc())
        self.metrics.in_flight.set_function(lambda: len(self._in_flight))
        """The worker's background loops, restarted when they crash (see :meth:`healthy`)."""
        self.heartbeat_file = heartbeat_file
        """Rewritten while the worker's event loop runs, with the loops that crashed
        recently: ``zart-es health --heartbeat-file`` reads it."""
        self._cache: OrderedDict[str, StoreJournal] = OrderedDict()
        self._cache_size = cache_size
        self._in_flight: dict[str, _InFlight] = {}
        self._pooled = asyncio.Semaphore(POOLED_CALLS)
        self._room = asyncio.Event()
        self._room.set()
        self._stopping = asyncio.Event()
        self._intake: list[asyncio.Task[None]] = []
        self._background: list[asyncio.Task[None]] = []
        self._main: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------

    @property
    def task_queues(self) -> tuple[str, ...]:
        """The task queues whose work this worker reads."""
        if self._task_queues is None:  # fixed at the first look (run() reads its streams)
            self._task_queues = tuple(sorted({DEFAULT_TASK_QUEUE,
                                              *self.registry.task_queues()}))
        return self._task_queues

    async def run(self) -> None:
        """Work until :meth:`stop` is called, then drain within the grace period."""
        await self.deployment.ready()
        await self.pauses.refresh()
        served = self.task_queues
        self._streams = {p: {self.keys.work(p, queue): queue for queue in served}
                         for p in range(self.keys.partitions)}
        # the groups of every queue the code declares too: a pool scaled to zero is woken
        # by KEDA from its group's lag, which needs the group
        declared = set(self.registry.task_queues()) - set(served)
        for p in range(self.keys.partitions):
            await self._ensure_group(p, [self.keys.work(p, queue) for queue in declared])
        # the code's routes, for clients that do not import it; then say we serve ours
        await self.deployment.routes.announce(self.registry.routes())
        await self.deployment.routes.serving(self.consumer, served)
        # declared in code: stored (or updated) by every worker, also by one that leaves
        # starting their occurrences to other processes (--no-scheduler)
        for spec in self.registry.schedules():
            await Schedules(self.deployment).ensure(spec, by=self.consumer)
        log.info("worker started", consumer=self.consumer, partitions=self.keys.partitions,
                 concurrency=self.concurrency, workflows=self.registry.names(),
                 task_queues=list(served))
        loops = self.loops
        self._intake = [loops.start(f"read-{p}", functools.partial(self._read, p))
                        for p in range(self.keys.partitions)]
        self._intake.append(loops.start("reclaim", self._reclaim))
        self._background = [
            loops.start("timers", self.poller.run),
            loops.start("heartbeat", self._heartbeat),
            loops.start("pauses", self._watch_pauses),
            loops.start("queues", self._sweep_queues),
            loops.start("queries", QueryServer(self.deployment, self.registry, self.consumer,
                                               served, metrics=self.metrics).run),
        ]
        if self.run_scheduler:
            scheduler = Scheduler(self.deployment,
                                  poll_interval=max(0.05, min(self._poll_interval, 1.0)))
            self._background.append(loops.start("scheduler", scheduler.run))
        archiver = await archiver_for(self.deployment, self.registry.retentions(),
                                      *self._archive, self.consumer,
                                      poll_interval=max(self._poll_interval, 1.0),
                                      lease_ms=round(self.lease_timeout * 1000))
        if archiver is not None:
            self._background.append(loops.start("archiver", archiver.run))
        try:
            await self._stopping.wait()
        finally:
            await self._drain()

    async def refresh_pause_rules(self) -> frozenset[str]:
        """Read the pause rules now rather than at the next poll; returns those in force.

        The worker's copy of the rules is what holds its executions at their next step
        boundary; it is refreshed every poll interval (at most 1 s). Call this after a
        pause to have this worker see it at once (tests do, instead of sleeping)."""
        return await self.pauses.refresh()

    def stop(self) -> None:
        """Stop taking work and drain.

        In-flight executions finish the step they are running (within ``grace_period``),
        then stop before their next step and are handed back to the work stream at once,
        for another worker to continue; nothing waits for a lease to run out.
        """
        self._stopping.set()

    async def __aenter__(self) -> Worker:
        self._main = asyncio.create_task(self.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()
        if self._main is not None:
            await self._main

    async def _drain(self) -> None:
        await _cancel(self._intake)
        tasks = [r.task for r in self._in_flight.values() if r.task is not None]
        if tasks:
            log.info("draining", in_flight=len(tasks), grace_period=self.grace_period)
            _, late = await asyncio.wait(tasks, timeout=self.grace_period)
            if late:
                abandoned = [m for r in list(self._in_flight.values()) for m in r.messages]
                await _cancel(late)
                await self._release(abandoned)
        await _cancel(self._background)
        for handle in self._later:
            handle.cancel()
        try:
            await self.deployment.routes.leaving(self.consumer, self.task_queues)
        except (RedisError, OSError) as exc:
            log.warning("could not say this worker left its task queues", error=str(exc))
        await self.gate.aclose()
        await self._lease.aclose()
        await self._release_script.aclose()
        if self._own_deployment:
            await self.deployment.close()
        log.info("worker stopped", consumer=self.consumer)

    # -- intake ---------------------------------------------------------------------

    async def _ensure_group(self, partition: int, more: Iterable[str] = ()) -> None:
        for stream in [*self._streams[partition], *more]:
            try:
                await self.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def _read(self, partition: int) -> None:
        # one read for the partition's streams this worker serves (one hash slot)
        names = list(self._streams[partition])
        readers = self.keys.partitions * len(names)
        # with fewer slots than streams, reads hold slots for shorter: the slots go round
        block_ms = READ_BLOCK_MS if self.concurrency >= readers else max(
            100, READ_BLOCK_MS * self.concurrency // readers)
        failures = turn = 0
        while True:
            await self._room.wait()
            room = self.concurrency - len(self._in_flight) - self._reserved
            if room <= 0:  # woken by a run that ended, but others were taken on meanwhile
                self._room.clear()
                continue
            # every partition's reader may be blocked in a read at once, and a read brings
            # up to COUNT from each stream it names: each reserves what its read may bring
            # (its share of the room), so the worker never takes on more than concurrency
            turn += 1
            read = names if room >= len(names) else [
                names[(turn + i) % len(names)] for i in range(room)]
            count = max(1, min(room // self.keys.partitions // len(read), 100))
            self._reserved += count * len(read)
            try:
                reply: Any = await self.redis.xreadgroup(
                    GROUP, self.consumer, dict.fromkeys(read, ">"),
                    count=count, block=block_ms,
                )
                failures = 0
            except (RedisError, OSError) as exc:
                reraise_if_cancelling(exc)
                failures += 1
                log.warning("reading work failed, retrying", partition=partition, error=str(exc))
                await asyncio.sleep(_backoff(failures))
                if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
                    await self._ensure_group(partition)
                continue
            finally:
                self._reserved -= count * len(read)
            for stream, messages in reply or ():
                self._dispatch_all(_text(stream), messages)
            if self.concurrency - len(self._in_flight) - self._reserved > 0:
                self._room.set()  # what the read did not bring is room again
            if not reply:  # nothing came: the readers waiting for room get their turn
                await asyncio.sleep(0)

    async def _reclaim(self) -> None:
        """Take over messages whose holder went silent for longer than the lease."""
        min_idle = int(self.lease_timeout * 1000)
        while True:
            await asyncio.sleep(max(0.2, self.lease_timeout / 2))
            for stream in [s for streams in self._streams.values() for s in streams]:
                try:
                    await self._reclaim_stream(stream, min_idle)
                except (RedisError, OSError) as exc:
                    reraise_if_cancelling(exc)
                    log.warning("reclaim failed", stream=stream, error=str(exc))

    async def _reclaim_stream(self, stream: str, min_idle: int) -> None:
        cursor: bytes | str = "0-0"
        while True:
            room = self.concurrency - len(self._in_flight) - self._reserved
            if room <= 0:  # saturated: a worker with room reclaims them
                return
            reply: Any = await self.redis.execute_command(
                "XAUTOCLAIM", stream, GROUP, self.consumer, min_idle, cursor, "COUNT",
                min(room, 100),
            )
            # Redis 6.2 replies [cursor, entries]; 7.x adds a third element (deleted ids)
            cursor, entries = reply[0], reply[1]
            live = [e for e in entries if e and e[1] is not None]
            if live:
                log.info("reclaimed work", stream=stream, messages=len(live))
                self._dispatch_all(stream, live)
            if cursor in (b"0-0", "0-0"):
                return

    def _dispatch_all(self, stream: str, messages: Iterable[Any]) -> None:
        malformed: list[Message] = []
        for msg_id, fields in messages:
            fields_dict = fields if isinstance(fields, dict) else _pairs(fields)
            execution_id = fields_dict.get(F_EXEC)
            if execution_id is None:  # not written by zart-es: drop it, keep reading
                log.warning("work message without an execution id dropped",
                            stream=stream, message=msg_id, fields=str(fields_dict)[:200])
                malformed.append((stream, msg_id))
                continue
            self._dispatch(stream, msg_id, execution_id.decode(errors="replace"))
        if malformed:
            task = asyncio.create_task(self._ack_quietly(malformed))
            self._background.append(task)
            task.add_done_callback(self._background.remove)
        if len(self._in_flight) >= self.concurrency:
            self._room.clear()

    def _dispatch(self, stream: str, msg_id: bytes, execution_id: str) -> None:
        run = self._in_flight.get(execution_id)
        if run is not None:  # already driving it here: look again when this run stops
            run.messages.append((stream, msg_id))
            run.again = True
            return
        run = _InFlight((stream, msg_id))
        self._in_flight[execution_id] = run
        run.task = asyncio.create_task(self._drive(execution_id, run))

    # -- driving one execution ----------------------------------------------------------

    async def _drive(self, execution_id: str, run: _InFlight) -> None:
        structlog.contextvars.bind_contextvars(execution_id=execution_id)
        failures = 0
        try:
            while True:
                run.again = False
                try:
                    await self.breaker.wait()  # no new steps while Redis refuses writes
                    outcome = await self._run_once(execution_id)
                    self.breaker.ok()  # a whole run went through: Redis serves again
                except LeaseLost:
                    outcome = Outcome.ENDED
                except (RedisError, OSError, StoreRefused) as caught:
                    exc = caught.error if isinstance(caught, StoreRefused) else caught
                    reraise_if_cancelling(exc)
                    self._cache.pop(execution_id, None)  # unknown what landed: re-read
                    failures += 1
                    if refusal_kind(exc) == "other":  # an ACL, a bad command: no outage
                        log.warning("redis refused a command to this user"
                                    if isinstance(exc, NoPermissionError)
                                    else "a store call failed", error=str(exc))
                        self.loops.report_failure("runs", exc)  # waiting will not fix it
                        await asyncio.sleep(_backoff(failures))
                    else:  # the run stops where it is; it resumes once Redis accepts writes
                        self.breaker.trip(exc)
                    run.again = True
                    continue
                if await self._not_acked(outcome, run):
                    return
                if run.again:
                    continue
                acked = set(run.messages)
                run.acking = True
                try:
                    await self._ack(list(acked))
                finally:
                    run.acking = False
                # by identity, not position: the heartbeat may have replaced the list
                # meanwhile (dropping messages it found acked)
                run.messages = [m for m in run.messages if m not in acked]
                if not run.messages:
                    break
                # a message came in while acking (an event, a timer): it is ours to run
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # a bug or a corrupt log: keep the message pending; it is retried after the
            # lease, until the execution has crashed the engine quarantine_after times
            log.exception("execution run crashed; message left pending")
            await self._crashed(execution_id, run, exc)
        finally:
            self._in_flight.pop(execution_id, None)
            self._room.set()

    async def _not_acked(self, outcome: Outcome, run: _InFlight) -> bool:
        """True when the run's messages are not to be acknowledged here: handed back to
        the stream (draining), or left pending for a worker that serves the workflow."""
        if outcome is Outcome.WAITING:
            self.poller.wake()
        if outcome is Outcome.HANDED_OFF:
            await self._release(run.messages)
            return True
        if outcome is Outcome.UNKNOWN:
            # handed back to the stream after a random pause, for a worker that serves the
            # workflow to read (left pending instead, this worker's own reclaim loop took
            # it back every lease and starved the others); the pause bounds the bouncing
            self.metrics.unknown.inc()
            await asyncio.sleep(random.uniform(UNKNOWN_PAUSE_S / 2, UNKNOWN_PAUSE_S))
            await self._release(run.messages)
            return True
        return False

    async def _crashed(self, execution_id: str, run: _InFlight, exc: Exception) -> None:
        """Count a crash of the engine on this execution; at ``quarantine_after`` of them
        record ``ExecutionQuarantined`` (it needs no readable log), note it in the audit
        log and acknowledge its messages: it is not retried until an operator releases it."""
        try:
            crashes = await quarantine_if_crashed_too_often(
                self.deployment, execution_id, exc, self.quarantine_after, by=self.consumer)
            if crashes is None:
                return
            self.metrics.quarantined.inc()
            log.error("execution quarantined: it crashed the engine too often",
                      crashes=crashes, error=f"{type(exc).__name__}: {exc}")
            await self._ack(list(run.messages))
            run.messages = []
        except (RedisError, OSError, StoreError) as redis_exc:
            reraise_if_cancelling(redis_exc)
            log.warning("could not count the crash", error=str(redis_exc))

    async def _run_once(self, execution_id: str) -> Outcome:
        journal = self._cache.pop(execution_id, None) or StoreJournal(
            self.store, execution_id, draining=self._stopping.is_set, metrics=self.metrics,
            breaker=self.breaker, pauses=self.pauses, gate=self.gate,
            task_queue_of=self._task_queue_of)
        async with self._pooled:
            await journal.catch_up()
        state = journal.state
        if state.version == 0:
            log.warning("work message for an execution with no log; dropped")
            return Outcome.ENDED
        was_terminal = state.terminal
        if not was_terminal and await self._moved(execution_id, state):
            return Outcome.ENDED  # its work is on its own task queue's stream now
        if state.version == 1:
            self.metrics.executions.labels(state.workflow, "started").inc()
        with run_span(execution_id, state.workflow, state.restarts, state.traceparent) as span:
            outcome = await drive_execution(journal, self.registry,
                                             payloads=self.deployment.payloads)
            ended_run(span, outcome.value, state)
        if outcome is Outcome.ENDED and not was_terminal:
            self.metrics.executions.labels(state.workflow, state.status).inc()
        if outcome is Outcome.ENDED:
            await self._release_slot(state)
        if outcome is Outcome.QUEUED:
            if journal.retry_in_ms is not None:  # only the rate window holds it: try again
                self._later_wake([execution_id], journal.retry_in_ms)
            self._keep(execution_id, journal)  # a release or the rate window wakes it
            return Outcome.WAITING
        if outcome is Outcome.WAITING and _worth_keeping(journal):
            self._keep(execution_id, journal)
        return outcome

    async def _moved(self, execution_id: str, state: ExecutionState) -> bool:
        """Move work of a task queue this worker does not serve to that queue's stream
        instead of running it: the queue it was started on, else the one its workflow's
        code declares (here, or as a worker recorded it). Such work reaches another queue's
        stream when it started before any route was known, before task queues existed, or
        from a process of an earlier version (which sends all work to the default one)."""
        queue = state.task_queue or await self._declared(state.workflow) or DEFAULT_TASK_QUEUE
        if queue in self.task_queues:
            return False
        await self.store.move_to_task_queue(execution_id, queue)
        log.info("work moved to its task queue", workflow=state.workflow, task_queue=queue)
        return True

    def _keep(self, execution_id: str, journal: StoreJournal) -> None:
        self._cache[execution_id] = journal
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    async def _declared(self, workflow: str) -> str | None:
        """The task queue ``workflow`` declares: in this worker's code, else as a worker
        with its code recorded it; None when unknown."""
        if workflow in self.registry:
            return self.registry.get(workflow).task_queue
        return await self.deployment.routes.declared(workflow)

    async def _task_queue_of(self, workflow: str) -> str:
        """What a new execution (a child, a failure handler) of ``workflow`` records as its
        task queue: the declared one ("" for the default queue or when unknown)."""
        queue = await self._declared(workflow)
        return "" if queue in (None, DEFAULT_TASK_QUEUE) else queue

    async def _ack(self, messages: list[Message]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for stream, ids in _by_stream(messages).items():
            pipe.xack(stream, GROUP, *ids)
            pipe.xdel(stream, *ids)
        async with self._pooled:
            await pipe.execute()

    async def _ack_quietly(self, messages: list[Message]) -> None:
        try:
            await self._ack(messages)
        except (RedisError, OSError) as exc:
            log.warning("could not drop malformed work; it comes back after the lease",
                        error=str(exc))

    async def _release(self, messages: list[Message]) -> None:
        """Hand abandoned messages back at once (a fresh message each) instead of waiting
        for their lease to run out."""
        try:
            for stream, ids in _by_stream(messages).items():
                await self._release_script([stream], [GROUP, *ids])
        except (RedisError, OSError) as exc:
            log.warning("could not release work; it is reclaimed after the lease", error=str(exc))

    # -- queues ---------------------------------------------------------------------

    async def _release_slot(self, state: ExecutionState) -> None:
        """An execution of a queue ended: give its slot back, wake the waiters that fit."""
        if state.workflow not in self.registry:
            return
        name = self.registry.get(state.workflow).queue
        if name is None:
            return
        queue = self.registry.queue(name)
        wake = await self.gate.release_detail(queue, state.queue_key, state.admission)
        await self.store.wake(execution_ids(wake.ids))
        if wake.retry_in_ms is not None:
            self._later_wake([], wake.retry_in_ms, queue.name, state.queue_key)

    def _later_wake(self, ids: list[str], delay_ms: int, queue: str = "", key: str = "") -> None:
        """Wake ``ids`` (or the waiters of a queue key) once a rate window has room; the
        sweeper does the same should this process stop first."""
        async def wake() -> None:
            try:
                woken = list(ids)
                if queue:
                    woken += execution_ids(
                        (await self.gate.wake(self.registry.queue(queue), key)).ids)
                await self.store.wake(woken)
            except (RedisError, OSError) as exc:
                log.warning("waking queued executions failed; the sweeper will",
                            error=str(exc))

        def fire() -> None:
            self._later.discard(handle)
            task = asyncio.create_task(wake())
            self._background.append(task)
            task.add_done_callback(self._background.remove)

        handle = asyncio.get_running_loop().call_later(delay_ms / 1000, fire)
        self._later.add(handle)

    async def _sweep_queues(self) -> None:
        """Repair what crashes left in the queues: slots of executions that ended without
        giving them back, waiters whose wake-up was lost."""
        while True:
            await asyncio.sleep(self._queue_sweep)
            queues = self.registry.queues()
            if not queues:
                continue
            try:
                await self.store.wake(execution_ids(
                    await self.gate.sweep(queues, self.store.ended)))
            except (RedisError, OSError) as exc:
                reraise_if_cancelling(exc)
                log.warning("queue sweep failed", error=str(exc))

    # -- pause rules ----------------------------------------------------------------

    async def _watch_pauses(self) -> None:
        """Refresh the cached pause rules; now and then resume executions whose rule is
        gone (a resume that stopped half-way, or a pause recorded from a stale cache)."""
        interval = max(0.2, min(self._poll_interval, 1.0))
        rounds = 0
        while True:
            await asyncio.sleep(interval)
            rounds += 1
            try:
                active = await self.pauses.refresh()
                if rounds % PAUSE_SWEEP_EVERY == 0:
                    await resume_released(self.store, set(active))
            except (RedisError, OSError) as exc:
                reraise_if_cancelling(exc)
                log.warning("refreshing pause rules failed", error=str(exc))

    # -- leases ---------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        interval = min(self.lease_timeout / 3, 5.0)
        while True:
            self._touch()
            asleep = time.monotonic()
            await asyncio.sleep(interval)
            stalled = time.monotonic() - asleep - interval
            if stalled > interval / 2:
                # the loop did not run: a step function blocked it (sync I/O, time.sleep)
                self.metrics.loop_blocked.inc(stalled)
                log.warning("event loop blocked; leases may have run out, so blocked steps "
                            "can run again on another worker: make blocking step functions "
                            "async or wrap them in asyncio.to_thread",
                            blocked_s=round(stalled, 1), lease_timeout_s=self.lease_timeout)
            await self._serving()
            held: list[Message] = [m for r in self._in_flight.values() for m in r.messages]
            for stream, ids in _by_stream(held).items():
                try:
                    lost: list[bytes] = await self._lease(
                        keys=[stream], args=[GROUP, self.consumer, *ids]
                    )
                except (RedisError, OSError) as exc:
                    reraise_if_cancelling(exc)
                    log.warning("heartbeat failed", error=str(exc))
                    if isinstance(exc, NoPermissionError):
                        self.loops.report_failure("heartbeat", exc)  # no retry fixes an ACL
                    continue
                if lost:
                    self._forget(stream, set(lost))

    def _breaker(self) -> StoreBreaker:
        return StoreBreaker(lambda kind: self.metrics.store_refusals.labels(kind).inc())

    def healthy(self) -> bool:
        """False while a background loop crashed within the last minute; the heartbeat
        file then names it, and ``zart-es health`` reports it."""
        return self.loops.healthy()

    def _touch(self) -> None:
        if self.heartbeat_file:
            try:
                write_heartbeat(self.heartbeat_file, self.loops.findings(),
                                store_refusing=self.breaker.error if self.breaker.open else None)
            except OSError as exc:
                log.warning("cannot touch heartbeat file", path=self.heartbeat_file,
                            error=str(exc))

    async def _serving(self) -> None:
        """Say which task queues this worker serves (``status`` and ``/metrics`` count
        the live workers of each)."""
        try:
            await self.deployment.routes.serving(self.consumer, self.task_queues)
        except (RedisError, OSError) as exc:
            reraise_if_cancelling(exc)
            log.warning("could not say which task queues this worker serves", error=str(exc))

    def _forget(self, stream: str, lost: set[bytes]) -> None:
        for execution_id, run in list(self._in_flight.items()):
            run.messages = [m for m in run.messages if not (m[0] == stream and m[1] in lost)]
            if not run.messages and run.task is not None and not run.acking:
                log.warning("lease lost; another worker owns the execution now",
                            execution_id=execution_id)
                run.task.cancel()


def _worth_keeping(journal: StoreJournal) -> bool:
    """Whether a waiting execution's fold is worth its memory: its log is long, or one of
    its timers is due within CACHE_HORIZON_MS (of Redis' clock at its last entry)."""
    state = journal.state
    if state.version >= CACHE_MIN_EVENTS:
        return True
    if journal.last_entry is None:
        return False
    horizon = int(journal.last_entry.split(b"-", 1)[0]) + CACHE_HORIZON_MS
    return any(not timer.fired and timer.due_ms <= horizon for timer in state.timers.values())


def _check_task_queues(task_queues: Iterable[str] | None) -> tuple[str, ...] | None:
    if task_queues is None:
        return None
    checked = tuple(sorted({check_task_queue(name) for name in task_queues}))
    if not checked:
        raise ValueError("task_queues must name at least one task queue")
    return checked


def _by_stream(messages: Iterable[Message]) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for stream, msg_id in messages:
        out.setdefault(stream, []).append(msg_id)
    return out


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _pairs(flat: list[Any]) -> dict[bytes, bytes]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _backoff(failures: int) -> float:
    return RETRY_BACKOFF[min(failures, len(RETRY_BACKOFF)) - 1]


CANCEL_WAIT = 15.0
"""How long stopping waits for a cancelled loop before it names it and goes on."""


async def _cancel(tasks: Iterable[asyncio.Task[Any]]) -> None:
    pending = [t for t in tasks if not t.done()]
    for task in pending:
        task.cancel()
    if not pending:
        return
    _, stuck = await asyncio.wait(pending, timeout=CANCEL_WAIT)
    for task in stuck:  # a loop that swallowed its cancellation: say where, do not hang
        frames = "; ".join(f"{f.f_code.co_filename}:{f.f_lineno}" for f in task.get_stack())
        log.error("task did not stop when cancelled; shutting down without it",
                  task=task.get_name(), at=frames)
    for task in pending:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: no "exception never retrieved" noise
