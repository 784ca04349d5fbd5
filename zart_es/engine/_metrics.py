"""A worker process's own Prometheus metrics (served by ``zart-es worker --metrics-port``):
executions started/completed/failed by workflow, step durations, retries, append
conflicts, a blocked event loop. The deployment's gauges, read from Redis, are in
:mod:`zart_es.ops._metrics`.
"""

from __future__ import annotations

import bisect
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Info,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import HistogramMetricFamily


def _version() -> str:
    try:
        return package_version("zart-es")
    except PackageNotFoundError:  # run from a source tree that was not installed
        return "unknown"


VERSION = _version()

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
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        Info("zart_build", "zart-es version of this worker",
             registry=self.registry).info({"version": VERSION})
        self.in_flight = Gauge("zart_worker_in_flight",
                               "Executions this worker is driving now", registry=self.registry)
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
        self.quarantined = Counter(
            "zart_worker_quarantined", "Executions this worker quarantined after repeated "
            "engine crashes", registry=self.registry)
        self.unknown = Counter(
            "zart_worker_unknown_workflow", "Work left for other workers: an execution of a "
            "workflow this worker does not serve", registry=self.registry)
        self.loop_restarts = Counter(
            "zart_worker_loop_restarts", "Background loops restarted after they crashed",
            ["loop"], registry=self.registry)
        self.store_refusals = Counter(
            "zart_worker_store_refusals", "Store errors met while running executions or "
            "probing (oom, readonly, loading, busy, connection, timeout, ...): the run "
            "stopped unrecorded and resumes when Redis accepts writes", ["kind"],
            registry=self.registry)
        self.timers_set_aside = Counter(
            "zart_worker_timers_set_aside", "Timer wheel members this worker could not "
            "fire and moved to the partition's timers:bad set, by what was wrong",
            ["partition", "kind"], registry=self.registry)
        self.queries = Counter(
            "zart_worker_queries", "Queries this worker answered, by outcome (ok, unknown: "
            "no such handler, failed: the handler raised or the log did not replay)",
            ["outcome"], registry=self.registry)

    def step(self, workflow: str, took_us: int, outcome: str) -> None:
        """Record one step function's run of ``took_us`` microseconds."""
        self.step_times.observe(workflow, outcome, took_us / 1e6)
        if outcome == "retry":
            self.retries.labels(workflow).inc()
