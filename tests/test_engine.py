"""The engine's behaviour end to end, with an in-process Worker on a real Redis."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from redis.asyncio import Redis

from zart_es import (
    Client,
    Context,
    ExecutionFailedError,
    ExecutionNotFound,
    InvalidExecutionId,
    PayloadTooLarge,
    RedisUnavailable,
    Registry,
    ResultTimeout,
    TaskError,
    Worker,
    durable,
)
from zart_es.core import ExecutionFailed, ExecutionStarted

from .helpers import read_log, wait_for

pytestmark = pytest.mark.redis


class Point(msgspec.Struct, frozen=True):
    x: int
    y: int


async def test_duplicate_start_is_one_execution(env: tuple[Client, Registry], redis: Redis) -> None:
    client, registry = env
    runs: list[int] = []

    @durable("once", registry=registry)
    async def once(ctx: Context) -> str:
        await ctx.step("count", lambda: runs.append(1))
        return "ok"

    ids = await asyncio.gather(*(client.start("once", None, execution_id="same") for _ in range(5)))
    assert ids == ["same"] * 5
    assert await client.result("same", timeout=5) == "ok"
    assert runs == [1]
    events = await read_log(redis, "same")
    assert sum(isinstance(e, ExecutionStarted) for e in events) == 1


async def test_same_id_for_another_workflow_is_refused(env: tuple[Client, Registry]) -> None:
    client, _ = env
    await client.start("a", None, execution_id="taken")
    with pytest.raises(Exception, match="already used by workflow 'a'"):
        await client.start("b", None, execution_id="taken")


async def test_a_workflow_this_worker_does_not_serve_waits_for_one_that_does(
    env: tuple[Client, Registry], worker: Worker, redis_url: str
) -> None:
    """During a rollout an old worker meets work of a workflow only the new code has: it
    leaves the work pending (before: it failed the execution with UnknownWorkflow)."""
    client, _registry = env
    eid = await client.start("added-later", {"x": 1})
    await wait_for(lambda: _true(worker.metrics.unknown._value.get() >= 1), timeout=10)
    assert (await client.status(eid)).status == "pending"
    newer = Registry()

    @durable("added-later", registry=newer)
    async def added_later(ctx: Context, data: dict[str, int]) -> int:
        return int(await ctx.step("double", lambda: data["x"] * 2))

    async with Worker(redis_url, registry=newer, lease_timeout=1, poll_interval=0.05):
        assert await client.result(eid, timeout=15) == 2
    assert [type(e).__name__ async for e in client.history(eid)] == [
        "ExecutionStarted", "StepCompleted", "ExecutionCompleted"]


async def _true(value: bool) -> bool:
    return value


async def test_task_error_custom_fails_with_its_message(env: tuple[Client, Registry]) -> None:
    client, registry = env

    @durable("job", registry=registry)
    async def job(ctx: Context) -> None:
        await ctx.step("work", lambda: "x")
        raise TaskError.custom("Job failed externally")

    eid = await client.start("job")
    with pytest.raises(ExecutionFailedError, match="Job failed externally"):
        await client.result(eid, timeout=5)
    status = await client.status(eid)
    assert (status.status, status.error) == ("failed", "TaskError: Job failed externally")


async def test_undecodable_input_fails_clearly(env: tuple[Client, Registry], redis: Redis) -> None:
    client, registry = env

    @durable("wants-point", registry=registry)
    async def wants_point(ctx: Context, data: Point) -> int:
        return data.x

    eid = await client.start("wants-point", {"x": "not an int"})
    with pytest.raises(ExecutionFailedError) as info:
        await client.result(eid, timeout=5)
    assert info.value.error_type == "PayloadDecodeError"
    assert "input of workflow 'wants-point'" in info.value.message
    assert len(await read_log(redis, eid)) == 2  # the log is intact and readable


async def test_status_moves_through_states(env: tuple[Client, Registry]) -> None:
    client, registry = env
    gate = asyncio.Event()

    @durable("stateful", registry=registry)
    async def stateful(ctx: Context) -> str:
        await ctx.step("first", lambda: 1)
        await ctx.sleep(0.3)
        await ctx.step("wait", gate.wait)
        return "done"

    eid = await client.start("stateful")

    async def state_is(expected: str) -> bool:
        return (await client.status(eid)).status == expected

    from .helpers import wait_for

    await wait_for(lambda: state_is("sleeping"), timeout=5)
    await wait_for(lambda: state_is("pending"), timeout=5)  # timer fired, work queued
    gate.set()
    assert await client.result(eid, timeout=5) == "done"
    status = await client.status(eid)
    assert (status.status, status.result, status.done) == ("completed", "done", True)


async def test_result_timeout_and_not_found(env: tuple[Client, Registry]) -> None:
    client, registry = env

    @durable("slow", registry=registry)
    async def slow(ctx: Context) -> None:
        await ctx.sleep(60)

    eid = await client.start("slow")
    with pytest.raises(ResultTimeout):
        await client.result(eid, timeout=0.3)
    with pytest.raises(ExecutionNotFound):
        await client.result("missing", timeout=0.1)
    with pytest.raises(ExecutionNotFound):
        await client.status("missing")
    with pytest.raises(InvalidExecutionId):
        await client.start("slow", None, execution_id="has space")


async def test_oversized_input_is_refused_before_anything_is_written(
    redis_url: str, redis: Redis
) -> None:
    async with Client(redis_url, max_payload_bytes=1000) as client:
        with pytest.raises(PayloadTooLarge, match="input of workflow 'w'"):
            await client.start("w", "x" * 2000, execution_id="big")
    assert await redis.exists(client.keys.meta("big")) == 0


async def test_redis_unreachable_is_a_clear_error() -> None:
    from zart_es.store._embedded import free_port

    client = Client(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(RedisUnavailable, match=r"cannot reach Redis at redis://127\.0\.0\.1"):
        await client.start("w")
    await client.close()


async def test_failed_execution_log_is_complete(env: tuple[Client, Registry], redis: Redis) -> None:
    client, registry = env

    @durable("raises", registry=registry)
    async def raises(ctx: Context) -> None:
        await ctx.step("ok", lambda: 1)
        raise RuntimeError("kaput")

    eid = await client.start("raises")
    with pytest.raises(ExecutionFailedError, match="RuntimeError: kaput"):
        await client.result(eid, timeout=5)
    events = await read_log(redis, eid)
    assert [type(e).__name__ for e in events] == [
        "ExecutionStarted", "StepCompleted", "ExecutionFailed"]
    assert isinstance(events[-1], ExecutionFailed)
    # the hash chain links every event to its predecessor
    assert events[0].prev_hash == ""
    assert all(e.prev_hash for e in events[1:])
    assert len({e.prev_hash for e in events}) == len(events)


async def test_start_after_the_server_closed_idle_connections(redis_url: str) -> None:
    """Regression: the append connection, closed by the server while idle (restart,
    timeout, CLIENT KILL), made the next start() fail."""
    async with Client(redis_url) as client:
        await client.start("w", None, execution_id="before-kill")
        await client.redis.execute_command(  # type: ignore[no-untyped-call]
            "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        assert await client.start("w", None, execution_id="after-kill") == "after-kill"
        assert (await client.status("after-kill")).status == "pending"


async def test_a_malformed_work_message_is_dropped_and_reading_goes_on(
    env: tuple[Client, Registry], redis: Redis
) -> None:
    client, registry = env

    @durable("after-garbage", registry=registry)
    async def after_garbage(ctx: Context) -> str:
        return str(await ctx.step("one", lambda: "ok"))

    eid = "after-garbage-1"
    partition = client.keys.partition_of(eid)
    await redis.xadd(client.keys.work(partition), {"not-x": "garbage"})
    await asyncio.sleep(0.2)  # the reader met it first
    await client.start("after-garbage", execution_id=eid)
    assert await client.result(eid, timeout=10) == "ok"

    async def nothing_pending() -> bool:  # the worker acks just after the result lands
        pending = await redis.xpending(client.keys.work(partition), "workers")
        return bool(pending["pending"] == 0)

    assert await wait_for(nothing_pending, timeout=10)


async def test_a_step_that_blocks_the_event_loop_is_reported(
        redis_url: str, registry: Registry) -> None:
    """A sync step that blocks stops heartbeats: the worker counts it (and logs a warning
    naming the fix), so an operator sees why leases run out."""
    import time as clock

    @durable("blocker", registry=registry)
    async def blocker(ctx: Context) -> int:
        return await ctx.step("block", lambda: clock.sleep(1.0) or 1)

    # heartbeat every 0.5 s; a 1 s block delays one by at least 0.5 s, whatever the phase
    async with Client(redis_url) as client, Worker(
            redis_url, registry=registry, lease_timeout=1.5, poll_interval=0.05) as worker:
        def blocked() -> float:
            value = worker.metrics.registry.get_sample_value(
                "zart_worker_event_loop_blocked_seconds_total")
            assert value is not None
            return value

        assert blocked() == 0
        assert await client.result(await client.start("blocker"), timeout=20) == 1
        await asyncio.sleep(0.6)
        assert blocked() >= 0.25
