"""The execution log in Redis: create, append (one Lua script), read, meta.

This is the only module that writes an execution's events. Every write is one call of
``append.lua``, which checks the writer's expected version, so a zombie worker can never
record a second result for a step.

With an audit key (:class:`~zart_es.core.AuditKeyring`) the store computes each entry's
chain value itself (an HMAC Redis cannot compute) and the script checks that it links to
the head it holds. The store keeps the head of the executions it wrote or read lately,
so a worker's append costs no extra round trip; a writer that appends "at any version"
(a signal, a timer firing) reads the head first and appends again if it lost a race.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import msgspec

from zart_es.core import (
    DEFAULT_TASK_QUEUE,
    AnyEvent,
    AuditKeyring,
    CorruptLog,
    Effects,
    Event,
    ExecutionEnded,
    ExecutionNotFound,
    ExecutionStarted,
    Notice,
    PartitionMismatch,
    PayloadDecodeError,
    RepairRefused,
    StoreError,
    TimerNotDue,
    VersionConflict,
    decode_event,
    effects_of,
    encode_event,
    entry_link,
)
from zart_es.store._autopipe import script_caller
from zart_es.store._connection import RedisClient
from zart_es.store._debounce import Debounces
from zart_es.store._hashes import Tables, reply
from zart_es.store._keys import F_BODY, F_EXEC, F_PREV, F_SEQ, M_CRASHES, M_TASK_QUEUE, Keys
from zart_es.store._scripts import load_script
from zart_es.store._trail import Trail
from zart_es.store._wheel import TimerWheel

READ_PAGE = 5000
HEADS_KEPT = 65_536
"""Chain heads a keyed store remembers (execution id -> version and head)."""
CHAIN_RETRIES = 100
"""Appends "at any version" a keyed store makes before giving up on a busy log."""

_CALL = msgspec.msgpack.Encoder()
"""Encodes append.lua's call array (its ``ARGV[1]``)."""


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

    def __init__(self, redis: RedisClient, keys: Keys,
                 chain: AuditKeyring | None = None) -> None:
        self.redis = redis
        self.keys = keys
        self.chain = chain
        """The audit keyring that chains new entries (None: the unkeyed SHA-1 chain)."""
        self.trail = Trail(redis, keys, chain)
        """The deployment's operator trail (chained with the same keys)."""
        self.tables = Tables(redis, keys)
        self.wheel = TimerWheel(redis, keys)
        """The partitions' timer wheels, as the poller reads them."""
        """The deployment's hashes and sets (pause rules, schedules, meta hashes, ...)."""
        self.debounces = Debounces(redis, keys)
        """Debounce windows of starts (``Client.start(..., debounce=)``)."""
        self._heads: dict[str, tuple[int, str]] = {}
        """Keyed only: execution id -> (version, chain head) last seen."""
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
        await self.trail.aclose()

    async def check_config(self) -> None:
        """Record the partition count on first use; refuse to run with a different one.

        Its HSETNX is a write: a Redis that refuses writes (out of memory, a read-only
        replica) answers it with its error, which readiness reports."""
        config = self.tables.config
        key = config.key
        await config.put_new("partitions", str(self.keys.partitions))
        recorded = await config.get("partitions")
        if recorded is not None and not recorded.isdigit():
            raise PartitionMismatch(
                f"{key} records partitions {recorded!r}, not a count: restore it to the "
                f"deployment's count (this process uses {self.keys.partitions})")
        if recorded is not None and int(recorded) != self.keys.partitions:
            raise PartitionMismatch(
                f"this Redis was set up with {int(recorded)} partitions under prefix "
                f"{self.keys.prefix!r}, but this process uses {self.keys.partitions}: "
                "every client and worker of a deployment must use the same count"
            )

    async def ping(self) -> None:
        """PING: raises the connection's error when Redis does not answer."""
        await reply(self.redis.ping())

    async def count_crash(self, execution_id: str) -> int | None:
        """Count one crash of the engine on the execution (its meta hash's crash count);
        the count, or None when the execution does not exist."""
        meta = self.tables.meta(execution_id)
        if not await meta.present():
            return None
        return await meta.add(M_CRASHES, 1)

    async def forget_crashes(self, execution_id: str) -> None:
        """Start the execution's crash count over (it was released)."""
        await self.tables.meta(execution_id).delete(M_CRASHES)

    async def deliver(self, notices: Iterable[Notice]) -> None:
        """Append what an ended execution owes others (``core.end_notices``), each once
        (its token) with a work message; one that is gone or done waits for nobody."""
        for notice in notices:
            with contextlib.suppress(ExecutionEnded, ExecutionNotFound):
                await self.append(notice.execution_id, -1, notice.event, token=notice.token)

    async def create(self, event: ExecutionStarted, execution_id: str, workflow: str) -> bool:
        """Append ``ExecutionStarted`` and its work message, on the work stream of its
        task queue (where all its work goes from then on); False if the id exists."""
        reply = await self._call(execution_id, "new", -1, event, effects_of(event),
                                 workflow=workflow,
                                 task_queue=event.task_queue or DEFAULT_TASK_QUEUE)
        return bool(reply[0] == b"ok")

    async def append(
        self,
        execution_id: str,
        expected: int,
        event: Event,
        effects: Effects | None = None,
        *,
        consume_timer: str = "",
        token: str = "",
    ) -> Appended | None:
        """Append ``event`` if the log is at version ``expected`` (-1: at any version),
        with its ``effects`` (by default ``effects_of(event)``: an outside writer's, which
        wakes the execution).

        With ``token`` the append is idempotent: None when the execution already saw that
        token. Raises :class:`VersionConflict`, :class:`ExecutionEnded`,
        :class:`ExecutionNotFound` or (with ``consume_timer``) :class:`TimerNotDue`;
        in each case nothing was written.
        """
        fx = effects_of(event) if effects is None else effects
        if self.chain is None:
            reply = await self._call(execution_id, "next", expected, event, fx,
                                     consume_timer=consume_timer, token=token)
        else:
            known = self._heads.get(execution_id)
            reply = []
            if known is not None and known[0] == expected:  # a worker's append: one call
                reply = await self._call(
                    execution_id, "next", expected, event, fx, prev=known[1],
                    consume_timer=consume_timer, token=token)
                if reply[0] == b"conflict":
                    self._remember(execution_id, int(reply[1]), reply[2].decode())
            if not reply or (reply[0] == b"conflict" and int(reply[1]) == expected):
                reply = await self._call_chained(execution_id, expected, event, fx, {
                    "consume_timer": consume_timer, "token": token})
        return self._appended(execution_id, expected, event, reply, consume_timer)

    def _appended(self, execution_id: str, expected: int, event: Event, reply: list[Any],
                  consume_timer: str) -> Appended | None:
        """What append.lua's reply means: the stored event, None, or the error."""
        match reply[0]:
            case b"ok":
                entry_id, seq = reply[1], int(reply[2])
                if len(reply) > 3:
                    self._remember(execution_id, seq + 1, reply[3])
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

    async def _call_chained(self, execution_id: str, expected: int, event: Event,
                            effects: Effects, options: dict[str, Any]) -> list[Any]:
        """``_call`` with a keyed chain: at the head it links to, again on a lost race
        when ``expected`` is -1 (at any version)."""
        body = encode_event(event)
        for _ in range(CHAIN_RETRIES):
            known = self._heads.get(execution_id)
            if known is not None and (expected < 0 or known[0] == expected):
                at, prev = known  # a worker's every append: no round trip
            else:
                at, prev = await self._head_at(execution_id, expected)
            reply = await self._call(execution_id, "next", at, event, effects, body=body,
                                     prev=prev, **options)
            if reply[0] != b"conflict":
                return reply
            version = int(reply[1])
            self._remember(execution_id, version, reply[2].decode())
            if expected >= 0 and version != expected:
                return reply  # the caller's race: it catches up and decides again
        raise StoreError(f"execution {execution_id!r}: the log kept moving while "
                         f"{type(event).__name__} was chained ({CHAIN_RETRIES} tries)")

    async def _call(
        self,
        execution_id: str,
        mode: str,
        expected: int,
        event: Event,
        effects: Effects,
        *,
        body: bytes | None = None,
        prev: str = "",
        workflow: str = "",
        consume_timer: str = "",
        token: str = "",
        task_queue: str = DEFAULT_TASK_QUEUE,
    ) -> list[Any]:
        control = _CALL.encode((
            mode, expected, consume_timer, execution_id, workflow, token,
            "" if task_queue == DEFAULT_TASK_QUEUE else task_queue, effects))
        body = encode_event(event) if body is None else body
        args: list[bytes | str] = [control, body]
        chain = self.chain
        if chain is None:
            reply: list[Any] = await self._append(keys=self._keys_of(execution_id), args=args)
            return reply
        value = chain.link(execution_id, prev, max(expected, 0), body)
        args.append(f"{value} {chain.current} {prev}")
        reply = await self._append(keys=self._keys_of(execution_id), args=args)
        if reply[0] == b"ok":
            reply.append(value)
        return reply

    async def _head_at(self, execution_id: str, expected: int) -> tuple[int, str]:
        """The version to append at and the chain head there, from the meta hash."""
        version, head = await self.tables.meta(execution_id).get_many(["v", "h"])
        if version is None:
            return max(expected, 0), ""  # the script answers "missing"
        self._remember(execution_id, int(version), (head or b"").decode())
        return (int(version) if expected < 0 else expected), (head or b"").decode()

    def _remember(self, execution_id: str, version: int, head: str) -> None:
        heads = self._heads
        heads[execution_id] = (version, head)
        if len(heads) > HEADS_KEPT:  # the first remembered goes (an HMGET if it comes back)
            del heads[next(iter(heads))]

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
            if page and self.chain is not None:
                self._remember_read(execution_id, page[-1][1])
            if page:
                yield [(entry_id, to_event(entry_id, fields, execution_id))
                       for entry_id, fields in page]
            if len(page) < READ_PAGE:
                return
            start = b"(" + page[-1][0]

    def _remember_read(self, execution_id: str, fields: dict[bytes, bytes]) -> None:
        """Remember the head after an entry just read (when its key is ours)."""
        head = entry_link(fields, execution_id, self.chain)
        if head is not None:
            self._remember(execution_id, int(fields[F_SEQ]) + 1, head)

    async def follow(self, execution_id: str, after: bytes, block_ms: int
                     ) -> list[tuple[bytes, AnyEvent]]:
        """The log's entries after stream id ``after``, waiting up to ``block_ms`` for
        one to be appended (empty if none was)."""
        got: Any = await self.redis.xread({self.keys.log(execution_id): after},
                                          count=READ_PAGE, block=max(1, block_ms))
        return [(entry_id, to_event(entry_id, fields, execution_id))
                for _key, entries in got or () for entry_id, fields in entries]

    async def read_first(self, execution_id: str) -> AnyEvent | None:
        """The log's first event (its ``ExecutionStarted``), or None without a log."""
        first: list[Any] = await self.redis.xrange(self.keys.log(execution_id), count=1)
        return to_event(first[0][0], first[0][1], execution_id) if first else None

    async def meta(self, execution_id: str) -> dict[bytes, bytes]:
        """The execution's meta hash (empty when it does not exist)."""
        return await self.tables.meta(execution_id).all()


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
