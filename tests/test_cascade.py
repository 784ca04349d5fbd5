"""A parent's end reaches its children by their cancel policy (issue 21: cancel cascade).

``cascade`` (the default) cancels a running child, whose compensation runs; ``abandon``
leaves it; ``request`` signals it ``zart.parent-ended``. Across partitions, in the test
harness as in the engine, and through a worker killed mid-cascade.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis

from zart_es import (
    Cancelled,
    Client,
    ConfigError,
    Context,
    ExecutionNotFound,
    ParentEnded,
    Registry,
    durable,
)
from zart_es.core import (
    CancelRequested,
    ChildCompleted,
    ChildStarted,
    Event,
    ExecutionCancelled,
    ExecutionCompleted,
    ExecutionStarted,
    Payloads,
    SignalReceived,
    StepCompleted,
    end_notices,
    fold,
)
from zart_es.testing import WorkflowHarness

from .helpers import count_effects, read_log, spawn_worker, stop_worker, wait_for

pytestmark = pytest.mark.redis


def _workflows(registry: Registry, compensated: list[str]) -> None:
    @durable("sleepy-child", registry=registry)
    async def sleepy_child(ctx: Context, n: int) -> int:
        try:
            await ctx.sleep("1h")
        except Cancelled:
            await ctx.step("compensate", lambda: compensated.append(ctx.execution_id))
            raise
        return n

    @durable("polite-child", registry=registry)
    async def polite_child(ctx: Context) -> str:
        ended = await ctx.wait_for_signal(ParentEnded.SIGNAL, type=ParentEnded)
        await ctx.step("tidy", lambda: compensated.append(ctx.execution_id))
        return f"{ended.parent_id} {ended.status} {ended.reason}"

    @durable("family-head", registry=registry)
    async def family_head(ctx: Context, ids: list[str]) -> int:
        await ctx.start_child("sleepy-child", 1, execution_id=ids[0], cancel="abandon")
        await ctx.start_child("polite-child", execution_id=ids[1], cancel="request")
        return int(await ctx.call("sleepy-child", 2, execution_id=ids[2]))

    @durable("fire-and-forget", registry=registry)
    async def fire_and_forget(ctx: Context, child_id: str) -> str:
        await ctx.start_child("sleepy-child", 3, execution_id=child_id)
        return "done"


def _ids_in_other_partitions(client: Client, parent: str) -> list[str]:
    """Three child ids, each in a partition other than the parent's."""
    home = client.keys.partition_of(parent)
    found = [f"{parent}-kid{i}" for i in range(200)
             if client.keys.partition_of(f"{parent}-kid{i}") != home]
    return found[:3]


async def _status(client: Client, eid: str) -> str:
    return (await client.status(eid)).status


async def test_cancelling_a_parent_applies_each_childs_policy(
    env: tuple[Client, Registry], redis: Redis
) -> None:
    client, registry = env
    compensated: list[str] = []
    _workflows(registry, compensated)
    abandoned, polite, called = ids = _ids_in_other_partitions(client, "head")
    await client.start("family-head", ids, execution_id="head")
    await wait_for(lambda: _is(client, called, "sleeping"))
    await wait_for(lambda: _is(client, polite, "waiting"))
    assert await client.cancel("head", "customer left", by="alice")

    await wait_for(lambda: _is(client, "head", "cancelled"))
    await wait_for(lambda: _is(client, called, "cancelled"))
    await wait_for(lambda: _is(client, polite, "completed"))
    assert await client.result(polite, timeout=5) == "head cancelled customer left"
    assert (await client.status(abandoned)).status == "sleeping"
    assert sorted(compensated) == sorted([called, polite])

    cancel = [e for e in await read_log(redis, called) if isinstance(e, CancelRequested)]
    assert [(c.by, c.reason) for c in cancel] == [
        ("parent:head", "parent head ended cancelled: customer left")]
    signals = [e for e in await read_log(redis, polite) if isinstance(e, SignalReceived)]
    assert [s.name for s in signals] == [ParentEnded.SIGNAL]
    steps = [e.step for e in await read_log(redis, called) if isinstance(e, StepCompleted)]
    assert steps == ["compensate"]


async def test_a_parent_that_completes_cancels_its_running_children(
    env: tuple[Client, Registry],
) -> None:
    client, registry = env
    compensated: list[str] = []
    _workflows(registry, compensated)
    await client.start("fire-and-forget", "orphan", execution_id="ff")
    assert await client.result("ff", timeout=10) == "done"
    await wait_for(lambda: _is(client, "orphan", "cancelled"))
    assert compensated == ["orphan"]


async def _is(client: Client, eid: str, status: str) -> bool:
    try:
        return await _status(client, eid) == status
    except ExecutionNotFound:
        return False


@pytest.mark.pure
async def test_the_harness_applies_the_same_policies() -> None:
    registry = Registry()
    compensated: list[str] = []
    _workflows(registry, compensated)
    harness = WorkflowHarness(registry)
    harness.start("family-head", ["a", "p", "c"], execution_id="head")
    await harness.settle()
    assert harness.cancel("bye", execution_id="head")
    await harness.settle()
    assert harness.journal("head").state.status == "cancelled"
    assert harness.journal("c").state.status == "cancelled"
    assert harness.result("p") == "head cancelled bye"
    assert harness.journal("a").state.status == "sleeping"
    assert sorted(compensated) == ["c", "p"]


@pytest.mark.pure
async def test_an_unknown_policy_is_refused_naming_the_choices() -> None:
    registry = Registry()

    @durable("bad-parent", registry=registry)
    async def bad_parent(ctx: Context) -> None:
        await ctx.start_child("x", cancel="terminate")

    harness = WorkflowHarness(registry)
    harness.start("bad-parent")
    await harness.settle()
    error = harness.journal().state.error
    assert error is not None
    assert (error.error_type, error.message) == (
        ConfigError.__name__,
        "cancel policy must be one of cascade, abandon, request, got 'terminate'")


@pytest.mark.processes
async def test_a_worker_killed_mid_cascade_leaves_no_child_running(
    redis_url: str, redis: Redis, effects: Path, tmp_path: Path
) -> None:
    n = 12
    async with Client(redis_url) as client:
        await client.start("cascade-parent", n, execution_id="big")
        children = [f"big.child-{i}" for i in range(n)]
        killer = spawn_worker(redis_url, "tests.apps.cascade", log=tmp_path / "w.log",
                              env={"ZART_TEST_KILL_CASCADE": "5"})
        try:
            await wait_for(lambda: _all(client, children, "sleeping"), timeout=30)
            await client.cancel("big", "stop")
            killer.wait(timeout=30)  # it kills itself after the 5th cancel it delivers
            assert killer.returncode == -9
        finally:
            stop_worker(killer)
        cancelled_before = sum([
            any(isinstance(e, CancelRequested) for e in await read_log(redis, c))
            for c in children])
        assert 5 <= cancelled_before < n  # the kill came mid-cascade
        survivor = spawn_worker(redis_url, "tests.apps.cascade", log=tmp_path / "w.log")
        try:
            await wait_for(lambda: _all(client, children, "cancelled"), timeout=30)
        finally:
            stop_worker(survivor)
        assert (await client.status("big")).status == "cancelled"
    compensations = count_effects(effects, "compensated")
    assert set(compensations) == set(children)
    for child in children:
        log = await read_log(redis, child)
        assert sum(isinstance(e, CancelRequested) for e in log) == 1
        assert [e.step for e in log if isinstance(e, StepCompleted)] == ["compensate"]


async def _all(client: Client, ids: list[str], status: str) -> bool:
    return all([await _is(client, eid, status) for eid in ids])


children_strategy = st.lists(
    st.tuples(st.sampled_from(["", "abandon", "request"]), st.booleans()), max_size=6)


@pytest.mark.pure
@given(children=children_strategy, parent=st.sampled_from(["", "dad"]),
       end=st.sampled_from(["completed", "cancelled", "running"]))
def test_end_notices_owe_each_live_child_its_policy_once(
    children: list[tuple[str, bool]], parent: str, end: str
) -> None:
    events: list[Event] = [ExecutionStarted(execution_id="p", workflow="w", input=b"",
                                            parent_id=parent)]
    for i, (policy, reported) in enumerate(children):
        events.append(ChildStarted(call=f"child:k{i}", child_id=f"k{i}", workflow="c",
                                   cancel=policy))
        if reported:
            events.append(ChildCompleted(child_id=f"k{i}", status="completed"))
    if end == "completed":
        events.append(ExecutionCompleted(result=b"\xc0"))
    elif end == "cancelled":
        events.append(ExecutionCancelled(reason="why"))
    state = fold(msgspec.structs.replace(e, seq=n) for n, e in enumerate(events))
    notices = end_notices(state, Payloads())
    if end == "running":
        assert notices == []
        return
    expected = {f"k{i}": policy for i, (policy, reported) in enumerate(children)
                if not reported and policy != "abandon"}
    to_children = {n.execution_id: n for n in notices if n.execution_id != parent}
    assert set(to_children) == set(expected)
    for child_id, notice in to_children.items():
        kind = SignalReceived if expected[child_id] == "request" else CancelRequested
        assert isinstance(notice.event, kind)
    assert [n.execution_id for n in notices].count(parent) == (1 if parent else 0)
    assert len({(n.execution_id, n.token) for n in notices}) == len(notices)
