"""Payload encryption at rest: AES-GCM with a keyring whose key ids travel with each
payload, so keys rotate without rewriting logs, and the hash chain verifies without a key."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis

from tests.helpers import spawn_worker, stop_worker, zart
from zart_es import Client, ConfigError, PayloadDecodeError
from zart_es.core import SEALED, AesGcmKeyring, Payloads, StepCompleted
from zart_es.store import to_event

K1 = base64.b64encode(b"1" * 32).decode()
K2 = base64.b64encode(b"2" * 32).decode()


@pytest.mark.pure
@given(st.binary(max_size=2000))
def test_sealed_payloads_open_to_what_was_sealed(plaintext: bytes) -> None:
    ring = AesGcmKeyring.parse(f"k1:{K1}")
    sealed = ring.seal(plaintext)
    assert sealed[0] == SEALED
    assert ring.open(sealed) == plaintext
    assert ring.seal(plaintext) != sealed  # a fresh nonce every time


@pytest.mark.pure
def test_keys_rotate_without_rewriting_old_payloads() -> None:
    old = Payloads(cipher=AesGcmKeyring.parse(f"k1:{K1}"))
    stored = old.encode({"card": "4242"}, "input")
    rotated = Payloads(cipher=AesGcmKeyring.parse(f"k2:{K2},k1:{K1}"))
    assert rotated.decode(stored, None, "input") == {"card": "4242"}
    fresh = rotated.encode({"card": "4343"}, "input")
    assert b"k2" in fresh[:8]
    with pytest.raises(PayloadDecodeError, match="payload key 'k2', which is not in"):
        old.decode(fresh, None, "input")


@pytest.mark.pure
def test_plain_payloads_still_decode_and_sealed_ones_need_a_key() -> None:
    keyed = Payloads(cipher=AesGcmKeyring.parse(f"k1:{K1}"))
    plain = Payloads()
    assert keyed.decode(plain.encode([1, 2], "x"), None, "x") == [1, 2]  # written before
    with pytest.raises(PayloadDecodeError, match="encrypted and this process has no payload"):
        plain.decode(keyed.encode([1, 2], "x"), None, "result of 'e'")


@pytest.mark.pure
def test_altered_or_relabelled_payloads_do_not_open() -> None:
    ring = AesGcmKeyring.parse(f"k1:{K1},k2:{K2}")
    sealed = bytearray(ring.seal(b"secret"))
    sealed[-1] ^= 1
    with pytest.raises(ValueError, match="does not decrypt with payload key 'k1'"):
        ring.open(bytes(sealed))
    relabelled = bytes(ring.seal(b"secret")).replace(b"k1", b"k2", 1)  # the header is bound
    with pytest.raises(ValueError, match="does not decrypt with payload key 'k2'"):
        ring.open(relabelled)


@pytest.mark.pure
@pytest.mark.parametrize(("text", "error"), [
    ("", "no payload key given"),
    ("k1", "'id:<base64 key>'"),
    ("k1:not base64!", "is not base64"),
    (f"k1:{base64.b64encode(b'short').decode()}", "must be 32 bytes"),
    (f":{K1}", "invalid payload key id"),
])
def test_bad_keyrings_are_config_errors(text: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        AesGcmKeyring.parse(text)


@pytest.mark.pure
def test_a_generated_key_is_a_valid_key() -> None:
    AesGcmKeyring.parse(f"new:{AesGcmKeyring.generate_key()}")


@pytest.mark.processes
async def test_a_worker_and_a_client_with_keys_store_only_ciphertext(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    env = {"ZART_PAYLOAD_KEYS": f"k1:{K1}"}
    worker = spawn_worker(redis_url, "workers.examples", env=env, log=tmp_path / "w.log")
    try:
        async with Client(redis_url, payload_keys=f"k1:{K1}") as client:
            eid = await client.start("transform-records", 3, execution_id="secret-1")
            assert await client.result(eid, timeout=20) == 3
        raw = await redis.xrange(client.keys.log(eid))
        events = [to_event(entry_id, fields) for entry_id, fields in raw]
        results = [e.result for e in events if isinstance(e, StepCompleted)]
        assert results
        assert all(r[0] == SEALED and b"k1" in r[:8] for r in results)
        assert events[0].input[0] == SEALED  # type: ignore[attr-defined]
        async with Client(redis_url, payload_keys="") as keyless:
            assert await keyless.verify(eid) is None  # the chain covers the stored bytes
            with pytest.raises(PayloadDecodeError, match="no payload key"):
                await keyless.result(eid, timeout=5)
        os.environ.pop("ZART_PAYLOAD_KEYS", None)
        shown = zart(redis_url, "result", eid)
        assert shown.returncode == 1
        assert "is encrypted and this process has no payload key" in shown.stderr
        assert "Traceback" not in shown.stderr
    finally:
        stop_worker(worker)
    # rotation: a worker with a new current key goes on with the old executions
    rotated = {"ZART_PAYLOAD_KEYS": f"k2:{K2},k1:{K1}"}
    worker = spawn_worker(redis_url, "workers.examples", env=rotated, log=tmp_path / "w.log")
    try:
        async with Client(redis_url, payload_keys=rotated["ZART_PAYLOAD_KEYS"]) as client:
            assert await client.result("secret-1", timeout=5) == 3
            new = await client.start("transform-records", 2)
            assert await client.result(new, timeout=20) == 2
            last = [e async for e in client.history(new)][-1]
            assert last.result[:5] == bytes((SEALED, 1, 2)) + b"k2"  # type: ignore[attr-defined]
    finally:
        stop_worker(worker)
