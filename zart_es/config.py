"""Connection settings shared by :class:`Client` and :class:`Worker`."""

from __future__ import annotations

import os
from typing import Any, TypeAlias
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from .errors import ConfigError

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
DEFAULT_PARTITIONS = 16
DEFAULT_PREFIX = "zart"


def resolve_url(url: str | None) -> str:
    """``url``, else ``$ZART_REDIS_URL``, else ``redis://localhost:6379/0``."""
    return url or os.environ.get("ZART_REDIS_URL") or DEFAULT_REDIS_URL


def resolve_partitions(partitions: int | None) -> int:
    """``partitions``, else ``$ZART_PARTITIONS``, else 16 (fixed for a deployment's life)."""
    if partitions is not None:
        return partitions
    raw = os.environ.get("ZART_PARTITIONS")
    if raw is None:
        return DEFAULT_PARTITIONS
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"ZART_PARTITIONS must be an integer, got {raw!r}") from None


RedisClient: TypeAlias = Redis | RedisCluster
"""A single Redis or a Redis Cluster: the engine uses only what both support."""

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}

_TIMEOUTS: dict[str, Any] = {"socket_timeout": 30.0, "socket_connect_timeout": 10.0}
"""A reply later than 30 s means a dead peer (a half-open connection after a network
partition): fail the call (it is retried) instead of waiting for the kernel's keepalive,
which takes hours. The engine's longest blocking read is 5 s. A URL's own
``socket_timeout=`` / ``socket_connect_timeout=`` query options win."""


def connect(url: str) -> RedisClient:
    """An asyncio client for ``url`` (bytes replies; hiredis parser when installed).

    ``redis://``, ``rediss://`` and ``unix://`` name one server; ``redis+cluster://`` and
    ``rediss+cluster://`` name any node of a Redis Cluster (the client finds the rest).
    """
    parts = urlsplit(url)
    if parts.scheme in CLUSTER_SCHEMES:
        plain = urlunsplit(parts._replace(scheme=CLUSTER_SCHEMES[parts.scheme]))
        # a failover takes a node timeout plus an election (seconds): keep retrying, with
        # a topology refresh each time, for about 10 s before giving up on a command
        retry = Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=16)
        return RedisCluster.from_url(plain, decode_responses=False, socket_keepalive=True,
                                     retry=retry, **_TIMEOUTS)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"unsupported Redis URL scheme {parts.scheme!r} in {redact(url)}")
    return Redis.from_url(url, decode_responses=False, socket_keepalive=True, **_TIMEOUTS)


def redact(url: str) -> str:
    """The URL with any password replaced, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))
