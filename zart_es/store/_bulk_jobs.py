"""Where a bulk operation's progress is kept, so any API replica can answer a poll."""

from __future__ import annotations

from zart_es.store._connection import RedisClient
from zart_es.store._hashes import Hash
from zart_es.store._keys import Keys

JOB_TTL_MS = 7 * 24 * 3600 * 1000
"""How long a bulk job's record stays after its last update."""
_FIELD = "j"


class BulkJobs:
    """The records of bulk jobs: opaque bytes (the API's JSON) under the job's id."""

    __slots__ = ("keys", "redis")

    def __init__(self, redis: RedisClient, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def save(self, job_id: str, record: bytes) -> None:
        """Write the job's record (replacing the previous one) and keep it a week."""
        key = self.keys.bulk_job(job_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(key, mapping={_FIELD: record})
        pipe.pexpire(key, JOB_TTL_MS)
        await pipe.execute()

    async def load(self, job_id: str) -> bytes | None:
        """The job's record, or None (unknown, or expired)."""
        return await Hash(self.redis, self.keys.bulk_job(job_id)).get(_FIELD)
