"""The operator trail in Redis: one chained stream of every operator's action.

Each entry has the fields its writer gave (``what``, ``by``, ``reason`` and details, all
text) and the chain fields of a log (``s``, ``p``, ``k``); what is chained is the
canonical encoding of the writer's fields (:func:`trail_body`), so an entry read back
from Redis or from the archive verifies the same way. The trail is never capped: the
archiver moves it to the archive and deletes only what the archive holds.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from zart_es.core import AuditKeyring, StoreError
from zart_es.store._autopipe import script_caller
from zart_es.store._connection import RedisClient
from zart_es.store._hashes import Hash
from zart_es.store._keys import Keys
from zart_es.store._scripts import load_script

TRAIL_SCOPE = "@trail"
"""The chain scope of the trail (an execution's is its id, which never starts with @)."""
CHAIN_FIELDS = frozenset((b"s", b"p", b"k"))
RETRIES = 100


def trail_body(fields: Mapping[bytes, bytes]) -> bytes:
    """The chained form of a trail entry: its writer's fields, sorted, in msgpack."""
    return msgspec.msgpack.encode(sorted(
        (name, value) for name, value in fields.items() if name not in CHAIN_FIELDS))


def trail_entry_fields(fields: Mapping[bytes, bytes]) -> dict[bytes, bytes]:
    """A trail entry's fields as :func:`~zart_es.core.check_chain` reads them (its body
    under ``e``)."""
    out = {name: value for name, value in fields.items() if name in CHAIN_FIELDS}
    out[b"e"] = trail_body(fields)
    return out


class Trail:
    """Appends to the deployment's operator trail."""

    def __init__(self, redis: RedisClient, keys: Keys, chain: AuditKeyring | None) -> None:
        self.redis = redis
        self.keys = keys
        self.chain = chain
        self._script = script_caller(redis, load_script("trail"), pipelined=False)

    async def record(self, what: str, *, by: str = "", reason: str = "",
                     **detail: str) -> bytes:
        """Append one action; returns its entry id. Every entry has ``what``, ``by``
        and ``reason`` (empty when not given), so its chained form never depends on
        which optional fields a reader fills in."""
        fields = {"what": what, "by": by, "reason": reason, **detail}
        raw = {name.encode(): value.encode() for name, value in fields.items()}
        body = trail_body(raw)
        pairs: list[bytes | str] = [item for pair in raw.items() for item in pair]
        keys = [self.keys.audit(), self.keys.audit_head()]
        if self.chain is None:
            reply = await self._script(keys=keys, args=["-1", "", "", "", body, *pairs])
            return bytes(reply[1])
        version, head = await self.head()
        for _ in range(RETRIES):
            link = self.chain.link(TRAIL_SCOPE, head, version, body)
            reply = await self._script(
                keys=keys, args=[str(version), head, link, self.chain.current, body, *pairs])
            if reply[0] == b"ok":
                return bytes(reply[1])
            version, head = int(reply[1]), reply[2].decode()
        raise StoreError(f"the operator trail kept moving ({RETRIES} tries to append {what!r})")

    async def head(self) -> tuple[int, str]:
        """(entries so far, newest chain value) as the head hash says."""
        version, head = await Hash(self.redis, self.keys.audit_head()).get_many(["v", "h"])
        return int(version or 0), (head or b"").decode()

    async def aclose(self) -> None:
        """Close the script caller's own connection, if any."""
        await self._script.aclose()

