"""Debounced starts (issue 21): within the window the last start's input wins and one
execution runs, once no start came for the window's length."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from zart_es import Client, ConfigError, Context, InvalidDuration, Registry, durable
from zart_es.core import DebounceEnded, ExecutionStarted, StepCompleted, decode_value

from .helpers import read_log

pytestmark = pytest.mark.redis


def _workflows(registry: Registry, ran: list[object]) -> None:
    @durable("reindex", registry=registry)
    async def reindex(ctx: Context, what: str) -> str:
        await ctx.step("index", lambda: ran.append(what))
        return f"indexed {what}"


async def test_starts_in_a_window_are_one_execution_with_the_last_input(
    env: tuple[Client, Registry], redis: Redis
) -> None:
    client, registry = env
    ran: list[object] = []
    _workflows(registry, ran)
    began = time.monotonic()
    ids = []
    for i in range(5):
        ids.append(await client.start("reindex", f"v{i}", debounce="400ms",
                                      debounce_key="tenant-a"))
        await asyncio.sleep(0.05)
    other = await client.start("reindex", "b", debounce="400ms", debounce_key="tenant-b")
    assert len(set(ids)) == 1
    assert other != ids[0]
    assert await client.result(ids[0], timeout=10) == "indexed v4"
    assert time.monotonic() - began >= 0.4 + 4 * 0.05  # after the last start's window
    assert await client.result(other, timeout=10) == "indexed b"
    assert sorted(ran) == ["b", "v4"]  # one run each, with the last input
    log = await read_log(redis, ids[0])
    assert isinstance(log[0], ExecutionStarted)
    assert log[0].debounce_ms == 400
    ended = [e for e in log if isinstance(e, DebounceEnded)]
    assert [(e.starts, decode_value(e.input, str, "")) for e in ended] == [(5, "v4")]
    assert decode_value(log[0].input, str, "") == "v0"  # the input it was opened with
    assert sum(isinstance(e, StepCompleted) for e in log) == 1

    later = await client.start("reindex", "v9", debounce="100ms", debounce_key="tenant-a")
    assert later != ids[0]  # the window closed: a new one
    assert await client.result(later, timeout=10) == "indexed v9"


async def test_a_debounced_execution_waits_pending_until_its_window_closes(
    env: tuple[Client, Registry]
) -> None:
    client, registry = env
    _workflows(registry, [])
    eid = await client.start("reindex", "x", debounce="1s")
    await asyncio.sleep(0.3)
    assert (await client.status(eid)).status == "pending"
    assert await client.result(eid, timeout=10) == "indexed x"


async def test_bad_debounce_settings_are_refused(redis_url: str) -> None:
    async with Client(redis_url) as client:
        with pytest.raises(ConfigError, match="longer than 0"):
            await client.start("reindex", debounce=0)
        with pytest.raises(InvalidDuration):
            await client.start("reindex", debounce="-1s")
        with pytest.raises(ConfigError, match="needs debounce="):
            await client.start("reindex", debounce_key="k")
        with pytest.raises(ConfigError, match="give no execution_id"):
            await client.start("reindex", execution_id="mine", debounce="1s")
        with pytest.raises(ConfigError, match="debounce key"):
            await client.start("reindex", debounce="1s", debounce_key="\n")
