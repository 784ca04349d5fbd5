"""The worker's query loop: answer queries of the executions of the task queues it serves.

Each answer folds the execution's log (only the entries since the last query of the
same execution: the folds are kept in an LRU of their own, never the running
executions' journals), replays the workflow read-only and calls the handler. Nothing is
written to the log and no step runs; a query never waits for the execution's own run.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict

import msgspec
import structlog

from zart_es.core import (
    ExecutionState,
    QueryAnswer,
    QueryRequest,
    apply,
    decode_request,
)
from zart_es.engine._aio import reraise_if_cancelling
from zart_es.engine._logs import Complaints
from zart_es.engine._metrics import WorkerMetrics
from zart_es.store import Deployment, RedisError, ResponseError
from zart_es.workflow import Registry, answer_query

log = structlog.get_logger("zart_es.queries")

READ_BLOCK_MS = 1000
BATCH = 50


class _Fold:
    """One execution's log folded for queries, and the entry it was folded up to."""

    __slots__ = ("last_entry", "lock", "state")

    def __init__(self) -> None:
        self.state = ExecutionState()
        self.last_entry: bytes | None = None
        self.lock = asyncio.Lock()
        """Held while the fold is caught up and replayed: one query of it at a time."""


class QueryServer:
    """Answers the queries of ``task_queues`` with ``registry``'s code."""

    def __init__(self, deployment: Deployment, registry: Registry, consumer: str,
                 task_queues: tuple[str, ...], *, metrics: WorkerMetrics | None = None,
                 cache_size: int = 256) -> None:
        self.deployment = deployment
        self.registry = registry
        self.consumer = consumer
        self.task_queues = task_queues
        self.metrics = metrics
        self._folds: OrderedDict[str, _Fold] = OrderedDict()
        self._cache_size = cache_size
        self._complaints = Complaints(log)

    async def run(self) -> None:
        """Serve until cancelled (one read loop per task queue: a stream each)."""
        channel = self.deployment.queries
        for task_queue in self.task_queues:
            await channel.join(task_queue)
        await asyncio.gather(*(self._serve(queue) for queue in self.task_queues))

    async def _serve(self, task_queue: str) -> None:
        channel = self.deployment.queries
        failures = 0
        while True:
            try:
                taken = await channel.take(task_queue, self.consumer, BATCH, READ_BLOCK_MS)
                failures = 0
            except (RedisError, OSError) as exc:
                reraise_if_cancelling(exc)
                failures += 1
                log.warning("reading queries failed, retrying", task_queue=task_queue,
                            error=str(exc))
                await asyncio.sleep(min(0.1 * 2 ** failures, 5.0))
                if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
                    await channel.join(task_queue)
                continue
            if taken:
                await asyncio.gather(*(self._answer(task_queue, data) for _id, data in taken))
                await channel.done(task_queue, [entry_id for entry_id, _data in taken])

    async def _answer(self, task_queue: str, data: bytes) -> None:
        request = self._request(task_queue, data)
        if request is None or request.deadline_ms < time.time() * 1000:
            return  # unreadable, or its asker gave up already
        try:
            # no later than its asker waits: workflow code awaiting something outside a
            # step must not hold the execution's fold (and this batch) for ever
            async with asyncio.timeout(request.deadline_ms / 1000 - time.time()):
                answer = await self.answer(request)
        except TimeoutError:
            self._unanswered(request, TimeoutError("the replay ran past the asker's timeout"))
            return
        except (RedisError, OSError) as exc:
            reraise_if_cancelling(exc)
            self._unanswered(request, exc)  # its asker times out
            return
        except Exception as exc:  # a log it cannot read: say so, keep serving
            self._folds.pop(request.execution_id, None)
            answer = QueryAnswer(outcome="failed", error_type=type(exc).__name__,
                                 message=str(exc))
        try:
            await self.deployment.queries.answer(request.reply, answer)
        except (RedisError, OSError) as exc:
            reraise_if_cancelling(exc)
            self._unanswered(request, exc)

    @staticmethod
    def _unanswered(request: QueryRequest, exc: BaseException) -> None:
        log.warning("could not answer a query", execution_id=request.execution_id,
                    query=request.name, error=str(exc))

    def _request(self, task_queue: str, data: bytes) -> QueryRequest | None:
        """The request in ``data``, or None (logged once) for bytes zart-es did not write:
        a reply stream elsewhere than this queue's would let any writer aim our XADDs."""
        try:
            request = decode_request(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self._complaints.once("query request set aside", task_queue, exc)
            return None
        prefix = self.deployment.keys.query_reply(task_queue, "")
        token = request.reply.removeprefix(prefix)
        if not request.reply.startswith(prefix) or not token.isalnum():
            self._complaints.once("query request set aside", task_queue,
                                  f"reply stream {request.reply!r} is not one of this queue's")
            return None
        return request

    async def answer(self, request: QueryRequest) -> QueryAnswer:
        """The answer to ``request`` at the execution's current point."""
        fold = self._fold(request.execution_id)
        async with fold.lock:
            entries = await self.deployment.store.read(request.execution_id, fold.last_entry)
            for entry_id, event in entries:
                apply(fold.state, event)
                fold.last_entry = entry_id
            answer = await self._replayed(fold.state, request)
        if self.metrics is not None:
            self.metrics.queries.labels(answer.outcome).inc()
        return answer

    async def _replayed(self, state: ExecutionState, request: QueryRequest) -> QueryAnswer:
        if state.version == 0:
            return QueryAnswer(outcome="failed", error_type="ExecutionNotFound",
                               message=f"no execution {request.execution_id!r}")
        if state.workflow not in self.registry:
            return QueryAnswer(outcome="failed", error_type="UnknownWorkflow",
                               message=f"this worker does not serve workflow "
                                       f"{state.workflow!r}")
        return await answer_query(state, self.registry.get(state.workflow),
                                  self.deployment.payloads, request.name, request.args)

    def _fold(self, execution_id: str) -> _Fold:
        fold = self._folds.get(execution_id)
        if fold is None:
            fold = self._folds[execution_id] = _Fold()
            while len(self._folds) > self._cache_size:
                oldest = next(iter(self._folds))
                if self._folds[oldest].lock.locked():
                    break  # in use: dropped on a later query
                del self._folds[oldest]
        self._folds.move_to_end(execution_id)
        return fold
