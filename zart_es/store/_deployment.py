"""The deployment handle: one zart-es deployment as one process sees it.

Where its Redis is, the key prefix and partition count, one connection, the store over
that connection and the payload limit, checked against what the deployment recorded. The
:class:`~zart_es.Client`, the :class:`~zart_es.Worker`, :class:`~zart_es.Schedules`, the
scheduler, the queue gate and the pause rules all take one, instead of reaching into each
other for these.
"""

from __future__ import annotations

import os
from typing import Protocol

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException
from redis.exceptions import TimeoutError as RedisTimeoutError

from zart_es.core import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    AesGcmKeyring,
    AuditKeyring,
    Payloads,
    RedisUnavailable,
)
from zart_es.store._bulk_jobs import BulkJobs
from zart_es.store._connection import (
    RedisClient,
    connect,
    redact,
    resolve_partitions,
    resolve_url,
)
from zart_es.store._keys import DEFAULT_PREFIX, Keys
from zart_es.store._queries import QueryChannel
from zart_es.store._routes import Routes
from zart_es.store._store import Store


class Deployment:
    """A deployment's address and settings, one connection to it, and its store.

    ``async with Deployment(url) as d:`` checks the deployment's recorded configuration
    (its partition count) on entry and closes on exit. A connection passed as ``redis``
    stays the caller's to close. Share one handle between a client, a worker and a
    scheduler in one process and they share its connection pool.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        partitions: int | None = None,
        prefix: str = DEFAULT_PREFIX,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        payload_keys: str | None = None,
        audit_keys: str | AuditKeyring | None = None,
        redis: RedisClient | None = None,
    ) -> None:
        self.url = resolve_url(redis_url)
        self.keys = Keys(prefix, resolve_partitions(partitions))
        self._own_redis = redis is None
        self.redis: RedisClient = redis if redis is not None else connect(self.url)
        self.audit_keys = audit_keyring(audit_keys)
        """The keys that chain every event (``audit_keys`` / ``$ZART_AUDIT_KEY``; None:
        the unkeyed chain, which detects accidents, not tampering)."""
        self.store = Store(self.redis, self.keys, self.audit_keys)
        self.trail = self.store.trail
        """The operator trail: every operator's action, chained."""
        self.routes = Routes(self.redis, self.keys)
        """Which task queue each workflow's work goes to, and which queues have workers."""
        self.queries = QueryChannel(self.redis, self.keys)
        """Where queries are asked and answered (never an execution's log)."""
        self.bulk_jobs = BulkJobs(self.redis, self.keys)
        """The progress of bulk operations started over the API."""
        self.max_payload_bytes = max_payload_bytes
        """Largest encoded input, step result or signal payload accepted (bytes)."""
        self.payloads = payloads_for(max_payload_bytes, payload_keys)
        """How this deployment's user values are encoded (and encrypted, with
        ``payload_keys`` / ``$ZART_PAYLOAD_KEYS``: see :class:`~zart_es.core.AesGcmKeyring`)."""
        self._checked = False

    async def __aenter__(self) -> Deployment:
        await self.ready()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def ready(self) -> None:
        """Check once that Redis answers and that its recorded partition count is ours.

        Raises :class:`~zart_es.RedisUnavailable` (naming the URL, password redacted) or
        :class:`~zart_es.PartitionMismatch`; nothing is written but the first process's
        partition count.
        """
        if self._checked:
            return
        try:
            await self.store.check_config()
        except (RedisConnectionError, RedisTimeoutError, OSError, RedisClusterException) as exc:
            # RedisClusterException: a cluster client that reached no node at all
            raise RedisUnavailable(redact(self.url), str(exc)) from None
        self._checked = True

    async def close(self) -> None:
        """Close the store's own connection and, if this handle opened it, the client."""
        await self.store.aclose()
        if self._own_redis:
            await self.redis.aclose()


class HasDeployment(Protocol):
    """Anything that carries a deployment handle (a :class:`~zart_es.Client`, a worker)."""

    @property
    def deployment(self) -> Deployment: ...


def payloads_for(max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
                 payload_keys: str | None = None) -> Payloads:
    """How a deployment encodes user values: size limit, and the keys (``payload_keys``,
    else ``$ZART_PAYLOAD_KEYS``) that encrypt them, if any."""
    keys = payload_keys if payload_keys is not None else os.environ.get("ZART_PAYLOAD_KEYS")
    return Payloads(max_payload_bytes, AesGcmKeyring.parse(keys) if keys else None)


def audit_keyring(audit_keys: str | AuditKeyring | None = None) -> AuditKeyring | None:
    """The audit keyring given, else ``$ZART_AUDIT_KEY`` / ``$ZART_AUDIT_KEY_FILE``'s."""
    if isinstance(audit_keys, AuditKeyring):
        return audit_keys
    return AuditKeyring.parse(audit_keys) if audit_keys else AuditKeyring.from_env()


def deployment_of(target: Deployment | HasDeployment) -> Deployment:
    """The handle itself, or the one a client or worker carries."""
    return target if isinstance(target, Deployment) else target.deployment


def deployment_for(
    target: Deployment | str | None,
    *,
    partitions: int | None = None,
    prefix: str = DEFAULT_PREFIX,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    payload_keys: str | None = None,
    redis: RedisClient | None = None,
) -> Deployment:
    """What a :class:`~zart_es.Client` or :class:`~zart_es.Worker` works through: the
    :class:`Deployment` passed, or one built from a Redis URL (None: ``$ZART_REDIS_URL``,
    else the default) and these settings. Settings beside a ``Deployment`` are refused
    (TypeError): the handle has its own, and one of them would be silently ignored."""
    if not isinstance(target, Deployment):
        return Deployment(target, partitions=partitions, prefix=prefix,
                          max_payload_bytes=max_payload_bytes, payload_keys=payload_keys,
                          redis=redis)
    given = {"partitions": partitions is not None, "prefix": prefix != DEFAULT_PREFIX,
             "max_payload_bytes": max_payload_bytes != DEFAULT_MAX_PAYLOAD_BYTES,
             "payload_keys": payload_keys is not None, "redis": redis is not None}
    beside = [name for name, set_ in given.items() if set_]
    if beside:
        raise TypeError(f"{', '.join(beside)} given beside a Deployment: set them on the "
                        "Deployment (its settings are the ones used)")
    return target
