"""The hash chain: each log entry stores the hash of its predecessor.

``hash(n) = sha1(hash(n-1) + "\\n" + seq + "\\n" + body)`` with ``hash(-1) = ""``; the
append script computes it, the execution's meta hash keeps the newest (``h``), and
:func:`verify_chain` recomputes it. It proves a log complete and unaltered against
accidents and naive edits; anyone who can write to Redis can recompute it, so it is no
signature.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import msgspec

from zart_es.store._keys import F_BODY, F_PREV, F_SEQ


class ChainBreak(msgspec.Struct, frozen=True):
    """Where and why a log fails verification."""

    index: int
    """Position of the first bad entry (or the log's length, for a bad final hash)."""
    reason: str


def link(prev_hash: str, seq: int, body: bytes) -> str:
    """The hash that follows ``prev_hash`` for entry ``seq`` with ``body``."""
    return hashlib.sha1(prev_hash.encode() + b"\n" + str(seq).encode() + b"\n" + body,
                        usedforsecurity=False).hexdigest()


def verify_chain(
    entries: Iterable[dict[bytes, bytes]], last_hash: str | None = None
) -> ChainBreak | None:
    """Check sequence numbers and hash links of raw log entries; None when intact.

    ``last_hash`` (the meta hash's ``h``) also covers the newest entry, which no later
    entry links to.
    """
    expected = ""
    count = 0
    for index, fields in enumerate(entries):
        count = index + 1
        seq = int(fields.get(F_SEQ, b"-1"))
        if seq != index:
            return ChainBreak(index, f"sequence number {seq}, expected {index}")
        prev = fields.get(F_PREV, b"").decode()
        if prev != expected:
            return ChainBreak(index, "previous-hash link does not match the entry before it")
        expected = link(prev, seq, fields.get(F_BODY, b""))
    if last_hash is not None and last_hash != expected:
        return ChainBreak(count, "the newest entry does not match the recorded final hash")
    return None
