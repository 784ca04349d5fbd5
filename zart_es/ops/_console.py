"""What the web console reads that no other view gives: queue slots and their waiting lines,
and the newest entries of the operator audit stream. Reads only; nothing here changes the
deployment (every change goes through the Client's calls)."""

from __future__ import annotations

import math
from typing import Any

import msgspec

from zart_es.ops._listing import stream_position
from zart_es.store import CHAIN_FIELDS, Keys, RedisClient

QUEUE_EPOCH_MS = 1_704_067_200_000
"""2024-01-01T00:00Z: waiting scores count arrival from here (scripts/queue_admit.lua)."""
PRIORITY_BAND = 1e12
"""A waiting score is ``-priority * PRIORITY_BAND + arrival``."""


class Holder(msgspec.Struct, frozen=True):
    """An execution in a queue key's running set (``since_ms``: when it was admitted) or
    waiting line (``since_ms``: when it arrived; ``priority``: its band)."""

    execution_id: str
    since_ms: int
    priority: int = 0


class QueueSlots(msgspec.Struct, frozen=True):
    """One queue key: who holds its slots, who waits for one (first in line first)."""

    queue: str
    key: str
    running: list[Holder]
    waiting: list[Holder]


class AuditEntry(msgspec.Struct, frozen=True):
    """One operator change: ``what`` (``pause``, ``schedule.add``, ``release``, ...), when
    (the stream entry's time, Redis' clock), and its details (``by``, ``rule``, ...)."""

    id: str
    at_ms: int
    what: str
    detail: dict[str, str]


async def queue_slots(redis: RedisClient, keys: Keys, *, limit: int = 100) -> list[QueueSlots]:
    """Every queue key that has admitted or waiting executions, sorted by queue and key;
    each list holds at most ``limit`` ids (the running oldest first, the waiting in line)."""
    pairs = sorted([m.decode() async for m in redis.sscan_iter(keys.queue_index())])
    if not pairs:
        return []
    pipe = redis.pipeline(transaction=False)
    for pair in pairs:
        queue, _, key = pair.partition(" ")
        slot = keys.queue_slot(queue, key)
        pipe.zrange(slot + "running", 0, limit - 1, withscores=True)
        pipe.zrange(slot + "waiting", 0, limit - 1, withscores=True)
    replies: list[Any] = await pipe.execute()
    out = []
    for i, pair in enumerate(pairs):
        queue, _, key = pair.partition(" ")
        running, waiting = replies[2 * i], replies[2 * i + 1]
        if not running and not waiting:
            continue  # emptied since the index was read (the sweeper drops the pair)
        out.append(QueueSlots(
            queue, key,
            running=[Holder(m.decode(), int(score)) for m, score in running],
            waiting=[_waiter(m.decode(), score) for m, score in waiting],
        ))
    return out


def _waiter(execution_id: str, score: float) -> Holder:
    """Undo the waiting score: the priority band and the arrival time."""
    priority = -math.floor(score / PRIORITY_BAND)
    return Holder(execution_id, int(score + priority * PRIORITY_BAND) + QUEUE_EPOCH_MS,
                  priority)


async def audit_entries(
    redis: RedisClient, keys: Keys, *, limit: int = 100, before: str | None = None
) -> list[AuditEntry]:
    """The newest ``limit`` entries of the operator audit stream, newest first; ``before``
    (an entry id) pages to older ones. Entries already archived and trimmed from Redis are
    not here (``zart-es archive query`` reads the archive)."""
    if before is not None and stream_position(before) == (0, 0):
        return []  # nothing is older than the first possible id (Redis refuses "(0-0")
    top = f"({before}" if before else "+"
    raw: list[Any] = await redis.xrevrange(keys.audit(), max=top, min="-", count=limit)
    out = []
    for entry_id, fields in raw:
        ident = entry_id.decode()
        detail = {k.decode(): v.decode(errors="replace") for k, v in fields.items()
                  if k not in CHAIN_FIELDS and not (k == b"reason" and not v)}
        out.append(AuditEntry(ident, int(ident.partition("-")[0]), detail.pop("what", ""),
                              detail))
    return out
