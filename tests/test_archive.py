"""The archive: ended executions leave Redis for Parquet files and read back the same."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio import Redis

from zart_es import Client, Context
from zart_es.archive import Archive, day_of
from zart_es.core import ExecutionArchived, ExecutionFailedError, ExecutionNotFound
from zart_es.engine import Archiver
from zart_es.store import Deployment, verify_chain
from zart_es.workflow import Registry

pytestmark = pytest.mark.redis


def _register(registry: Registry) -> None:
    async def ship(ctx: Context, order: dict[str, int]) -> int:
        total = 0
        for i in range(3):
            async def step(i: int = i) -> int:
                return order["n"] * i
            total += await ctx.step(f"pack-{i}", step)
        return total

    async def doomed(ctx: Context) -> None:
        async def fail() -> None:
            raise RuntimeError("no stock")
        await ctx.step("reserve", fail)

    async def kept(ctx: Context) -> str:
        return "kept"

    registry.register("ship", ship, retention=0)
    registry.register("doomed", doomed, retention="0s")
    registry.register("kept", kept, retention="none")


async def _archive_all(redis_url: str, root: Path, registry: Registry) -> Archiver:
    deployment = Deployment(redis_url)
    archiver = Archiver(deployment, Archive(str(root)), retention_ms=None,
                        retentions=registry.retentions(), owner="test")
    await archiver.queue.announce_retention(registry.retentions())
    await archiver.tick()
    await archiver.aclose()
    await deployment.close()
    return archiver


async def test_archived_executions_read_the_same(env: tuple[Client, Registry], redis: Redis,
                                                 tmp_path: Path) -> None:
    client, registry = env
    _register(registry)
    root = tmp_path / "archive"
    ids = [await client.start("ship", {"n": n}) for n in range(1, 4)]
    failed = await client.start("doomed")
    kept = await client.start("kept")
    for execution_id in ids:
        await client.result(execution_id, timeout=10)
    with pytest.raises(ExecutionFailedError):
        await client.result(failed, timeout=10)
    assert await client.result(kept, timeout=10) == "kept"
    before = {i: (await client.status(i), [e async for e in client.history(i)])
              for i in [*ids, failed]}

    archiver = await _archive_all(redis_url=client.url, root=root, registry=registry)
    assert archiver.archived == 4
    # out of Redis: log, meta and index entries (the retained one stays)
    for execution_id in [*ids, failed]:
        assert not await redis.exists(client.keys.log(execution_id), client.keys.meta(execution_id))
    assert [s.execution_id for s in await client.list()] == [kept]
    assert (await client.stats()).total == 1
    with pytest.raises(ExecutionNotFound):
        await client.status(ids[0])  # this client has no archive

    async with Client(client.url, archive_url=str(root)) as reader:
        for execution_id, (status, history) in before.items():
            assert await reader.status(execution_id) == status
            assert [e async for e in reader.history(execution_id)] == history
            assert await reader.verify(execution_id) is None
        assert await reader.result(ids[2], timeout=1) == 3 * (0 + 1 + 2)
        with pytest.raises(ExecutionFailedError, match="no stock"):
            await reader.result(failed, timeout=1)
        listed = await reader.list(archived=True)
        assert {s.execution_id for s in listed} == {*ids, failed, kept}
        assert {s.execution_id for s in await reader.list(status="failed", archived=True)} \
            == {failed}
        with pytest.raises(ExecutionArchived, match="archived"):
            await reader.retry_step(failed)
        with pytest.raises(ExecutionArchived):
            await reader.restart(ids[0])
        with pytest.raises(ExecutionNotFound):
            await reader.status("never-was")

    # the archive's own rows verify with the store's chain check
    found = await Archive(str(root)).find(ids[0], client.keys.partition_of(ids[0]))
    assert found is not None
    assert verify_chain((f for _, f in found.entries), found.meta[b"h"].decode()) is None


async def test_a_second_pass_archives_nothing_twice(env: tuple[Client, Registry],
                                                    tmp_path: Path) -> None:
    client, registry = env
    _register(registry)
    root = tmp_path / "archive"
    first = await client.start("ship", {"n": 1})
    await client.result(first, timeout=10)
    await _archive_all(client.url, root, registry)
    second = await client.start("ship", {"n": 2})
    await client.result(second, timeout=10)
    await _archive_all(client.url, root, registry)
    await _archive_all(client.url, root, registry)
    table = await Archive(str(root)).table("executions")
    assert table is not None
    assert sorted(table["execution_id"].to_pylist()) == sorted([first, second])
    events = await Archive(str(root)).table("events")
    assert events is not None
    assert events.num_rows == 2 * 5  # started, 3 steps, completed: once each


async def test_a_worker_archives_when_given_an_archive(redis_url: str, registry: Registry,
                                                       tmp_path: Path) -> None:
    from zart_es import Worker

    from .helpers import wait_for

    _register(registry)
    root = str(tmp_path / "archive")
    async with Worker(redis_url, registry=registry, poll_interval=0.05, archive_url=root,
                      retention=0), Client(redis_url, archive_url=root) as client:
        shipped = await client.start("ship", {"n": 2})  # declares retention 0
        kept = await client.start("kept")               # declares "none"
        await client.result(shipped, timeout=10)
        await client.result(kept, timeout=10)

        async def archived() -> bool:
            return not await client.redis.exists(client.keys.meta(shipped))
        await wait_for(archived, timeout=15)
        assert await client.result(shipped, timeout=1) == 6
        assert (await client.status(kept)).status == "completed"
        assert await client.redis.exists(client.keys.meta(kept))


@pytest.mark.processes
async def test_the_cli_reads_archived_executions(env: tuple[Client, Registry],
                                                 tmp_path: Path) -> None:
    import json

    from .helpers import zart

    client, registry = env
    _register(registry)
    root = tmp_path / "archive"
    shipped = await client.start("ship", {"n": 5})
    failed = await client.start("doomed")
    await client.result(shipped, timeout=10)
    await client.wait(failed, timeout=10)
    await _archive_all(client.url, root, registry)

    def cli(*args: str) -> str:
        done = zart(client.url, "--json", "--archive-url", str(root), *args)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert json.loads(cli("status", shipped))["status"] == "completed"
    assert json.loads(cli("result", shipped)) == 15
    history = [json.loads(line) for line in cli("history", shipped, "--format", "jsonl")
               .splitlines()]
    assert len(history) == 5
    verify = zart(client.url, "--archive-url", str(root), "history", shipped, "--verify")
    assert verify.returncode == 0, verify.stderr
    listed = json.loads(cli("list", "--archived", "--status", "failed"))
    assert [row["execution_id"] for row in listed] == [failed]
    refused = zart(client.url, "--archive-url", str(root), "retry-step", failed)
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"zart-es: error: cannot repair execution '{failed}': "
                                     "it was archived")
    gone = zart(client.url, "status", shipped)  # no archive: not found, one line
    assert gone.stderr.strip() == f"zart-es: error: no execution '{shipped}'"


@pytest.mark.processes
async def test_the_http_api_reads_archived_executions(env: tuple[Client, Registry],
                                                      tmp_path: Path) -> None:
    import asyncio
    import os
    import socket
    import sys

    import httpx

    from .helpers import ROOT

    client, registry = env
    _register(registry)
    root = tmp_path / "archive"
    shipped = await client.start("ship", {"n": 1})
    await client.result(shipped, timeout=10)
    await _archive_all(client.url, root, registry)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "zart_es", "api", "--redis-url", client.url, "--port", str(port),
        "--archive-url", str(root), cwd=ROOT, env=dict(os.environ),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            for _ in range(200):
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
            detail = (await http.get(f"/executions/{shipped}")).json()
            assert detail["status"] == "completed"
            assert detail["result"] == 3
            history = (await http.get(f"/executions/{shipped}/history")).json()
            assert [e["type"] for e in history["items"]] == [
                "ExecutionStarted", "StepCompleted", "StepCompleted", "StepCompleted",
                "ExecutionCompleted"]
    finally:
        proc.terminate()
        await proc.wait()


async def test_the_audit_stream_is_archived_once_across_a_crash(env: tuple[Client, Registry],
                                                                tmp_path: Path) -> None:
    client, _registry = env
    root = tmp_path / "archive"
    for i in range(3):
        await client.pause(workflow=f"w{i}", reason="first", by="alice")
    async with Deployment(client.url) as deployment:
        archiver = Archiver(deployment, Archive(str(root)), retention_ms=3_600_000,
                            owner="audit")
        entries = await archiver.audit.pending(100)
        # a crash after the batch was written, before the cursor moved: the retry finds
        # more entries, and must neither write the first ones again nor skip the new ones
        day = day_of(int(entries[0][0].split(b"-")[0]))
        await archiver.archive.write_audit(day, entries[0][0].decode(), entries)
        for i in range(2):
            await client.resume(workflow=f"w{i}", by="bob")
        await archiver.tick()
        await archiver.tick()
        await archiver.aclose()
    table = await Archive(str(root)).audit()
    assert [(r["what"], r["operator"]) for r in table.to_pylist()] == [
        ("pause", "alice")] * 3 + [("resume", "bob")] * 2
    # archived but younger than the retention: still in Redis for `audit log`
    assert await client.redis.xlen(client.keys.audit()) == 5


async def test_a_standalone_archiver_honours_what_workers_declare(
        redis_url: str, registry: Registry, tmp_path: Path) -> None:
    from zart_es import Worker

    _register(registry)  # "kept" declares retention "none"

    async def plain(ctx: Context) -> str:
        return "plain"

    registry.register("plain", plain)  # no declaration: the archiver's default applies
    async with Worker(redis_url, registry=registry, poll_interval=0.05), \
            Client(redis_url) as client:  # no archive here: it only records declarations
        kept = await client.start("kept")
        ordinary = await client.start("plain")
        await client.result(kept, timeout=10)
        await client.result(ordinary, timeout=10)
    async with Deployment(redis_url) as deployment:
        archiver = Archiver(deployment, Archive(str(tmp_path / "archive")), retention_ms=0,
                            owner="standalone")  # imports no workflow code
        await archiver.tick()
        await archiver.aclose()
    assert archiver.archived == 1
    async with Client(redis_url) as client:
        assert [s.execution_id for s in await client.list()] == [kept]


async def test_a_partial_batch_waits_to_fill_up(env: tuple[Client, Registry],
                                                tmp_path: Path) -> None:
    client, registry = env
    _register(registry)
    ids = [await client.start("ship", {"n": n}) for n in range(2)]
    for execution_id in ids:
        await client.result(execution_id, timeout=10)
    async with Deployment(client.url) as deployment:
        waiting = Archiver(deployment, Archive(str(tmp_path / "a")), retention_ms=None,
                           retentions=registry.retentions(), owner="w", batch_wait_ms=60_000)
        await waiting.tick()
        assert waiting.archived == 0  # due, but too few for a batch, and not waiting long
        full = Archiver(deployment, Archive(str(tmp_path / "a")), retention_ms=None,
                        retentions=registry.retentions(), owner="w", batch_wait_ms=60_000,
                        batch=1)
        await full.tick()
        await full.tick()  # both may be of one partition: a batch (of one) per tick
        assert full.archived == 2  # a full batch goes at once
        await waiting.aclose()
        await full.aclose()


@pytest.mark.processes
async def test_audit_log_follows_new_entries(env: tuple[Client, Registry],
                                             tmp_path: Path) -> None:
    import asyncio
    import json
    import os
    import sys

    from .helpers import ROOT

    client, _registry = env
    await client.pause(workflow="before", by="alice")
    async with Deployment(client.url) as deployment:  # the first entry goes to the archive
        archiver = Archiver(deployment, Archive(str(tmp_path / "a")), retention_ms=0,
                            owner="audit")
        await archiver.tick()
        await archiver.aclose()
    assert await client.redis.xlen(client.keys.audit()) == 0  # archived, retention 0
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "zart_es", "--json", "--redis-url", client.url,
        "--archive-url", str(tmp_path / "a"), "audit", "log", "--follow",
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        first = json.loads(await asyncio.wait_for(proc.stdout.readline(), 20))
        assert (first["what"], first["by"]) == ("pause", "alice")
        await client.pause(workflow="after", by="bob")
        second = json.loads(await asyncio.wait_for(proc.stdout.readline(), 20))
        assert (second["what"], second["by"], second["rule"]) == ("pause", "bob",
                                                                   "workflow:after")
    finally:
        proc.kill()
        await proc.wait()
