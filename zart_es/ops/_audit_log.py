"""The deployment's operator audit stream: who paused, resumed, scheduled or repaired what.

Not to be confused with an execution's hash chain (:mod:`zart_es.store` (``verify_chain``)), which
proves one log complete; this stream records the operators' changes to the deployment.
"""

from __future__ import annotations

from typing import Any

from zart_es.store import Keys, RedisClient


async def audit(redis: RedisClient, keys: Keys, what: str, **detail: str) -> None:
    """Append one entry to the deployment's audit stream (capped near 100,000 entries)."""
    fields: dict[Any, Any] = {"what": what, **detail}
    await redis.xadd(keys.audit(), fields, maxlen=100_000, approximate=True)
