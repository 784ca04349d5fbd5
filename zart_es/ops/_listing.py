"""Listing executions from the per-partition status indexes, newest first.

The append script keeps, per partition, one sorted set per status (and one of all
executions), scored by creation time. A listing reads the newest entries of each
partition's set, merges them, and reads the meta hashes of the winners.
"""

from __future__ import annotations

import heapq
from typing import Any

import msgspec

from zart_es.core import STATES, Status
from zart_es.store import Keys, RedisClient

PAGE = 200


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


async def list_executions(
    redis: RedisClient, keys: Keys, *, status: str | None, name: str | None, limit: int
) -> list[ExecutionSummary]:
    """Up to ``limit`` executions, newest first; ``name`` filters by workflow."""
    out: list[ExecutionSummary] = []
    offsets = [0] * keys.partitions
    exhausted = [False] * keys.partitions
    while len(out) < limit and not all(exhausted):
        candidates = await _next_page(redis, keys, status, offsets, exhausted)
        if not candidates:
            break
        newest = heapq.nlargest(PAGE, candidates)
        for _score, partition, _member in newest:
            offsets[partition] += 1
        metas = await _metas(redis, keys, [m for _, _, m in newest])
        for (_score, _p, member), meta in zip(newest, metas, strict=True):
            summary = _summary(member, meta)
            if summary is None or (name is not None and summary.workflow != name):
                continue
            if status is not None and summary.status != status:
                continue  # moved on since the index was read
            out.append(summary)
            if len(out) == limit:
                break
    return out


async def _next_page(
    redis: RedisClient, keys: Keys, status: str | None, offsets: list[int], exhausted: list[bool]
) -> list[tuple[float, int, str]]:
    pipe = redis.pipeline(transaction=False)
    live = [p for p in range(keys.partitions) if not exhausted[p]]
    for p in live:
        pipe.zrevrange(keys.index(p, status), offsets[p], offsets[p] + PAGE - 1, withscores=True)
    pages: list[Any] = await pipe.execute()
    candidates: list[tuple[float, int, str]] = []
    for p, page in zip(live, pages, strict=True):
        if not page:
            exhausted[p] = True
        candidates.extend((score, p, member.decode()) for member, score in page)
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
