"""The archive on S3: the same code path against an S3-protocol server the test starts
(moto's ThreadedMotoServer, offline), and ``zart-es audit`` over it."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from zart_es import Client, Context
from zart_es.archive import Archive
from zart_es.engine import Archiver
from zart_es.store import Deployment
from zart_es.workflow import Registry

from .helpers import zart

pytestmark = pytest.mark.redis


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A bucket on a local S3 server; the AWS_* variables obstore and boto3 read."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for name, value in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"),
                        ("AWS_REGION", "us-east-1"), ("AWS_DEFAULT_REGION", "us-east-1"),
                        ("AWS_ENDPOINT_URL", f"http://{host}:{port}"),
                        ("AWS_ALLOW_HTTP", "true")):
        monkeypatch.setenv(name, value)
    boto3.client("s3").create_bucket(Bucket="zart-archive")
    yield "s3://zart-archive/prod"
    server.stop()


async def test_archive_on_s3_reads_back_and_answers_audit_queries(
        env: tuple[Client, Registry], s3: str, monkeypatch: pytest.MonkeyPatch) -> None:
    client, registry = env

    async def flaky(ctx: Context, n: int) -> int:
        async def once() -> int:
            return n
        return await ctx.step("once", once)

    async def broken(ctx: Context) -> None:
        async def fail() -> None:
            raise ValueError("bad input")
        await ctx.step("parse", fail)

    registry.register("flaky", flaky, retention=0)
    registry.register("broken", broken, retention=0)
    ok = [await client.start("flaky", n) for n in range(3)]
    bad = await client.start("broken")
    for execution_id in ok:
        await client.result(execution_id, timeout=10)
    await client.wait(bad, timeout=10)
    paused = await client.pause(workflow="flaky", reason="audit me", by="alice")
    assert paused
    await client.resume(workflow="flaky", by="alice")

    async with Deployment(client.url) as deployment:
        archiver = Archiver(deployment, Archive(s3), retention_ms=0,
                            retentions=registry.retentions(), owner="s3-test")
        await archiver.tick()
        await archiver.aclose()
    assert archiver.archived == 4
    assert (await client.stats()).total == 0

    async with Client(client.url, archive_url=s3) as reader:
        assert await reader.result(ok[1], timeout=1) == 1
        assert await reader.verify(bad) is None
        error = (await reader.status(bad)).error
        assert error is not None
        assert error.endswith("ValueError: bad input")

    monkeypatch.setenv("ZART_ARCHIVE_URL", s3)  # the CLI's subprocesses read it
    failed = zart(client.url, "--json", "archive", "query",
                  "SELECT execution_id, error FROM executions WHERE status = 'failed'")
    assert failed.returncode == 0, failed.stderr
    assert failed.stdout.count("\n") == 1, repr(failed.stdout[:600])
    assert json.loads(failed.stdout) == [{"execution_id": bad, "error": error}]
    steps = zart(client.url, "--json", "archive", "query",
                 "SELECT count(*) AS n FROM events WHERE event_type = 'StepCompleted'")
    assert json.loads(steps.stdout) == [{"n": 3}]
    who = zart(client.url, "--json", "archive", "query",
               "SELECT what, operator FROM audit ORDER BY entry_id")
    assert [(r["what"], r["operator"]) for r in json.loads(who.stdout)][:2] == \
        [("pause", "alice"), ("resume", "alice")]
    log = zart(client.url, "--json", "audit", "log")
    assert log.returncode == 0, log.stderr
    assert [json.loads(line)["what"] for line in log.stdout.splitlines()][:2] == \
        ["pause", "resume"]
    status = zart(client.url, "--json", "status", ok[0])
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["status"] == "completed"
    bad_sql = zart(client.url, "archive", "query", "SELECT nope FROM executions")
    assert bad_sql.returncode == 1
    assert bad_sql.stderr.startswith("zart-es: error: archive query failed")


async def test_seal_and_verify_on_s3(env: tuple[Client, Registry], s3: str,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The ledger lives in the S3 bucket like the rest of the archive, and verify reads
    executions, files and checkpoints back from it."""
    from zart_es.archive import ObjectStore
    from zart_es.audit import seal, verify

    client, registry = env
    s3 = f"{s3}-sealed"  # moto's buckets outlive its server, within this process

    async def one(ctx: Context) -> int:
        return await ctx.step("one", lambda: 1)

    registry.register("one", one, retention=0)
    ids = [await client.start("one") for _ in range(3)]
    for execution_id in ids:
        await client.result(execution_id, timeout=10)
    async with Deployment(client.url) as deployment:
        first = await seal(deployment, s3)  # sealed while in Redis
        archiver = Archiver(deployment, Archive(s3), retention_ms=0,
                            retentions=registry.retentions(), owner="s3-test")
        await archiver.tick()
        await archiver.aclose()
        second = await seal(deployment, s3)  # the archive's new files
        assert (first.seq, first.heads, second.seq) == (0, 3, 1)
        assert second.files >= 2
        report = await verify(deployment, s3)
        assert report.findings == []
        assert report.checkpoints == 2
        objects = ObjectStore(s3)
        events = next(p for p in await objects.list("events"))
        await objects.delete(events)
        report = await verify(deployment, s3)
    assert ("file", "missing", events) in [(f.where, f.kind, f.execution_id)
                                           for f in report.findings]
    named = {f.execution_id for f in report.findings if f.where == "execution"}
    assert named  # the executions that file held (one partition's) are named too
    assert named <= set(ids)
