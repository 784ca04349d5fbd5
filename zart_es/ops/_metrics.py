"""The deployment's Prometheus gauges, read from Redis at scrape time (the API's
``/metrics``): executions by state (from the status indexes), work-stream backlog and
pending messages per partition and task queue, live workers per task queue, timers due
and overdue. Correct however many workers run; a worker's own timings are
:mod:`zart_es.engine`'s ``WorkerMetrics``.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from zart_es.core import STATES
from zart_es.ops._task_queues import stream_loads
from zart_es.store import Deployment, HasDeployment, deployment_of, redis_now_ms

OVERDUE_MS = 5_000
"""A timer this late (with workers up, they fire within the poll interval) is overdue."""


async def render_deployment_metrics(deployment: Deployment | HasDeployment) -> bytes:
    """The deployment's gauges, read from Redis now, in Prometheus text format."""
    client = deployment_of(deployment)
    keys = client.keys
    now_ms = await redis_now_ms(client.redis)
    pipe = client.redis.pipeline(transaction=False)
    for p in range(keys.partitions):
        for status in STATES:
            pipe.zcard(keys.index(p, status))
    replies: list[Any] = await pipe.execute()
    pipe = client.redis.pipeline(transaction=False)
    for p in range(keys.partitions):
        pipe.zcount(keys.timers(p), "-inf", now_ms)
        pipe.zcount(keys.timers(p), "-inf", now_ms - OVERDUE_MS)
    timers: list[Any] = await pipe.execute()
    task_queues = await client.routes.task_queues()
    streams = await stream_loads(client, task_queues)
    workers = await client.routes.workers(task_queues)

    by_state = GaugeMetricFamily("zart_executions", "Executions by state", labels=["state"])
    counts = dict.fromkeys(STATES, 0)
    for i, count in enumerate(replies):
        counts[STATES[i % len(STATES)]] += int(count)
    for status, count in counts.items():
        by_state.add_metric([status], count)
    due = GaugeMetricFamily("zart_timers_due", "Timers at or past their due time")
    overdue = GaugeMetricFamily("zart_timers_overdue",
                                f"Timers more than {OVERDUE_MS} ms past due")
    pending = GaugeMetricFamily(
        "zart_work_pending", "Work messages delivered and not acknowledged, by partition "
        "and task queue", labels=["partition", "task_queue"])
    waiting = GaugeMetricFamily(
        "zart_work_waiting", "Work messages not yet delivered to any worker, by partition "
        "and task queue (the consumer group's lag; the whole stream while no worker of "
        "the queue ever read it: the backlog KEDA scales on)",
        labels=["partition", "task_queue"])
    due.add_metric([], sum(int(timers[2 * p]) for p in range(keys.partitions)))
    overdue.add_metric([], sum(int(timers[2 * p + 1]) for p in range(keys.partitions)))
    for stream in streams:
        pending.add_metric([str(stream.partition), stream.task_queue], stream.pending)
        waiting.add_metric([str(stream.partition), stream.task_queue], stream.waiting)
    served = GaugeMetricFamily(
        "zart_task_queue_workers", "Live workers serving each task queue (0: its work "
        "waits until one starts)", labels=["task_queue"])
    for queue, count in workers.items():
        served.add_metric([queue], count)
    queued = GaugeMetricFamily("zart_queue_waiting",
                               "Executions waiting for a slot of a queue (all queue keys)")
    queued.add_metric([], await _queue_waiters(client))
    registry = CollectorRegistry()
    registry.register(_Snapshot([by_state, due, overdue, pending, waiting, queued, served]))
    return generate_latest(registry)


class _Snapshot:
    """A collector that yields metric families computed beforehand."""

    def __init__(self, families: list[GaugeMetricFamily]) -> None:
        self._families = families

    def collect(self) -> list[GaugeMetricFamily]:
        return self._families


async def _queue_waiters(deployment: Deployment) -> int:
    """Executions in the waiting lines of every queue key that has members."""
    redis, keys = deployment.redis, deployment.keys
    pairs = [m.decode() async for m in redis.sscan_iter(keys.queue_index())]
    if not pairs:
        return 0
    pipe = redis.pipeline(transaction=False)
    for pair in pairs:
        queue, _, key = pair.partition(" ")
        pipe.zcard(keys.queue_slot(queue, key) + "waiting")
    return sum(int(n) for n in await pipe.execute())
