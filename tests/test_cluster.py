"""The same engine on a real Redis Cluster: 3 primaries with a replica each."""

from __future__ import annotations

import asyncio
import gc
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import workers.examples  # noqa: F401 -- registers the examples in the default registry
from zart_es import Client, Context, Registry, Worker, durable
from zart_es.core import ExecutionCompleted, StepCompleted
from zart_es.store import Keys, to_event
from zart_es.store._connection import connect
from zart_es.store._embedded import LocalCluster

from .helpers import count_effects, spawn_worker, stop_worker

# redis-py's cluster client leaves ClusterNode objects unclosed (those a topology refresh
# replaces, the failed primary's among them); collect them here, inside this module's
# warning filter, rather than at the end of the session
pytestmark = [
    pytest.mark.cluster,
    pytest.mark.filterwarnings("ignore::ResourceWarning",
                               "ignore::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture(autouse=True)
def _collect_leaked_nodes() -> Iterator[None]:
    yield
    gc.collect()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running


@pytest.fixture
async def client(cluster: LocalCluster) -> AsyncIterator[Client]:
    async with Client(cluster.url) as c, Worker(cluster.url, lease_timeout=2,
                                                poll_interval=0.05):
        yield c


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def _log(client: Client, eid: str) -> list[object]:
    return [e async for e in client.history(eid)]


async def test_partitions_really_spread_over_the_nodes(cluster: LocalCluster) -> None:
    redis = connect(cluster.url)
    try:
        keys = Keys()
        slots = {await redis.execute_command("CLUSTER KEYSLOT", keys.work(p))  # type: ignore[no-untyped-call]
                 for p in range(keys.partitions)}
        nodes = {redis.get_node_from_key(keys.work(p)).name  # type: ignore[union-attr]
                 for p in range(keys.partitions)}
    finally:
        await redis.aclose()
    assert len(slots) == keys.partitions
    assert len(nodes) == 3  # every primary owns some partitions


async def test_examples_end_to_end_on_the_cluster(client: Client, effects: Path) -> None:
    batch = await client.start("batch-processor", {"count": 6}, execution_id=_id("batch"))
    retry = await client.start("provision", {"config": "c1", "fail_times": 2, "delay": "50ms"},
                               execution_id=_id("prov"))
    poll = await client.start("job-poller", {"runs_for": 0.3, "every": 0.1},
                              execution_id=_id("poll"))
    assert (await client.result(batch, timeout=20))["processed"] == 6
    assert (await client.result(retry, timeout=20))["config"] == "c1"
    assert "done after" in await client.result(poll, timeout=20)
    assert count_effects(effects, "process") == {str(i): 1 for i in range(6)}


async def test_children_events_cancel_and_list_on_the_cluster(cluster: LocalCluster) -> None:
    # its own worker only: a worker that does not know a workflow fails its executions
    registry = Registry()

    @durable("c-child", registry=registry)
    async def child(ctx: Context, n: int) -> int:
        return n + 1

    @durable("c-parent", registry=registry)
    async def parent(ctx: Context) -> list[int]:
        got = await ctx.wait_for_signal("go", type=int)
        return list(await ctx.gather(*(ctx.call("c-child", got + i) for i in range(3))))

    @durable("c-sleepy", registry=registry)
    async def sleepy(ctx: Context) -> None:
        await ctx.sleep(60)

    async with Client(cluster.url) as client, Worker(cluster.url, registry=registry,
                                                     poll_interval=0.05):
        eid = await client.start("c-parent", execution_id=_id("parent"))
        await client.send_signal(eid, "go", 10)
        assert await client.result(eid, timeout=20) == [11, 12, 13]
        keys = client.keys
        children = [f"{eid}.child-{i}" for i in range(3)]
        assert len({keys.partition_of(c) for c in [eid, *children]}) > 1
        nap = await client.start("c-sleepy", execution_id=_id("nap"))
        await asyncio.sleep(0.5)
        assert await client.cancel(nap)
        with pytest.raises(Exception, match="Cancelled"):
            await client.result(nap, timeout=20)
        rows = await client.list(name="c-parent")
        assert eid in [r.execution_id for r in rows]


async def test_kill9_workers_on_the_cluster(
    cluster: LocalCluster, effects: Path, tmp_path: Path
) -> None:
    env = {"CRASH_POINTS": "3:after,9:before,14:after", "CRASH_DIR": str(tmp_path)}
    async with Client(cluster.url) as client:
        eid = await client.start("crash-loop", {"n": 20}, execution_id=_id("crash"))
        kills = 0
        while True:
            proc = spawn_worker(cluster.url, "tests.apps.crash", env=env, log=tmp_path / "w.log")
            while proc.poll() is None and not (await client.status(eid)).done:
                await asyncio.sleep(0.05)
            if proc.poll() is None:
                stop_worker(proc)
                break
            assert proc.returncode == -signal.SIGKILL
            kills += 1
        assert kills == 3
        assert await client.result(eid, timeout=10) == sum(range(20))
        events = await _log(client, eid)
    runs = count_effects(effects, "done")
    assert [runs[str(i)] for i in range(20)] == [2 if i in (3, 14) else 1 for i in range(20)]
    steps = [e.step for e in events if isinstance(e, StepCompleted)]
    assert steps == [f"item-{i}" for i in range(20)]


async def test_master_failover_while_executions_run(tmp_path: Path) -> None:
    """Kill a primary mid-run; its replica takes over; every execution finishes, once."""
    registry = Registry()

    @durable("steady", registry=registry)
    async def steady(ctx: Context, n: int) -> int:
        total = 0
        for i in range(n):
            total += await ctx.step(f"s-{i}", lambda i=i: i)
            await ctx.sleep(0.02)
        return total

    with LocalCluster(tmp_path / "failover") as cluster:
        async with Client(cluster.url) as client, Worker(
            cluster.url, registry=registry, lease_timeout=2, poll_interval=0.05
        ):
            ids = [await client.start("steady", 15, execution_id=f"fo-{i}") for i in range(24)]
            await asyncio.sleep(1.0)
            cluster.nodes[1].kill()  # a primary (the first three are), not the URL's seed node
            results = await asyncio.gather(*(client.result(i, timeout=60) for i in ids))
            assert results == [sum(range(15))] * len(ids)
            redis = client.redis
            for eid in ids:
                entries = await redis.xrange(client.keys.log(eid))
                events = [to_event(i, f) for i, f in entries]
                steps = [e.step for e in events if isinstance(e, StepCompleted)]
                assert steps == [f"s-{i}" for i in range(15)], eid
                assert sum(isinstance(e, ExecutionCompleted) for e in events) == 1


async def test_script_calls_survive_a_failover_to_a_node_without_the_script(
        tmp_path: Path) -> None:
    """A killed primary's replica takes over with an empty script cache, while the
    client's cached topology may still call it a replica: script calls must run again."""
    from zart_es.store._autopipe import SlotScript

    with LocalCluster(tmp_path / "noscript") as cluster:
        redis = connect(cluster.url)
        try:
            key = "{noscript}k"
            script = SlotScript(redis, "return redis.call('INCR', KEYS[1])")
            assert await script([key], []) == 1
            owner = redis.get_node_from_key(key)  # type: ignore[union-attr]
            next(n for n in cluster.nodes if n.port == owner.port).kill()
            deadline = asyncio.get_running_loop().time() + 20
            errors: list[str] = []
            while True:
                try:
                    count = await script([key], [])
                    break
                except Exception as exc:
                    errors.append(type(exc).__name__)
                    assert asyncio.get_running_loop().time() < deadline, errors[-5:]
                    await asyncio.sleep(0.05)
            assert "NoScriptError" not in errors
            assert [count, await script([key], [])] == [count, count + 1]
        finally:
            await redis.aclose()
