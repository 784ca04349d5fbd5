"""Queues enforced by real workers: a per-tenant cap held across worker processes,
priority order under load, rate limits, queue pause rules, the sweeper's repairs."""

from __future__ import annotations

import asyncio
import itertools
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from zart_es import (
    Cancelled,
    Client,
    ConfigError,
    Context,
    Deployment,
    Registry,
    Worker,
    durable,
    queue,
)
from zart_es.core import Queue, QueueAdmitted
from zart_es.engine._queue_gate import QueueGate

from .helpers import effect_times, read_log, spawn_worker, stop_worker, wait_for

pytestmark = pytest.mark.processes


def _max_in_flight(path: Path) -> dict[str, int]:
    """Most ``begin``s without their ``end`` at any moment, per tenant."""
    marks = [(t, 1, key) for key, t in effect_times(path, "begin")]
    marks += [(t, -1, key) for key, t in effect_times(path, "end")]
    running: dict[str, int] = {}
    peak: dict[str, int] = {}
    for _t, delta, key in sorted(marks, key=lambda m: (m[0], m[1])):  # ends first on ties
        running[key] = running.get(key, 0) + delta
        peak[key] = max(peak.get(key, 0), running[key])
    return peak


async def test_a_per_tenant_cap_of_two_holds_across_four_workers(
    redis_url: str, redis: Redis, effects: Path, tmp_path: Path
) -> None:
    tenants = ["t0", "t1", "t2", "t3"]
    workers = [spawn_worker(redis_url, "tests.apps.queued", log=tmp_path / "w.log",
                            extra=["--concurrency", "40"]) for _ in range(4)]
    try:
        async with Client(redis_url) as client:
            ids = [await client.start("tenant-job", {"tenant": tenant, "seconds": 0.02},
                                      queue_key=tenant)
                   for tenant, _ in zip(itertools.cycle(tenants), range(200), strict=False)]
            results = [await client.result(eid, timeout=60) for eid in ids]
    finally:
        codes = [stop_worker(w) for w in workers]
    assert sorted(set(results)) == tenants
    assert codes == [0, 0, 0, 0]
    assert len(effect_times(effects, "end")) == 200
    assert _max_in_flight(effects) == dict.fromkeys(tenants, 2)  # measured, per tenant
    admitted = [e for e in await read_log(redis, ids[0]) if isinstance(e, QueueAdmitted)]
    assert [(e.queue, e.key) for e in admitted] == [("tenants", "t0")]
    async with QueueGate(Deployment(redis=redis), pipelined=False) as gate:
        for tenant in tenants:  # every slot was given back
            assert await gate.counts(Queue(name="tenants", concurrency=2), tenant) == (0, 0)


@pytest.fixture
async def env(redis_url: str, registry: Registry) -> AsyncIterator[tuple[Client, Registry]]:
    async with Client(redis_url) as client, Worker(
        redis_url, registry=registry, lease_timeout=1, poll_interval=0.05,
        queue_sweep_interval=0.2,
    ), Worker(
        redis_url, registry=registry, lease_timeout=1, poll_interval=0.05,
        queue_sweep_interval=0.2,
    ):
        yield client, registry


async def test_higher_priority_executions_are_admitted_first(
    env: tuple[Client, Registry], redis: Redis
) -> None:
    client, registry = env
    queue("serial", concurrency=1, registry=registry)
    order: list[str] = []

    @durable("serial-job", queue="serial", registry=registry)
    async def serial_job(ctx: Context, label: str) -> None:
        if label == "blocker":
            await ctx.wait_for_signal("go")
        await ctx.step("run", lambda: order.append(label))

    blocker = await client.start("serial-job", "blocker")

    async def blocker_admitted() -> bool:
        return any(isinstance(e, QueueAdmitted) for e in await read_log(redis, blocker))

    await wait_for(blocker_admitted)
    low, high = [], []
    for i in range(8):  # start order counts at millisecond resolution
        low.append(await client.start("serial-job", f"low-{i}"))
        await asyncio.sleep(0.002)
    for i in range(8):
        high.append(await client.start("serial-job", f"high-{i}", priority=5))
        await asyncio.sleep(0.002)
    await asyncio.sleep(0.3)  # all of them are waiting for the one slot
    assert [(await client.status(eid)).status for eid in [*low, *high]] == ["pending"] * 16
    await client.send_signal(blocker, "go")
    for eid in [blocker, *low, *high]:
        await client.result(eid, timeout=20)
    assert order == ["blocker", *(f"high-{i}" for i in range(8)),
                     *(f"low-{i}" for i in range(8))]


async def test_rate_limit_spaces_admissions(env: tuple[Client, Registry], redis: Redis) -> None:
    client, registry = env
    queue("metered", rate=4, registry=registry)

    @durable("metered-job", queue="metered", registry=registry)
    async def metered_job(ctx: Context) -> None:
        await ctx.step("call", lambda: 1)

    ids = [await client.start("metered-job", queue_key="api") for _ in range(10)]
    for eid in ids:
        await client.result(eid, timeout=20)
    admitted = sorted([e.admitted_ms for eid in ids for e in await read_log(redis, eid)
                       if isinstance(e, QueueAdmitted)])
    assert len(admitted) == 10
    for first, fifth in zip(admitted, admitted[4:], strict=False):
        assert fifth - first >= 1000  # at most 4 in any second, by the gate's (Redis') clock
    assert admitted[-1] - admitted[0] < 6000  # and the rate window's wake-ups kept it moving


async def test_pausing_a_queue_holds_its_executions(
    env: tuple[Client, Registry], worker: Worker
) -> None:
    client, registry = env
    queue("mail", concurrency=5, registry=registry)

    @durable("mail-job", queue="mail", registry=registry)
    async def mail_job(ctx: Context) -> str:
        return str(await ctx.step("send", lambda: "sent"))

    await client.pause(queue="mail", reason="spam wave")
    await worker.refresh_pause_rules()  # instead of waiting for its next poll
    eid = await client.start("mail-job")
    await wait_for(lambda: _state(client, eid, "paused"), timeout=10)
    await client.resume(queue="mail")
    assert await client.result(eid, timeout=10) == "sent"


async def test_the_sweeper_frees_slots_an_ended_execution_kept(
    env: tuple[Client, Registry], redis: Redis
) -> None:
    client, registry = env
    capped = queue("capped", concurrency=1, registry=registry)

    @durable("capped-job", queue="capped", registry=registry)
    async def capped_job(ctx: Context) -> str:
        return str(await ctx.step("x", lambda: "ran"))

    first = await client.start("capped-job")
    assert await client.result(first, timeout=10) == "ran"
    # a worker died between the end and the release: the slot is still taken
    slot = client.keys.queue_slot("capped", "")
    await redis.zadd(slot + "running", {first: 1})
    await redis.sadd(client.keys.queue_index(), "capped ")  # type: ignore[misc]
    second = await client.start("capped-job")
    assert await client.result(second, timeout=10) == "ran"  # the sweeper gave it back
    async with QueueGate(client, pipelined=False) as gate:
        assert await gate.counts(capped, "") == (0, 0)


async def test_bad_queue_settings_are_clear_errors(env: tuple[Client, Registry]) -> None:
    client, registry = env
    with pytest.raises(ConfigError, match="concurrency"):
        queue("bad", concurrency=0, registry=registry)
    with pytest.raises(ConfigError, match="rate"):
        queue("bad", rate=-1, registry=registry)
    queue("twice", concurrency=1, registry=registry)
    with pytest.raises(ConfigError, match="already declared"):
        queue("twice", concurrency=2, registry=registry)
    with pytest.raises(ConfigError, match="queue key"):
        await client.start("anything", queue_key="has space")
    with pytest.raises(ConfigError, match="priority"):
        await client.start("anything", priority=5000)


async def _state(client: Client, eid: str, state: str) -> bool:
    return (await client.status(eid)).status == state


async def test_a_paused_waiter_does_not_block_its_queue(
    env: tuple[Client, Registry], worker: Worker
) -> None:
    """Workflows A and B share a queue with one slot; A is paused while an A execution
    waits: it gives its place up, and B runs when the slot frees."""
    client, registry = env
    shared = queue("shared", concurrency=1, registry=registry)

    in_step = asyncio.Event()

    async def slow() -> str:
        in_step.set()
        await asyncio.sleep(0.4)
        return "a"

    @durable("wf-a", queue=shared, registry=registry)
    async def wf_a(ctx: Context) -> str:
        return str(await ctx.step("s", slow))

    @durable("wf-b", queue=shared, registry=registry)
    async def wf_b(ctx: Context) -> str:
        return str(await ctx.step("s", lambda: "b"))

    first = await client.start("wf-a")
    await asyncio.wait_for(in_step.wait(), timeout=10)  # admitted, its step in flight
    waiting = await client.start("wf-a")
    await asyncio.sleep(0.15)
    await client.pause(workflow="wf-a")
    await worker.refresh_pause_rules()  # instead of waiting for its next poll
    other = await client.start("wf-b")
    assert await client.result(first, timeout=10) == "a"
    assert await client.result(other, timeout=10) == "b"
    assert (await client.status(waiting)).status == "paused"
    await client.resume(workflow="wf-a")
    assert await client.result(waiting, timeout=10) == "a"


async def test_rate_limited_executions_run_once_across_workers(
    env: tuple[Client, Registry]
) -> None:
    """Executions held only by the rate window wake themselves; no release or sweep wakes
    them a second time (two wake-ups would let two workers run one execution)."""
    client, registry = env
    queue("metered-twice", rate=3, registry=registry)
    runs: list[str] = []

    @durable("metered-once", queue="metered-twice", registry=registry)
    async def metered_once(ctx: Context) -> None:
        await ctx.step("call", lambda: runs.append(ctx.execution_id))

    ids = [await client.start("metered-once") for _ in range(9)]
    for eid in ids:
        await client.result(eid, timeout=20)
    assert sorted(runs) == sorted(ids)  # each step function ran exactly once


async def test_the_higher_priority_queue_of_a_pool_is_served_first(
    env: tuple[Client, Registry], redis: Redis
) -> None:
    """Two queues share one slot through a pool; the urgent queue's executions overtake
    the bulk queue's that waited longer."""
    client, registry = env
    queue("bulk-mail", concurrency=1, pool="mail", registry=registry)
    queue("urgent-mail", concurrency=1, priority=10, pool="mail", registry=registry)
    with pytest.raises(ConfigError, match="share its limits"):
        queue("odd-mail", concurrency=3, pool="mail", registry=registry)
    order: list[str] = []

    @durable("bulk-send", queue="bulk-mail", registry=registry)
    async def bulk_send(ctx: Context, label: str) -> None:
        if label == "blocker":
            await ctx.wait_for_signal("go")
        await ctx.step("send", lambda: order.append(label))

    @durable("urgent-send", queue="urgent-mail", registry=registry)
    async def urgent_send(ctx: Context, label: str) -> None:
        await ctx.step("send", lambda: order.append(label))

    blocker = await client.start("bulk-send", "blocker")

    async def blocker_admitted() -> bool:
        return any(isinstance(e, QueueAdmitted) for e in await read_log(redis, blocker))

    await wait_for(blocker_admitted)
    ids = []
    for i in range(4):
        ids.append(await client.start("bulk-send", f"bulk-{i}"))
        await asyncio.sleep(0.002)
    for i in range(4):
        ids.append(await client.start("urgent-send", f"urgent-{i}"))
        await asyncio.sleep(0.002)
    await asyncio.sleep(0.3)  # all waiting for the pool's one slot
    await client.send_signal(blocker, "go")
    for eid in [blocker, *ids]:
        await client.result(eid, timeout=20)
    assert order == ["blocker", *(f"urgent-{i}" for i in range(4)),
                     *(f"bulk-{i}" for i in range(4))]


async def test_a_cancelled_waiter_leaves_the_line_before_its_compensation_ends(
        env: tuple[Client, Registry]) -> None:
    """Cap 1: 'first' runs, 'w1' and 'w2' wait. 'w1' is cancelled and compensates slowly,
    without a slot; when 'first' ends, 'w2' gets the slot at once, not after 'w1' ended."""
    client, registry = env
    queue("single-file", concurrency=1, registry=registry)
    began: dict[str, float] = {}
    ended: dict[str, float] = {}
    loop = asyncio.get_running_loop()

    async def work(tag: str, seconds: float) -> str:
        began[tag] = loop.time()
        await asyncio.sleep(seconds)
        ended[tag] = loop.time()
        return tag

    @durable("single-file-job", queue="single-file", registry=registry)
    async def job(ctx: Context, seconds: float) -> str:
        try:
            return await ctx.step("work", lambda: work(ctx.execution_id, seconds))
        except Cancelled:
            await ctx.step("undo", lambda: work(ctx.execution_id + ":undo", 3.0))
            raise

    await client.start("single-file-job", 0.6, execution_id="first")
    await wait_for(lambda: _true("first" in began))
    await client.start("single-file-job", 0.1, execution_id="w1")
    await client.start("single-file-job", 0.1, execution_id="w2")
    await asyncio.sleep(0.2)
    await client.cancel("w1", reason="not needed")
    assert await client.result("w2", timeout=15) == "w2"
    assert (await client.wait("w1", 10)).status == "cancelled"
    assert "w1" not in began  # it never ran its work
    assert began["w2"] - ended["first"] < 1.5  # not held behind w1's 3 s compensation
    assert began["w2"] < ended["w1:undo"]


async def _true(value: bool) -> bool:
    return value


async def test_a_paused_execution_whose_worker_died_gives_its_slot_back(
        redis_url: str, tmp_path: Path) -> None:
    """kill -9 between recording a pause and giving the queue slot back: the next worker
    that looks at the still-held execution gives it back, so the queue's other workflow
    is not blocked for as long as the pause lasts."""
    dying = spawn_worker(redis_url, "tests.apps.queued", log=tmp_path / "w.log",
                         env={"QUEUED_DIE_BEFORE_SLOT_RETURN": "1"})
    survivor = None
    try:
        async with Client(redis_url) as client:
            held = await client.start("holdable")
            await wait_for(lambda: _state_is(client, held, "sleeping"), timeout=20)
            await client.pause(workflow="holdable", reason="incident")
            assert await asyncio.to_thread(dying.wait, 20) == -signal.SIGKILL
            assert (await client.status(held)).status == "paused"
            survivor = spawn_worker(redis_url, "tests.apps.queued", log=tmp_path / "w.log")
            other = await client.start("neighbour")
            assert await client.result(other, timeout=20) == "neighbour done"
            assert (await client.status(held)).status == "paused"
            await client.resume(workflow="holdable")
            assert await client.result(held, timeout=20) == "held done"
    finally:
        for proc in (dying, survivor):
            if proc is not None:
                stop_worker(proc)


async def _state_is(client: Client, execution_id: str, state: str) -> bool:
    return (await client.status(execution_id)).status == state


async def test_a_pause_lifted_while_it_is_recorded_asks_for_the_slot_again(
        redis_url: str, registry: Registry) -> None:
    """The operator resumes exactly between the held execution giving its slot back and
    the worker checking the rule again: the worker resumes the execution itself, and it
    must queue for a slot again (the waiter it woke has it now), not run beside it."""
    queue("narrow", concurrency=1, registry=registry)
    inside: list[str] = []
    most: list[int] = [0]

    async def busy(tag: str, seconds: float) -> str:
        inside.append(tag)
        most[0] = max(most[0], len(inside))
        await asyncio.sleep(seconds)
        inside.remove(tag)
        return tag

    @durable("narrow-a", queue="narrow", registry=registry)
    async def narrow_a(ctx: Context) -> str:
        await ctx.step("s1", lambda: busy("a1", 0.6))
        return await ctx.step("s2", lambda: busy("a2", 0.6))

    @durable("narrow-b", queue="narrow", registry=registry)
    async def narrow_b(ctx: Context) -> str:
        return await ctx.step("s1", lambda: busy("b1", 0.6))

    async with Client(redis_url) as client:
        worker = Worker(redis_url, registry=registry, lease_timeout=2, poll_interval=0.05)
        release = worker.gate.release_detail
        resumed: list[int] = []

        async def release_then_resume(q: Queue, key: str, admission: str) -> Any:
            wake = await release(q, key, admission)
            if admission == "a" and not resumed:  # the hold of 'a': the operator resumes
                resumed.append(await client.resume(workflow="narrow-a"))
            return wake

        worker.gate.release_detail = release_then_resume  # type: ignore[method-assign]
        async with worker:
            await client.start("narrow-a", execution_id="a")
            await wait_for(lambda: _true("a1" in inside))
            await client.start("narrow-b", execution_id="b")  # waits for the only slot
            await client.pause(workflow="narrow-a", reason="incident")  # 'a' stops after s1
            assert await client.result("a", timeout=20) == "a2"
            assert await client.result("b", timeout=20) == "b1"
    assert resumed
    assert most[0] == 1


async def test_a_waiter_with_a_deadline_stays_pending_until_admitted(
        env: tuple[Client, Registry]) -> None:
    """Its deadline is armed before the gate is asked; that does not make it 'running'."""
    client, registry = env
    solo = Queue(name="solo-line", concurrency=1)

    @durable("solo-holder", queue=solo, registry=registry)
    async def holder(ctx: Context) -> str:
        await ctx.sleep(1.5)
        return "h"

    @durable("solo-waiter", queue=solo, registry=registry, timeout="1m")
    async def waiter(ctx: Context) -> str:
        return str(await ctx.step("s", lambda: "w"))

    held = await client.start("solo-holder")
    await wait_for(lambda: _state_is(client, held, "sleeping"))
    waiting = await client.start("solo-waiter")
    await asyncio.sleep(0.5)
    assert (await client.status(waiting)).status == "pending"
    assert waiting in [e.execution_id for e in await client.list(status="pending")]
    assert await client.result(waiting, timeout=15) == "w"
