"""Queries read a running execution's own state (issue 21).

``ctx.on_query`` registers a read-only handler; ``Client.query`` has a worker replay the
log read-only and call it at the point the execution has reached. Nothing is written,
no step runs, the execution is not held up.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from redis.asyncio import Redis

from zart_es import (
    Client,
    ConfigError,
    Context,
    ExecutionNotFound,
    QueryFailed,
    QueryTimeout,
    Registry,
    UnknownQuery,
    Worker,
    durable,
)
from zart_es.core import QueryRequest, encode_query
from zart_es.engine import QueryServer
from zart_es.store import Deployment
from zart_es.testing import WorkflowHarness

from .helpers import read_log, wait_for

pytestmark = pytest.mark.redis


def _workflows(registry: Registry, ran: list[str]) -> None:
    @durable("counter", registry=registry)
    async def counter(ctx: Context, n: int) -> int:
        done: list[int] = []
        phase = "starting"
        ctx.on_query("progress", lambda: {"phase": phase, "done": len(done)})
        ctx.on_query("item", lambda i: done[i])
        ctx.on_query("broken", lambda: 1 / 0)
        for i in range(n):
            def item(i: int = i) -> int:
                ran.append(f"item-{i}")
                return i * 10
            done.append(await ctx.step(f"item-{i}", item))
        phase = "sleeping"
        await ctx.sleep("1h")
        phase = "finished"
        return len(done)

    @durable("waiter", registry=registry)
    async def waiter(ctx: Context) -> str:
        got: list[str] = []
        ctx.on_query("got", lambda: got)
        while True:
            word = await ctx.wait_for_signal("word", type=str)
            if word == "stop":
                return ",".join(got)
            got.append(word)

    @durable("slow", registry=registry)
    async def slow(ctx: Context) -> None:
        stage = 0
        ctx.on_query("stage", lambda: stage)
        await ctx.step("first", lambda: ran.append("first"))
        stage = 1

        async def long() -> None:
            ran.append("long")
            await asyncio.sleep(1.5)
        await ctx.step("long", long)
        stage = 2


async def test_a_query_answers_at_the_point_reached_and_writes_nothing(
    env: tuple[Client, Registry], redis: Redis
) -> None:
    client, registry = env
    ran: list[str] = []
    _workflows(registry, ran)
    await client.start("counter", 3, execution_id="q1")
    await wait_for(lambda: _is(client, "q1", "sleeping"))
    before = (await client.status("q1")).version
    steps_ran = list(ran)

    assert await client.query("q1", "progress") == {"phase": "sleeping", "done": 3}
    assert await client.query("q1", "item", 2, type=int) == 20
    assert (await client.status("q1")).version == before  # nothing recorded
    assert ran == steps_ran  # no step function ran again
    assert len(await read_log(redis, "q1")) == before

    with pytest.raises(UnknownQuery, match=r"has no query 'nope' \(registered: 'broken', "
                                           r"'item', 'progress'\)"):
        await client.query("q1", "nope")
    with pytest.raises(QueryFailed, match="ZeroDivisionError"):
        await client.query("q1", "broken")
    with pytest.raises(QueryFailed, match="IndexError"):
        await client.query("q1", "item", 7)


async def test_queries_of_waiting_and_ended_executions(env: tuple[Client, Registry]) -> None:
    client, registry = env
    _workflows(registry, [])
    await client.start("waiter", execution_id="w1")
    await wait_for(lambda: _is(client, "w1", "waiting"))
    assert await client.query("w1", "got") == []
    await client.send_signal("w1", "word", "a")
    await client.send_signal("w1", "word", "b")
    await wait_for(lambda: _answers(client, "w1", "got", ["a", "b"]))
    await client.send_signal("w1", "word", "stop")
    assert await client.result("w1", timeout=5) == "a,b"
    assert await client.query("w1", "got") == ["a", "b"]  # ended: still answers


async def test_a_query_does_not_wait_for_a_running_step(env: tuple[Client, Registry]) -> None:
    client, registry = env
    ran: list[str] = []
    _workflows(registry, ran)
    await client.start("slow", execution_id="s1")
    await wait_for(lambda: _ran(ran, "long"))
    began = time.monotonic()
    assert await client.query("s1", "stage") == 1  # the long step is not recorded yet
    assert time.monotonic() - began < 1.0
    await client.result("s1", timeout=10)
    assert await client.query("s1", "stage") == 2
    assert ran.count("long") == 1
    assert ran.count("first") == 1


async def test_bad_queries_get_typed_errors(redis_url: str, registry: Registry) -> None:
    _workflows(registry, [])
    async with Client(redis_url) as client:
        with pytest.raises(ExecutionNotFound):
            await client.query("nobody", "progress")
        await client.start("counter", 1, execution_id="unserved")
        with pytest.raises(QueryTimeout, match=r"no worker of task queue 'default' answered "
                                               "query 'progress' of execution 'unserved' "
                                               r"within 0\.3s"):
            await client.query("unserved", "progress", timeout=0.3)
        for timeout in (0, -1, float("nan"), 301):
            with pytest.raises(ConfigError, match="a query timeout must be in"):
                await client.query("unserved", "progress", timeout=timeout)
        with pytest.raises(ConfigError, match="query name"):
            await client.query("unserved", "")


async def test_hostile_requests_are_set_aside_and_the_loop_goes_on(
    env: tuple[Client, Registry], redis: Redis
) -> None:
    client, registry = env
    _workflows(registry, [])
    await client.start("counter", 1, execution_id="h1")
    await wait_for(lambda: _is(client, "h1", "sleeping"))
    stream = client.keys.queries("default")
    await redis.xadd(stream, {b"q": b"\xff not msgpack"})
    await redis.xadd(stream, {b"x": b"no q field"})
    aimed = QueryRequest(execution_id="h1", name="progress", args=b"\x90",
                         reply="zart:pauses", deadline_ms=round(time.time() * 1000) + 60_000)
    await redis.xadd(stream, {b"q": encode_query(aimed)})
    assert await client.query("h1", "progress") == {"phase": "sleeping", "done": 1}
    assert await redis.type("zart:pauses") == b"none"  # no reply was aimed elsewhere


async def test_a_second_query_folds_only_what_is_new(
    redis_url: str, registry: Registry, env: tuple[Client, Registry]
) -> None:
    client, _ = env
    _workflows(registry, [])
    await client.start("waiter", execution_id="f1")
    await wait_for(lambda: _is(client, "f1", "waiting"))
    async with Deployment(redis_url) as deployment:
        server = QueryServer(deployment, registry, "probe", ("default",))
        reads: list[bytes | None] = []
        read = deployment.store.read

        async def counted(execution_id: str, after: bytes | None = None) -> Any:
            reads.append(after)
            return await read(execution_id, after)

        deployment.store.read = counted  # type: ignore[method-assign]
        request = QueryRequest(execution_id="f1", name="got", args=b"\x90", reply="-",
                               deadline_ms=0)
        assert (await server.answer(request)).outcome == "ok"
        await client.send_signal("f1", "word", "x")
        await wait_for(lambda: _answers(client, "f1", "got", ["x"]))
        answer = await server.answer(request)
        assert deployment.payloads.decode(answer.value, None, "") == ["x"]
        assert reads[0] is None
        assert reads[1] is not None


async def test_the_worker_counts_queries_by_outcome(
    env: tuple[Client, Registry], worker: Worker
) -> None:
    client, registry = env
    _workflows(registry, [])
    await client.start("waiter", execution_id="m1")
    await wait_for(lambda: _is(client, "m1", "waiting"))
    await client.query("m1", "got")
    with pytest.raises(UnknownQuery):
        await client.query("m1", "other")
    assert worker.metrics.queries.labels("ok")._value.get() == 1
    assert worker.metrics.queries.labels("unknown")._value.get() == 1


@pytest.mark.pure
async def test_the_harness_answers_queries_too() -> None:
    registry = Registry()
    _workflows(registry, [])
    harness = WorkflowHarness(registry)
    harness.start("counter", 2)
    await harness.run()
    assert await harness.query("progress") == {"phase": "sleeping", "done": 2}
    with pytest.raises(UnknownQuery):
        await harness.query("missing")


async def _is(client: Client, eid: str, status: str) -> bool:
    try:
        return (await client.status(eid)).status == status
    except ExecutionNotFound:
        return False


async def _answers(client: Client, eid: str, name: str, expected: object) -> bool:
    return bool(await client.query(eid, name) == expected)


async def _ran(ran: list[str], what: str) -> bool:
    return what in ran
