"""Workflow registration: ``@durable(name)`` and the :class:`Registry` it writes into.

There is no process-wide singleton you cannot replace: ``@durable`` writes into
``default_registry`` unless given ``registry=``; a :class:`Worker` reads the registry it
is given (the default one when omitted), and tests build their own.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from zart_es.core import (
    DEFAULT_ID_TEMPLATE,
    DEFAULT_TASK_QUEUE,
    ConfigError,
    DuplicateWorkflow,
    Duration,
    FailureInfo,
    Queue,
    ScheduleSpec,
    UnknownWorkflow,
    check_task_queue,
    check_workflow_name,
    parse_retention,
    to_ms,
)

if typing.TYPE_CHECKING:
    from zart_es.workflow._context import Context

WorkflowFn = Callable[["Context", Any], Awaitable[Any]]
RecoverFn = Callable[["Context", Any, FailureInfo], Awaitable[Any]]
FAILURE_MODES = ("execution", "inline")
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


@dataclass(frozen=True, slots=True)
class Workflow:
    """A registered durable function."""

    name: str
    fn: WorkflowFn
    input_type: Any
    """Type the input is decoded to (the annotation of the second parameter), or Any."""
    result_type: Any
    timeout_ms: int | None
    queue: str | None = None
    """The queue whose limits and pause rules apply to its executions."""
    on_failure: str | None = None
    """The workflow that handles its failures (``<name>.on-failure``), if it has one."""
    task_queue: str = DEFAULT_TASK_QUEUE
    """The task queue its work goes to: only workers serving that queue run it."""
    retention_ms: int | Literal["default"] | None = "default"
    """How long its ended executions stay in Redis before the archiver moves them out
    (None: for ever; "default": the deployment's ``--retention``)."""
    updates: frozenset[str] = frozenset()
    """The update names its code may wait for (``ctx.wait_for_update``); an update of
    another name is rejected (``UnknownUpdate``)."""
    recover: RecoverFn | None = None
    """The inline failure handler (``failure_mode="inline"``): called in the same run with
    the input and the failure when the workflow raises; its value completes it."""


class Registry:
    """Workflow name -> :class:`Workflow`."""

    def __init__(self) -> None:
        self._workflows: dict[str, Workflow] = {}
        self._queues: dict[str, Queue] = {}
        self._schedules: dict[str, ScheduleSpec] = {}

    def register(
        self, name: str, fn: WorkflowFn, *, timeout: Duration | None = None,
        queue: str | Queue | None = None, on_failure: WorkflowFn | None = None,
        task_queue: str = DEFAULT_TASK_QUEUE, retention: Duration | None = None,
        updates: Iterable[str] = (), failure_mode: str = "execution",
    ) -> Workflow:
        """Register ``fn`` under ``name``; the same function twice is a no-op. An
        ``on_failure`` handler is registered as workflow ``<name>.on-failure``."""
        check_workflow_name(name)
        check_task_queue(task_queue)
        if isinstance(updates, str):
            raise ConfigError(f"@durable({name!r}): updates= takes a list of names, "
                              f"got the string {updates!r}")
        declared = frozenset(check_workflow_name(u, what="update name") for u in updates)
        if failure_mode not in FAILURE_MODES:
            raise ConfigError(f"@durable({name!r}): failure_mode must be one of "
                              f"{', '.join(FAILURE_MODES)}, got {failure_mode!r}")
        recover = None
        if on_failure is not None and failure_mode == "inline":
            recover = _check_recover(name, on_failure)
            on_failure = None
        handler = None
        if on_failure is not None:
            handler = self.register(failure_workflow(name), on_failure, queue=queue,
                                    task_queue=task_queue).name
        if not inspect.iscoroutinefunction(fn):
            raise ConfigError(f"@durable({name!r}) needs an 'async def' function, got {fn!r}")
        params = list(inspect.signature(fn).parameters.values())
        if len(params) not in (1, 2):
            raise ConfigError(
                f"@durable({name!r}): the function takes (ctx) or (ctx, data), "
                f"not {len(params)} parameters"
            )
        hints = _hints(fn)
        if len(params) == 2 and params[1].name in fn.__annotations__ \
                and params[1].name not in hints:
            raise ConfigError(
                f"@durable({name!r}): cannot resolve the annotation "
                f"{fn.__annotations__[params[1].name]!r} of parameter {params[1].name!r}"
            )
        input_type = hints.get(params[1].name, Any) if len(params) == 2 else None
        workflow = Workflow(
            name=name,
            fn=fn if len(params) == 2 else _ignore_input(fn),  # type: ignore[arg-type]
            input_type=input_type,
            result_type=hints.get("return", Any),
            timeout_ms=None if timeout is None else to_ms(timeout),
            queue=self._queue_name(queue),
            on_failure=handler,
            task_queue=task_queue,
            retention_ms="default" if retention is None else parse_retention(retention),
            updates=declared,
            recover=recover,
        )
        existing = self._workflows.get(name)
        if existing is not None and _origin(existing.fn) != _origin(fn):
            raise DuplicateWorkflow(name)
        self._workflows[name] = workflow
        return workflow

    def add_queue(self, queue: Queue) -> Queue:
        """Declare a queue's limits; the same declaration twice is a no-op."""
        existing = self._queues.get(queue.name)
        if existing is not None and existing != queue:
            raise ConfigError(f"queue {queue.name!r} is already declared as {existing!r}")
        if queue.pool is not None:
            for other in self._queues.values():
                if other.pool == queue.pool and (other.concurrency, other.rate) != (
                        queue.concurrency, queue.rate):
                    raise ConfigError(
                        f"queues of pool {queue.pool!r} share its limits: {queue.name!r} "
                        f"declares concurrency={queue.concurrency}, rate={queue.rate}, "
                        f"{other.name!r} concurrency={other.concurrency}, rate={other.rate}")
        self._queues[queue.name] = queue
        return queue

    def queue(self, name: str) -> Queue:
        """The queue declared as ``name``; an undeclared name is a queue without limits
        (still a target for pause rules)."""
        return self._queues.get(name) or Queue(name=name)

    def queues(self) -> dict[str, Queue]:
        """Every queue a registered workflow uses or that was declared, by name."""
        names = set(self._queues) | {w.queue for w in self._workflows.values() if w.queue}
        return {name: self.queue(name) for name in sorted(names)}

    def add_schedule(self, spec: ScheduleSpec) -> ScheduleSpec:
        """Declare a recurring schedule; workers store it at start-up (see
        :func:`schedule`). The same declaration twice is a no-op."""
        existing = self._schedules.get(spec.name)
        if existing is not None and existing != spec:
            raise ConfigError(f"schedule {spec.name!r} is already declared as {existing!r}")
        self._schedules[spec.name] = spec.check()
        return spec

    def schedules(self) -> list[ScheduleSpec]:
        """The schedules declared in code, by name."""
        return [self._schedules[name] for name in sorted(self._schedules)]

    def get(self, name: str) -> Workflow:
        """The workflow registered as ``name``; :class:`UnknownWorkflow` otherwise."""
        try:
            return self._workflows[name]
        except KeyError:
            raise UnknownWorkflow(name, list(self._workflows)) from None

    def names(self) -> list[str]:
        """Registered workflow names, sorted."""
        return sorted(self._workflows)

    def routes(self) -> dict[str, str]:
        """Workflow name -> the task queue it declares, for every registered workflow."""
        return {name: self._workflows[name].task_queue for name in sorted(self._workflows)}

    def retentions(self) -> dict[str, int | None]:
        """Workflow name -> the retention its code declares (ms; None: for ever), for the
        workflows that declare one; the others follow the deployment's default."""
        return {name: workflow.retention_ms for name, workflow in self._workflows.items()
                if workflow.retention_ms != "default"}

    def task_queues(self) -> list[str]:
        """The task queues the registered workflows declare, sorted."""
        return sorted({workflow.task_queue for workflow in self._workflows.values()})

    def _queue_name(self, queue: str | Queue | None) -> str | None:
        if queue is None:
            return None
        if isinstance(queue, Queue):
            return self.add_queue(queue).name
        return self.queue(queue).name  # validates the name

    def __contains__(self, name: object) -> bool:
        return name in self._workflows


default_registry = Registry()


def durable(
    name: str,
    *,
    timeout: Duration | None = None,
    queue: str | Queue | None = None,
    on_failure: Callable[..., Awaitable[Any]] | None = None,
    task_queue: str = DEFAULT_TASK_QUEUE,
    retention: Duration | None = None,
    updates: Iterable[str] = (),
    failure_mode: str = "execution",
    registry: Registry | None = None,
) -> Callable[[F], F]:
    """Register an ``async def`` workflow under ``name``.

    ``timeout`` (e.g. ``"6h"``) is a durable deadline counted from the start: when its
    timer fires the execution ends ``timed_out``, and a step still in flight then is not
    recorded. ``queue`` names the queue (see :func:`zart_es.queue`) whose concurrency,
    rate and priority govern when its executions may start, and whose pause rule holds
    them. The function is returned unchanged, so it stays callable in unit tests.

    ``on_failure`` (``async def handler(ctx, failure: FailureInfo)``) runs durably once the
    execution has ended ``failed`` or ``timed_out``: as an execution of its own,
    ``<id>.on-failure``, of the workflow ``<name>.on-failure``, so its steps are recorded,
    retried and resumed like any other's; it is started once per failed run.

    ``task_queue`` (e.g. ``"gpu"``) sends its work only to workers serving that task
    queue (``zart-es worker --task-queue gpu``); with no such worker its executions wait,
    they do not fail. Workers record the declaration in Redis when they start, so a client
    that does not import this code routes new executions by it too.

    ``retention`` (e.g. ``"30d"``; ``"none"``: for ever) is how long its executions stay in
    Redis once they have ended (completed, failed, cancelled, timed out) before the
    archiver moves them to the archive, where they stay readable (default: the
    deployment's ``--retention`` / ``$ZART_RETENTION``, 7 days).

    ``updates`` (e.g. ``["approve"]``) names the updates its code waits for with
    ``ctx.wait_for_update``; ``Client.update`` with another name is rejected
    (``UnknownUpdate``).

    ``failure_mode="inline"`` runs ``on_failure`` as Zart does instead: ``async def
    handler(ctx, data, failure: FailureInfo)`` is called in the same execution, with its
    original input, when the workflow raises; what it returns completes the execution
    (recovered), what it raises fails it. Its steps are recorded in the same log.
    """

    def register(fn: F) -> F:
        (registry or default_registry).register(name, fn, timeout=timeout, queue=queue,
                                                on_failure=on_failure, task_queue=task_queue,
                                                retention=retention, updates=updates,
                                                failure_mode=failure_mode)
        return fn

    return register


def queue(
    name: str,
    *,
    concurrency: int | None = None,
    priority: int = 0,
    rate: float | None = None,
    pool: str | None = None,
    registry: Registry | None = None,
) -> Queue:
    """Declare queue ``name`` for ``@durable(..., queue=name)`` workflows.

    ``concurrency``: at most this many of its executions run at once per queue key
    (``Client.start(..., queue_key="tenant-1")``; one shared key when none is given),
    across all workers; an execution holds its slot from admission to its end (while it
    sleeps too). ``priority`` (-1000..1000): waiting executions with a higher one are
    admitted first (``Client.start(..., priority=)`` overrides it per execution).
    ``rate``: at most this many admissions per second per queue key. Queues naming the
    same ``pool`` share its limits and one waiting line per key, so the pool's
    higher-priority queue is served first (they must declare the same limits).
    """
    return (registry or default_registry).add_queue(
        Queue(name=name, concurrency=concurrency, priority=priority, rate=rate, pool=pool)
    )


def schedule(
    name: str,
    workflow: str,
    data: Any = None,
    *,
    cron: str | None = None,
    every: Duration | None = None,
    timezone: str = "UTC",
    overlap: str = "skip",
    id_template: str = DEFAULT_ID_TEMPLATE,
    anchor: str = "epoch",
    registry: Registry | None = None,
) -> ScheduleSpec:
    """Declare a recurring schedule in code, next to its workflow.

    Every worker serving this registry stores it at start-up (added if missing, replaced
    if its settings changed, left alone if identical; a pause set by an operator is
    kept). Settings are those of :meth:`zart_es.Schedules.add` and are checked here.
    Removing the declaration does not delete the stored schedule: use
    ``zart-es schedule remove``.
    """
    spec = ScheduleSpec(name=name, workflow=workflow, data=data, cron=cron, every=every,
                        timezone=timezone, overlap=overlap, id_template=id_template,
                        anchor=anchor)
    return (registry or default_registry).add_schedule(spec)


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    """The function's resolved annotations, one by one: a name imported only under
    ``TYPE_CHECKING`` (often ``Context``) must not cost the input its type."""
    try:
        return typing.get_type_hints(fn)
    except Exception:
        pass
    resolved: dict[str, Any] = {}
    namespace = getattr(fn, "__globals__", {})
    for name, annotation in getattr(fn, "__annotations__", {}).items():
        if not isinstance(annotation, str):
            resolved[name] = annotation
            continue
        try:
            resolved[name] = eval(annotation, namespace)
        except Exception:
            continue
    return resolved


def _ignore_input(fn: Callable[[Context], Awaitable[Any]]) -> WorkflowFn:
    async def call(ctx: Context, _data: Any) -> Any:
        return await fn(ctx)

    call.__wrapped__ = fn  # type: ignore[attr-defined]
    return call


def _origin(fn: Callable[..., Any]) -> tuple[str, str]:
    inner: Callable[..., Any] = getattr(fn, "__wrapped__", fn)
    return (getattr(inner, "__module__", ""), getattr(inner, "__qualname__", repr(inner)))


def _check_recover(name: str, handler: Callable[..., Any]) -> RecoverFn:
    """An inline failure handler: ``async def handler(ctx, data, failure)``."""
    if not inspect.iscoroutinefunction(handler):
        raise ConfigError(f"@durable({name!r}): an inline on_failure handler must be an "
                          f"'async def', got {handler!r}")
    if len(inspect.signature(handler).parameters) != 3:
        raise ConfigError(f"@durable({name!r}): an inline on_failure handler takes "
                          "(ctx, data, failure)")
    return handler


def failure_workflow(name: str) -> str:
    """The name a workflow's failure handler is registered under."""
    return f"{name}.on-failure"
