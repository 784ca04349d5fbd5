"""Folded states of executions for readers (the API, the CLI), bounded in memory and time
whatever the length of a log.

Folding a log of 100,000 events per request held every event at once and did the whole
work again for each of 10 concurrent requests (6.4 s, 529 MB). A :class:`FoldCache`
keeps the folded state of recently read executions with the id of the last entry folded,
reads only what was appended since, a page at a time (one page in memory, never the whole
log), folds each execution once however many ask at the same moment, and caps how many
folds run at once.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from zart_es.core import ExecutionNotFound, ExecutionState, apply
from zart_es.store import Store


class FoldCache:
    """``await cache.state(execution_id)``: the execution's folded state, up to date."""

    def __init__(self, store: Store, *, size: int = 128, concurrency: int = 4) -> None:
        self._store = store
        self._size = size
        self._states: OrderedDict[str, tuple[bytes, ExecutionState]] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}
        self._slots = asyncio.Semaphore(concurrency)

    async def state(self, execution_id: str) -> ExecutionState:
        """Fold what was appended since the last read (all of it the first time);
        ExecutionNotFound for an execution without a log."""
        lock = self._locks.setdefault(execution_id, asyncio.Lock())
        async with lock, self._slots:
            last, state = self._states.pop(execution_id, (b"", None))
            state = state if state is not None else ExecutionState()
            async for page in self._store.pages(execution_id, last or None):
                for _entry_id, event in page:
                    apply(state, event)
                last = page[-1][0]
            if not last:
                raise ExecutionNotFound(execution_id)
            self._keep(execution_id, last, state)
            return state

    def _keep(self, execution_id: str, last: bytes, state: ExecutionState) -> None:
        self._states[execution_id] = (last, state)
        while len(self._states) > self._size:
            evicted, _ = self._states.popitem(last=False)
            lock = self._locks.get(evicted)
            if lock is not None and not lock.locked():
                del self._locks[evicted]
