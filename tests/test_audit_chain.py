"""The keyed chain and the operator trail, attacked the way someone who can write to
Redis would (issue: audit that holds against a Redis writer)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from zart_es import Client, Context, Registry, Worker, durable
from zart_es.core import AuditKeyring, ChainCheck, ConfigError, check_chain, unkeyed_link
from zart_es.store import TRAIL_SCOPE, Keys, trail_entry_fields

pytestmark = pytest.mark.redis

KEY_A = "a:" + "11" * 32
KEY_B = "b:" + "22" * 32


@pytest.fixture
async def keyed(redis_url: str, registry: Registry,
                monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Client, Registry]]:
    """A worker and a client of a deployment chained under key ``a``."""
    monkeypatch.setenv("ZART_AUDIT_KEY", KEY_A)

    @durable("audited", registry=registry)
    async def audited(ctx: Context, n: int) -> int:
        total = 0
        for i in range(n):
            total += await ctx.step(f"s{i}", lambda i=i: i)
        if n == 0:
            total = await ctx.wait_for_signal("go", type=int)
        return total

    async with Worker(redis_url, registry=registry, lease_timeout=1, poll_interval=0.05), \
            Client(redis_url) as client:
        yield client, registry


async def _raw(redis: Redis, eid: str) -> tuple[list[Any], bytes | None]:
    keys = Keys()
    return (await redis.xrange(keys.log(eid)),
            await redis.hget(keys.meta(eid), "h"))  # type: ignore[misc]


def _check(raw: list[Any], head: bytes | None, eid: str, keys: str = KEY_A) -> ChainCheck:
    return check_chain((f for _, f in raw), head.decode() if head else None, scope=eid,
                       keyring=AuditKeyring.parse(keys), require_keyed=True)


async def _done(client: Client, n: int = 6) -> str:
    eid = await client.start("audited", n)
    assert await client.result(eid, timeout=10) == sum(range(n))
    return eid


def test_keyring_parsing_names_what_is_wrong() -> None:
    ring = AuditKeyring.parse("new:" + "33" * 16 + ", old:" + "44" * 16)
    assert ring.current == "new"
    assert set(ring.keys) == {"new", "old"}
    assert AuditKeyring.parse("55" * 32).current == "default"
    for bad, words in (("zz" * 16, "not hex"), ("k:" + "11" * 8, "at least 16"),
                       ("a b:" + "11" * 16, "key id"), ("", "no audit key"),
                       ("k:" + "11" * 16 + ",k:" + "22" * 16, "twice")):
        with pytest.raises(ConfigError, match=words):
            AuditKeyring.parse(bad)
    assert ring.check_value("new") != ring.check_value("old")


async def test_keyed_log_verifies_and_redis_never_sees_the_key(
    keyed: tuple[Client, Registry], redis: Redis
) -> None:
    client, _ = keyed
    eid = await _done(client)
    raw, head = await _raw(redis, eid)
    assert all(f[b"k"] == b"a" for _, f in raw)
    assert head is not None
    assert len(head) == 32  # HMAC-SHA256 truncated to 128 bits, not SHA-1 (40)
    checked = _check(raw, head, eid)
    assert checked.broken is None
    assert checked.keyed
    assert checked.count == len(raw)
    assert (await client.check_chain(eid)).keyed
    # the key is nowhere in Redis
    secret = bytes.fromhex(KEY_A.partition(":")[2])
    for key in await redis.keys("*"):
        if await redis.type(key) == b"stream":
            for _, fields in await redis.xrange(key):
                assert all(secret not in v and secret.hex().encode() not in v
                           for v in fields.values())


async def test_a_dropped_event_is_named(keyed: tuple[Client, Registry], redis: Redis) -> None:
    client, _ = keyed
    eid = await _done(client)
    raw, head = await _raw(redis, eid)
    await redis.xdel(Keys().log(eid), raw[3][0])
    raw, head = await _raw(redis, eid)
    broken = _check(raw, head, eid).broken
    assert broken is not None
    assert (broken.kind, broken.seq) == ("missing", 3)


async def test_an_event_forged_with_the_unkeyed_formula_is_named(
    keyed: tuple[Client, Registry], redis: Redis
) -> None:
    client, _ = keyed
    eid = await _done(client)
    raw, head = await _raw(redis, eid)
    assert head is not None
    keys = Keys()
    seq, body = len(raw), raw[2][1][b"e"]  # replay an old body as a new event
    await redis.xadd(keys.log(eid), {"s": seq, "p": head, "e": body})
    await redis.hset(keys.meta(eid), mapping={  # type: ignore[misc]
        "v": seq + 1, "h": unkeyed_link(head.decode(), seq, body)})
    raw, head = await _raw(redis, eid)
    broken = _check(raw, head, eid).broken
    assert broken is not None
    assert (broken.kind, broken.seq) == ("unkeyed", seq)


async def test_a_changed_event_and_a_reorder_are_named(
    keyed: tuple[Client, Registry], redis: Redis
) -> None:
    client, _ = keyed
    eid = await _done(client)
    raw, head = await _raw(redis, eid)
    log = Keys().log(eid)
    # change seq 2's body and write the log again (stream ids must grow)
    changed = [dict(f) for _, f in raw]
    changed[2][b"e"] = raw[4][1][b"e"]
    await redis.delete(log)
    for fields in changed:
        await redis.xadd(log, fields)
    broken = _check(await redis.xrange(log), head, eid).broken
    assert broken is not None
    assert (broken.kind, broken.seq) == ("changed", 2)
    # swap seq 3 and seq 4
    swapped = [dict(f) for _, f in raw]
    swapped[3], swapped[4] = swapped[4], swapped[3]
    await redis.delete(log)
    for fields in swapped:
        await redis.xadd(log, fields)
    broken = _check(await redis.xrange(log), head, eid).broken
    assert broken is not None
    assert (broken.kind, broken.seq) == ("order", 3)


async def test_wrong_key_fails_and_rotation_keeps_old_entries_verifying(
    keyed: tuple[Client, Registry], redis: Redis, redis_url: str, registry: Registry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, _ = keyed
    waiting = await client.start("audited", 0)  # waits for a signal, chained under "a"
    eid = await _done(client)
    raw, head = await _raw(redis, eid)
    wrong = "a:" + "99" * 32
    broken = _check(raw, head, eid, keys=wrong).broken
    assert broken is not None
    assert broken.kind == "changed"
    assert broken.seq == 0
    # rotate: "b" is current, "a" still verifies what it chained
    monkeypatch.setenv("ZART_AUDIT_KEY", f"{KEY_B},{KEY_A}")
    async with Client(redis_url) as rotated:
        assert await rotated.send_signal(waiting, "go", 7)
        async with Worker(redis_url, registry=registry, lease_timeout=1, poll_interval=0.05):
            assert await rotated.result(waiting, timeout=10) == 7
        raw, head = await _raw(redis, waiting)
        ids = [f[b"k"] for _, f in raw]
        assert b"a" in ids
        assert b"b" in ids
        assert ids.index(b"b") > ids.index(b"a")
        assert _check(raw, head, waiting, keys=f"{KEY_B},{KEY_A}").broken is None
        assert (await rotated.check_chain(waiting)).broken is None
    broken = _check(raw, head, waiting, keys=KEY_B).broken
    assert broken is not None
    assert broken.kind == "unknown-key"


async def test_without_a_key_the_chain_is_todays_sha1(
    env: tuple[Client, Registry], redis: Redis
) -> None:
    client, registry = env

    @durable("plain", registry=registry)
    async def plain(ctx: Context) -> int:
        return await ctx.step("one", lambda: 1)

    eid = await client.start("plain")
    await client.result(eid, timeout=10)
    raw, head = await _raw(redis, eid)
    assert all(b"k" not in f for _, f in raw)
    prev = ""
    for _, fields in raw:
        assert fields[b"p"].decode() == prev
        prev = hashlib.sha1(prev.encode() + b"\n" + fields[b"s"] + b"\n" + fields[b"e"],
                            usedforsecurity=False).hexdigest()
    assert head is not None
    assert head.decode() == prev
    checked = await client.check_chain(eid)
    assert checked.broken is None
    assert not checked.keyed


async def test_operator_actions_are_one_chained_trail(
    keyed: tuple[Client, Registry], redis: Redis
) -> None:
    client, _ = keyed
    waiting = await client.start("audited", 0)
    await client.pause(workflow="audited", reason="maintenance", by="ann")
    await client.resume(workflow="audited", by="ann")
    await client.send_signal(waiting, "x", 1, by="bob")
    await client.cancel(waiting, "not needed", by="bob")
    trail = await redis.xrange(Keys().audit())
    assert [(f[b"what"], f[b"by"]) for _, f in trail] == [
        (b"pause", b"ann"), (b"resume", b"ann"), (b"signal", b"bob"), (b"cancel", b"bob")]
    assert trail[3][1][b"reason"] == b"not needed"
    head = await redis.hget(Keys().audit_head(), "h")  # type: ignore[misc]
    ring = AuditKeyring.parse(KEY_A)
    checked = check_chain((trail_entry_fields(f) for _, f in trail), head.decode(),
                          scope=TRAIL_SCOPE, keyring=ring, require_keyed=True)
    assert checked.broken is None
    assert checked.keyed
    # a changed reason breaks it
    forged = [dict(f) for _, f in trail]
    forged[0][b"reason"] = b"nothing to see"
    broken = check_chain((trail_entry_fields(f) for f in forged), head.decode(),
                         scope=TRAIL_SCOPE, keyring=ring).broken
    assert broken is not None
    assert (broken.kind, broken.seq) == ("changed", 0)
