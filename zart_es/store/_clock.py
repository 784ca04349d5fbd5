"""Redis' clock: the one clock every due time and every recorded decision is measured against."""

from __future__ import annotations

from zart_es.store._connection import RedisClient


async def redis_now_ms(redis: RedisClient) -> int:
    """Redis' clock in ms: the one clock every due time is measured against."""
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000
