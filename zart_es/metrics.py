"""Prometheus metrics.

Two sources, because a deployment's truth is in Redis and a worker's timings are in the
worker:

* ``render_deployment_metrics`` (served by the API at ``/metrics``) reads Redis: executions
  by state (from the status indexes), work-stream pending messages (lag) per partition,
  timers due and overdue.
* :class:`WorkerMetrics` (served by ``zart-es worker --metrics-port``) counts what one
  worker process did: executions started/completed/failed by workflow, step durations,
  retries, append conflicts.
"""

from __future__ import annotations

import bisect
import time
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

from .keys import GROUP
from .state import STATES
from .timers import redis_now_ms

if TYPE_CHECKING:
    from .client import Client

OVERDUE_MS = 5_000
"""A timer this late (with workers up, they fire within the poll interval) is overdue."""


async def render_deployment_metrics(client: Client) -> bytes:
    """The deployment's gauges, read from Redis now, in Prometheus text format."""
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
    due.add_metric([], sum(int(lag[3 * p]) for p in range(keys.partitions)))
    overdue.add_metric([], sum(int(lag[3 * p + 1]) for p in range(keys.partitions)))
    for p in range(keys.partitions):
        summary = lag[3 * p + 2]
        pending.add_metric([str(p)], int(summary["pending"]) if isinstance(summary, dict) else 0)
    registry = CollectorRegistry()
    registry.register(_Snapshot([by_state, due, overdue, pending]))
    return generate_latest(registry)


class _Snapshot:
    """A collector that yields metric families computed beforehand."""

    def __init__(self, families: list[GaugeMetricFamily]) -> None:
        self._families = families

    def collect(self) -> list[GaugeMetricFamily]:
        return self._families


STEP_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0)


class _StepTimes:
    """Step durations by (workflow, outcome), kept as plain numbers: observing is on the
    hot path of every step, so it must not take locks; Prometheus reads them on scrape."""

    def __init__(self) -> None:
        self.series: dict[tuple[str, str], list[float]] = {}
        """(workflow, outcome) -> [count per bucket..., +Inf count, sum]."""

    def observe(self, workflow: str, outcome: str, seconds: float) -> None:
        series = self.series.get((workflow, outcome))
        if series is None:
            series = self.series[(workflow, outcome)] = [0.0] * (len(STEP_BUCKETS) + 2)
        series[bisect.bisect_left(STEP_BUCKETS, seconds)] += 1
        series[-1] += seconds

    def collect(self) -> list[HistogramMetricFamily]:
        family = HistogramMetricFamily(
            "zart_worker_step_seconds", "Duration of step functions (new runs, not replays)",
            labels=["workflow", "outcome"])
        for (workflow, outcome), series in self.series.items():
            cumulative, buckets = 0.0, []
            for bound, count in zip((*STEP_BUCKETS, float("inf")), series[:-1], strict=True):
                cumulative += count
                buckets.append((str(bound) if bound != float("inf") else "+Inf", cumulative))
            family.add_metric([workflow, outcome], buckets, series[-1])
        return [family]


class WorkerMetrics:
    """Counters and histograms of one worker process, in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.executions = Counter(
            "zart_worker_executions", "Execution runs by workflow and outcome",
            ["workflow", "outcome"], registry=self.registry)
        self.step_times = _StepTimes()
        self.registry.register(self.step_times)
        self.retries = Counter("zart_worker_retries", "Retries scheduled", ["workflow"],
                               registry=self.registry)
        self.conflicts = Counter("zart_worker_append_conflicts",
                                 "Appends refused because the log moved on",
                                 registry=self.registry)
        self.loop_blocked = Counter(
            "zart_worker_event_loop_blocked_seconds",
            "How late the lease heartbeat ran because the event loop was blocked (a step "
            "function doing sync I/O or time.sleep)", registry=self.registry)

    def step(self, workflow: str, started: float, outcome: str) -> None:
        """Record one step function's run (``started`` from time.perf_counter())."""
        self.step_times.observe(workflow, outcome, time.perf_counter() - started)
        if outcome == "retry":
            self.retries.labels(workflow).inc()
