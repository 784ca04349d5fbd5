"""Listing executions from the per-partition status indexes, newest first, a page at a time.

The append script keeps, per partition, one sorted set per status (and one of all
executions), scored by creation time. A listing reads the newest entries of each
partition's set within the asked time range, merges them, and reads the meta hashes of the
winners. Pages are ordered by (creation ms, id), both descending; a page's ``next`` cursor
is the position of its last row, so the next page starts strictly after it however many
executions were started in between (they are newer: they sort before the cursor).
"""

from __future__ import annotations

import base64
import binascii
import heapq
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from zart_es.core import STATES, AnyEvent, ConfigError, ExecutionNotFound, Status
from zart_es.store import Keys, RedisClient, to_event

Entry = tuple[bytes, dict[bytes, bytes]]

PAGE = 200
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ExecutionSummary(msgspec.Struct, frozen=True):
    """One line of a listing."""

    execution_id: str
    workflow: str
    status: Status
    created_ms: int
    updated_ms: int
    version: int

    @property
    def state(self) -> Status:
        """The old name of :attr:`status` (kept for code written against 0.3)."""
        return self.status


class ExecutionPage(msgspec.Struct, frozen=True):
    """A page of a listing: ``next`` is the cursor of the following page (None: the last)."""

    items: list[ExecutionSummary]
    next: str | None


def encode_cursor(kind: str, *position: int | str) -> str:
    """An opaque cursor (URL-safe) for a position in a ``kind`` of listing."""
    raw = msgspec.json.encode([kind, *position])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(kind: str, cursor: str, types: tuple[type, ...]) -> tuple[Any, ...]:
    """The position a cursor of :func:`encode_cursor` holds; :class:`ConfigError` when it
    is not one of this ``kind`` (a cursor of another listing, or edited)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        decoded = msgspec.json.decode(raw)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        decoded = None
    if (not isinstance(decoded, list) or len(decoded) != len(types) + 1
            or decoded[0] != kind or not all(
                type(v) is t for v, t in zip(decoded[1:], types, strict=True))):
        raise ConfigError(f"invalid cursor {cursor[:40]!r}: pass the 'next' of a previous "
                          f"page of this listing")
    return tuple(decoded[1:])


async def list_executions(
    redis: RedisClient, keys: Keys, *, status: str | None, name: str | None, limit: int
) -> list[ExecutionSummary]:
    """Up to ``limit`` executions, newest first; ``name`` filters by workflow."""
    page = await page_executions(redis, keys, status=status, name=name, limit=limit)
    return page.items


async def page_executions(
    redis: RedisClient, keys: Keys, *, status: str | None, name: str | None, limit: int,
    cursor: str | None = None, created_after_ms: int | None = None,
    created_before_ms: int | None = None,
) -> ExecutionPage:
    """Up to ``limit`` executions created in [``created_after_ms``, ``created_before_ms``)
    after ``cursor`` (a previous page's ``next``), newest first; ``name`` filters by
    workflow, ``status`` by status."""
    if status is not None and status not in STATES:
        raise ConfigError(f"unknown status {status!r}; use one of {', '.join(STATES)}")
    if limit < 1:
        raise ConfigError(f"limit must be >= 1, got {limit}")
    top: tuple[int, str] | None = None
    upper = "+inf" if created_before_ms is None else f"({created_before_ms}"
    if cursor is not None:
        top = decode_cursor("executions", cursor, (int, str))
        upper = str(top[0]) if created_before_ms is None else str(
            min(top[0], created_before_ms - 1))
    window = (upper, "-inf" if created_after_ms is None else str(created_after_ms))
    out = await _newest(redis, keys, status=status, name=name, window=window, top=top,
                        wanted=limit + 1)
    more = len(out) > limit
    last = out[limit - 1] if more else None
    return ExecutionPage(out[:limit], None if last is None else encode_cursor(
        "executions", last.created_ms, last.execution_id))


async def _newest(
    redis: RedisClient, keys: Keys, *, status: str | None, name: str | None,
    window: tuple[str, str], top: tuple[int, str] | None, wanted: int,
) -> list[ExecutionSummary]:
    """A k-way merge of the partitions' indexes, newest first, below ``top``."""
    out: list[ExecutionSummary] = []
    offsets = [0] * keys.partitions
    exhausted = [False] * keys.partitions
    while len(out) < wanted and not all(exhausted):
        # no more than the rows still wanted from each partition, unless a workflow filter
        # may pass over many of them
        count = PAGE if name is not None else min(PAGE, wanted - len(out))
        candidates = await _next_page(redis, keys, status=status, window=window,
                                      offsets=offsets, exhausted=exhausted, count=count)
        if not candidates:
            break
        newest = heapq.nlargest(count, candidates)
        for _score, _member, partition in newest:
            offsets[partition] += 1
        newest = [c for c in newest if top is None or (c[0], c[1]) < top]
        metas = await _metas(redis, keys, [m for _, m, _ in newest])
        for (_score, member, _p), meta in zip(newest, metas, strict=True):
            summary = _summary(member, meta)
            if summary is None or (name is not None and summary.workflow != name):
                continue
            if status is not None and summary.status != status:
                continue  # moved on since the index was read
            out.append(summary)
            if len(out) == wanted:
                break
    return out


async def _next_page(
    redis: RedisClient, keys: Keys, *, status: str | None, window: tuple[str, str],
    offsets: list[int], exhausted: list[bool], count: int,
) -> list[tuple[int, str, int]]:
    pipe = redis.pipeline(transaction=False)
    live = [p for p in range(keys.partitions) if not exhausted[p]]
    for p in live:
        pipe.zrevrangebyscore(keys.index(p, status), window[0], window[1], start=offsets[p],
                              num=count, withscores=True)
    pages: list[Any] = await pipe.execute()
    candidates: list[tuple[int, str, int]] = []
    for p, page in zip(live, pages, strict=True):
        if not page:
            exhausted[p] = True
        candidates.extend((int(score), member.decode(), p) for member, score in page)
    return candidates


async def _metas(redis: RedisClient, keys: Keys, ids: list[str]) -> list[Any]:
    pipe = redis.pipeline(transaction=False)
    for execution_id in ids:
        pipe.hmget(keys.meta(execution_id), ["w", "st", "c", "u", "v"])
    metas: list[Any] = await pipe.execute()
    return metas


def _summary(execution_id: str, meta: list[bytes | None]) -> ExecutionSummary | None:
    workflow, state, created, updated, version = meta
    if workflow is None or state is None:
        return None
    return ExecutionSummary(
        execution_id=execution_id,
        workflow=workflow.decode(),
        status=Status(state.decode()),
        created_ms=int(created or 0),
        updated_ms=int(updated or 0),
        version=int(version or 0),
    )


def ms_of(when: datetime | None, what: str) -> int | None:
    """``when`` in ms since the epoch; a naive datetime is refused (whose time zone?)."""
    if when is None:
        return None
    if when.tzinfo is None:
        raise ConfigError(f"{what} must be timezone-aware, got {when.isoformat()}")
    return (when - _EPOCH) // timedelta(milliseconds=1)  # exact: no float in between


class HistoryPage(msgspec.Struct, frozen=True):
    """A page of an execution's log, oldest first; ``next``: the following page's cursor."""

    items: list[AnyEvent]
    next: str | None


async def page_history(
    redis: RedisClient, keys: Keys, execution_id: str, *, cursor: str | None, limit: int,
    archived: Callable[[], Awaitable[list[Entry]]],
) -> HistoryPage:
    """Up to ``limit`` events of the log after ``cursor``, from Redis or, once the log left
    it, from ``archived`` (its entries as archived). A cursor is bound to its execution."""
    if limit < 1:
        raise ConfigError(f"limit must be >= 1, got {limit}")
    after = None
    if cursor is not None:
        owner, after = decode_cursor("history", cursor, (str, str))
        if owner != execution_id:
            raise ConfigError(f"cursor {cursor[:40]!r} belongs to another execution's history")
    key = keys.log(execution_id)
    raw: list[Entry] = await redis.xrange(key, min=f"({after}" if after else "-", max="+",
                                          count=limit + 1)
    if not raw and not await redis.exists(key):
        entries = await archived()
        if not entries:
            raise ExecutionNotFound(execution_id)
        raw = [e for e in entries
               if after is None or stream_position(e[0]) > stream_position(after)]
    page = raw[:limit]
    return HistoryPage([to_event(entry_id, fields, execution_id) for entry_id, fields in page],
                       encode_cursor("history", execution_id, page[-1][0].decode())
                       if len(raw) > limit else None)


def stream_position(entry_id: bytes | str) -> tuple[int, int]:
    """A stream entry id (``<ms>-<seq>``) as a pair that sorts as Redis orders them."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


class Stats(msgspec.Struct, frozen=True):
    """Executions of the deployment by state, and by workflow and state."""

    total: int
    by_state: dict[str, int]
    by_workflow: dict[str, dict[str, int]]


async def count_executions(redis: RedisClient, keys: Keys) -> Stats:
    """Sum the partitions' count hashes (one pipelined read, no scan of executions)."""
    pipe = redis.pipeline(transaction=False)
    for p in range(keys.partitions):
        pipe.hgetall(keys.counts(p))
    replies: list[dict[bytes, bytes]] = await pipe.execute()
    by_state: dict[str, int] = {str(s): 0 for s in STATES}
    by_workflow: dict[str, dict[str, int]] = {}
    for counts in replies:
        for field, value in counts.items():
            workflow, _, state = field.decode().rpartition("\n")
            n = int(value)
            if n <= 0:
                continue
            by_state[state] = by_state.get(state, 0) + n
            per = by_workflow.setdefault(workflow, {})
            per[state] = per.get(state, 0) + n
    return Stats(total=sum(by_state.values()), by_state=by_state,
                 by_workflow=dict(sorted(by_workflow.items())))
