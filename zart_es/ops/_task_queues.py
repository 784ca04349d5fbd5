"""The load of each task queue: work waiting for a worker and in flight, and live workers.

Read from the work streams at call time (``/metrics``, ``GET /task-queues``, which KEDA's
``metrics-api`` scaler polls for a pool whose concurrency is below the partition count).
"""

from __future__ import annotations

from typing import Any

import msgspec

from zart_es.core import check_task_queue
from zart_es.store import GROUP, Deployment


class StreamLoad(msgspec.Struct, frozen=True):
    """One work stream (a task queue on a partition)."""

    partition: int
    task_queue: str
    waiting: int
    """Messages not delivered to any worker yet (the group's lag; the whole stream while
    no worker of the queue ever created the group)."""
    pending: int
    """Messages delivered and not acknowledged: executions being run."""


class TaskQueueLoad(msgspec.Struct, frozen=True):
    """One task queue over every partition: what a pool serving it has to do."""

    task_queue: str
    waiting: int
    pending: int
    backlog: int
    """``waiting + pending``: the executions its workers are asked for; a pool needs
    about ``backlog / concurrency`` workers."""
    workers: int
    """Live workers serving it (heard from within the last 30 s)."""


async def stream_loads(deployment: Deployment,
                       task_queues: list[str] | None = None) -> list[StreamLoad]:
    """The load of each work stream of ``task_queues`` (default: every known queue)."""
    keys = deployment.keys
    queues = task_queues if task_queues is not None else await deployment.routes.task_queues()
    pipe = deployment.redis.pipeline(transaction=False)
    for p in range(keys.partitions):
        for queue in queues:
            pipe.xpending(keys.work(p, queue), GROUP)
            pipe.xinfo_groups(keys.work(p, queue))
            pipe.xlen(keys.work(p, queue))
    replies = iter(await pipe.execute(raise_on_error=False))
    loads = []
    for p in range(keys.partitions):
        for queue in queues:
            summary, groups, length = next(replies), next(replies), next(replies)
            loads.append(StreamLoad(
                p, queue, waiting=_group_lag(groups, length),
                pending=int(summary["pending"]) if isinstance(summary, dict) else 0))
    return loads


async def task_queue_loads(deployment: Deployment,
                           task_queues: list[str] | None = None) -> list[TaskQueueLoad]:
    """The load of each of ``task_queues`` (default: every known queue), by name."""
    queues = sorted({check_task_queue(q) for q in task_queues}) if task_queues is not None \
        else await deployment.routes.task_queues()
    streams = await stream_loads(deployment, queues)
    workers = await deployment.routes.workers(queues)
    out = []
    for queue in queues:
        waiting = sum(s.waiting for s in streams if s.task_queue == queue)
        pending = sum(s.pending for s in streams if s.task_queue == queue)
        out.append(TaskQueueLoad(queue, waiting, pending, waiting + pending, workers[queue]))
    return out


def _group_lag(groups: Any, length: Any) -> int:
    """The workers group's lag from XINFO GROUPS; the stream's length when no worker
    created the group yet (nothing was delivered); 0 when unknown (Redis < 7, no stream)."""
    if not isinstance(groups, list):
        return 0
    for group in groups:
        name = group.get("name", b"")
        if (name.decode() if isinstance(name, bytes) else name) == GROUP:
            return int(group.get("lag") or 0)
    return int(length) if isinstance(length, int) else 0
