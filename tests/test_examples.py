"""Each example workflow of ``workers/examples.py`` end to end, on a real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

import workers.examples  # noqa: F401 -- registers the examples in the default registry
from zart_es import Client, ExecutionFailedError, UpdateFailed, Worker
from zart_es.core import RetryScheduled, StepCompleted, TimerFired

from .helpers import count_effects, read_log

pytestmark = pytest.mark.redis


@pytest.fixture
async def client(redis_url: str, effects: Path) -> AsyncIterator[Client]:
    async with Client(redis_url) as c, Worker(redis_url, lease_timeout=2, poll_interval=0.05):
        yield c


async def test_batch_processor(client: Client, redis: Redis, effects: Path) -> None:
    eid = await client.start("batch-processor", {"count": 12})
    result = await client.result(eid, timeout=20)
    assert result["processed"] == 12
    assert result["results"][3] == "processed:item-3"
    steps = [e.step for e in await read_log(redis, eid) if isinstance(e, StepCompleted)]
    assert steps == ["fetch-items"] + [f"process-item-{i}" for i in range(12)]
    assert count_effects(effects, "process") == {str(i): 1 for i in range(12)}
    log = await read_log(redis, eid)
    assert any(e.__class__.__name__ == "TimerSet" and e.timer == "timeout:21600000" for e in log)


async def test_durable_loop_example(client: Client, redis: Redis, effects: Path) -> None:
    eid = await client.start("durable-loop", {"count": 7})
    assert await client.result(eid, timeout=20) == 7
    steps = [e.step for e in await read_log(redis, eid) if isinstance(e, StepCompleted)]
    assert steps[1:] == [f"notify-{i}" for i in range(7)]
    assert sum(count_effects(effects, "mail").values()) == 7


async def test_job_poller_until_done(client: Client, redis: Redis) -> None:
    eid = await client.start("job-poller", {"runs_for": 0.5, "every": 0.2})
    assert "done after" in await client.result(eid, timeout=20)
    log = await read_log(redis, eid)
    checks = [e.step for e in log if isinstance(e, StepCompleted) and e.step.startswith("check")]
    assert len(checks) >= 2
    assert checks == [f"check-status-{i}" for i in range(len(checks))]
    assert sum(isinstance(e, TimerFired) for e in log) == len(checks) - 1


async def test_job_poller_failed_job(client: Client) -> None:
    eid = await client.start("job-poller", {"runs_for": 0.1, "every": 0.1, "fails": True})
    with pytest.raises(ExecutionFailedError, match="failed externally"):
        await client.result(eid, timeout=20)


async def test_transform_records(client: Client, effects: Path) -> None:
    eid = await client.start("transform-records", 5)
    assert await client.result(eid, timeout=20) == 5
    assert count_effects(effects, "write") == {"5": 1}


async def test_chunked_processing(client: Client, effects: Path) -> None:
    eid = await client.start("chunked-processing", {"total": 10_000, "chunk_size": 2_500})
    assert await client.result(eid, timeout=20) == sum(range(10_000))
    assert count_effects(effects, "chunk") == {str(i): 1 for i in range(4)}


async def test_provision_with_retry(client: Client, redis: Redis) -> None:
    eid = await client.start("provision", {"config": "test-cfg", "fail_times": 2,
                                           "delay": "50ms"})
    result = await client.result(eid, timeout=20)
    assert result["config"] == "test-cfg"
    retries = [e for e in await read_log(redis, eid) if isinstance(e, RetryScheduled)]
    # exponential backoff from 50 ms, each delay jittered into [d/2, d]
    assert [e.attempt for e in retries] == [2, 3]
    assert 25 <= retries[0].delay_ms <= 50
    assert 50 <= retries[1].delay_ms <= 100


async def test_finished_execution_leaves_no_timer_behind(client: Client, redis: Redis) -> None:
    eid = await client.start("batch-processor", {"count": 2})  # has a 6h timeout timer
    await client.result(eid, timeout=20)
    keys = client.keys
    assert await redis.zcard(keys.timers(keys.partition_of(eid))) == 0


async def test_expense_approval_by_updates_and_a_query(client: Client) -> None:
    eid = await client.start("expense-approval", {"amount": 40, "approvers": 2})
    assert await client.update(eid, "approve", "ann") == {"missing": 1}
    assert await client.query(eid, "approvals") == ["ann"]
    with pytest.raises(UpdateFailed, match="ann approved already"):
        await client.update(eid, "approve", "ann")
    assert await client.update(eid, "approve", "bob") == {"missing": 0}
    assert await client.result(eid, timeout=10) == "paid 40 (ann, bob)"
