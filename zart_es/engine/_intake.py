"""A worker's intake: work messages in (reading its streams, taking over a silent worker's
messages) and out (acknowledged once run, or handed back at once).

It never takes on more than ``concurrency`` executions: each partition's reader reserves
the room its read may bring back. Each execution it takes on is an :class:`InFlight`,
driven by the callback it is given; a second message for an execution already in flight
joins it (the run looks again when it stops).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

import structlog

from zart_es.engine._aio import TaskSet, reraise_if_cancelling
from zart_es.store import (
    F_EXEC,
    GROUP,
    Deployment,
    RedisError,
    ResponseError,
    load_script,
    script_caller,
)

log = structlog.get_logger("zart_es.worker")

READ_BLOCK_MS = 2000
RETRY_BACKOFF = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
POOLED_CALLS = 32
"""Executions' commands on the shared connection pool at once (the catch-up read, the
ack): the pool grows to about this plus one per reader and background loop, not to one
per execution in flight (a connection costs ~18 KB of RSS, not given back after a burst)."""

Message = tuple[str, bytes]  # (work stream, work message id)


class InFlight:
    """One execution being driven by this process, and the messages it will ack."""

    __slots__ = ("acking", "again", "messages", "task")

    def __init__(self, message: Message) -> None:
        self.messages: list[Message] = [message]
        self.again = False
        self.acking = False
        """True while its messages are being acknowledged: a heartbeat then finds them
        gone, which is not a lost lease."""
        self.task: asyncio.Task[None] | None = None


class Intake:
    """Reads a worker's work streams and dispatches each execution to ``drive``."""

    def __init__(self, deployment: Deployment, consumer: str, concurrency: int,
                 lease_timeout: float, drive: Callable[[str, InFlight], Coroutine[Any, Any, None]],
                 ) -> None:
        self.redis, self.keys = deployment.redis, deployment.keys
        self.consumer = consumer
        self.concurrency = concurrency
        self.lease_timeout = lease_timeout
        self.in_flight: dict[str, InFlight] = {}
        """Executions driven now, by id."""
        self.streams: dict[int, dict[str, str]] = {}
        """Per partition: work stream -> its task queue (set by :meth:`serve`)."""
        self.pooled = asyncio.Semaphore(POOLED_CALLS)
        """Held around the pool's commands of one execution (see POOLED_CALLS)."""
        self._drive = drive
        self._reserved = 0
        """Room taken by the reads in flight (what they may bring back)."""
        self._room = asyncio.Event()
        self._room.set()
        self._release_script = script_caller(self.redis, load_script("release"),
                                             pipelined=False)
        self._tasks = TaskSet()

    async def serve(self, task_queues: Iterable[str], declared: Iterable[str]) -> None:
        """Read the work streams of ``task_queues``; create the consumer groups of those
        and of the ``declared`` queues (a pool scaled to zero is woken by KEDA from its
        group's lag, which needs the group)."""
        served = list(task_queues)
        self.streams = {p: {self.keys.work(p, queue): queue for queue in served}
                        for p in range(self.keys.partitions)}
        for p in range(self.keys.partitions):
            await self._ensure_groups(p, [self.keys.work(p, queue) for queue in declared])

    def room(self) -> int:
        """Executions this worker may still take on."""
        return self.concurrency - len(self.in_flight) - self._reserved

    def done(self, execution_id: str) -> None:
        """The run of ``execution_id`` stopped: its room is free again."""
        self.in_flight.pop(execution_id, None)
        self._room.set()

    def held(self) -> list[Message]:
        """The messages of every execution in flight (their leases)."""
        return [m for run in self.in_flight.values() for m in run.messages]

    async def _ensure_groups(self, partition: int, more: Iterable[str] = ()) -> None:
        for stream in [*self.streams[partition], *more]:
            try:
                await self.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def read(self, partition: int) -> None:
        """Read the partition's streams this worker serves (one hash slot), forever."""
        names = list(self.streams[partition])
        readers = self.keys.partitions * len(names)
        # with fewer slots than streams, reads hold slots for shorter: the slots go round
        block_ms = READ_BLOCK_MS if self.concurrency >= readers else max(
            100, READ_BLOCK_MS * self.concurrency // readers)
        failures = turn = 0
        while True:
            await self._room.wait()
            room = self.room()
            if room <= 0:  # woken by a run that ended, but others were taken on meanwhile
                self._room.clear()
                continue
            turn += 1
            read = names if room >= len(names) else [
                names[(turn + i) % len(names)] for i in range(room)]
            try:
                reply = await self._read_once(read, room, block_ms)
                failures = 0
            except (RedisError, OSError) as exc:
                reraise_if_cancelling(exc)
                failures += 1
                log.warning("reading work failed, retrying", partition=partition, error=str(exc))
                await asyncio.sleep(backoff(failures))
                if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
                    await self._ensure_groups(partition)
                continue
            for stream, messages in reply or ():
                self._dispatch_all(_text(stream), messages)
            if self.room() > 0:
                self._room.set()  # what the read did not bring is room again
            if not reply:  # nothing came: the readers waiting for room get their turn
                await asyncio.sleep(0)

    async def _read_once(self, read: list[str], room: int, block_ms: int) -> Any:
        # every partition's reader may be blocked in a read at once, and a read brings
        # up to COUNT from each stream it names: each reserves what its read may bring
        # (its share of the room), so the worker never takes on more than concurrency
        count = max(1, min(room // self.keys.partitions // len(read), 100))
        self._reserved += count * len(read)
        try:
            return await self.redis.xreadgroup(
                GROUP, self.consumer, dict.fromkeys(read, ">"), count=count, block=block_ms)
        finally:
            self._reserved -= count * len(read)

    async def reclaim(self) -> None:
        """Take over messages whose holder went silent for longer than the lease, forever."""
        min_idle = int(self.lease_timeout * 1000)
        while True:
            await asyncio.sleep(max(0.2, self.lease_timeout / 2))
            for stream in [s for streams in self.streams.values() for s in streams]:
                try:
                    await self._reclaim_stream(stream, min_idle)
                except (RedisError, OSError) as exc:
                    reraise_if_cancelling(exc)
                    log.warning("reclaim failed", stream=stream, error=str(exc))

    async def _reclaim_stream(self, stream: str, min_idle: int) -> None:
        cursor: bytes | str = "0-0"
        while True:
            room = self.room()
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
            self._tasks.spawn(self._ack_quietly(malformed))
        if len(self.in_flight) >= self.concurrency:
            self._room.clear()

    def _dispatch(self, stream: str, msg_id: bytes, execution_id: str) -> None:
        run = self.in_flight.get(execution_id)
        if run is not None:  # already driving it here: look again when this run stops
            run.messages.append((stream, msg_id))
            run.again = True
            return
        run = InFlight((stream, msg_id))
        self.in_flight[execution_id] = run
        run.task = asyncio.create_task(self._drive(execution_id, run))

    async def ack(self, messages: list[Message]) -> None:
        """Acknowledge (and delete) messages whose run is done."""
        pipe = self.redis.pipeline(transaction=False)
        for stream, ids in by_stream(messages).items():
            pipe.xack(stream, GROUP, *ids)
            pipe.xdel(stream, *ids)
        async with self.pooled:
            await pipe.execute()

    async def _ack_quietly(self, messages: list[Message]) -> None:
        try:
            await self.ack(messages)
        except (RedisError, OSError) as exc:
            log.warning("could not drop malformed work; it comes back after the lease",
                        error=str(exc))

    async def release(self, messages: list[Message]) -> None:
        """Hand abandoned messages back at once (a fresh message each) instead of waiting
        for their lease to run out."""
        try:
            for stream, ids in by_stream(messages).items():
                await self._release_script([stream], [GROUP, *ids])
        except (RedisError, OSError) as exc:
            log.warning("could not release work; it is reclaimed after the lease", error=str(exc))

    def forget(self, stream: str, lost: set[bytes]) -> None:
        """Another worker took these messages over: stop the runs left with none."""
        for execution_id, run in list(self.in_flight.items()):
            run.messages = [m for m in run.messages if not (m[0] == stream and m[1] in lost)]
            if not run.messages and run.task is not None and not run.acking:
                log.warning("lease lost; another worker owns the execution now",
                            execution_id=execution_id)
                run.task.cancel()

    async def aclose(self) -> None:
        """Stop what the intake started on the side; close its script's connection."""
        await self._tasks.cancel(log)
        await self._release_script.aclose()


def by_stream(messages: Iterable[Message]) -> dict[str, list[bytes]]:
    """Message ids grouped by their stream."""
    out: dict[str, list[bytes]] = {}
    for stream, msg_id in messages:
        out.setdefault(stream, []).append(msg_id)
    return out


def backoff(failures: int) -> float:
    """Seconds to wait after ``failures`` failures in a row."""
    return RETRY_BACKOFF[min(failures, len(RETRY_BACKOFF)) - 1]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _pairs(flat: list[Any]) -> dict[bytes, bytes]:
    return dict(zip(flat[::2], flat[1::2], strict=True))
