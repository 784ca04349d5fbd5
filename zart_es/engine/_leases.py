"""A worker's leases: the heartbeat that keeps the messages it holds, and says it is alive.

A message stays with this worker while it renews its idle time (``lease.lua``, every
third of the lease); one another worker took over is forgotten and its run stopped. The
same beat rewrites the heartbeat file (``zart-es health``), says which task queues this
worker serves, and notices when a step function blocked the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from zart_es.engine._aio import Supervisor, reraise_if_cancelling
from zart_es.engine._breaker import StoreBreaker
from zart_es.engine._heartbeat import write_heartbeat
from zart_es.engine._intake import Intake, by_stream
from zart_es.engine._metrics import WorkerMetrics
from zart_es.store import (
    GROUP,
    Deployment,
    NoPermissionError,
    RedisError,
    load_script,
    script_caller,
)

log = structlog.get_logger("zart_es.worker")


class Leases:
    """Renews the leases of what ``intake`` holds, every third of ``lease_timeout``."""

    def __init__(self, deployment: Deployment, intake: Intake, *,
                 task_queues: Callable[[], tuple[str, ...]], metrics: WorkerMetrics,
                 loops: Supervisor, breaker: StoreBreaker,
                 heartbeat_file: str | None) -> None:
        self._routes = deployment.routes
        self._intake = intake
        self._task_queues = task_queues
        self._metrics = metrics
        self._loops = loops
        self._breaker = breaker
        self.heartbeat_file = heartbeat_file
        """Rewritten while the worker's event loop runs, with the loops that crashed
        recently: ``zart-es health --heartbeat-file`` reads it."""
        self._lease = script_caller(deployment.redis, load_script("lease"), pipelined=False)

    async def run(self) -> None:
        """Beat forever (until cancelled)."""
        interval = min(self._intake.lease_timeout / 3, 5.0)
        while True:
            self.touch()
            asleep = time.monotonic()
            await asyncio.sleep(interval)
            self._check_blocked(time.monotonic() - asleep - interval, interval)
            await self.serving()
            await self._renew()

    def _check_blocked(self, stalled: float, interval: float) -> None:
        if stalled > interval / 2:
            # the loop did not run: a step function blocked it (sync I/O, time.sleep)
            self._metrics.loop_blocked.inc(stalled)
            log.warning("event loop blocked; leases may have run out, so blocked steps "
                        "can run again on another worker: make blocking step functions "
                        "async or wrap them in asyncio.to_thread",
                        blocked_s=round(stalled, 1),
                        lease_timeout_s=self._intake.lease_timeout)

    async def _renew(self) -> None:
        intake = self._intake
        for stream, ids in by_stream(intake.held()).items():
            try:
                lost: list[bytes] = await self._lease(
                    keys=[stream], args=[GROUP, intake.consumer, *ids])
            except (RedisError, OSError) as exc:
                reraise_if_cancelling(exc)
                log.warning("heartbeat failed", error=str(exc))
                if isinstance(exc, NoPermissionError):
                    self._loops.report_failure("heartbeat", exc)  # no retry fixes an ACL
                continue
            if lost:
                intake.forget(stream, set(lost))

    def touch(self) -> None:
        """Rewrite the heartbeat file (if there is one) with the loops' findings."""
        if not self.heartbeat_file:
            return
        breaker = self._breaker
        try:
            write_heartbeat(self.heartbeat_file, self._loops.findings(),
                            store_refusing=breaker.error if breaker.open else None)
        except OSError as exc:
            log.warning("cannot touch heartbeat file", path=self.heartbeat_file,
                        error=str(exc))

    async def serving(self) -> None:
        """Say which task queues this worker serves (``status`` and ``/metrics`` count
        the live workers of each)."""
        try:
            await self._routes.serving(self._intake.consumer, self._task_queues())
        except (RedisError, OSError) as exc:
            reraise_if_cancelling(exc)
            log.warning("could not say which task queues this worker serves", error=str(exc))

    async def aclose(self) -> None:
        """Close the lease script's connection."""
        await self._lease.aclose()
