"""A Redis that refuses writes is never the workflow's failure (issue: store errors).

A real redis-server runs out of memory mid-run (``maxmemory`` with ``noeviction``), or
stalls past the client's timeout (``DEBUG SLEEP``): no execution ends failed by it,
nothing is recorded twice, a step whose result could not be recorded runs again at most
once, and every execution completes once Redis accepts writes again.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import OutOfMemoryError

from tests.helpers import read_log, wait_for
from zart_es import (
    Client,
    Context,
    ExecutionNotFound,
    Registry,
    RepairRefused,
    Worker,
    durable,
)
from zart_es.core import ExecutionFailed, ExecutionStarted, SignalReceived, StepCompleted
from zart_es.ops import audit_entries
from zart_es.store._embedded import RedisServer

pytestmark = pytest.mark.redis

STEPS = 30
BLOB = "x" * 20_000


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own: its memory limit is changed mid-run."""
    running = RedisServer(tmp_path / "redis", appendfsync="no").start()
    yield running
    running.stop()


def _bulky(registry: Registry, runs: collections.Counter[tuple[str, int]],
           pause: float = 0.0) -> None:
    @durable("bulky", registry=registry)
    async def bulky(ctx: Context) -> int:
        for i in range(STEPS):
            def effect(i: int = i) -> str:
                runs[(ctx.execution_id, i)] += 1
                return BLOB
            try:  # a broad except around a step: the engine's own signal still wins
                await ctx.step(f"s{i}", effect)
            except Exception:
                return -1
            await asyncio.sleep(pause)  # not durable: a replay does not wait
        return STEPS


async def _check(redis: Redis, ids: list[str], runs: collections.Counter[tuple[str, int]],
                 client: Client, *, outages: int = 1, steps_each: int = STEPS) -> None:
    results = [await client.result(e, timeout=60) for e in ids]
    assert results == [STEPS] * len(ids)
    for execution_id in ids:
        log = await read_log(redis, execution_id)
        assert not any(isinstance(e, ExecutionFailed) for e in log)
        steps = [e.step for e in log if isinstance(e, StepCompleted)]
        assert len(steps) == len(set(steps)) == steps_each  # nothing recorded twice
        again = sum(n - 1 for (e, _), n in runs.items() if e == execution_id)
        assert again <= outages, f"{execution_id}: {again} step runs repeated"


async def test_out_of_memory_mid_run_fails_nothing_and_every_execution_completes(
    server: RedisServer,
) -> None:
    registry, runs = Registry(), collections.Counter[tuple[str, int]]()
    _bulky(registry, runs)
    redis = Redis.from_url(server.url)
    async with Worker(server.url, registry=registry, lease_timeout=2,
                      poll_interval=0.05) as worker, Client(server.url) as client:
        ids = [await client.start("bulky") for _ in range(8)]
        await wait_for(lambda: _recorded(redis, ids, 3), timeout=20)
        used = int((await redis.info("memory"))["used_memory"])
        await redis.config_set("maxmemory-policy", "noeviction")
        await redis.config_set("maxmemory", str(used + 200_000))
        await wait_for(lambda: _true(worker.breaker.open), timeout=20)
        await asyncio.sleep(1.5)  # refusals go on: no run may fail meanwhile
        assert worker.metrics.store_refusals.labels("oom")._value.get() >= 1
        await redis.config_set("maxmemory", "0")
        await _check(redis, ids, runs, client)
        assert not worker.breaker.open
    await redis.aclose()


async def test_redis_stalling_past_the_client_timeout_fails_nothing(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", appendfsync="no",
                         extra=["--enable-debug-command", "local"]).start()
    try:
        await _stall_mid_run(server)
    finally:
        server.stop()


async def _stall_mid_run(server: RedisServer) -> None:
    registry, runs = Registry(), collections.Counter[tuple[str, int]]()
    _bulky(registry, runs)
    redis = Redis.from_url(server.url)
    url = f"{server.url}?socket_timeout=0.5"
    async with Worker(url, registry=registry, lease_timeout=5,
                      poll_interval=0.05) as worker, Client(server.url) as client:
        ids = [await client.start("bulky") for _ in range(4)]
        await wait_for(lambda: _recorded(redis, ids, 2), timeout=20)
        await redis.execute_command("DEBUG", "SLEEP", "2")
        await _check(redis, ids, runs, client)
        assert sum(worker.metrics.store_refusals.labels(k)._value.get()
                   for k in ("timeout", "connection")) >= 1
    await redis.aclose()


async def _recorded(redis: Redis, ids: list[str], n: int) -> bool:
    for execution_id in ids:
        log = await read_log(redis, execution_id)
        if sum(isinstance(e, StepCompleted) for e in log) < n:
            return False
    return True


async def _true(value: bool) -> bool:
    return value


async def test_a_redis_error_of_the_steps_own_code_is_the_steps_failure(
    server: RedisServer,
) -> None:
    """Telling the two apart: what the step function raises (here a redis-py error of the
    user's own Redis) is the step's failure, retried by its policy, then StepFailedError."""
    from redis.exceptions import OutOfMemoryError

    from zart_es import StepFailedError

    registry = Registry()
    tries: list[int] = []

    @durable("own-redis", registry=registry)
    async def own_redis(ctx: Context) -> str:
        def call_users_redis() -> None:
            tries.append(1)
            raise OutOfMemoryError("the user's own cache is full")
        try:
            await ctx.step_with_retry("cache", call_users_redis, retries=1, delay="10ms")
        except StepFailedError as exc:
            return f"{exc.error_type} after {exc.attempts} attempts"
        return "no failure"

    async with Worker(server.url, registry=registry, poll_interval=0.05) as worker, \
            Client(server.url) as client:
        eid = await client.start("own-redis")
        assert await client.result(eid, timeout=10) == "OutOfMemoryError after 2 attempts"
        assert len(tries) == 2
        assert not worker.breaker.open
        assert worker.metrics.store_refusals.labels("oom")._value.get() == 0


async def test_redis_killed_and_restarted_during_a_gather_fails_nothing(
    tmp_path: Path,
) -> None:
    server = RedisServer(tmp_path / "redis", appendfsync="always").start()
    registry, runs = Registry(), collections.Counter[tuple[str, int]]()

    @durable("fan", registry=registry)
    async def fan(ctx: Context) -> int:
        async def branch(b: int) -> None:
            for i in range(8):
                def effect(n: int = b * 100 + i) -> str:
                    runs[(ctx.execution_id, n)] += 1
                    return "ok"
                await ctx.step(f"b{b}-{i}", effect)
                await asyncio.sleep(0.02)
        await ctx.gather(*(branch(b) for b in range(4)))
        return STEPS

    try:
        redis = Redis.from_url(server.url)
        async with Worker(server.url, registry=registry, lease_timeout=3,
                          poll_interval=0.05) as worker, Client(server.url) as client:
            ids = [await client.start("fan") for _ in range(4)]
            await wait_for(lambda: _recorded(redis, ids, 2), timeout=20)
            server.kill()
            await asyncio.sleep(1.0)
            server.start()
            await _check(redis, ids, runs, client, steps_each=32)
            assert worker.metrics.store_refusals.labels("connection")._value.get() >= 1
        await redis.aclose()
    finally:
        server.stop()


async def test_a_failover_that_leaves_the_worker_on_a_replica_fails_nothing(
    tmp_path: Path,
) -> None:
    """READONLY: the worker's Redis becomes a replica mid-run (FAILOVER to its replica),
    then master again."""
    primary = RedisServer(tmp_path / "a", appendfsync="no").start()
    replica = RedisServer(tmp_path / "b", appendfsync="no").start()
    registry, runs = Registry(), collections.Counter[tuple[str, int]]()
    _bulky(registry, runs, pause=0.1)
    a, b = Redis.from_url(primary.url), Redis.from_url(replica.url)
    try:
        await b.replicaof("127.0.0.1", primary.port)
        await wait_for(lambda: _replica_online(a), timeout=30)  # the first sync waits 5 s
        async with Worker(primary.url, registry=registry, lease_timeout=3,
                          poll_interval=0.05) as worker, Client(primary.url) as client:
            ids = [await client.start("bulky") for _ in range(4)]
            await wait_for(lambda: _recorded(a, ids, 3), timeout=20)
            await a.execute_command("FAILOVER", "TO", "127.0.0.1", str(replica.port))
            await wait_for(lambda: _true(worker.breaker.open), timeout=20)
            await asyncio.sleep(1.0)
            await wait_for(lambda: _role(b, "master"), timeout=20)
            await wait_for(lambda: _replica_online(b), timeout=20)
            await b.execute_command("FAILOVER", "TO", "127.0.0.1", str(primary.port))
            await wait_for(lambda: _role(a, "master"), timeout=20)
            await _check(a, ids, runs, client)
            assert worker.metrics.store_refusals.labels("readonly")._value.get() >= 1
    finally:
        await a.aclose()
        await b.aclose()
        primary.stop()
        replica.stop()


async def _role(redis: Redis, role: str) -> bool:
    return bool((await redis.info("replication"))["role"] == role)


async def _replica_online(master: Redis) -> bool:
    info = await master.info("replication")
    return info.get("role") == "master" and "online" in str(info.get("slave0", ""))


@pytest.mark.processes
def test_health_reports_a_refusing_store_and_readiness_fails_on_it(
    redis_url: str, tmp_path: Path
) -> None:
    from tests.helpers import zart
    from zart_es.engine import write_heartbeat

    beat = str(tmp_path / "beat")
    write_heartbeat(beat, [], store_refusing="OutOfMemoryError: used memory > 'maxmemory'")
    alive = zart(redis_url, "health", "--heartbeat-file", beat)
    assert alive.returncode == 0  # liveness: a restart would not help
    assert "store refusing writes (OutOfMemoryError" in alive.stderr
    ready = zart(redis_url, "health", "--heartbeat-file", beat, "--ready")
    assert ready.returncode == 1
    assert "store refusing writes (OutOfMemoryError" in ready.stderr
    write_heartbeat(beat, [])
    assert zart(redis_url, "health", "--heartbeat-file", beat, "--ready").returncode == 0


async def test_an_execution_a_store_error_ended_before_0_4_is_reopened_where_it_stopped(
    redis_url: str, redis: Redis, registry: Registry
) -> None:
    """The log 0.3 could leave: two steps recorded, then ExecutionFailed(OutOfMemoryError)
    where the third step's append was refused. reopen goes on at the third step."""
    ran: list[int] = []

    @durable("three-steps", registry=registry)
    async def three(ctx: Context) -> int:
        for i in range(3):
            await ctx.step(f"s-{i}", lambda i=i: ran.append(i))
        return 3

    async with Client(redis_url) as client:
        await client.start("three-steps", execution_id="oom-0.3")
        for i in range(2):
            version = (await client.status("oom-0.3")).version
            await client.store.append("oom-0.3", version,
                                      StepCompleted(step=f"s-{i}", result=b"\xc0"))
        await client.store.append("oom-0.3", -1, ExecutionFailed(
            error_type="OutOfMemoryError",
            message="command not allowed when used memory > 'maxmemory'."))
        with pytest.raises(RepairRefused, match=r"a store error \(OutOfMemoryError\) ended "
                                                r"it; use reopen"):
            await client.retry_step("oom-0.3")
        await client.reopen("oom-0.3", by="ops")
        async with Worker(redis_url, registry=registry, lease_timeout=1, poll_interval=0.05):
            assert await client.result("oom-0.3", timeout=10) == 3
        assert ran == [2]  # the recorded steps are not run again
        trail = await audit_entries(client.redis, client.keys, limit=10)
        assert [(e.what, e.detail["by"]) for e in trail if e.what == "reopen"] == [
            ("reopen", "ops")]
        with pytest.raises(RepairRefused, match="did not end failed by a store error"):
            await client.reopen("oom-0.3")


async def test_a_refused_start_or_signal_is_not_made_and_is_safe_to_retry(
    server: RedisServer, registry: Registry
) -> None:
    @durable("waits", registry=registry)
    async def waits(ctx: Context) -> str:
        return str(await ctx.wait_for_signal("go"))

    async with Client(server.url) as client, Redis.from_url(server.url) as admin:
        await client.start("waits", execution_id="kept")  # the deployment exists
        await admin.config_set("maxmemory-policy", "noeviction")
        await admin.config_set("maxmemory", "1")
        with pytest.raises(OutOfMemoryError):
            await client.start("waits", execution_id="refused")
        with pytest.raises(OutOfMemoryError):
            await client.send_signal("kept", "go", "once", signal_id="go-1")
        await admin.config_set("maxmemory", "0")
        with pytest.raises(ExecutionNotFound):
            await client.status("refused")  # nothing half-made
        assert await client.start("waits", execution_id="refused") == "refused"
        assert await client.send_signal("kept", "go", "once", signal_id="go-1")
        assert not await client.send_signal("kept", "go", "once", signal_id="go-1")
        async with Worker(server.url, registry=registry, lease_timeout=1, poll_interval=0.05):
            assert await client.result("kept", timeout=10) == "once"
        log = await read_log(admin, "kept")
        assert sum(isinstance(e, SignalReceived) for e in log) == 1
        assert [isinstance(e, ExecutionStarted) for e in await read_log(admin, "refused")
                ].count(True) == 1


@pytest.mark.pure
@pytest.mark.parametrize(("reply", "kind"), [
    ("CLUSTERDOWN The cluster is down", "clusterdown"),
    ("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
     "masterdown"),
    ("TRYAGAIN Multiple keys request during rehashing of slot", "tryagain"),
    ("NOSCRIPT No matching script. Please use EVAL.", "noscript"),
    ("BUSY Redis is busy running a script.", "busy"),
    ("OOM command not allowed when used memory > 'maxmemory'.", "oom"),
    ("READONLY You can't write against a read only replica.", "readonly"),
    ("LOADING Redis is loading the dataset in memory", "loading"),
    ("NOPERM this user has no permissions to run the 'evalsha' command", "other"),
    ("ERR unknown command 'frob'", "other"),
])
def test_an_outage_is_told_from_a_refusal_as_redis_py_raises_it(reply: str, kind: str) -> None:
    """The error as redis-py's own parser builds it from Redis' reply: for the codes it
    has a class for it drops the code from the message, so the class must decide (a
    CLUSTERDOWN was taken for a refusal that no wait fixes, and its step ran again)."""
    from redis._parsers.base import BaseParser

    from zart_es.engine._breaker import refusal_kind

    assert refusal_kind(BaseParser().parse_error(reply)) == kind
