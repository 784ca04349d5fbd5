"""The store's typed hash and set handles: what Redis answers, typed; a reply of another
shape is a StoreError naming the command, never a wrong value."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from zart_es.core import StoreError
from zart_es.store import Keys, Store
from zart_es.store._hashes import Hash, Members, as_bytes, as_int, as_list, as_mapping


@pytest.mark.pure
def test_a_reply_of_another_shape_names_the_command() -> None:
    assert as_bytes(b"x", "HGET") == b"x"
    assert as_bytes(None, "HGET") is None
    with pytest.raises(StoreError, match="HGET answered str, not bytes"):
        as_bytes("x", "HGET")
    with pytest.raises(StoreError, match="HDEL answered bytes, not an integer"):
        as_int(b"1", "HDEL")
    with pytest.raises(StoreError, match="HGETALL answered list, not a map"):
        as_mapping([b"a"], "HGETALL")
    with pytest.raises(StoreError, match="HMGET answered int, not an array"):
        as_list(3, "HMGET")


@pytest.mark.redis
async def test_hash_and_members_on_a_real_redis(redis: Redis) -> None:
    table = Hash(redis, "t:h")
    assert not await table.present()
    assert await table.put_new("a", b"\x00\xff")
    assert not await table.put_new("a", "other")  # kept
    await table.put("b", 2)
    await table.put_all({"c": "3"})
    assert await table.get("a") == b"\x00\xff"
    assert await table.get_many(["a", "zz", "b"]) == [b"\x00\xff", None, b"2"]
    assert await table.all() == {b"a": b"\x00\xff", b"b": b"2", b"c": b"3"}
    assert sorted(await table.fields()) == [b"a", b"b", b"c"]
    assert await table.has("b")
    assert await table.add("b", 5) == 7
    assert await table.delete("b", "zz") == 1
    assert await table.present()
    members = Members(redis, "t:s")
    assert await members.add("x", b"y") == 2
    assert await members.remove("x") == 1
    assert await members.all() == [b"y"]


@pytest.mark.redis
async def test_the_store_counts_crashes_of_existing_executions_only(redis: Redis) -> None:
    store = Store(redis, Keys(partitions=2))
    try:
        assert await store.count_crash("nobody") is None
        assert not await redis.exists(store.keys.meta("nobody"))  # nothing was created
        await store.tables.meta("e1").put("v", 1)
        assert await store.count_crash("e1") == 1
        assert await store.count_crash("e1") == 2
        await store.forget_crashes("e1")
        assert await store.count_crash("e1") == 1
    finally:
        await store.aclose()
