"""The Redis client's errors and kinds of client, for the layers above the store.

Only the store (and the faces: the API, the CLI) import ``redis``; the engine, the client,
operations and the audit catch what a store call raised through these names, so the
contract "Redis is the store's" holds for imports too (pyproject's importlinter).
"""

from __future__ import annotations

from redis.asyncio import RedisCluster
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    MasterDownError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from zart_es.store._connection import RedisClient

__all__ = [
    "BusyLoadingError",
    "ClusterDownError",
    "MasterDownError",
    "NoPermissionError",
    "NoScriptError",
    "OutOfMemoryError",
    "ReadOnlyError",
    "RedisConnectionError",
    "RedisError",
    "RedisTimeoutError",
    "ResponseError",
    "TryAgainError",
    "is_cluster",
]


def is_cluster(redis: RedisClient) -> bool:
    """Whether ``redis`` is a Redis Cluster client (its keys hash to many nodes)."""
    return isinstance(redis, RedisCluster)
