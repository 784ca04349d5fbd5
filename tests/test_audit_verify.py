"""``zart-es audit seal`` and ``audit verify``, attacked as someone who can write to Redis
or to the archive would (issue: audit that holds against a Redis writer).

Each test builds a sealed deployment (a real Redis, an in-process worker, a real archive
directory): ended executions archived to Parquet, running ones in Redis, operator
actions in the trail; then tampers, and checks that verify names the execution and the
sequence number (exit 1), or that everything still holds (exit 0).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from redis.asyncio import Redis

from zart_es import Client, Context, Registry, Worker
from zart_es.archive import Archive
from zart_es.audit import Finding, PublicKey, SigningKey, generate_signing_key, seal, verify
from zart_es.core import ArchiveError, ConfigError, unkeyed_link
from zart_es.engine import Archiver
from zart_es.store import Deployment, Keys

from .helpers import ROOT, wait_for

pytestmark = pytest.mark.redis

KEY = "k1:" + "5a" * 32


@dataclass
class World:
    url: str
    archive: Path
    ended: list[str]
    """Archived (out of Redis)."""
    running: list[str]
    """Waiting for a signal, in Redis."""
    done: list[str]
    """Ended, kept in Redis (retention none)."""


def _register(registry: Registry) -> None:
    async def short(ctx: Context, n: int) -> int:
        total = 0
        for i in range(4):
            total += await ctx.step(f"s{i}", lambda i=i: i * n)
        return total

    async def waits(ctx: Context) -> int:
        await ctx.step("before", lambda: 1)
        return await ctx.wait_for_signal("go", type=int)

    registry.register("short", short, retention=0)
    registry.register("kept", short, retention="none")
    registry.register("waits", waits)


@pytest.fixture
async def world(redis_url: str, registry: Registry, tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    monkeypatch.setenv("ZART_AUDIT_KEY", KEY)
    _register(registry)
    root = tmp_path / "archive"
    async with Worker(redis_url, registry=registry, lease_timeout=1, poll_interval=0.05), \
            Client(redis_url) as client:
        ended = [await client.start("short", n) for n in range(3)]
        done = [await client.start("kept", n) for n in range(3)]
        running = [await client.start("waits") for _ in range(3)]
        for execution_id in ended + done:
            await client.result(execution_id, timeout=10)
        for execution_id in running:
            await wait_for(lambda e=execution_id: _waiting(client, e))
        await client.pause(workflow="kept", reason="tidy", by="ann")
        await client.resume(workflow="kept", by="ann")
        async with Deployment(redis_url) as deployment:
            archiver = Archiver(deployment, Archive(str(root)), retention_ms=None,
                                retentions=registry.retentions(), owner="test")
            await archiver.queue.announce_retention(registry.retentions())
            await archiver.tick()
            await archiver.aclose()
            assert archiver.archived == 3
            first = await seal(deployment, str(root))
            assert first.written
        yield World(redis_url, root, ended, running, done)


async def _waiting(client: Client, execution_id: str) -> bool:
    return (await client.status(execution_id)).status == "waiting"


async def _verify(world: World, **options: Any) -> list[Finding]:
    async with Deployment(world.url) as deployment:
        report = await verify(deployment, str(world.archive), **options)
    return report.findings


def _has(findings: list[Finding], kind: str, execution_id: str = "", seq: int | None = None,
         where: str = "execution") -> bool:
    return any(f.kind == kind and f.where == where and f.execution_id == execution_id
               and (seq is None or f.seq == seq) for f in findings)


async def test_an_untouched_deployment_verifies(world: World, redis: Redis) -> None:
    assert await _verify(world) == []
    # what left Redis is in the trail, and so is a retention the code changed
    trail = [f for _, f in await redis.xrange(Keys().audit())]
    purged = [f for f in trail if f[b"what"] == b"archive.purge"]
    assert sum(int(f[b"executions"]) for f in purged) == 3
    async with Deployment(world.url) as deployment:
        from zart_es.store import ArchiveQueue

        await ArchiveQueue(deployment.redis, deployment.keys).announce_retention(
            {"kept": 60_000}, deployment.trail, by="worker-2")
    changed = [f for _, f in await redis.xrange(Keys().audit())
               if f[b"what"] == b"retention.change"]
    assert [(f[b"workflow"], f[b"before"], f[b"after"], f[b"by"]) for f in changed] == [
        (b"kept", b"none", b"60000", b"worker-2")]
    # and after more work and a second seal, still
    async with Client(world.url) as client:
        assert await client.send_signal(world.running[0], "go", 5, by="bob")
    async with Deployment(world.url) as deployment:
        again = await seal(deployment, str(world.archive))
        assert again.written
        assert again.seq == 1
        assert again.heads >= 1
        assert not (await seal(deployment, str(world.archive))).written  # nothing changed
    assert await _verify(world) == []


async def test_a_dropped_event_is_named(world: World, redis: Redis) -> None:
    target = world.running[0]
    entries = await redis.xrange(Keys().log(target))
    await redis.xdel(Keys().log(target), entries[1][0])
    assert _has(await _verify(world), "missing", target, 1)


async def test_a_cut_tail_with_a_rewritten_meta_hash_is_named(world: World,
                                                              redis: Redis) -> None:
    target = world.done[0]
    keys = Keys()
    entries = await redis.xrange(keys.log(target))
    last_two = [entry_id for entry_id, _ in entries[-2:]]
    await redis.xdel(keys.log(target), *last_two)
    # the meta hash rewritten to the new tail: the chain alone cannot see the cut
    await redis.hset(keys.meta(target), mapping={  # type: ignore[misc]
        "v": len(entries) - 2, "h": entries[-2][1][b"p"]})
    findings = await _verify(world)
    assert _has(findings, "cut", target, len(entries) - 2)


async def test_an_execution_deleted_after_the_seal_is_named(world: World,
                                                            redis: Redis) -> None:
    target = world.running[1]
    keys = Keys()
    version = int(await redis.hget(keys.meta(target), "v"))  # type: ignore[misc]
    await redis.delete(keys.log(target), keys.meta(target))
    await redis.zrem(keys.index(keys.partition_of(target), None), target)
    assert _has(await _verify(world), "missing", target, version - 1)


async def test_an_event_forged_with_the_unkeyed_formula_is_named(world: World,
                                                                 redis: Redis) -> None:
    target = world.done[1]
    keys = Keys()
    entries = await redis.xrange(keys.log(target))
    head = (await redis.hget(keys.meta(target), "h")).decode()  # type: ignore[misc]
    seq, body = len(entries), entries[1][1][b"e"]
    await redis.xadd(keys.log(target), {"s": seq, "p": head, "e": body})
    await redis.hset(keys.meta(target), mapping={  # type: ignore[misc]
        "v": seq + 1, "h": unkeyed_link(head, seq, body)})
    assert _has(await _verify(world), "unkeyed", target, seq)


async def test_two_reordered_events_are_named(world: World, redis: Redis) -> None:
    target = world.done[2]
    log = Keys().log(target)
    fields = [f for _, f in await redis.xrange(log)]
    fields[2], fields[3] = fields[3], fields[2]
    await redis.delete(log)
    for entry in fields:
        await redis.xadd(log, entry)
    assert _has(await _verify(world), "order", target, 2)


def _parquet(world: World, folder: str) -> Path:
    return next((world.archive / folder).rglob("*.parquet"))


async def test_a_value_rewritten_in_an_archived_file_is_named(world: World) -> None:
    path = _parquet(world, "executions")
    table = pq.read_table(path)
    status = table.column_names.index("status")
    table = table.set_column(status, "status", pa.array(
        ["failed" if v == "completed" else v for v in table.column("status").to_pylist()],
        pa.string()))
    sink = io.BytesIO()
    pq.write_table(table, sink)
    path.write_bytes(sink.getvalue())
    findings = await _verify(world)
    relative = str(path.relative_to(world.archive))
    assert _has(findings, "changed", relative, where="file")


async def test_a_deleted_archived_file_is_named(world: World) -> None:
    path = _parquet(world, "events")
    path.unlink()
    findings = await _verify(world)
    assert _has(findings, "missing", str(path.relative_to(world.archive)), where="file")
    # and the executions it held can no longer be read back: each one is named too
    assert any(f.where == "execution" and f.execution_id in world.ended for f in findings)


async def test_a_truncated_operator_trail_is_named(world: World, redis: Redis) -> None:
    async with Deployment(world.url) as deployment:  # two entries the archive does not hold
        await deployment.trail.record("release", by="ann", reason="fixed")
        await deployment.trail.record("release", by="bob", reason="fixed too")
        assert (await seal(deployment, str(world.archive))).seq == 1
    trail = await redis.xrange(Keys().audit())
    await redis.xdel(Keys().audit(), trail[-2][0])  # one the archive does not hold
    findings = await _verify(world)
    assert [(f.where, f.kind, f.seq) for f in findings] == [
        ("trail", "missing", int(trail[-2][1][b"s"]))]
    # the tail cut and the head hash rewritten to match: the sealed head names it
    await redis.delete(Keys().audit())
    for entry_id, fields in trail[:-1]:
        await redis.xadd(Keys().audit(), fields, id=entry_id)
    await redis.hset(Keys().audit_head(), mapping={  # type: ignore[misc]
        "v": int(trail[-1][1][b"s"]), "h": trail[-1][1][b"p"]})
    findings = await _verify(world)
    assert [(f.where, f.kind, f.seq) for f in findings] == [
        ("trail", "cut", int(trail[-1][1][b"s"]))]


async def test_a_wrong_key_fails(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZART_AUDIT_KEY", "k1:" + "77" * 32)
    findings = await _verify(world)
    assert _has(findings, "wrong-key", where="ledger", seq=0)
    assert any(f.where == "execution" for f in findings)
    monkeypatch.setenv("ZART_AUDIT_KEY", "k9:" + "77" * 32)
    assert _has(await _verify(world), "unknown-key", where="ledger", seq=0)


async def test_a_deleted_or_changed_checkpoint_is_named(world: World) -> None:
    async with Client(world.url) as client:
        await client.send_signal(world.running[2], "go", 1)
        await wait_for(lambda: _ended(client, world.running[2]))
    async with Deployment(world.url) as deployment:
        assert (await seal(deployment, str(world.archive))).seq == 1
        await deployment.trail.record("note", by="ann")
        assert (await seal(deployment, str(world.archive))).seq == 2
    first = world.archive / "ledger" / f"{1:012d}.json"
    first.unlink()
    assert _has(await _verify(world), "missing", where="ledger", seq=1)


async def _ended(client: Client, execution_id: str) -> bool:
    return (await client.status(execution_id)).done


async def test_signed_checkpoints_verify_with_the_public_key_alone(
    world: World, tmp_path: Path
) -> None:
    private = str(tmp_path / "seal.pem")
    public = PublicKey.from_file(generate_signing_key(private))
    async with Deployment(world.url) as deployment:
        signed = await seal(deployment, str(world.archive), signing_key=SigningKey.from_file(
            private), force=True)
    assert signed.seq == 1
    # the first checkpoint was not signed: with the public key required, it is named
    findings = await _verify(world, public_key=public)
    assert [(f.where, f.kind, f.seq) for f in findings] == [("ledger", "signature", 0)]
    other = PublicKey.from_file(generate_signing_key(str(tmp_path / "other.pem")))
    assert _has(await _verify(world, public_key=other), "signature", where="ledger", seq=1)


def test_the_cli_seals_verifies_and_prints_one_line_per_finding(
    redis_url: str, tmp_path: Path
) -> None:
    env = {**os.environ, "ZART_AUDIT_KEY": KEY, "PYTHONPATH": str(ROOT)}
    archive = str(tmp_path / "archive")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "zart_es", *args, "--redis-url",
                               redis_url, "--archive-url", archive],
                              capture_output=True, text=True, env=env, timeout=60,
                              check=False)

    assert run("start", "cli-audited", "--id", "cli-1").returncode == 0
    sealed = run("audit", "seal")
    assert sealed.returncode == 0, sealed.stderr
    assert sealed.stdout.startswith("checkpoint 0 sealed: 1 head(s) changed")
    ok = run("audit", "verify")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "everything holds" in ok.stdout
    import redis as redis_sync

    with redis_sync.Redis.from_url(redis_url) as r:
        r.delete(Keys().log("cli-1"))
    bad = run("audit", "verify")
    assert bad.returncode == 1
    assert bad.stdout.splitlines()[0] == (
        "missing: execution 'cli-1' seq 0: sealed with 1 events, now in neither Redis nor "
        "the archive (deleted)")
    as_json = run("audit", "verify", "--json")
    assert '"ok": false' in as_json.stdout.replace('"ok":false', '"ok": false')
    deprecated = run("audit", "query", "select 1 as one")
    assert deprecated.returncode == 0
    assert "deprecated" in deprecated.stderr
    assert run("archive", "query", "select 1 as one").returncode == 0


async def test_a_checkpoint_added_without_the_key_is_named_and_not_built_on(
    world: World, redis: Redis
) -> None:
    """Someone who can write the archive appends a checkpoint that seals a cut tail."""
    import msgspec

    from zart_es.archive import Checkpoint, Head, Seal, digest, encode_checkpoint

    target = world.done[0]
    keys = Keys()
    entries = await redis.xrange(keys.log(target))
    await redis.xdel(keys.log(target), entries[-1][0])
    await redis.hset(keys.meta(target), mapping={  # type: ignore[misc]
        "v": len(entries) - 1, "h": entries[-1][1][b"p"]})
    first = (world.archive / "ledger" / f"{0:012d}.json").read_bytes().split(b"\n")[0]
    forged = Checkpoint(seq=1, at_ms=1, prev=digest(first), heads=[
        Head(target, len(entries) - 1, entries[-1][1][b"p"].decode())])
    body = encode_checkpoint(forged)
    (world.archive / "ledger" / f"{1:012d}.json").write_bytes(
        body + b"\n" + msgspec.json.encode(Seal(digest=digest(body))) + b"\n")
    findings = await _verify(world)
    assert _has(findings, "unsealed", where="ledger", seq=1)
    assert _has(findings, "cut", target, len(entries) - 1)  # checkpoint 0 still rules
    async with Deployment(world.url) as deployment:
        with pytest.raises(ArchiveError, match="checkpoint 1 cannot be trusted"):
            await seal(deployment, str(world.archive))


async def test_a_trail_entry_added_by_hand_is_named(world: World, redis: Redis) -> None:
    await redis.xadd(Keys().audit(), {"what": "cancel", "by": "alice", "reason": "",
                                      "execution_id": world.done[0]})
    findings = await _verify(world)
    assert [(f.where, f.kind) for f in findings] == [("trail", "changed")]
    assert "'cancel' by 'alice'" in findings[0].detail


async def test_an_execution_taken_out_of_the_index_is_still_sealed_and_checked(
    world: World, redis: Redis
) -> None:
    keys = Keys()
    async with Client(world.url) as client:
        hidden = await client.start("kept", 9)
        await client.result(hidden, timeout=10)
    await redis.zrem(keys.index(keys.partition_of(hidden), None), hidden)
    async with Deployment(world.url) as deployment:
        sealed = await seal(deployment, str(world.archive))
    assert sealed.heads == 1  # found by its meta hash
    entries = await redis.xrange(keys.log(hidden))
    await redis.xdel(keys.log(hidden), entries[-1][0])
    await redis.hset(keys.meta(hidden), mapping={  # type: ignore[misc]
        "v": len(entries) - 1, "h": entries[-1][1][b"p"], "u": 0})
    assert _has(await _verify(world), "cut", hidden, len(entries) - 1)
    # --since skips only unsealed executions: a "u" set back does not hide a sealed one
    assert _has(await _verify(world, since_ms=2**40), "cut", hidden, len(entries) - 1)


async def test_a_signed_ledger_is_extended_only_by_a_signing_sealer(
    world: World, tmp_path: Path
) -> None:
    private = str(tmp_path / "seal.pem")
    generate_signing_key(private)
    async with Deployment(world.url) as deployment:
        await seal(deployment, str(world.archive), signing_key=SigningKey.from_file(private),
                   force=True)
        with pytest.raises(ConfigError, match="the ledger is signed"):
            await seal(deployment, str(world.archive), force=True)
