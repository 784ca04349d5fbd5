"""Automatic pipelining of script calls on one dedicated connection.

Every step of every execution is one call of the append script. Sent one by one through
a connection pool, each call pays a pool checkout, a health check and a write syscall;
queued here instead, the calls that arrive while a batch is on the wire leave together in
the next write, and their replies are read back in order. A lone caller (one execution
stepping sequentially) pays one write and one read; a thousand concurrent ones share a
few. Order of calls is the order of arrival; each caller gets its own reply or error.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from zart_es.store._connection import RedisClient

MAX_BATCH = 512


class ScriptCaller(Protocol):
    """Calls one Lua script: ``await caller(keys, args)``; ``aclose()`` when done."""

    async def __call__(self, keys: list[str], args: list[bytes | str]) -> Any: ...

    async def aclose(self) -> None: ...


def script_caller(redis: RedisClient, script: str, *, pipelined: bool = True) -> ScriptCaller:
    """The fastest way to call ``script`` on this client: auto-pipelined on a single
    Redis; routed by key slot (one EVALSHA per call) on a Redis Cluster."""
    if pipelined and isinstance(redis, Redis):
        return ScriptPipe(redis, script)
    return SlotScript(redis, script)


class SlotScript:
    """EVALSHA through the client (cluster-aware routing); on NOSCRIPT (a new or
    failed-over node starts with an empty script cache) the call is sent once as EVAL,
    which runs the script and caches it on the node that owns the keys' slot.

    Not SCRIPT LOAD: a cluster client sends that to the primaries of its cached topology,
    which after a failover need not include the promoted replica that answered NOSCRIPT,
    so the EVALSHA after it failed again, on every call, until the topology was refreshed.
    """

    def __init__(self, redis: RedisClient, script: str) -> None:
        self._redis = redis
        self._script = script
        self._sha = hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, keys: list[str], args: list[bytes | str]) -> Any:
        try:
            return await self._redis.evalsha(self._sha, len(keys), *keys, *args)  # type: ignore[misc]
        except NoScriptError:
            return await self._redis.eval(self._script, len(keys), *keys, *args)  # type: ignore[misc]

    async def aclose(self) -> None:
        """Nothing of its own to close: the client's connections are the caller's."""


class ScriptPipe:
    """Runs one Lua script with EVALSHA, batching concurrent calls into pipelines."""

    def __init__(self, redis: Redis, script: str) -> None:
        self._pool = redis.connection_pool
        self._script = script
        self._sha = hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()
        self._queue: list[tuple[bytes, asyncio.Future[Any]]] = []
        self._wake = asyncio.Event()
        self._conn: AbstractConnection | None = None
        self._wire = asyncio.Lock()
        """Held while a request is on the connection and its replies are unread."""
        self._wire_users = 0
        """Tasks holding or waiting for the wire. Not ``_wire.locked()``: while the lock
        passes to a waiter it reads unlocked, and a caller arriving then would take the
        direct path and queue on the lock instead of joining the batch; every caller whose
        reply just came back arrives exactly then, so batching collapsed into one call per
        round trip (measured: 2,000 lone sends/s with 500 executions in flight)."""
        self._flusher: asyncio.Task[None] | None = None

    async def __call__(self, keys: list[str], args: list[bytes | str]) -> Any:
        """EVALSHA with ``keys`` and ``args``; raises what Redis or the connection raised.

        With nothing queued and nothing on the wire the caller sends and reads its own
        reply (no hand-off to the flusher task); otherwise the call joins the next batch.
        """
        packed = _resp(b"EVALSHA", self._sha.encode(), b"%d" % len(keys), *keys, *args)
        if not self._queue and not self._wire_users:
            self._wire_users += 1  # inline, not _holding_wire(): this is every step's path
            try:
                async with self._wire:
                    return await self._send_one(packed)
            finally:
                self._wire_users -= 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((packed, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_forever())
        self._wake.set()
        return await future

    @contextlib.asynccontextmanager
    async def _holding_wire(self) -> AsyncIterator[None]:
        """The wire, counted from the moment a task asks for it (see ``_wire_users``)."""
        self._wire_users += 1
        try:
            async with self._wire:
                yield
        finally:
            self._wire_users -= 1

    async def _send_one(self, packed: bytes) -> Any:
        for attempt in (1, 2):
            reused = self._conn is not None
            try:
                return await self._roundtrip(packed)
            except ResponseError:
                raise  # an error reply: the connection is still in step
            except (RedisConnectionError, ConnectionError, OSError):
                await self._drop_connection()
                # a reused connection may have been closed while idle (Redis restart, idle
                # timeout): once more on a fresh one. Re-sending is safe: appends are
                # version-checked, creations and tokens idempotent
                if not reused or attempt == 2:
                    raise
            except BaseException:
                await self._drop_connection()  # unread replies may be pending: never reuse it
                raise
        raise AssertionError("unreachable")

    async def _roundtrip(self, packed: bytes) -> Any:
        conn = await self._connection()
        await conn.send_packed_command(packed, check_health=False)
        try:
            return await conn.read_response()
        except NoScriptError:  # the script cache was flushed under us
            await conn.send_command("SCRIPT", "LOAD", self._script)
            await conn.read_response()
            await conn.send_packed_command(packed, check_health=False)
            return await conn.read_response()

    async def aclose(self) -> None:
        """Stop the flusher and close the connection; queued calls fail."""
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
            self._flusher = None
        await self._drop_connection()
        for _, future in self._queue:
            if not future.done():
                future.set_exception(ConnectionError("script pipe closed"))
        self._queue.clear()

    async def _flush_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = [call for call in self._queue[:MAX_BATCH] if not call[1].done()]
                del self._queue[:MAX_BATCH]
                if batch:  # calls whose callers were cancelled before sending are dropped
                    async with self._holding_wire():
                        await self._send(batch)

    async def _send(self, batch: list[tuple[bytes, asyncio.Future[Any]]]) -> None:
        try:
            conn = await self._connection()
            await conn.send_packed_command(b"".join(packed for packed, _ in batch),
                                           check_health=False)
            retry: list[tuple[bytes, asyncio.Future[Any]]] = []
            for args, future in batch:
                try:
                    reply = await conn.read_response()
                except NoScriptError:  # the script cache was flushed under us
                    retry.append((args, future))
                    continue
                except ResponseError as exc:
                    _settle(future, exc=exc)
                    continue
                _settle(future, reply=reply)
        except asyncio.CancelledError:
            await self._fail(batch, ConnectionError("script pipe cancelled"))
            raise
        except Exception as exc:
            await self._fail(batch, exc)
            return
        if retry:
            try:
                await conn.send_command("SCRIPT", "LOAD", self._script)
                await conn.read_response()
            except Exception as exc:  # settle them: their callers would wait forever
                await self._fail(retry, exc)
                return
            self._queue[:0] = retry

    async def _fail(
        self, batch: list[tuple[bytes, asyncio.Future[Any]]], exc: BaseException
    ) -> None:
        # the connection may hold unread replies: never reuse it
        await self._drop_connection()
        for _, future in batch:
            _settle(future, exc=exc)

    async def _connection(self) -> AbstractConnection:
        if self._conn is None:
            conn: AbstractConnection = self._pool.make_connection()  # type: ignore[no-untyped-call]
            await conn.connect()  # type: ignore[no-untyped-call]
            await conn.send_command("SCRIPT", "LOAD", self._script)
            await conn.read_response()
            self._conn = conn
        return self._conn

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.disconnect()


def _resp(*parts: bytes | str) -> bytes:
    """One command in the Redis protocol (RESP2): cheaper than the generic packer."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(out)


def _settle(
    future: asyncio.Future[Any], *, reply: Any = None, exc: BaseException | None = None
) -> None:
    if future.done():  # the caller was cancelled; its reply is dropped
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(reply)
