"""The deployment's Prometheus gauges, read from Redis at scrape time (the API's
``/metrics``): executions by state (from the status indexes), work-stream pending messages
per partition, timers due and overdue. Correct however many workers run; a worker's own
timings are :mod:`zart_es.engine`'s ``WorkerMetrics``.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from zart_es.core import STATES
from zart_es.store import GROUP, Deployment, HasDeployment, deployment_of, redis_now_ms

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
        pipe.xpending(keys.work(p), GROUP)
        pipe.xinfo_groups(keys.work(p))
    lag: list[Any] = await pipe.execute(raise_on_error=False)

    by_state = GaugeMetricFamily("zart_executions", "Executions by state", labels=["state"])
    counts = dict.fromkeys(STATES, 0)
    for i, count in enumerate(replies):
        counts[STATES[i % len(STATES)]] += int(count)
    for status, count in counts.items():
        by_state.add_metric([status], count)
    due = GaugeMetricFamily("zart_timers_due", "Timers at or past their due time")
    overdue = GaugeMetricFamily("zart_timers_overdue",
                                f"Timers more than {OVERDUE_MS} ms past due")
    pending = GaugeMetricFamily("zart_work_pending",
                                "Work messages delivered and not acknowledged, by partition",
                                labels=["partition"])
    waiting = GaugeMetricFamily(
        "zart_work_waiting", "Work messages not yet delivered to any worker, by partition "
        "(the consumer group's lag: the backlog KEDA scales on)", labels=["partition"])
    due.add_metric([], sum(int(lag[4 * p]) for p in range(keys.partitions)))
    overdue.add_metric([], sum(int(lag[4 * p + 1]) for p in range(keys.partitions)))
    for p in range(keys.partitions):
        summary = lag[4 * p + 2]
        pending.add_metric([str(p)], int(summary["pending"]) if isinstance(summary, dict) else 0)
        waiting.add_metric([str(p)], _group_lag(lag[4 * p + 3]))
    queued = GaugeMetricFamily("zart_queue_waiting",
                               "Executions waiting for a slot of a queue (all queue keys)")
    queued.add_metric([], await _queue_waiters(client))
    registry = CollectorRegistry()
    registry.register(_Snapshot([by_state, due, overdue, pending, waiting, queued]))
    return generate_latest(registry)


class _Snapshot:
    """A collector that yields metric families computed beforehand."""

    def __init__(self, families: list[GaugeMetricFamily]) -> None:
        self._families = families

    def collect(self) -> list[GaugeMetricFamily]:
        return self._families


def _group_lag(groups: Any) -> int:
    """The workers group's lag from XINFO GROUPS (0 when unknown: Redis < 7, no group)."""
    if not isinstance(groups, list):
        return 0
    for group in groups:
        name = group.get("name", b"")
        if (name.decode() if isinstance(name, bytes) else name) == GROUP:
            return int(group.get("lag") or 0)
    return 0


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
