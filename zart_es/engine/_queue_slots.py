"""A worker's side of the queues: slots given back, waiters woken, crashes repaired.

When an execution of a queue ends, its slot goes back and the waiters that now fit are
woken; a rate window with no room yet wakes them once it has room. A sweep repairs what
crashes left: slots of executions that ended without giving them back, waiters whose
wake-up was lost. The admission rules themselves are :class:`~.QueueGate`'s.
"""

from __future__ import annotations

import asyncio

import structlog

from zart_es.core import ExecutionState
from zart_es.engine._aio import TaskSet, reraise_if_cancelling
from zart_es.engine._queue_gate import QueueGate, execution_ids
from zart_es.store import RedisError, Store
from zart_es.workflow import Registry

log = structlog.get_logger("zart_es.worker")


class QueueSlots:
    """Gives back the slots of ended executions and wakes their queues' waiters."""

    def __init__(self, store: Store, gate: QueueGate, registry: Registry, *,
                 sweep_interval: float) -> None:
        self._store, self._gate, self._registry = store, gate, registry
        self._sweep_interval = sweep_interval
        self._later: set[asyncio.TimerHandle] = set()
        self._tasks = TaskSet()

    async def release(self, state: ExecutionState) -> None:
        """An execution of a queue ended: give its slot back, wake the waiters that fit."""
        if state.workflow not in self._registry:
            return
        name = self._registry.get(state.workflow).queue
        if name is None:
            return
        queue = self._registry.queue(name)
        wake = await self._gate.release_detail(queue, state.queue_key, state.admission)
        await self._store.wake(execution_ids(wake.ids))
        if wake.retry_in_ms is not None:
            self.wake_later([], wake.retry_in_ms, queue.name, state.queue_key)

    def wake_later(self, ids: list[str], delay_ms: int, queue: str = "", key: str = "") -> None:
        """Wake ``ids`` (or the waiters of a queue key) once a rate window has room; the
        sweep does the same should this process stop first."""
        def fire() -> None:
            self._later.discard(handle)
            self._tasks.spawn(self._wake(ids, queue, key))

        handle = asyncio.get_running_loop().call_later(delay_ms / 1000, fire)
        self._later.add(handle)

    async def _wake(self, ids: list[str], queue: str, key: str) -> None:
        try:
            woken = list(ids)
            if queue:
                woken += execution_ids(
                    (await self._gate.wake(self._registry.queue(queue), key)).ids)
            await self._store.wake(woken)
        except (RedisError, OSError) as exc:
            log.warning("waking queued executions failed; the sweeper will", error=str(exc))

    async def sweep(self) -> None:
        """Repair what crashes left in the queues, every sweep interval, forever."""
        while True:
            await asyncio.sleep(self._sweep_interval)
            queues = self._registry.queues()
            if not queues:
                continue
            try:
                await self._store.wake(execution_ids(
                    await self._gate.sweep(queues, self._store.ended)))
            except (RedisError, OSError) as exc:
                reraise_if_cancelling(exc)
                log.warning("queue sweep failed", error=str(exc))

    async def aclose(self) -> None:
        """Drop the wake-ups not due yet (the sweep of a live worker does them)."""
        for handle in self._later:
            handle.cancel()
        await self._tasks.cancel(log)
