"""Task queues: a workflow's work is read only by workers serving its task queue; with no
such worker it waits (visible in status and /metrics), it does not fail; children may run
on another queue than their parent; work started before any route was known is moved."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.helpers import count_effects, spawn_worker, stop_worker, wait_for, zart
from zart_es import Client, ConfigError, Context, Registry, Worker, durable
from zart_es.core import ExecutionStarted
from zart_es.ops import render_deployment_metrics
from zart_es.store import Keys

pytestmark = pytest.mark.redis


def _pools(ran: dict[str, list[str]]) -> tuple[Registry, Registry]:
    """The same code twice (as two deployments of one image): ``resize`` on the default
    task queue, ``render`` on ``gpu``, ``album`` (default) calling ``render`` as a child.
    ``ran`` records which pool ran each step."""
    registries = (Registry(), Registry())
    for pool, registry in zip(("cpu", "gpu"), registries, strict=True):
        _register(registry, pool, ran)
    return registries


def _register(registry: Registry, pool: str, ran: dict[str, list[str]]) -> None:
    def note(what: str) -> str:
        ran.setdefault(what, []).append(pool)
        return pool

    @durable("resize", registry=registry)
    async def resize(ctx: Context) -> str:
        return str(await ctx.step("resize", lambda: note("resize")))

    @durable("render", task_queue="gpu", registry=registry)
    async def render(ctx: Context) -> str:
        return str(await ctx.step("render", lambda: note("render")))

    @durable("album", registry=registry)
    async def album(ctx: Context) -> list[str]:
        cover = await ctx.step("layout", lambda: note("layout"))
        return [str(cover), str(await ctx.call("render"))]


def _metric(text: str, name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
            total += float(match.group(2))
    return total


async def test_work_of_a_task_queue_waits_for_its_workers_and_runs_only_there(
        redis_url: str) -> None:
    ran: dict[str, list[str]] = {}
    cpu, gpu = _pools(ran)
    async with Client(redis_url) as client, Worker(
            redis_url, registry=cpu, task_queues=["default"], poll_interval=0.05,
            lease_timeout=1):
        await wait_for(lambda: _routed(client, "render"))  # it started
        resized = await client.start("resize")
        rendered = await client.start("render")
        assert await client.result(resized, timeout=10) == "cpu"
        await asyncio.sleep(1.0)  # the cpu pool has had every chance to take it
        detail = await client.describe(rendered)
        assert detail.status == "pending"
        assert (detail.task_queue, detail.task_queue_workers) == ("gpu", 0)
        exposed = (await render_deployment_metrics(client)).decode()
        assert _metric(exposed, "zart_work_waiting", task_queue="gpu") == 1
        assert _metric(exposed, "zart_work_waiting", task_queue="default") == 0
        assert _metric(exposed, "zart_task_queue_workers", task_queue="gpu") == 0
        assert _metric(exposed, "zart_task_queue_workers", task_queue="default") == 1
        async with Worker(redis_url, registry=gpu, task_queues=["gpu"], poll_interval=0.05,
                          lease_timeout=1):
            assert await client.result(rendered, timeout=10) == "gpu"
            exposed = (await render_deployment_metrics(client)).decode()
            assert _metric(exposed, "zart_task_queue_workers", task_queue="gpu") == 1
        status = await client.status(rendered)
        assert status.task_queue == "gpu"
        assert (await client.status(resized)).task_queue == "default"
    assert ran == {"resize": ["cpu"], "render": ["gpu"]}


async def test_a_child_runs_on_its_own_task_queue(redis_url: str) -> None:
    ran: dict[str, list[str]] = {}
    cpu, gpu = _pools(ran)
    async with Client(redis_url) as client, \
            Worker(redis_url, registry=cpu, task_queues=["default"], poll_interval=0.05,
                   lease_timeout=1), \
            Worker(redis_url, registry=gpu, task_queues=["gpu"], poll_interval=0.05,
                   lease_timeout=1):
        album = await client.start("album")
        assert await client.result(album, timeout=15) == ["cpu", "gpu"]
        (child,) = [e.child_id for e in [event async for event in client.history(album)]
                    if type(e).__name__ == "ChildStarted"]
        assert (await client.status(child)).task_queue == "gpu"
    assert ran == {"layout": ["cpu"], "render": ["gpu"]}


async def test_work_started_before_its_route_was_known_is_moved_there(
        redis_url: str, redis: Redis) -> None:
    """A client started ``render`` before any worker said where it goes: it waited on the
    default queue, whose worker (old code: it has no ``render``) moves it to ``gpu`` once a
    gpu worker has started and recorded the route."""
    ran: dict[str, list[str]] = {}
    _, gpu = _pools(ran)
    old_code = Registry()

    @durable("resize", registry=old_code)
    async def resize(ctx: Context) -> str:
        return "old"

    async with Client(redis_url) as client, Worker(
            redis_url, registry=old_code, poll_interval=0.05, lease_timeout=1):
        rendered = await client.start("render")
        assert (await client.status(rendered)).task_queue == "default"
        await asyncio.sleep(0.5)
        assert not (await client.status(rendered)).done  # handed back, not failed
        async with Worker(redis_url, registry=gpu, task_queues=["gpu"], poll_interval=0.05,
                          lease_timeout=1):
            assert await client.result(rendered, timeout=15) == "gpu"
        assert (await client.status(rendered)).task_queue == "gpu"
    keys = Keys()
    assert await redis.hget(keys.routes(), "render") == b"gpu"


async def test_a_pool_with_the_code_moves_work_of_another_queue_instead_of_running_it(
        redis_url: str) -> None:
    """Both pools run the same code (as the shipped overlay does): a render started before
    any route was recorded lands on the default stream, and one created as a release
    before task queues did (its log and meta name no queue); the default pool moves both
    to gpu, it does not run them."""
    ran: dict[str, list[str]] = {}
    cpu, gpu = _pools(ran)
    async with Client(redis_url) as client:
        early = await client.start("render")  # no route recorded yet: the default stream
        assert (await client.status(early)).task_queue == "default"
        await client.deployment.ready()
        assert await client.deployment.store.create(  # as a client of 0.3 wrote it
            ExecutionStarted(execution_id="old-1", workflow="render", input=b"\xc0"),
            "old-1", "render")
        async with Worker(redis_url, registry=cpu, task_queues=["default"],
                          poll_interval=0.05, lease_timeout=1):
            await asyncio.sleep(0.5)
            assert ran == {}
            async with Worker(redis_url, registry=gpu, task_queues=["gpu"],
                              poll_interval=0.05, lease_timeout=1):
                assert await client.result(early, timeout=10) == "gpu"
                assert await client.result("old-1", timeout=10) == "gpu"
        assert (await client.status("old-1")).task_queue == "gpu"
    assert ran == {"render": ["gpu", "gpu"]}


async def test_the_starter_may_name_another_task_queue(redis_url: str) -> None:
    ran: dict[str, list[str]] = {}
    cpu, _ = _pools(ran)
    async with Client(redis_url) as client, Worker(
            redis_url, registry=cpu, task_queues=["batch"], poll_interval=0.05,
            lease_timeout=1):
        execution = await client.start("resize", task_queue="batch")
        assert await client.result(execution, timeout=10) == "cpu"
        assert (await client.status(execution)).task_queue == "batch"


async def test_task_queue_names_are_checked(redis_url: str) -> None:
    registry = Registry()
    for bad in ("GPU", "gpu pool", "", "-gpu", "a" * 41, "gpu:1"):
        with pytest.raises(ConfigError, match="task queue"):
            durable("w", task_queue=bad, registry=registry)(_noop)
        async with Client(redis_url) as client:
            with pytest.raises(ConfigError, match="task queue"):
                await client.start("w", task_queue=bad)
        with pytest.raises(ConfigError, match="task queue"):
            Worker(redis_url, registry=registry, task_queues=[bad])
    with pytest.raises(ValueError, match="at least one"):
        Worker(redis_url, registry=registry, task_queues=[])


async def _noop(ctx: Context) -> None:
    return None


def test_a_worker_serves_the_default_queue_and_its_code_s_queues_unless_told() -> None:
    ran: dict[str, list[str]] = {}
    cpu, _ = _pools(ran)
    assert Worker("redis://127.0.0.1:1", registry=cpu).task_queues == ("default", "gpu")
    assert Worker("redis://127.0.0.1:1", registry=cpu,
                  task_queues=["gpu", "gpu"]).task_queues == ("gpu",)


@pytest.mark.processes
async def test_pools_of_worker_processes_each_run_their_own_queue(
        redis_url: str, effects: Path, tmp_path: Path) -> None:
    """Real processes, as on Kubernetes: a default pool and a gpu pool of the examples;
    every render ran in the gpu process, none in the default one."""
    default_pool = spawn_worker(redis_url, "workers.examples",
                                extra=["--task-queue", "default"])
    gpu_pool = spawn_worker(redis_url, "workers.examples", extra=["--task-queue", "gpu"])
    try:
        async with Client(redis_url) as client:
            await wait_for(lambda: _routed(client, "render-thumbnails"))
            album = await client.start("render-thumbnails", {"count": 5})
            loop = await client.start("durable-loop", {"count": 3})
            assert (await client.result(album, timeout=30))["processed"] == 5
            await client.result(loop, timeout=30)
    finally:
        stop_worker(default_pool)
        stop_worker(gpu_pool)
    assert count_effects(effects, "render") == {str(i): 1 for i in range(5)}
    assert _render_pids(effects) == {str(gpu_pool.pid)}


def _render_pids(effects: Path) -> set[str]:
    """The processes that wrote ``render <index> <pid>`` effects."""
    return {line.split()[2] for line in effects.read_text().splitlines()
            if line.startswith("render ")}


async def _routed(client: Client, workflow: str) -> str | None:
    """The task queue a worker recorded for ``workflow`` (read now), if any."""
    return (await client.deployment.routes.refresh()).get(workflow)


async def test_concurrency_caps_a_worker_with_more_partitions_than_slots(
        redis_url: str) -> None:
    """The gpu pool's shape: --concurrency 4 on 16 partitions. Every partition's reader
    is blocked in a read when the work arrives, yet no more than 4 run at once."""
    registry = Registry()
    running = peak = 0

    async def hold() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.2)
        running -= 1

    @durable("render", task_queue="gpu", registry=registry)
    async def render(ctx: Context, i: int) -> None:
        await ctx.step("gpu", hold)

    async with Client(redis_url) as client, Worker(
            redis_url, registry=registry, task_queues=["gpu", "default"], concurrency=4,
            poll_interval=0.05, lease_timeout=5):
        await asyncio.sleep(0.3)  # the readers are blocked in their reads
        ids = [await client.start("render", i, task_queue="gpu") for i in range(24)]
        for execution_id in ids:
            await client.result(execution_id, timeout=30)
    assert 2 <= peak <= 4, peak


@pytest.mark.processes
async def test_the_cli_shows_each_task_queue_s_backlog_and_workers(redis_url: str) -> None:
    async with Client(redis_url) as client:
        for _ in range(3):
            await client.start("render", task_queue="gpu")
        loads = await client.task_queues(["gpu", "default"])
    assert [(q.task_queue, q.waiting, q.backlog, q.workers) for q in loads] == [
        ("default", 0, 0, 0), ("gpu", 3, 3, 0)]
    shown = await asyncio.to_thread(zart, redis_url, "task-queues", "gpu", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == [{"task_queue": "gpu", "waiting": 3, "pending": 0,
                                         "backlog": 3, "workers": 0}]
    every = await asyncio.to_thread(zart, redis_url, "task-queues", "--json")
    assert [q["task_queue"] for q in json.loads(every.stdout)] == ["default", "gpu"]
