"""The Redis half of archiving: which ended executions are due to leave Redis, the
archiver's lease, cursor and batch plan, and the script that removes them.

An execution ends with one entry on its partition's ``ended`` stream (append.lua). The
archiver reads that stream from its cursor and files each ended execution in the
partition's ``archive:due`` set, scored by when its retention passes; due ones are read,
written to the archive, and only then removed by ``purge.lua``, which re-checks that each
is still ended at the version that was archived. The batch being moved is recorded
(``plan``) before anything is written, so a crash at any point resumes that same batch.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable
from typing import Any

from zart_es.core import TERMINAL_STATES, UNREADABLE, check_execution_id
from zart_es.store._autopipe import script_caller
from zart_es.store._connection import RedisClient
from zart_es.store._hashes import Hash
from zart_es.store._keys import F_EXEC, Keys
from zart_es.store._scripts import load_script
from zart_es.store._trail import Trail

FILE_PAGE = 1000
"""``ended`` entries read per round trip while filing executions as due."""

KEEP = "none"
"""How the retention hash spells "for ever"."""

Snapshot = tuple[dict[bytes, bytes], list[tuple[bytes, dict[bytes, bytes]]]]
"""An execution's meta hash and raw log entries (empty meta: it no longer exists)."""


class ArchiveQueue:
    """The executions of a deployment waiting to be archived, and their removal."""

    def __init__(self, redis: RedisClient, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._purge = script_caller(redis, load_script("purge"))  # a batch: one pipeline
        self._lease = script_caller(redis, load_script("archive_lease"), pipelined=False)
        self._cas = script_caller(redis, load_script("hash_cas"), pipelined=False)

    async def lease(self, partition: int, owner: str, ttl_ms: int) -> bool:
        """Take or renew the partition's archiver lease; False while another holds it."""
        return bool(await self._lease([self.keys.archiver(partition)],
                                      [owner, str(ttl_ms)]))

    async def announce_retention(self, retentions: dict[str, int | None],
                                 trail: Trail | None = None, by: str = "") -> None:
        """Record the retention each workflow's code declares (a worker, at start); with
        ``trail``, each change of a recorded one is an entry of the operator trail."""
        if not retentions:
            return
        declared = {name: KEEP if ms is None else str(ms) for name, ms in retentions.items()}
        table = Hash(self.redis, self.keys.retention())
        before = await table.get_many(list(declared))
        await table.put_all(declared)
        if trail is None:
            return
        for (name, now), old in zip(declared.items(), before, strict=True):
            was = None if old is None else old.decode(errors="replace")
            if was is not None and was != now:
                await trail.record("retention.change", by=by, workflow=name,
                                   before=was, after=now)

    async def retentions(self) -> dict[str, int | None]:
        """Workflow -> declared retention (ms; None: for ever), as workers recorded it."""
        raw = await Hash(self.redis, self.keys.retention()).all()
        return dict(pair for pair in map(_retention, raw.items()) if pair is not None)

    async def file_ended(self, partition: int,
                         retention_of: Callable[[str], int | None]) -> int:
        """File the executions that ended since the cursor in the due set (score: end +
        their workflow's retention; None: never); returns how many entries were read.

        Idempotent (ZADD of the same score), and the cursor moves only after the filing:
        a crash re-reads a page, never skips one. When the capped ``ended`` stream was
        trimmed past the cursor (the archiver was away for 10,000 ends), the partition's
        ended indexes are swept instead, so nothing ended is ever missed."""
        keys, redis = self.keys, self.redis
        state = Hash(redis, keys.archiver(partition))
        cursor = await state.get("cursor")
        if cursor is not None and not _STREAM_ID.fullmatch(cursor):
            # no entry id: nothing zart-es wrote; start over (filing is idempotent)
            await state.delete("cursor")
            cursor = None
        page: list[Any] = await redis.xrange(
            keys.ended(partition), min=b"(" + cursor if cursor else "-", count=FILE_PAGE)
        if cursor is None or (page and not await self._contiguous(partition, cursor)):
            await self._sweep(partition, retention_of)
        if not page:
            return 0
        ids = list(dict.fromkeys(filter(None, (_id_of(fields.get(F_EXEC)) for _, fields in page))))
        await self._file(partition, ids, retention_of)
        await state.put("cursor", page[-1][0])
        return len(page)

    async def _contiguous(self, partition: int, cursor: bytes) -> bool:
        """Whether the ``ended`` stream still holds the entry at or before the cursor's
        successor (nothing after the cursor was trimmed away unread)."""
        first: list[Any] = await self.redis.xrange(self.keys.ended(partition), count=1)
        return not first or first[0][0] <= cursor or _next_id(cursor) == first[0][0]

    async def _sweep(self, partition: int, retention_of: Callable[[str], int | None]) -> None:
        for status in sorted(TERMINAL_STATES):
            index = self.keys.index(partition, status)
            start = 0
            while True:  # by rank: executions archived meanwhile shift it, which only
                # skips ones already filed (this sweep is a backstop, filing is idempotent)
                found: list[bytes] = await self.redis.zrange(index, start,
                                                             start + FILE_PAGE - 1)
                await self._file(partition, [i for i in map(_id_of, found) if i],
                                 retention_of)
                if len(found) < FILE_PAGE:
                    break
                start += FILE_PAGE
        await Hash(self.redis, self.keys.archiver(partition)).put_new("cursor", "0-0")

    async def _file(self, partition: int, ids: list[str],
                    retention_of: Callable[[str], int | None]) -> None:
        if not ids:
            return
        pipe = self.redis.pipeline(transaction=False)
        for execution_id in ids:
            pipe.hmget(self.keys.meta(execution_id), ["w", "end"])
        metas: list[list[bytes | None]] = await pipe.execute()
        due: dict[str, int] = {}
        for execution_id, (workflow, end) in zip(ids, metas, strict=True):
            if workflow is None or end is None or not end.isdigit():
                continue  # gone, or reopened by a repair (it is filed when it ends again)
            retention = retention_of(workflow.decode(errors="replace"))
            if retention is not None:
                due[execution_id] = int(end) + retention
        if due:
            await self.redis.zadd(self.keys.archive_due(partition), due)

    async def due(self, partition: int, now_ms: int, limit: int) -> list[str]:
        """Up to ``limit`` executions whose retention has passed, earliest first."""
        found: list[bytes] = await self.redis.zrangebyscore(
            self.keys.archive_due(partition), "-inf", now_ms, start=0, num=limit)
        ids = [_id_of(member) for member in found]
        bad = [member for member, i in zip(found, ids, strict=True) if i is None]
        if bad:  # members no filing wrote: out of the way of the others
            await self.redis.zrem(self.keys.archive_due(partition), *bad)
        return [i for i in ids if i is not None]

    async def earliest(self, partition: int) -> int | None:
        """When the longest-waiting execution of the partition became due (ms)."""
        first: list[tuple[bytes, float]] = await self.redis.zrange(
            self.keys.archive_due(partition), 0, 0, withscores=True)
        if not first:
            return None
        score = first[0][1]
        return int(score) if math.isfinite(score) else 0

    async def snapshots(self, ids: list[str]) -> list[Snapshot]:
        """Each execution's meta hash and whole log, read in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for execution_id in ids:
            pipe.hgetall(self.keys.meta(execution_id))
            pipe.xrange(self.keys.log(execution_id))
        replies: list[Any] = await pipe.execute()
        return [(replies[i], replies[i + 1]) for i in range(0, len(replies), 2)]

    async def plan(self, partition: int) -> bytes | None:
        """The batch the partition's archiver was moving when it stopped, if any."""
        return await Hash(self.redis, self.keys.archiver(partition)).get("plan") or None

    async def save_plan(self, partition: int, plan: bytes) -> None:
        """Record the batch about to be written (before any object is)."""
        await Hash(self.redis, self.keys.archiver(partition)).put("plan", plan)

    async def clear_plan(self, partition: int, plan: bytes) -> None:
        """Batch ``plan`` is in the archive and out of Redis. Compare-and-set: an archiver
        that lost its lease mid-batch never clears the plan of the one that took over."""
        await self._cas([self.keys.archiver(partition)], ["plan", plan, ""])

    async def purge(self, partition: int, archived: list[tuple[str, int]]) -> dict[str, str]:
        """Remove archived executions (id, archived version) from Redis; each one's reply:
        ``ok``, ``gone`` (already removed) or ``changed`` (reopened: kept)."""
        keys = self.keys
        replies = await asyncio.gather(*(
            self._purge([keys.log(execution_id), keys.meta(execution_id),
                         keys.index_prefix(partition), keys.archive_due(partition)],
                        [execution_id, str(version)])
            for execution_id, version in archived))
        return {execution_id: reply.decode() if isinstance(reply, bytes) else str(reply)
                for (execution_id, _), reply in zip(archived, replies, strict=True)}

    async def aclose(self) -> None:
        """Close the scripts' own connections."""
        for script in (self._purge, self._lease, self._cas):
            await script.aclose()


_STREAM_ID = re.compile(rb"\d{1,20}-\d{1,20}")


def _id_of(raw: bytes | None) -> str | None:
    """An execution id read from an entry or member, None for bytes zart-es never wrote
    there (no id, not UTF-8, not a valid id): skipped, never a stalled partition."""
    try:
        return check_execution_id(raw.decode()) if raw else None
    except UNREADABLE:
        return None


def _retention(pair: tuple[bytes, bytes]) -> tuple[str, int | None] | None:
    """A recorded (workflow, retention ms) pair, None for one no worker wrote."""
    name, value = pair
    try:
        return name.decode(), None if value == KEEP.encode() else max(0, int(value))
    except UNREADABLE:
        return None


def _next_id(entry_id: bytes) -> bytes:
    ms, _, seq = entry_id.partition(b"-")
    return b"%s-%d" % (ms, int(seq or b"0") + 1)
