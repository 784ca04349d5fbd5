"""Connection settings shared by :class:`Client` and :class:`Worker`."""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis

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


def connect(url: str) -> Redis:
    """An asyncio Redis client for ``url`` (bytes replies; hiredis parser when installed)."""
    scheme = urlsplit(url).scheme
    if scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"unsupported Redis URL scheme {scheme!r} in {redact(url)}")
    return Redis.from_url(url, decode_responses=False, socket_keepalive=True)


def redact(url: str) -> str:
    """The URL with any password replaced, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))
