"""What KEDA would ask for: the replica count its Redis Streams scaler computes, from the
same Redis commands it issues (XINFO GROUPS for lagCount, XPENDING for
pendingEntriesCount, XLEN for streamLength), on a real backlog of a saturated worker."""

from __future__ import annotations

import asyncio
import copy
import math
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml
from prometheus_client import generate_latest
from redis.asyncio import Redis

from tests.helpers import wait_for
from zart_es import Client, Context, Registry, Worker, durable
from zart_es.ops import render_deployment_metrics, task_queue_loads
from zart_es.store import Deployment

pytestmark = pytest.mark.redis

SCALED_OBJECT = (Path(__file__).resolve().parent.parent / "deploy" / "base"
                 / "worker-scaledobject.yaml")


async def trigger_value(redis: Redis, metadata: dict[str, str]) -> tuple[int, int]:
    """(metric, target) of one redis-streams trigger, as KEDA's scaler reads them."""
    stream, group = metadata["stream"], metadata["consumerGroup"]
    if "lagCount" in metadata:
        groups = await redis.xinfo_groups(stream)
        (info,) = [g for g in groups if g["name"].decode() == group]
        return int(info["lag"] or 0), int(metadata["lagCount"])
    if "pendingEntriesCount" in metadata:
        pending = await redis.xpending(stream, group)
        return int(pending["pending"]), int(metadata["pendingEntriesCount"])
    return int(await redis.xlen(stream)), int(metadata["streamLength"])


async def keda_replicas(redis: Redis, scaled: dict[str, Any]) -> int:
    """The HPA's desired count for KEDA's external metrics (AverageValue targets): each
    trigger asks for ceil(metric / target); the largest wins, within min..max."""
    spec = scaled["spec"]
    wanted = [math.ceil(value / target) for value, target in
              [await trigger_value(redis, t["metadata"]) for t in spec["triggers"]]]
    return max(spec["minReplicaCount"], min(spec["maxReplicaCount"], max(wanted)))


def _before_the_fix(scaled: dict[str, Any]) -> dict[str, Any]:
    """The ScaledObject as it was: pendingEntriesCount 50 per partition, one trigger each."""
    old = copy.deepcopy(scaled)
    seen: set[str] = set()
    triggers = []
    for trigger in old["spec"]["triggers"]:
        stream = trigger["metadata"]["stream"]
        if stream not in seen:
            seen.add(stream)
            trigger["metadata"] = {"stream": stream, "consumerGroup": "workers",
                                   "pendingEntriesCount": "50"}
            triggers.append(trigger)
    old["spec"]["triggers"] = triggers
    return old


async def test_a_saturated_pool_is_scaled_up_not_down(redis_url: str, redis: Redis) -> None:
    """One worker running 100 at once (the manifests' --concurrency) under a backlog of
    1,000 executions: KEDA used to see only the ~100 in flight (6 per partition, under
    the 50 target: 1 replica), the backlog sitting undelivered where pendingEntriesCount
    cannot see it. Now it asks for about what the backlog needs."""
    scaled = yaml.safe_load(SCALED_OBJECT.read_text())
    registry = Registry()
    release = asyncio.Event()

    @durable("busy", registry=registry)
    async def busy(ctx: Context) -> None:
        await ctx.step("work", release.wait)

    async with Client(redis_url) as client, Worker(redis_url, registry=registry,
                                                   concurrency=100, poll_interval=0.05) as worker:
        for _ in range(1_000):
            await client.start("busy")
        await asyncio.sleep(0.5)  # the worker has taken its 100 and stopped reading
        before = await keda_replicas(redis, _before_the_fix(scaled))
        after = await keda_replicas(redis, scaled)
        exposed = (await render_deployment_metrics(client)).decode()
        waiting = sum(float(line.rsplit(" ", 1)[1]) for line in exposed.splitlines()
                      if line.startswith("zart_work_waiting{"))
        own = generate_latest(worker.metrics.registry).decode()
        in_flight = sum([(await trigger_value(redis, t["metadata"]))[0]
                         for t in scaled["spec"]["triggers"]
                         if "pendingEntriesCount" in t["metadata"]])
        release.set()
    assert 100 <= in_flight <= 200  # about its concurrency (reads come in batches)
    assert before == 1  # the bug: a saturated pool looked idle
    assert waiting >= 800  # the backlog, in /metrics too
    assert "zart_queue_waiting 0.0" in exposed
    (in_flight_now,) = [float(line.split()[1]) for line in own.splitlines()
                        if line.startswith("zart_worker_in_flight ")]
    assert in_flight_now >= 100  # its concurrency (readers of 16 partitions overshoot a little)
    assert 'zart_build_info{version="' in own
    assert "process_cpu_seconds_total" in own
    # 900 waiting over 16 partitions (~56 each) at 6 per partition and replica: ~10
    assert 8 <= after <= 14, after


GPU_SCALED_OBJECT = (SCALED_OBJECT.parent.parent / "overlays" / "task-queue-gpu"
                     / "worker-gpu-scaledobject.yaml")


async def metrics_api_replicas(deployment: Deployment, scaled: dict[str, Any]) -> int:
    """What KEDA asks for from a metrics-api trigger on GET /task-queues/<queue>: the
    route's ``valueLocation`` field (the same ops call the route answers with), 0 replicas
    at or below the activation value, else ceil(value / target) within min..max."""
    spec = scaled["spec"]
    (trigger,) = spec["triggers"]
    metadata = trigger["metadata"]
    (load,) = await task_queue_loads(deployment, [metadata["url"].rsplit("/", 1)[1]])
    value = float(msgspec.to_builtins(load)[metadata["valueLocation"]])
    if value <= float(metadata.get("activationTargetValue", "0")):
        return int(spec["minReplicaCount"])
    wanted = math.ceil(value / float(metadata["targetValue"]))
    return max(spec["minReplicaCount"], min(spec["maxReplicaCount"], wanted))


async def test_a_gpu_pool_scales_from_zero_on_its_own_whole_backlog(
        redis_url: str, redis: Redis) -> None:
    """The gpu pool (4 at once, 16 partitions, min 0): KEDA asks for backlog / 4 workers
    over every partition (per-partition triggers, each rounded up to a target of 1, asked
    for about a quarter of that); work of the default queue does not wake it, and the
    default pool is not asked to grow for work it cannot take."""
    gpu = yaml.safe_load(GPU_SCALED_OBJECT.read_text())
    base = yaml.safe_load(SCALED_OBJECT.read_text())
    registry = Registry()

    @durable("render", task_queue="gpu", registry=registry)
    async def render(ctx: Context) -> None:
        return None

    @durable("resize", registry=registry)
    async def resize(ctx: Context) -> None:
        return None

    async with Client(redis_url) as client, Worker(
            redis_url, registry=registry, task_queues=["default"], poll_interval=0.05):
        await wait_for(lambda: _routed(client, "render"))  # started
        for _ in range(20):
            await client.start("resize")
        assert await metrics_api_replicas(client.deployment, gpu) == 0  # idle: at zero
        for _ in range(24):
            await client.start("render")
        wanted_gpu = await metrics_api_replicas(client.deployment, gpu)
        wanted_base = await keda_replicas(redis, base)
    assert wanted_gpu == 24 // 4
    assert wanted_base == 1


async def _routed(client: Client, workflow: str) -> str | None:
    """The task queue a worker recorded for ``workflow`` (read now), if any."""
    return (await client.deployment.routes.refresh()).get(workflow)
