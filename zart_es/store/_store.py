"""The execution log in Redis: create, append (one Lua script), read, meta.

This is the only module that writes an execution's events. Every write is one call of
``append.lua``, which checks the writer's expected version, so a zombie worker can never
record a second result for a step.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib import resources
from typing import Any

import msgspec

from zart_es.core import (
    DEFAULT_TASK_QUEUE,
    HELD,
    REOPENING_EVENTS,
    TERMINAL_EVENTS,
    AnyEvent,
    CorruptLog,
    Event,
    ExecutionEnded,
    ExecutionNotFound,
    ExecutionStarted,
    NewTimer,
    PartitionMismatch,
    PayloadDecodeError,
    RepairRefused,
    StoreError,
    TimerNotDue,
    VersionConflict,
    decode_event,
    encode_event,
    status_after,
)
from zart_es.store._autopipe import script_caller
from zart_es.store._connection import RedisClient
from zart_es.store._keys import F_BODY, F_EXEC, F_PREV, F_SEQ, M_TASK_QUEUE, Keys

READ_PAGE = 5000

LIFTS: dict[type[Event], str] = {event: status for status, event in HELD.items()}
"""The held status each releasing event lifts (ExecutionResumed: paused, ...)."""


def load_script(name: str) -> str:
    """Text of ``zart_es/scripts/<name>.lua``."""
    return resources.files("zart_es.store").joinpath("scripts", f"{name}.lua").read_text()


@dataclass(frozen=True, slots=True)
class Appended:
    """What the store recorded: the event with its envelope, and its stream entry id."""

    event: AnyEvent
    entry_id: bytes


def entry_ms(entry_id: bytes) -> int:
    """Redis' clock (ms) at which a stream entry was added, from its id."""
    return int(entry_id.split(b"-", 1)[0])


class Store:
    """Reads and writes execution logs of one deployment."""

    def __init__(self, redis: RedisClient, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._append = script_caller(redis, load_script("append"))
        self._move = script_caller(redis, load_script("move"), pipelined=False)
        self._keys_of = functools.lru_cache(maxsize=8192)(self._script_keys)

    def _script_keys(self, execution_id: str) -> list[str]:
        keys, p = self.keys, self.keys.partition_of(execution_id)
        return [keys.log(execution_id), keys.meta(execution_id), keys.timers(p),
                keys.work_prefix(p),
                keys.index_prefix(p), keys.ended(p)]

    async def aclose(self) -> None:
        """Close the store's own connection (the shared client is the caller's)."""
        await self._append.aclose()
        await self._move.aclose()

    async def check_config(self) -> None:
        """Record the partition count on first use; refuse to run with a different one."""
        key = self.keys.config()
        await self.redis.hsetnx(key, "partitions", str(self.keys.partitions))  # type: ignore[misc]
        recorded = await self.redis.hget(key, "partitions")  # type: ignore[misc]
        if recorded is not None and int(recorded) != self.keys.partitions:
            raise PartitionMismatch(
                f"this Redis was set up with {int(recorded)} partitions under prefix "
                f"{self.keys.prefix!r}, but this process uses {self.keys.partitions}: "
                "every client and worker of a deployment must use the same count"
            )

    async def create(self, event: ExecutionStarted, execution_id: str, workflow: str) -> bool:
        """Append ``ExecutionStarted`` and its work message, on the work stream of its
        task queue (where all its work goes from then on); False if the id exists."""
        reply = await self._call(execution_id, "new", -1, event, workflow=workflow,
                                 enqueue=True,
                                 task_queue=event.task_queue or DEFAULT_TASK_QUEUE)
        return bool(reply[0] == b"ok")

    async def append(
        self,
        execution_id: str,
        expected: int,
        event: Event,
        *,
        enqueue: bool = False,
        timer: NewTimer | None = None,
        consume_timer: str = "",
        drop_timers: tuple[str, ...] = (),
        token: str = "",
    ) -> Appended | None:
        """Append ``event`` if the log is at version ``expected`` (-1: at any version).

        With ``token`` the append is idempotent: None when the execution already saw that
        token. Raises :class:`VersionConflict`, :class:`ExecutionEnded`,
        :class:`ExecutionNotFound` or (with ``consume_timer``) :class:`TimerNotDue`;
        in each case nothing was written.
        """
        mode = "reopen" if isinstance(event, REOPENING_EVENTS) else "next"
        reply = await self._call(
            execution_id, mode, expected, event,
            enqueue=enqueue, timer=timer, consume_timer=consume_timer, drop_timers=drop_timers,
            token=token,
        )
        match reply[0]:
            case b"ok":
                entry_id, seq = reply[1], int(reply[2])
                stored: AnyEvent = msgspec.structs.replace(  # type: ignore[assignment]
                    event, seq=seq, at_ms=entry_ms(entry_id)
                )
                return Appended(stored, entry_id)
            case b"conflict":
                raise VersionConflict(execution_id, expected, int(reply[1]))
            case b"ended":
                raise ExecutionEnded(execution_id, int(reply[1]))
            case b"missing":
                raise ExecutionNotFound(execution_id)
            case b"duplicate":
                return None
            case b"open":
                raise RepairRefused(execution_id, "it has not ended")
            case b"gone":
                raise TimerNotDue(consume_timer, "no longer in the wheel")
            case b"early":
                raise TimerNotDue(consume_timer, f"not due before {reply[1]!r}")
            case other:
                raise StoreError(f"unexpected reply from append.lua: {other!r}")

    async def _call(
        self,
        execution_id: str,
        mode: str,
        expected: int,
        event: Event,
        *,
        workflow: str = "",
        enqueue: bool = False,
        timer: NewTimer | None = None,
        consume_timer: str = "",
        drop_timers: tuple[str, ...] = (),
        token: str = "",
        task_queue: str = DEFAULT_TASK_QUEUE,
    ) -> list[Any]:
        keys = self.keys
        status = status_after(event) or ""
        lifted = LIFTS.get(type(event))
        if lifted is not None:
            status = f"!{lifted} {status}"  # lifts that held status (see HELD)
        control = "\n".join((
            mode,
            str(expected),
            status,
            "1" if enqueue else "0",
            keys.timer_member(execution_id, timer.name) if timer else "",
            str(timer.delay_ms) if timer else "0",
            str(timer.due_ms) if timer else "0",
            consume_timer,
            "1" if isinstance(event, TERMINAL_EVENTS) else "0",
            execution_id,
            workflow,
            token,
            "" if task_queue == DEFAULT_TASK_QUEUE else task_queue,
            *(keys.timer_member(execution_id, name) for name in drop_timers),
        ))
        reply: list[Any] = await self._append(
            keys=self._keys_of(execution_id), args=[control, encode_event(event)],
        )
        return reply

    async def wake(self, execution_ids: list[str]) -> None:
        """Send each execution a work message on its task queue's stream (it runs again and
        decides for itself); an execution that no longer exists gets none."""
        if not execution_ids:
            return
        pipe = self.redis.pipeline(transaction=False)
        for execution_id in execution_ids:
            pipe.hmget(self.keys.meta(execution_id), ["v", M_TASK_QUEUE])
        found: list[list[bytes | None]] = await pipe.execute()
        pipe = self.redis.pipeline(transaction=False)
        for execution_id, (version, task_queue) in zip(execution_ids, found, strict=True):
            if version is not None:
                pipe.xadd(self.work_stream(execution_id, task_queue), {F_EXEC: execution_id})
        await pipe.execute()

    async def move_to_task_queue(self, execution_id: str, task_queue: str) -> bool:
        """Record ``task_queue`` as the execution's and send it a work message there, in
        one script (a worker found work of a queue it does not serve); False when the
        execution no longer exists. The caller acks the old message after: a crash in
        between leaves it pending, and the move is made again."""
        moved = await self._move(
            keys=[self.keys.meta(execution_id), self.work_stream(execution_id, task_queue)],
            args=["" if task_queue == DEFAULT_TASK_QUEUE else task_queue, execution_id])
        return bool(moved)

    def work_stream(self, execution_id: str, task_queue: bytes | str | None) -> str:
        """The work stream of an execution whose meta hash says ``task_queue``."""
        if isinstance(task_queue, bytes):
            task_queue = task_queue.decode()
        return self.keys.work(self.keys.partition_of(execution_id),
                              task_queue or DEFAULT_TASK_QUEUE)

    async def ended(self, admissions: list[str]) -> list[bool]:
        """For each queue admission (an execution id, or ``"<id> <token>"`` for a run an
        operator reopened): has that run ended (or the execution gone)?"""
        pipe = self.redis.pipeline(transaction=False)
        for admission in admissions:
            pipe.hmget(self.keys.meta(admission.partition(" ")[0]), ["v", "end", "o"])
        replies: list[list[bytes | None]] = await pipe.execute()
        return [version is None or end is not None
                or (opened or b"0").decode() != (admission.partition(" ")[2] or "0")
                for admission, (version, end, opened) in zip(admissions, replies, strict=True)]

    async def read(
        self, execution_id: str, after: bytes | None = None
    ) -> list[tuple[bytes, AnyEvent]]:
        """The log's entries after stream id ``after`` (all when None), oldest first."""
        return [entry async for page in self.pages(execution_id, after) for entry in page]

    async def pages(
        self, execution_id: str, after: bytes | None = None
    ) -> AsyncIterator[list[tuple[bytes, AnyEvent]]]:
        """The log's entries after stream id ``after``, oldest first, a page (at most
        READ_PAGE entries) at a time: a reader that folds as it goes holds one page."""
        key = self.keys.log(execution_id)
        start = b"(" + after if after else b"-"
        while True:
            page = await self.redis.xrange(key, min=start, max="+", count=READ_PAGE)
            if page:
                yield [(entry_id, to_event(entry_id, fields, execution_id))
                       for entry_id, fields in page]
            if len(page) < READ_PAGE:
                return
            start = b"(" + page[-1][0]

    async def read_first(self, execution_id: str) -> AnyEvent | None:
        """The log's first event (its ``ExecutionStarted``), or None without a log."""
        first: list[Any] = await self.redis.xrange(self.keys.log(execution_id), count=1)
        return to_event(first[0][0], first[0][1], execution_id) if first else None

    async def meta(self, execution_id: str) -> dict[bytes, bytes]:
        """The execution's meta hash (empty when it does not exist)."""
        meta: dict[bytes, bytes] = await self.redis.hgetall(  # type: ignore[misc]
            self.keys.meta(execution_id)
        )
        return meta


def to_event(entry_id: bytes, fields: dict[bytes, bytes], execution_id: str = "") -> AnyEvent:
    """Decode one stream entry of a log into its event, envelope included; CorruptLog
    (naming the entry) for an entry zart-es did not write."""
    try:
        return decode_event(
            fields[F_BODY],
            seq=int(fields[F_SEQ]),
            at_ms=entry_ms(entry_id),
            prev_hash=fields.get(F_PREV, b"").decode(),
        )
    except KeyError as exc:
        reason = f"no {exc.args[0].decode()!r} field"
    except (ValueError, PayloadDecodeError) as exc:  # a bad seq, a body that is not an event
        reason = str(exc)
    raise CorruptLog(execution_id, entry_id.decode(), reason)
