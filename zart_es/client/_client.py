"""``Client``: start executions and read what happened to them.

The client never imports the worker: it writes ``ExecutionStarted`` (with its work
message, atomically) and reads logs and meta hashes. Waiting for a result blocks on the
execution's own stream (``XREAD BLOCK``), so it costs no polling.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

import msgspec

from zart_es import ops
from zart_es.client._archived import ArchiveReads
from zart_es.client._bulk import BulkFilter, BulkOutcome, run_bulk
from zart_es.client._bulk import operation as bulk_operation
from zart_es.client._bulk import select as bulk_select
from zart_es.client._ends import EndWatcher
from zart_es.client._handle import ExecutionHandle
from zart_es.core import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    DEFAULT_TASK_QUEUE,
    RESERVED_SIGNAL_PREFIX,
    STATES,
    TERMINAL_STATES,
    AnyEvent,
    ChainCheck,
    ConfigError,
    Duration,
    ExecutionCompleted,
    ExecutionFailedError,
    ExecutionNotFound,
    ExecutionState,
    Payloads,
    ResultTimeout,
    SignalReceived,
    Status,
    check_chain,
    check_execution_id,
    check_workflow_name,
    end_failure,
)
from zart_es.ops import (
    ExecutionDetail,
    ExecutionStatus,
    ExecutionSummary,
    FoldCache,
    Started,
    Stats,
    TaskQueueLoad,
    cancel_execution,
    count_executions,
    describe,
    list_executions,
    submit_execution,
    task_queue_loads,
)
from zart_es.store import (
    DEFAULT_PREFIX,
    M_TASK_QUEUE,
    ChainBreak,
    ClusterDownError,
    Deployment,
    RedisClient,
    RedisConnectionError,
    RedisTimeoutError,
    deployment_for,
    is_cluster,
    to_event,
)

WAIT_SLICE_MS = 5_000
SHORT_READS = 8
"""Waits' reads of a last event in flight at once: a thousand concurrent result() calls
share a few connections instead of opening one each."""
OUTAGE_SECONDS = 30.0
"""How long ``result()`` keeps waiting through a lost connection before raising."""


class Client:
    """Async client of one zart-es deployment (``async with Client(deployment) as c:``).

    ``deployment`` is the :class:`~zart_es.store.Deployment` it works through (shareable
    with a worker in the same process), or a Redis URL (None: ``$ZART_REDIS_URL``, else
    the default) from which it builds its own with ``partitions``, ``prefix``,
    ``max_payload_bytes``, ``payload_keys`` and ``redis``. ``archive_url`` (else
    ``$ZART_ARCHIVE_URL``) is where executions whose retention passed are read from.
    """

    def __init__(
        self,
        deployment: Deployment | str | None = None,
        *,
        archive_url: str | None = None,
        partitions: int | None = None,
        prefix: str = DEFAULT_PREFIX,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        payload_keys: str | None = None,
        redis: RedisClient | None = None,
    ) -> None:
        self._own_deployment = not isinstance(deployment, Deployment)
        self.deployment = deployment_for(
            deployment, partitions=partitions, prefix=prefix,
            max_payload_bytes=max_payload_bytes, payload_keys=payload_keys, redis=redis)
        """The deployment handle this client works through (shareable with a worker)."""
        self.url = self.deployment.url
        self.keys = self.deployment.keys
        self.redis = self.deployment.redis
        self.store = self.deployment.store
        self._payloads = self.deployment.payloads
        self._folds = FoldCache(self.store)
        self._short_reads = asyncio.Semaphore(SHORT_READS)
        self.archive = ArchiveReads(archive_url, self.keys)
        """Where executions whose retention passed are read from (``archive_url``, else
        ``$ZART_ARCHIVE_URL``; none: they are not found once archived)."""
        self._ends = EndWatcher(self.redis, self.keys,
                                per_partition=is_cluster(self.redis))

    async def __aenter__(self) -> Client:
        await self._ready()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connections this client opened (a deployment passed in stays open)."""
        await self._ends.aclose()
        if self._own_deployment:
            await self.deployment.close()

    async def _ready(self) -> None:
        await self.deployment.ready()

    def execution(self, execution_id: str) -> ExecutionHandle:
        """A handle on one execution: ``status()``, ``result()``, ``history()``, ``cancel()``.

        Nothing is read until a method is called; an unknown id raises
        :class:`ExecutionNotFound` then."""
        return ExecutionHandle(self, check_execution_id(execution_id))

    async def start(
        self, name: str, data: Any = None, execution_id: str | None = None, *,
        queue_key: str = "", priority: int | None = None, task_queue: str | None = None,
        debounce: Duration | None = None, debounce_key: str = "",
        if_ended: str = "return", if_running: str = "return",
    ) -> str:
        """Start workflow ``name`` with input ``data``; returns the execution id.

        Idempotent on ``execution_id``: starting an id that exists starts nothing and
        returns the id (a different workflow under that id is a :class:`ConfigError`).
        For a workflow of a queue, ``queue_key`` (a tenant, say) picks whose concurrency
        and rate limits apply and ``priority`` overrides the queue's own.

        ``task_queue`` overrides the task queue the workflow's code declares (which its
        workers recorded in Redis when they started): only workers serving that queue run
        the execution, now and on every later step.

        With ``debounce`` (``"5s"``), starts of ``name`` with the same ``debounce_key``
        within the window become one execution, which runs once no start came for the
        window's length, with the last start's input; each returns that execution's id.

        ``if_ended`` / ``if_running`` say what a start of an id in use does (Temporal's
        id reuse policy): ``"return"`` (the default: nothing), ``"reject"`` / ``"fail"``
        (:class:`~zart_es.ExecutionExists`), ``"reset"`` (an ended one runs again from
        scratch with this input, as Zart does) / ``"terminate"`` (a running one is ended
        and runs again with this input).
        """
        started = await self.submit(name, data, execution_id, queue_key=queue_key,
                                    priority=priority, task_queue=task_queue,
                                    debounce=debounce, debounce_key=debounce_key,
                                    if_ended=if_ended, if_running=if_running)
        return started.execution_id

    async def submit(
        self, name: str, data: Any = None, execution_id: str | None = None, *,
        queue_key: str = "", priority: int | None = None, task_queue: str | None = None,
        debounce: Duration | None = None, debounce_key: str = "",
        if_ended: str = "return", if_running: str = "return",
    ) -> Started:
        """:meth:`start`, also saying whether this call created the execution."""
        return await submit_execution(self.deployment, name, data, execution_id,
                                      queue_key=queue_key, priority=priority,
                                      task_queue=task_queue, debounce=debounce,
                                      debounce_key=debounce_key, if_ended=if_ended,
                                      if_running=if_running)

    async def status(self, execution_id: str, *, type: Any = None) -> ExecutionStatus:
        """The execution's status, with its result or error once it has ended."""
        await self._ready()
        meta = (await self.store.meta(check_execution_id(execution_id))
                or await self.archive.meta(execution_id))
        if not meta:
            raise ExecutionNotFound(execution_id)
        state = meta[b"st"].decode()
        result: Any = None
        error: str | None = None
        if state in TERMINAL_STATES:
            last = await self._last_event(execution_id)
            failure = None if last is None else end_failure(last)
            if isinstance(last, ExecutionCompleted):
                result = self._payloads.decode(last.result, type, f"result of {execution_id!r}")
            elif failure is not None:
                error = f"{failure.error_type}: {failure.message}"
        return ExecutionStatus(
            execution_id=execution_id,
            workflow=meta[b"w"].decode(),
            status=Status(state),
            version=int(meta[b"v"]),
            created_ms=int(meta[b"c"]),
            updated_ms=int(meta[b"u"]),
            result=result,
            error=error,
            task_queue=(meta.get(M_TASK_QUEUE.encode()) or DEFAULT_TASK_QUEUE.encode()).decode(),
        )

    async def result(
        self, execution_id: str, timeout: float | None = None, *, type: Any = None
    ) -> Any:
        """Wait for the execution to end and return its result (decoded to ``type``).

        Raises :class:`ExecutionFailedError` if it failed, timed out or was cancelled
        (``error_type`` "ExecutionTimedOut" / "Cancelled"), and
        :class:`ResultTimeout` if ``timeout`` seconds pass first. No polling and no read
        per event: all of a client's waits share one blocking read of the partitions'
        ``ended`` streams, and the execution's last event is read when it ends.
        """
        _check_timeout(timeout)
        await self._ready()
        check_execution_id(execution_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        await self._through_outages(self._ends.start, deadline)
        while True:
            async with self._ends.watch(execution_id) as ended:
                outcome = _outcome(execution_id, await self._tail(execution_id, deadline),
                                   type, self._payloads)
                if outcome is not _RUNNING:
                    return outcome
                wait = WAIT_SLICE_MS / 1000
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise ResultTimeout(execution_id, timeout or 0.0)
                    wait = min(wait, remaining)
                await asyncio.wait({ended}, timeout=wait)  # then look again either way

    async def _tail(self, execution_id: str, deadline: float | None) -> AnyEvent:
        """The execution's last event (through outages); ExecutionNotFound without a log."""
        key = self.keys.log(execution_id)
        async with self._short_reads:
            tail: list[Any] = await self._through_outages(
                lambda: self.redis.xrevrange(key, count=1), deadline)
        if not tail:
            tail = (await self.archive.entries(execution_id))[-1:]
        if not tail:
            raise ExecutionNotFound(execution_id)
        return to_event(tail[0][0], tail[0][1], execution_id)

    @staticmethod
    async def _through_outages(read: Callable[[], Awaitable[Any]], deadline: float | None) -> Any:
        """A read, retried through a lost connection (Redis restart, cluster failover) for
        up to OUTAGE_SECONDS: it changes nothing, so trying again is always safe."""
        give_up = time.monotonic() + OUTAGE_SECONDS
        pause = 0.05
        while True:
            try:
                return await read()
            except (RedisConnectionError, RedisTimeoutError, ClusterDownError, OSError):
                now = time.monotonic()
                if now > give_up or (deadline is not None and now > deadline):
                    raise
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)

    async def send_signal(
        self, execution_id: str, name: str, payload: Any = None, *,
        signal_id: str | None = None, by: str = "",
    ) -> bool:
        """Deliver signal ``name`` to a running execution and wake it.

        Signals are kept until a ``ctx.wait_for_signal(name)`` takes them, in arrival
        order. With ``signal_id`` delivery is idempotent: the same id again is ignored
        (returns False). Raises :class:`ExecutionNotFound` or :class:`ExecutionEnded`.
        With ``by`` (an operator's name: the CLI, the API and the console pass one) the
        signal is also an entry of the operator trail.
        """
        check_workflow_name(name, what="signal name")
        if name.startswith(RESERVED_SIGNAL_PREFIX):
            raise ConfigError(f"signal names starting with {RESERVED_SIGNAL_PREFIX!r} are the "
                              f"engine's (updates: Client.update), got {name!r}")
        data = self._payloads.encode(payload, f"payload of signal {name!r}")
        await self._ready()
        appended = await self.store.append(
            check_execution_id(execution_id), -1,
            SignalReceived(name=name, payload=data, by=by),
            token=f"event:{signal_id}" if signal_id else "",
        )
        if appended is not None and by:
            await ops.audit(self.store, "signal", by=by, execution_id=execution_id, name=name,
                            signal_id=signal_id or "")
        return appended is not None

    async def send_event(
        self, execution_id: str, name: str, payload: Any = None, *, event_id: str | None = None
    ) -> bool:
        """The first name of :meth:`send_signal` (``event_id`` is its ``signal_id``)."""
        return await self.send_signal(execution_id, name, payload, signal_id=event_id)

    async def update(
        self, execution_id: str, name: str, payload: Any = None, *,
        update_id: str | None = None, timeout: float = 30.0, type: Any = None, by: str = "",
    ) -> Any:
        """Deliver update ``name`` durably and wait for the workflow's answer (its
        ``ctx.wait_for_update(name)`` then ``reply(value)``); returns the value decoded to
        ``type``.

        The update is recorded in the execution's log before this waits, so it is taken
        even if every worker restarts; the answer is recorded too and read back from the
        log. With ``update_id`` a retry (after a timeout, a lost connection) delivers
        nothing new and returns the same answer. Raises :class:`~zart_es.UnknownUpdate`
        (a name the workflow does not declare), :class:`~zart_es.UpdateFailed` (the
        workflow failed it, or ended without answering),
        :class:`~zart_es.UpdateTimeout` (not answered yet; it stays delivered),
        ExecutionEnded or ExecutionNotFound. ``by`` also records it in the operator trail.
        """
        value = await ops.send_update(self.deployment, execution_id, name, payload,
                                      update_id=update_id, timeout=timeout, by=by)
        return self._payloads.decode(value, type, f"answer to update {name!r}")

    async def query(self, execution_id: str, name: str, *args: Any, timeout: float = 5.0,
                    type: Any = None) -> Any:
        """Ask the execution's query handler ``name`` (``ctx.on_query``) with ``args``;
        returns its value decoded to ``type``.

        A worker serving the execution's task queue replays the log read-only and calls
        the handler at the point the execution has reached (running, sleeping, waiting
        or ended): nothing is recorded, no step runs, the execution is not held up.
        Raises :class:`~zart_es.UnknownQuery` (naming the registered ones),
        :class:`~zart_es.QueryFailed` (the handler raised), :class:`~zart_es.QueryTimeout`
        (no worker answered within ``timeout`` seconds) or ExecutionNotFound.
        """
        value = await ops.ask_query(self.deployment, execution_id, name, args,
                                    timeout=timeout)
        return self._payloads.decode(value, type, f"answer of query {name!r}")

    async def cancel(self, execution_id: str, reason: str | None = None, *,
                     by: str = "") -> bool:
        """Ask the execution to stop; False (and nothing recorded) if it already ended.

        The workflow sees :class:`~zart_es.Cancelled` at its next durable call —
        also while it sleeps or waits for an event — so its ``finally:`` blocks and
        compensation steps run; it ends ``cancelled``. Asking twice records one request.
        ``by`` (who asks) is recorded with the request and in the operator trail.
        """
        return await cancel_execution(self.deployment, execution_id, reason, by=by)

    async def list(
        self, *, status: str | None = None, name: str | None = None, limit: int = 100,
        archived: bool = False,
    ) -> list[ExecutionSummary]:
        """Executions across all partitions, newest first, optionally by status and name;
        with ``archived``, those in the archive too."""
        if status is not None and status not in STATES:
            raise ConfigError(f"unknown status {status!r}; use one of {', '.join(STATES)}")
        if limit < 1:
            raise ConfigError(f"limit must be >= 1, got {limit}")
        await self._ready()
        live = await list_executions(self.redis, self.keys, status=status, name=name,
                                     limit=limit)
        if not archived:
            return live
        more = await self.archive.summaries(status=status, name=name, limit=limit)
        seen = {summary.execution_id for summary in live}
        return sorted([*live, *(s for s in more if s.execution_id not in seen)],
                      key=lambda summary: summary.created_ms, reverse=True)[:limit]

    async def list_page(
        self, *, status: str | None = None, name: str | None = None, limit: int = 100,
        cursor: str | None = None, started_after: datetime | None = None,
        started_before: datetime | None = None,
    ) -> ops.ExecutionPage:
        """A page of :meth:`list` (executions in Redis): those started in [``started_after``,
        ``started_before``) after ``cursor``, a previous page's ``next`` (same filters)."""
        await self._ready()
        return await ops.page_executions(
            self.redis, self.keys, status=status, name=name, limit=limit, cursor=cursor,
            created_after_ms=ops.ms_of(started_after, "started_after"),
            created_before_ms=ops.ms_of(started_before, "started_before"))

    # -- repair and pause (docs/operations.md) ------------------------------------------

    async def bulk(
        self, action: str, where: BulkFilter, *, step: str | None = None,
        steps: builtins.list[str] | None = None, reason: str = "", by: str = "",
        dry_run: bool = False, progress: Callable[[BulkOutcome], object] | None = None,
    ) -> BulkOutcome:
        """Apply ``action`` (``cancel``, ``retry-step``, ``rerun``, ``restart``,
        ``release``) to every execution in Redis ``where`` selects (status, workflow,
        started time range, id prefix), as that one-execution call would: each gets its
        own recorded event and operator-trail entry with ``by``. The selection is taken
        first; ``dry_run`` returns it counted without acting. ``step`` is retry-step's,
        ``steps`` rerun's. What does not apply is counted as skipped, with the reason."""
        apply = bulk_operation(self, action, step=step, steps=steps, reason=reason, by=by)
        ids = await bulk_select(self, where)
        if dry_run:
            return BulkOutcome(action=action, matched=len(ids))
        outcome = await run_bulk(ids, action, apply, progress=progress)
        await ops.audit(self.store, f"bulk-{action}", by=by, reason=reason,
                        filter=msgspec.json.encode(where).decode(), matched=str(outcome.matched),
                        done=str(outcome.done), skipped=str(outcome.skipped),
                        failed=str(outcome.failed))
        return outcome

    async def retry_step(
        self, execution_id: str, step: str | None = None, *, reason: str = "", by: str = ""
    ) -> str:
        """Run a failed execution's failed ``step`` again (the latest failed one when
        omitted); every other recorded result is kept. Returns the step.

        Raises :class:`RepairRefused` unless the execution ended ``failed``, and
        :class:`UnknownStep` for a step it never recorded.
        """
        await self._ready()
        async with self.archive.repairing(execution_id):
            return await ops.retry_step(self.store, check_execution_id(execution_id), step,
                                          by=by, reason=reason)

    async def rerun(
        self, execution_id: str, steps: builtins.list[str], *, reason: str = "", by: str = "",
        preserve: builtins.list[str] | None = None,
    ) -> builtins.list[str]:
        """Forget the results of ``steps`` and of every durable call recorded after the
        first of them, and run the ended execution again from there. Returns the calls
        forgotten.

        ``preserve`` names completed steps recorded after the re-run point to keep (as
        Zart's force_rerun does): they are not run again, and ``describe`` lists them in
        ``stale_steps``, since what they returned may no longer match the steps re-run
        before them."""
        await self._ready()
        async with self.archive.repairing(execution_id):
            return await ops.rerun(self.store, check_execution_id(execution_id), list(steps),
                                     by=by, reason=reason, preserve=preserve)

    async def reopen(self, execution_id: str, *, reason: str = "", by: str = "") -> None:
        """Reopen an execution that ended ``failed`` because Redis refused a write for it
        (versions before 0.4 let the store's error end it): nothing is forgotten, it goes
        on at the refused append. :class:`RepairRefused` for any other end."""
        await self._ready()
        async with self.archive.repairing(execution_id):
            await ops.reopen(self.store, check_execution_id(execution_id), by=by,
                             reason=reason)

    async def restart(self, execution_id: str, *, reason: str = "", by: str = "") -> int:
        """Run an ended execution again from scratch with its original input, under the
        same id; the old run's events stay in its log. Returns the new run number."""
        await self._ready()
        async with self.archive.repairing(execution_id):
            return await ops.restart(self.store, check_execution_id(execution_id), by=by,
                                       reason=reason)

    async def release(self, execution_id: str, *, reason: str = "", by: str = "") -> None:
        """Let a quarantined execution run again, once what crashed the engine on it is
        fixed (its crash count starts over). :class:`RepairRefused` unless quarantined."""
        await self._ready()
        async with self.archive.repairing(execution_id):
            await ops.release(self.deployment, check_execution_id(execution_id), by=by,
                              reason=reason)

    async def pause(
        self, *, workflow: str | None = None, queue: str | None = None,
        execution_id: str | None = None, step: str | None = None, reason: str = "",
        by: str = "",
    ) -> bool:
        """Hold every execution of ``workflow`` (or of ``queue``, or the one execution
        ``execution_id``) at its next step boundary until :meth:`resume`; new ones wait
        before their first step. With ``step`` (a glob: ``"charge-*"``), any execution
        about to run a step whose name matches is held before that step runs. Name
        exactly one. False if that rule was already in force."""
        rule = ops.rule_name(workflow, queue, execution_id=execution_id, step=step)
        await self._ready()
        return await ops.add_rule(self.store, rule, reason=reason, by=by)

    async def resume(
        self, *, workflow: str | None = None, queue: str | None = None,
        execution_id: str | None = None, step: str | None = None, by: str = "",
    ) -> int:
        """Lift the pause rule and let the executions it held continue; returns how many
        were resumed here (workers resume any left over)."""
        rule = ops.rule_name(workflow, queue, execution_id=execution_id, step=step)
        await self._ready()
        return await ops.remove_rule(self.store, rule, by=by)

    async def pauses(self) -> builtins.list[ops.PauseRule]:
        """The pause rules in force."""
        await self._ready()
        return await ops.list_rules(self.store)

    async def stats(self) -> Stats:
        """How many executions are in each state, overall and per workflow."""
        await self._ready()
        return await count_executions(self.redis, self.keys)

    async def task_queues(
        self, names: builtins.list[str] | None = None
    ) -> builtins.list[TaskQueueLoad]:
        """Each task queue's load: work waiting for a worker and in flight (``backlog``,
        what a pool's autoscaler divides by its workers' concurrency) and its live workers;
        ``names`` (default: every queue a worker served or a workflow declared)."""
        await self._ready()
        return await task_queue_loads(self.deployment, names)

    async def wait(self, execution_id: str, timeout: float) -> ExecutionStatus:
        """Wait up to ``timeout`` seconds for the execution to end; its status either way
        (``done`` says which). Unlike :meth:`result` it never raises for a failed end."""
        _check_timeout(timeout)
        with contextlib.suppress(ExecutionFailedError, ResultTimeout):
            await self.result(execution_id, timeout=timeout)
        return await self.status(execution_id)

    async def describe(self, execution_id: str) -> ExecutionDetail:
        """Status plus what the folded log says: steps done, current step, timers pending."""
        status = await self.status(execution_id)
        if status.done:
            return describe(status, await self._folded(execution_id))
        state, workers = await asyncio.gather(  # one round trip's wait for both
            self._folded(execution_id), self.deployment.routes.workers([status.task_queue]))
        return describe(status, state, workers[status.task_queue])

    async def _folded(self, execution_id: str) -> ExecutionState:
        try:
            return await self._folds.state(check_execution_id(execution_id))
        except ExecutionNotFound:
            return await self.archive.folded(execution_id)

    async def verify(self, execution_id: str) -> ChainBreak | None:
        """Check the log's sequence numbers and hash chain; None when intact."""
        return (await self.check_chain(execution_id)).broken

    async def check_chain(self, execution_id: str) -> ChainCheck:
        """Check the log's sequence numbers and chain (in Redis, else in the archive)
        under the deployment's audit keys: the first break, and whether it was keyed.

        An unkeyed chain proves the log free of accidents, not of tampering: anyone who
        can write to Redis can recompute it (``docs/audit.md``)."""
        await self._ready()
        check_execution_id(execution_id)
        raw: list[Any] = await self.redis.xrange(self.keys.log(execution_id))
        last = await self.store.tables.meta(execution_id).get("h")
        if not raw:
            raw = await self.archive.entries(execution_id)
            last = (await self.archive.meta(execution_id)).get(b"h")
        if not raw:
            raise ExecutionNotFound(execution_id)
        return check_chain((fields for _, fields in raw),
                           last.decode() if last is not None else None, scope=execution_id,
                           keyring=self.deployment.audit_keys,
                           require_keyed=self.deployment.audit_keys is not None)

    async def history(self, execution_id: str) -> AsyncIterator[AnyEvent]:
        """The execution's events, oldest first (each with ``seq``, ``at_ms``, ``prev_hash``)."""
        await self._ready()
        check_execution_id(execution_id)
        entries = await self.store.read(execution_id) or [
            (entry_id, to_event(entry_id, fields, execution_id))
            for entry_id, fields in await self.archive.entries(execution_id)]
        if not entries:
            raise ExecutionNotFound(execution_id)
        for _entry_id, event in entries:
            yield event

    async def history_page(
        self, execution_id: str, *, cursor: str | None = None, limit: int = 1000
    ) -> ops.HistoryPage:
        """A page of :meth:`history`: ``limit`` events after ``cursor`` (a previous page's
        ``next``), read with one XRANGE however long the log."""
        await self._ready()
        return await ops.page_history(
            self.redis, self.keys, check_execution_id(execution_id), cursor=cursor,
            limit=limit, archived=lambda: self.archive.entries(execution_id))

    async def _last_event(self, execution_id: str) -> AnyEvent | None:
        tail: list[Any] = await self.redis.xrevrange(self.keys.log(execution_id), count=1)
        tail = tail or (await self.archive.entries(execution_id))[-1:]
        return to_event(tail[0][0], tail[0][1], execution_id) if tail else None


_RUNNING = object()


def _outcome(execution_id: str, event: AnyEvent, type_: Any, payloads: Payloads) -> Any:
    """The result if ``event`` ends the execution successfully; raises if it failed."""
    if isinstance(event, ExecutionCompleted):
        return payloads.decode(event.result, type_, f"result of {execution_id!r}")
    failure = end_failure(event)
    if failure is not None:
        raise ExecutionFailedError(execution_id, failure.error_type, failure.message)
    return _RUNNING


def _check_timeout(timeout: float | None) -> None:
    """A wait's timeout: None (no limit) or a finite number of seconds >= 0."""
    if timeout is None:
        return
    if (not isinstance(timeout, int | float) or isinstance(timeout, bool)
            or not math.isfinite(timeout) or timeout < 0):
        raise ConfigError(f"timeout must be a finite number of seconds >= 0 (or None), "
                          f"got {timeout!r}")
