"""Starting an id that is in use (issue 22): Temporal's id reuse policy, and Zart's reset
of an ended id. ``if_ended``: return, reject, reset; ``if_running``: return, fail,
terminate."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from zart_es import (
    Client,
    ConfigError,
    Context,
    ExecutionExists,
    ExecutionNotFound,
    Registry,
    durable,
)
from zart_es.core import ExecutionCancelled, RunRestarted

from .helpers import read_log, wait_for

pytestmark = pytest.mark.redis


def _workflows(registry: Registry, seen: list[str]) -> None:
    @durable("greet", registry=registry)
    async def greet(ctx: Context, who: str) -> str:
        await ctx.step("note", lambda: seen.append(who))
        return f"hello {who}"

    @durable("long", registry=registry)
    async def long(ctx: Context, who: str) -> str:
        await ctx.step("note", lambda: seen.append(who))
        await ctx.sleep("1h")
        return who


async def test_an_ended_id_is_returned_rejected_or_reset(
    env: tuple[Client, Registry], redis: Redis
) -> None:
    client, registry = env
    seen: list[str] = []
    _workflows(registry, seen)
    await client.start("greet", "ann", execution_id="g1")
    assert await client.result("g1", timeout=10) == "hello ann"
    started = await client.submit("greet", "bob", "g1")  # if_ended="return": nothing
    assert not started.created
    with pytest.raises(ExecutionExists, match=r"exists \(completed\).*if_ended='reject'"):
        await client.start("greet", "bob", "g1", if_ended="reject")
    reset = await client.submit("greet", "bob", "g1", if_ended="reset")
    assert reset.created
    await wait_for(lambda: _ran(seen, "bob"))
    assert await client.result("g1", timeout=10) == "hello bob"
    restarts = [e for e in await read_log(redis, "g1") if isinstance(e, RunRestarted)]
    assert [(r.run, r.by) for r in restarts] == [(1, "start")]
    assert seen == ["ann", "bob"]


async def test_a_running_id_is_returned_refused_or_terminated_and_run_again(
    env: tuple[Client, Registry], redis: Redis
) -> None:
    client, registry = env
    seen: list[str] = []
    _workflows(registry, seen)
    await client.start("long", "first", execution_id="l1")
    await wait_for(lambda: _status(client, "l1", "sleeping"))
    assert not (await client.submit("long", "x", "l1")).created
    with pytest.raises(ExecutionExists, match=r"exists \(sleeping\).*if_running='fail'"):
        await client.start("long", "x", "l1", if_running="fail")
    assert (await client.submit("long", "second", "l1", if_running="terminate")).created
    await wait_for(lambda: _ran(seen, "second"))
    await wait_for(lambda: _status(client, "l1", "sleeping"))
    log = await read_log(redis, "l1")
    ends = [e.reason for e in log if isinstance(e, ExecutionCancelled)]
    assert ends == ["terminated: its id was started again"]
    assert seen == ["first", "second"]
    with pytest.raises(ConfigError, match="if_running must be one of"):
        await client.start("long", "x", "l1", if_running="kill")
    with pytest.raises(ConfigError, match="if_ended must be one of"):
        await client.start("long", "x", "l1", if_ended="again")


async def _ran(seen: list[str], who: str) -> bool:
    return who in seen


async def _status(client: Client, eid: str, status: str) -> bool:
    try:
        return (await client.status(eid)).status == status
    except ExecutionNotFound:
        return False


async def test_terminating_a_running_parent_reaches_its_children(
    env: tuple[Client, Registry]
) -> None:
    client, registry = env
    seen: list[str] = []
    _workflows(registry, seen)

    @durable("parent-of-long", registry=registry)
    async def parent(ctx: Context, who: str) -> None:
        await ctx.start_child("long", who, execution_id=f"kid-of-{who}")
        await ctx.sleep("1h")

    await client.start("parent-of-long", "a", execution_id="pl")
    await wait_for(lambda: _status(client, "kid-of-a", "sleeping"))
    assert (await client.submit("parent-of-long", "b", "pl", if_running="terminate")).created
    await wait_for(lambda: _status(client, "kid-of-a", "cancelled"))  # the cascade ran
    await wait_for(lambda: _status(client, "kid-of-b", "sleeping"))  # and the new run's child
