"""The Redis side of queries: a request stream per task queue, a reply stream per query.

Requests go to ``<prefix>:tq:<task queue>:queries`` (capped), read by the ``queries``
consumer group of the workers serving that queue; each answer goes to its own short-lived
stream, which the asking client blocks on. Nothing here touches an execution's log.
"""

from __future__ import annotations

import uuid
from typing import Any

from redis.exceptions import ResponseError

from zart_es.core import QueryAnswer, QueryRequest, encode_query
from zart_es.store._connection import RedisClient
from zart_es.store._keys import Keys

QUERY_GROUP = "queries"
"""The consumer group of every worker serving a task queue, on its query stream."""
REQUESTS_MAXLEN = 10_000
"""About how many requests a query stream keeps (answered or expired ones go first)."""
REPLY_TTL_MS = 60_000
"""How long an answer waits for its asker."""
F_QUERY = b"q"


class QueryChannel:
    """Ask, answer and wait for queries of one deployment."""

    __slots__ = ("keys", "redis")

    def __init__(self, redis: RedisClient, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    def reply_key(self, task_queue: str) -> str:
        """A fresh reply stream for one query of ``task_queue``."""
        return self.keys.query_reply(task_queue, uuid.uuid4().hex)

    async def ask(self, task_queue: str, request: QueryRequest) -> None:
        """Add ``request`` to the task queue's query stream."""
        await self.redis.xadd(self.keys.queries(task_queue), {F_QUERY: encode_query(request)},
                              maxlen=REQUESTS_MAXLEN, approximate=True)

    async def answer(self, reply: str, answer: QueryAnswer) -> None:
        """Add ``answer`` to its reply stream, which expires if nobody reads it."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.xadd(reply, {F_QUERY: encode_query(answer)})
        pipe.pexpire(reply, REPLY_TTL_MS)
        await pipe.execute()

    async def wait_answer(self, reply: str, timeout_s: float) -> bytes | None:
        """The answer's bytes once it arrives, or None after ``timeout_s``."""
        got: Any = await self.redis.xread({reply: "0"}, count=1,
                                          block=max(1, round(timeout_s * 1000)))
        for _stream, entries in got or ():
            for _entry_id, fields in entries:
                await self.redis.delete(reply)
                data: bytes = fields.get(F_QUERY, b"")
                return data
        return None

    async def join(self, task_queue: str) -> None:
        """Create the task queue's query stream and group if missing (new requests only:
        a worker that starts does not answer what was asked before it)."""
        try:
            await self.redis.xgroup_create(self.keys.queries(task_queue), QUERY_GROUP,
                                           id="$", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def take(self, task_queue: str, consumer: str, count: int, block_ms: int
                   ) -> list[tuple[bytes, bytes]]:
        """The next requests for this worker: (stream entry id, request bytes)."""
        got: Any = await self.redis.xreadgroup(QUERY_GROUP, consumer,
                                               {self.keys.queries(task_queue): ">"},
                                               count=count, block=block_ms)
        return [(entry_id, fields.get(F_QUERY, b""))
                for _stream, entries in got or () for entry_id, fields in entries]

    async def done(self, task_queue: str, entry_ids: list[bytes]) -> None:
        """Acknowledge and remove answered requests."""
        if entry_ids:
            key = self.keys.queries(task_queue)
            pipe = self.redis.pipeline(transaction=False)
            pipe.xack(key, QUERY_GROUP, *entry_ids)
            pipe.xdel(key, *entry_ids)
            await pipe.execute()
