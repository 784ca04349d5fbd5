"""The admission gate of queues: concurrency caps, priority order and rate limits.

A :class:`Queue` caps how many of its executions run at once per *queue key* (a tenant or
partition string; ``""`` when unkeyed), orders those that wait by priority then arrival,
and may limit how many are admitted per second. :class:`QueueGate` is the gate over
Redis; the worker asks it before running an execution and tells it when the execution
ends.

Each queue key has three keys in one slot (``keys.queue_slot(queue, key)`` + suffix), so
one call of ``scripts/queue_admit.lua`` decides atomically, with Redis' clock:

``running``
    zset, execution id -> admission ms: admitted and not yet released.
``waiting``
    zset, execution id -> ordering score, lowest first. The score is
    ``-priority * 1e12 + (arrival ms since 2024-01-01T00:00Z)``, raised to one more than
    the highest score of the same priority band when that is not lower, so a higher
    priority always sorts first and, within one priority, arrival order holds even for
    arrivals in the same millisecond. Exact in a double for ``|priority| <= 1000`` until
    2055.
``starts``
    zset, ``"<id> <ms>"`` -> admission ms: the admissions of the last rate window (only
    with a ``rate``; it expires on its own once idle).

The durable consequences:

* :meth:`QueueGate.admit` is idempotent: an execution already admitted is admitted again
  (a worker that took over a crashed worker's execution goes on running it).
* A waiting execution keeps its first score: being asked again never loses its place.
* Newcomers never overtake: an execution is admitted only if it is among the first
  ``room`` waiting entries once it is placed there (``room`` = what the cap and the rate
  window leave), so older and higher-priority waiters go first.
* Nothing is woken by Redis: :meth:`QueueGate.release` returns the waiting ids that fit
  now, and the caller sends each one a work message so it calls :meth:`admit` again. A
  lost wake-up (crash between release and sending) is repaired by :meth:`QueueGate.sweep`,
  which every worker runs periodically; so is an execution that ended without releasing.

The set ``keys.queue_index()`` lists the ``"<queue> <key>"`` pairs that may have members,
for the sweeper. It lives in another slot, so it is kept outside the script: ``admit``
adds the pair *after* its script call, and the sweeper removes a pair only when both zsets
are empty, re-checking after the removal and adding the pair back if an admission raced
it. A crash between the script and the ``SADD`` leaves the pair out until the execution's
work message is redelivered and ``admit`` runs again (an unacknowledged message always is).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any

import msgspec
import structlog

from zart_es.core import (
    ConfigError,
    InvalidExecutionId,
    Queue,
    check_execution_id,
    check_priority,
    check_queue_key,
)
from zart_es.store import (
    Deployment,
    HasDeployment,
    ScriptCaller,
    deployment_of,
    load_script,
    script_caller,
)

MAX_WAKE = 1000
"""Most ids one release or sweep of one queue key returns to be woken."""

REWAKE_MS = 5000
"""An id returned to be woken is not returned again for this long: a release and a sweep
(or two releases) must not both wake it, or two workers would run it at once. A wake-up
lost in a crash is therefore sent again by the sweeper after this delay."""

Ended = Callable[[list[str]], Awaitable[list[bool]]]
"""``ended(ids)``: for each id, True if that execution has ended (it will never release)."""

log = structlog.get_logger("zart_es.queues")


def check_admission(member: str) -> str:
    """An admission is an execution id, optionally followed by a space and a token (the
    position of a repair that reopened it): each run of an execution holds its own."""
    execution_id, _, token = member.partition(" ")
    check_execution_id(execution_id)
    if token and not token.isdigit():
        raise InvalidExecutionId(member)
    return member


def execution_ids(members: list[str]) -> list[str]:
    """The execution ids of admissions (what to send work messages to)."""
    return [m.partition(" ")[0] for m in members]


class Admission(msgspec.Struct, frozen=True, kw_only=True):
    """What :meth:`QueueGate.admit_detail` decided.

    ``retry_in_ms`` is set when the execution waits only for the rate window (it fits the
    cap): ask again after that many ms. Otherwise a release will wake it. ``at_ms`` is
    when the gate admitted it (Redis' clock, the clock the rate window counts in).
    """

    admitted: bool
    retry_in_ms: int | None = None
    at_ms: int | None = None


class Wake(msgspec.Struct, frozen=True, kw_only=True):
    """Waiting executions of one queue key that fit now, to be sent work messages.

    ``retry_in_ms`` is set when some waiting executions fit the cap but not the rate
    window: call :meth:`QueueGate.wake` after that many ms (else the sweeper will).
    """

    ids: list[str]
    retry_in_ms: int | None = None
    running: int = 0
    waiting: int = 0


class QueueGate:
    """Admission of executions into queues, over one Redis or a Redis Cluster.

    ``pipelined=True`` batches concurrent calls on one dedicated connection (single Redis
    only): close the gate with :meth:`aclose` (or ``async with``). The client itself stays
    the caller's to close.
    """

    def __init__(self, deployment: Deployment | HasDeployment, *, pipelined: bool = True,
                 rewake_ms: int = REWAKE_MS) -> None:
        handle = deployment_of(deployment)
        redis = self._redis = handle.redis
        self._keys = handle.keys
        self._index = handle.store.tables.queue_index
        self._rewake = str(int(rewake_ms))
        self._script: ScriptCaller = script_caller(redis, load_script("queue_admit"),
                                                   pipelined=pipelined)

    async def __aenter__(self) -> QueueGate:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the gate's own connection, if it has one."""
        await self._script.aclose()

    def _slot_keys(self, queue: str, key: str) -> list[str]:
        prefix = self._keys.queue_slot(queue, key)
        return [prefix + "running", prefix + "waiting", prefix + "starts", prefix + "woken"]

    async def _call(self, queue: Queue, key: str, op: str, *args: str) -> Any:
        allowed, window = queue.rate_window
        cap = -1 if queue.concurrency is None else queue.concurrency
        return await self._script(
            self._slot_keys(queue.slot, key),
            [op, str(cap), str(allowed), repr(window), str(MAX_WAKE), self._rewake, *args],
        )

    async def admit(self, queue: Queue, key: str, execution_id: str,
                    priority: int | None = None, arrival_ms: int | None = None) -> bool:
        """True if the execution may run now; see :meth:`admit_detail`."""
        return (await self.admit_detail(queue, key, execution_id, priority,
                                        arrival_ms)).admitted

    async def admit_detail(self, queue: Queue, key: str, execution_id: str,
                           priority: int | None = None,
                           arrival_ms: int | None = None) -> Admission:
        """Admit the execution now, or place it among the waiting ones (one script call).

        Admitted iff it is already running (idempotent), or the running count is under
        the cap, the rate window has room, and it is among the first ``room`` waiting
        entries once placed there with its score (``priority`` overrides the queue's
        default; a waiting execution keeps the score it got first). ``arrival_ms`` (the
        execution's creation time) orders executions of one priority; without it, the
        order of the calls does. An execution that
        waits is woken by a :meth:`release` (or the sweeper) and must call this again.
        """
        check_queue_key(key)
        check_admission(execution_id)
        prio = queue.priority if priority is None else check_priority(priority)
        arrival = "" if arrival_ms is None else str(int(arrival_ms))
        status, retry, *since = await self._call(queue, key, "admit", execution_id, str(prio),
                                                 arrival)
        # after the script: a sweeper that removed the pair meanwhile sees it again
        await self._index.add(f"{queue.name} {key}")
        return Admission(admitted=status > 0, retry_in_ms=retry if retry >= 0 else None,
                         at_ms=int(since[0]) if since else None)

    async def release(self, queue: Queue, key: str, execution_id: str) -> list[str]:
        """Forget the execution (running or waiting); return the waiting ids that fit now.

        Call it when an admitted execution ends, and when a waiting one ends (cancelled).
        Harmless when repeated. Send each returned id a work message so it calls
        :meth:`admit` again; see :meth:`release_detail` for the rate-window hint.
        """
        return (await self.release_detail(queue, key, execution_id)).ids

    async def release_detail(self, queue: Queue, key: str, execution_id: str) -> Wake:
        """:meth:`release`, with the counts and the rate-window retry hint."""
        check_queue_key(key)
        check_admission(execution_id)
        return await self._drop(queue, key, [execution_id])

    async def wake(self, queue: Queue, key: str) -> Wake:
        """The waiting ids of the queue key that fit now (nothing is changed)."""
        check_queue_key(key)
        return await self._drop(queue, key, [])

    async def counts(self, queue: Queue, key: str) -> tuple[int, int]:
        """``(running, waiting)`` of the queue key, read in one atomic script call."""
        check_queue_key(key)
        running, waiting = await self._call(queue, key, "counts")
        return int(running), int(waiting)

    async def _drop(self, queue: Queue, key: str, ids: list[str]) -> Wake:
        woken, retry, running, waiting = await self._call(queue, key, "drop", *ids)
        return Wake(ids=await self._texts(queue, key, woken),
                    retry_in_ms=retry if retry >= 0 else None,
                    running=int(running), waiting=int(waiting))

    async def _texts(self, queue: Queue, key: str, members: list[bytes]) -> list[str]:
        """The members as text; one that is not UTF-8 (zart-es wrote no such member)
        leaves the queue key's zsets instead of failing every release and sweep."""
        out, bad = [], []
        for member in members:
            try:
                out.append(member.decode())
            except UnicodeDecodeError:
                bad.append(member)
        if bad:
            prefix = self._keys.queue_slot(queue.slot, key)
            pipe = self._redis.pipeline(transaction=False)
            pipe.zrem(prefix + "running", *bad)
            pipe.zrem(prefix + "waiting", *bad)
            await pipe.execute()
            log.error("queue members that are not UTF-8 removed", queue=queue.name, key=key,
                      members=[m.decode("utf-8", "backslashreplace")[:100] for m in bad])
        return out

    async def sweep(self, queues: Mapping[str, Queue], ended: Ended) -> list[str]:
        """Repair what crashes left; return the waiting ids to wake (across queue keys).

        For each ``"<queue> <key>"`` of the index whose queue is in ``queues``: drop the
        running members that ``ended`` reports ended (they ended without releasing), then
        the ended ones among the waiting ids that would be woken (cancelled while
        waiting), and collect the waiting ids that fit now, so a lost wake-up is sent
        again. Pairs whose zsets are both empty leave the index. Pairs of queues not in
        ``queues`` are left alone. Waking an id twice is harmless: admit decides.
        """
        index = self._keys.queue_index()
        to_wake: list[str] = []
        async for raw in self._redis.sscan_iter(index, count=500):
            name, _, key = raw.decode("utf-8", "replace").partition(" ")
            queue = queues.get(name)
            if queue is None:
                continue
            try:
                raw.decode()
                check_queue_key(key)
            except (ConfigError, UnicodeDecodeError):
                await self._index.remove(raw)
                continue
            wake = await self._sweep_one(queue, key, ended)
            to_wake.extend(wake.ids)
            if wake.running == 0 and wake.waiting == 0:
                await self._index.remove(raw)
                if await self.counts(queue, key) != (0, 0):  # an admission raced us
                    await self._index.add(raw)
        return to_wake

    async def _sweep_one(self, queue: Queue, key: str, ended: Ended) -> Wake:
        prefix = self._keys.queue_slot(queue.slot, key)
        check = await self._texts(queue, key, await self._redis.zrange(prefix + "running", 0, -1))
        returned: set[str] = set()
        alive: list[str] = []  # returned to be woken, and not ended: wake them
        while True:
            flags = await ended(check) if check else []  # zip(strict) checks the count
            gone = [i for i, flag in zip(check, flags, strict=True) if flag]
            alive += [i for i, flag in zip(check, flags, strict=True)
                      if not flag and i in returned]
            wake = await self._drop(queue, key, gone)
            # a drop never returns an id twice within REWAKE_MS: each one here is new
            check = wake.ids
            returned.update(check)
            if not check:
                return msgspec.structs.replace(wake, ids=alive)
