"""Typed handles on one Redis hash or set: what the layers above read and write of the
deployment's tables (pause rules, schedules, meta hashes, the queue index, ...).

redis-py types each command's reply as "an awaitable or the value" (one signature for its
sync and asyncio clients) and as ``str`` where a client without ``decode_responses``
answers ``bytes``. These handles await the reply and check its type at run time, so the
callers get what Redis really sent, typed, and a reply of another shape is a
:class:`~zart_es.core.StoreError` naming the command instead of a wrong value.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any

from zart_es.core import StoreError
from zart_es.store._connection import RedisClient
from zart_es.store._keys import Keys

Field = str
Value = str | bytes | int


async def reply(value: Any) -> object:
    """A command's reply: awaited when the client is asyncio (always, here)."""
    return await value if inspect.isawaitable(value) else value


def as_bytes(value: object, command: str) -> bytes | None:
    """A bulk-string reply (None: nil)."""
    if value is None or isinstance(value, bytes):
        return value
    raise StoreError(f"{command} answered {type(value).__name__}, not bytes")


def as_int(value: object, command: str) -> int:
    """An integer reply."""
    if isinstance(value, int):
        return value
    raise StoreError(f"{command} answered {type(value).__name__}, not an integer")


def as_mapping(value: object, command: str) -> dict[bytes, bytes]:
    """A field/value map (HGETALL)."""
    if isinstance(value, dict):
        return {as_bytes(k, command) or b"": as_bytes(v, command) or b""
                for k, v in value.items()}
    raise StoreError(f"{command} answered {type(value).__name__}, not a map")


def as_list(value: object, command: str) -> list[bytes | None]:
    """An array of bulk strings (HMGET, HKEYS, SMEMBERS)."""
    if isinstance(value, list | set | tuple):
        return [as_bytes(item, command) for item in value]
    raise StoreError(f"{command} answered {type(value).__name__}, not an array")


class Hash:
    """One Redis hash."""

    __slots__ = ("key", "redis")

    def __init__(self, redis: RedisClient, key: str) -> None:
        self.redis = redis
        self.key = key
        """The hash's key (for a pipeline or a script of the store)."""

    async def present(self) -> bool:
        """EXISTS: whether the hash has any field."""
        return bool(await reply(self.redis.exists(self.key)))

    async def get(self, field: Field) -> bytes | None:
        """HGET: the field's value (None: no such field)."""
        return as_bytes(await reply(self.redis.hget(self.key, field)), "HGET")

    async def get_many(self, fields: Iterable[Field]) -> list[bytes | None]:
        """HMGET: each field's value, in order."""
        return as_list(await reply(self.redis.hmget(self.key, list(fields))), "HMGET")

    async def all(self) -> dict[bytes, bytes]:
        """HGETALL: every field and value (empty: no hash)."""
        return as_mapping(await reply(self.redis.hgetall(self.key)), "HGETALL")

    async def fields(self) -> list[bytes]:
        """HKEYS: every field."""
        return [f for f in as_list(await reply(self.redis.hkeys(self.key)), "HKEYS")
                if f is not None]

    async def has(self, field: Field) -> bool:
        """HEXISTS."""
        return bool(await reply(self.redis.hexists(self.key, field)))

    async def put(self, field: Field, value: Value) -> None:
        """HSET one field."""
        await reply(self.redis.hset(self.key, mapping={field: value}))

    async def put_all(self, values: Mapping[str, Value] | Mapping[bytes, Value]) -> None:
        """HSET several fields (nothing when ``values`` is empty)."""
        if values:
            await reply(self.redis.hset(self.key, mapping=dict(values)))

    async def put_new(self, field: Field, value: Value) -> bool:
        """HSETNX: True when the field was added (False: it was there)."""
        # redis-py types HSETNX values as str; Redis takes any bytes
        return bool(await reply(self.redis.execute_command("HSETNX", self.key, field, value)))

    async def delete(self, *fields: Field) -> int:
        """HDEL: how many of ``fields`` were there."""
        return as_int(await reply(self.redis.hdel(self.key, *fields)), "HDEL")

    async def add(self, field: Field, amount: int) -> int:
        """HINCRBY: the field's new value."""
        return as_int(await reply(self.redis.hincrby(self.key, field, amount)), "HINCRBY")


class Members:
    """One Redis set."""

    __slots__ = ("key", "redis")

    def __init__(self, redis: RedisClient, key: str) -> None:
        self.redis = redis
        self.key = key

    async def add(self, *members: Field) -> int:
        """SADD: how many were new."""
        return as_int(await reply(self.redis.sadd(self.key, *members)), "SADD")

    async def remove(self, *members: Field) -> int:
        """SREM: how many were there."""
        return as_int(await reply(self.redis.srem(self.key, *members)), "SREM")

    async def all(self) -> list[bytes]:
        """SMEMBERS."""
        return [m for m in as_list(await reply(self.redis.smembers(self.key)), "SMEMBERS")
                if m is not None]


class Tables:
    """The deployment's hashes and sets, by what they hold (their keys: :class:`Keys`)."""

    __slots__ = ("keys", "redis")

    def __init__(self, redis: RedisClient, keys: Keys) -> None:
        self.redis, self.keys = redis, keys

    @property
    def pause_rules(self) -> Hash:
        """Pause rule -> its note (JSON: by, reason, at)."""
        return Hash(self.redis, self.keys.pauses())

    @property
    def schedules(self) -> Hash:
        """Schedule name -> its definition (msgpack)."""
        return Hash(self.redis, self.keys.schedules())

    @property
    def schedule_state(self) -> Hash:
        """Schedule name -> its state (last occurrence, paused)."""
        return Hash(self.redis, self.keys.schedule_state())

    @property
    def config(self) -> Hash:
        """The deployment's recorded configuration (its partition count)."""
        return Hash(self.redis, self.keys.config())

    def meta(self, execution_id: str) -> Hash:
        """An execution's meta hash (version, chain head, status, end, crashes, ...)."""
        return Hash(self.redis, self.keys.meta(execution_id))

    @property
    def queue_index(self) -> Members:
        """Every "<queue> <key>" with waiters or slots taken."""
        return Members(self.redis, self.keys.queue_index())
