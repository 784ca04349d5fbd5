"""``Worker``: reads work messages of its task queues on every partition, drives executions.

One process runs many executions at once: each work message starts a task that replays
its execution until it ends or waits for a timer, then acknowledges the message. A message
stays in the consumer group's pending list until then, so a worker killed at any point
loses nothing: another worker reclaims the message once its lease (idle time) runs out.
A worker holding a message heartbeats it, so a long step keeps its lease.

The parts: :class:`~._intake.Intake` (messages in and out), :class:`~._driving.Driver`
(one execution's runs), :class:`~._leases.Leases` (the heartbeat),
:class:`~._queue_slots.QueueSlots` (queue slots and wake-ups), and the background loops
(timers, schedules, queries, pause rules, the archiver) this class starts and stops.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import uuid
from collections.abc import Iterable

import structlog

from zart_es.core import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    DEFAULT_TASK_QUEUE,
    Duration,
    check_task_queue,
)
from zart_es.engine._aio import Supervisor, cancel_all
from zart_es.engine._archiver import archiver_for
from zart_es.engine._breaker import StoreBreaker
from zart_es.engine._driving import Driver, DriverParts
from zart_es.engine._intake import InFlight, Intake
from zart_es.engine._leases import Leases
from zart_es.engine._metrics import WorkerMetrics
from zart_es.engine._pause_rules import PauseRules, watch_pauses
from zart_es.engine._queries import QueryServer
from zart_es.engine._queue_gate import QueueGate
from zart_es.engine._queue_slots import QueueSlots
from zart_es.engine._scheduler import Scheduler
from zart_es.engine._timers import TimerPoller
from zart_es.ops import Schedules
from zart_es.store import DEFAULT_PREFIX, Deployment, RedisClient, RedisError, deployment_for
from zart_es.workflow import Registry, default_registry

log = structlog.get_logger("zart_es.worker")


class Worker:
    """A worker process's engine; embed it with ``async with Worker(deployment) as w:``
    or ``run()``.

    ``deployment`` is the :class:`~zart_es.store.Deployment` it works through (shareable
    with a client in the same process), or a Redis URL (None: ``$ZART_REDIS_URL``, else
    the default) from which it builds its own with ``partitions``, ``prefix``,
    ``max_payload_bytes``, ``payload_keys`` and ``redis``.

    ``concurrency`` caps the executions driven at once (sleeping ones cost nothing: they
    live in Redis; the folds of those due back soon, or with long logs, are kept in an LRU
    of ``cache_size``). ``lease_timeout`` is how long a silent worker keeps its messages
    before another reclaims them; heartbeats renew it every third of that.
    ``grace_period`` is how long ``stop()`` lets in-flight executions run before handing
    them back. ``task_queues`` are the task queues whose work it reads; by default the
    default queue and every queue its registry's workflows declare.
    """

    def __init__(
        self,
        deployment: Deployment | str | None = None,
        *,
        registry: Registry | None = None,
        concurrency: int = 100,
        lease_timeout: float = 30.0,
        poll_interval: float = 0.5,
        grace_period: float = 10.0,
        consumer: str | None = None,
        cache_size: int = 1000,
        metrics: WorkerMetrics | None = None,
        heartbeat_file: str | None = None,
        queue_sweep_interval: float = 1.0,
        run_scheduler: bool = True,
        quarantine_after: int = 5,
        task_queues: Iterable[str] | None = None,
        archive_url: str | None = None,
        retention: Duration | None = None,
        partitions: int | None = None,
        prefix: str = DEFAULT_PREFIX,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        payload_keys: str | None = None,
        redis: RedisClient | None = None,
    ) -> None:
        _check_positive(concurrency=concurrency, quarantine_after=quarantine_after,
                        lease_timeout=lease_timeout)
        self._task_queues = _check_task_queues(task_queues)  # before anything is opened
        self._own_deployment = not isinstance(deployment, Deployment)
        self.deployment = deployment_for(
            deployment, partitions=partitions, prefix=prefix,
            max_payload_bytes=max_payload_bytes, payload_keys=payload_keys, redis=redis)
        """The deployment handle this worker works through (shareable with a client)."""
        self.url, self.keys = self.deployment.url, self.deployment.keys
        self.redis, self.store = self.deployment.redis, self.deployment.store
        self.registry = registry or default_registry
        self.concurrency, self.lease_timeout = concurrency, lease_timeout
        self.grace_period = grace_period
        self.run_scheduler = run_scheduler
        """Start the occurrences of recurring schedules (any number of workers may)."""
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._archive = (archive_url, retention)
        """Where ended executions go once their retention passed (docs: retention)."""
        self._poll_interval = poll_interval
        self._wire(metrics or WorkerMetrics(), poll_interval)
        self.gate = QueueGate(self.deployment)
        self.slots = QueueSlots(self.store, self.gate, self.registry,
                                sweep_interval=queue_sweep_interval)
        self._build_parts(quarantine_after, cache_size, heartbeat_file)
        self._stopping = asyncio.Event()
        self._intake_loops: list[asyncio.Task[None]] = []
        self._background: list[asyncio.Task[None]] = []
        self._main: asyncio.Task[None] | None = None

    def _build_parts(self, quarantine_after: int, cache_size: int,
                     heartbeat_file: str | None) -> None:
        """The intake, the driver of runs and the leases, wired to each other."""
        self.intake = Intake(self.deployment, self.consumer, self.concurrency,
                             self.lease_timeout, self._drive)
        self.driver = Driver(
            self.deployment, self.registry, self.intake,
            parts=DriverParts(metrics=self.metrics, breaker=self.breaker, loops=self.loops,
                              pauses=self.pauses, gate=self.gate, slots=self.slots,
                              wake_timers=self.poller.wake),
            quarantine_after=quarantine_after, cache_size=cache_size,
            draining=self._stopping_now, task_queues=lambda: self.task_queues)
        self.leases = Leases(self.deployment, self.intake, task_queues=lambda: self.task_queues,
                             metrics=self.metrics, loops=self.loops, breaker=self.breaker,
                             heartbeat_file=heartbeat_file)
        self.metrics.in_flight.set_function(lambda: len(self.intake.in_flight))

    def _wire(self, metrics: WorkerMetrics, poll_interval: float) -> None:
        """The metrics, and the parts that report to them: the store breaker (open while
        Redis refuses writes: runs wait), the loops' supervisor, the timer poller."""
        self.metrics = metrics
        self.breaker = StoreBreaker(lambda kind: metrics.store_refusals.labels(kind).inc())
        self.loops = Supervisor(log, lambda loop: metrics.loop_restarts.labels(loop).inc())
        """The worker's background loops, restarted when they crash (see :meth:`healthy`)."""
        self.poller = TimerPoller(
            self.store, self.keys, poll_interval=poll_interval,
            on_set_aside=lambda p, kind: metrics.timers_set_aside.labels(p, kind).inc())
        self.pauses = PauseRules(self.deployment)

    def _stopping_now(self) -> bool:
        return self._stopping.is_set()

    async def _drive(self, execution_id: str, run: InFlight) -> None:
        await self.driver.drive(execution_id, run)

    # -- lifecycle ------------------------------------------------------------------

    @property
    def task_queues(self) -> tuple[str, ...]:
        """The task queues whose work this worker reads."""
        if self._task_queues is None:  # fixed at the first look (run() reads its streams)
            self._task_queues = tuple(sorted({DEFAULT_TASK_QUEUE,
                                              *self.registry.task_queues()}))
        return self._task_queues

    @property
    def quarantine_after(self) -> int:
        """Engine crashes on one execution before it is quarantined."""
        return self.driver.quarantine_after

    @property
    def heartbeat_file(self) -> str | None:
        """Rewritten while the worker's event loop runs, with the loops that crashed
        recently: ``zart-es health --heartbeat-file`` reads it."""
        return self.leases.heartbeat_file

    async def run(self) -> None:
        """Work until :meth:`stop` is called, then drain within the grace period."""
        await self._start()
        loops = self.loops
        self._intake_loops = [loops.start(f"read-{p}", functools.partial(self.intake.read, p))
                              for p in range(self.keys.partitions)]
        self._intake_loops.append(loops.start("reclaim", self.intake.reclaim))
        self._background = [
            loops.start("timers", self.poller.run),
            loops.start("heartbeat", self.leases.run),
            loops.start("pauses", functools.partial(
                watch_pauses, self.pauses, self.store,
                max(0.2, min(self._poll_interval, 1.0)))),
            loops.start("queues", self._sweep_queues),
            loops.start("queries", QueryServer(self.deployment, self.registry, self.consumer,
                                               self.task_queues, metrics=self.metrics).run),
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

    async def _start(self) -> None:
        """Check the deployment, read the rules and make the groups; say what is served."""
        await self.deployment.ready()
        await self.pauses.refresh()
        served = self.task_queues
        # the groups of every queue the code declares too (KEDA wakes a pool from them)
        await self.intake.serve(served, set(self.registry.task_queues()) - set(served))
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

    async def _sweep_queues(self) -> None:
        await self.slots.sweep()

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
        await cancel_all(self._intake_loops, log)
        in_flight = self.intake.in_flight
        tasks = [r.task for r in in_flight.values() if r.task is not None]
        if tasks:
            log.info("draining", in_flight=len(tasks), grace_period=self.grace_period)
            _, late = await asyncio.wait(tasks, timeout=self.grace_period)
            if late:
                abandoned = [m for r in list(in_flight.values()) for m in r.messages]
                await cancel_all(late, log)
                await self.intake.release(abandoned)
        await cancel_all(self._background, log)
        await self.slots.aclose()
        try:
            await self.deployment.routes.leaving(self.consumer, self.task_queues)
        except (RedisError, OSError) as exc:
            log.warning("could not say this worker left its task queues", error=str(exc))
        await self.gate.aclose()
        await self.intake.aclose()
        await self.leases.aclose()
        if self._own_deployment:
            await self.deployment.close()
        log.info("worker stopped", consumer=self.consumer)

    def healthy(self) -> bool:
        """False while a background loop crashed within the last minute; the heartbeat
        file then names it, and ``zart-es health`` reports it."""
        return self.loops.healthy()


def _check_positive(**values: float) -> None:
    """ValueError naming the first setting that is not positive (quarantine_after and
    concurrency count: at least 1)."""
    for name, value in values.items():
        if value <= 0:
            bound = "> 0" if name == "lease_timeout" else ">= 1"
            raise ValueError(f"{name} must be {bound}, got {value}")


def _check_task_queues(task_queues: Iterable[str] | None) -> tuple[str, ...] | None:
    if task_queues is None:
        return None
    checked = tuple(sorted({check_task_queue(name) for name in task_queues}))
    if not checked:
        raise ValueError("task_queues must name at least one task queue")
    return checked
