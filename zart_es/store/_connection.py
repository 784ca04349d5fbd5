"""Connections to Redis: the URL and partition count from arguments or the environment, one
client (single Redis or Cluster) with keepalive and retries, URLs printed without passwords."""

from __future__ import annotations

import os
import socket
from typing import Any, TypeAlias
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from zart_es.core import ConfigError

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
DEFAULT_PARTITIONS = 16


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

def _keepalive() -> dict[int, int]:
    # probe an idle connection after 15 s, every 5 s, give up after 3 misses: a half-open
    # connection (a peer gone in a network partition) fails within ~30 s instead of the
    # kernel's default two hours. A per-command socket_timeout would do it too, but costs
    # a timer per command: a quarter of a step's time (measured with bench/steps.py).
    names = ("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT")
    if not all(hasattr(socket, n) for n in names):  # not Linux: the OS defaults
        return {}
    return dict(zip((getattr(socket, n) for n in names), (15, 5, 3), strict=True))


_TIMEOUTS: dict[str, Any] = {"socket_connect_timeout": 10.0,
                             "socket_keepalive_options": _keepalive()}
"""Connection liveness without a per-command cost; a URL's own options win."""


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
