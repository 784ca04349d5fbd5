"""The hash chain of a log, keyed or not, and its verification.

Every entry of an execution's log (and of the operator trail) stores the chain value of
the entry before it (``p``); the newest value is kept beside the log (the meta hash's
``h``). Two ways to compute a value:

- **Keyed** (an audit key is configured): ``HMAC-SHA256(key, "zart-es/chain/1" \\n
  key id \\n scope \\n prev \\n seq \\n body)``, its first 128 bits in hex, where
  ``scope`` is the execution id (so an entry cannot be moved to another log). The entry
  records the key id (``k``), so keys rotate without rewriting anything. Redis never
  sees a key: the writers compute the value, the append script only checks the version
  (and the head linked to), so a chain cannot fork.
- **Unkeyed** (no key): ``sha1(prev \\n seq \\n body)``, computed inside Redis. It detects
  accidents and naive edits; anyone who can write to Redis can recompute it.

:class:`AuditKeyring` holds the keys (``ZART_AUDIT_KEY``); :func:`check_chain` walks raw
entries and names the first entry that does not hold.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import msgspec

from zart_es.core._errors import ConfigError

F_SEQ, F_PREV, F_BODY, F_KEY = b"s", b"p", b"e", b"k"
"""The stream fields of a chained entry: sequence number, previous chain value, body, key
id (absent for an unkeyed link)."""

DOMAIN = b"zart-es/chain/1"
KEY_ID = re.compile(r"[A-Za-z0-9_.-]{1,32}")
MIN_KEY_BYTES = 16
DEFAULT_KEY_ID = "default"
MAC_BYTES = 16
"""A chain value is HMAC-SHA256 truncated to 128 bits (RFC 2104 allows truncation to half
the hash; 2^-128 to forge a link): 32 hex characters per entry, less than the unkeyed
chain's 40, so keying costs Redis no memory per event."""


class AuditKeyring:
    """Named HMAC keys for the chain: ``current`` chains new entries, all verify.

    ``ZART_AUDIT_KEY`` is ``<hex>`` (key id ``default``) or ``id:<hex>,id2:<hex>``
    (the first is current; keep old ones listed so what they chained still verifies);
    ``ZART_AUDIT_KEY_FILE`` names a file holding the same text (a mounted secret).
    A key has at least 16 bytes (``AuditKeyring.generate()`` makes 32).
    """

    def __init__(self, keys: Mapping[str, bytes], current: str) -> None:
        if current not in keys:
            raise ConfigError(f"the current audit key {current!r} is not in the keyring")
        for key_id, key in keys.items():
            if not KEY_ID.fullmatch(key_id):
                raise ConfigError(f"audit key id {key_id!r}: use 1-32 letters, digits, "
                                  "'_', '.' or '-'")
            if len(key) < MIN_KEY_BYTES:
                raise ConfigError(f"audit key {key_id!r} has {len(key)} bytes; an audit "
                                  f"key needs at least {MIN_KEY_BYTES} (32 hex digits)")
        self.keys = dict(keys)
        self.current = current
        self._current_key = self.keys[current]
        self._current_prefix = _prefix(current)

    @classmethod
    def parse(cls, text: str) -> AuditKeyring:
        """``"<hex>"`` or ``"id:<hex>,id2:<hex>"``; the first key is current."""
        keys: dict[str, bytes] = {}
        items = [part.strip() for part in text.split(",") if part.strip()]
        for item in items:
            key_id, sep, encoded = item.rpartition(":")
            if not sep:
                if len(items) > 1:
                    raise ConfigError("audit keys are 'id:<hex key>' separated by commas "
                                      "(a single key may be given as bare hex)")
                key_id = DEFAULT_KEY_ID
            if key_id in keys:
                raise ConfigError(f"audit key id {key_id!r} is given twice")
            try:
                keys[key_id] = bytes.fromhex(encoded)
            except ValueError:
                raise ConfigError(f"audit key {key_id!r} is not hex") from None
        if not keys:
            raise ConfigError("no audit key given")
        return cls(keys, next(iter(keys)))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AuditKeyring | None:
        """The keyring of ``$ZART_AUDIT_KEY`` or ``$ZART_AUDIT_KEY_FILE``; None when
        neither is set (the chain is then unkeyed)."""
        env = os.environ if environ is None else environ
        text = env.get("ZART_AUDIT_KEY")
        path = env.get("ZART_AUDIT_KEY_FILE")
        if text and path:
            raise ConfigError("set ZART_AUDIT_KEY or ZART_AUDIT_KEY_FILE, not both")
        if path:
            try:
                text = Path(path).read_text()
            except OSError as exc:
                raise ConfigError(f"ZART_AUDIT_KEY_FILE {path!r}: {exc.strerror}") from None
        return cls.parse(text) if text else None

    @staticmethod
    def generate() -> str:
        """A new random 32-byte key, in hex (``zart-es audit keygen``)."""
        return os.urandom(32).hex()

    def link(self, scope: str, prev: str, seq: int, body: bytes) -> str:
        """The chain value, under the current key, of entry ``seq`` after ``prev``."""
        return hmac.digest(self._current_key, b"%b%b\n%b\n%d\n%b" % (
            self._current_prefix, scope.encode(), prev.encode(), seq, body),
            "sha256")[:MAC_BYTES].hex()

    def link_with(self, key_id: str, scope: str, prev: str, seq: int, body: bytes) -> str:
        """The same under key ``key_id`` (KeyError when the keyring lacks it)."""
        return hmac.digest(self.keys[key_id], b"%b%b\n%b\n%d\n%b" % (
            _prefix(key_id), scope.encode(), prev.encode(), seq, body),
            "sha256")[:MAC_BYTES].hex()

    def check_value(self, key_id: str) -> str:
        """A value that names the key without revealing it (recorded in the sealed
        ledger, so a verifier holding a different key under the same id is told so)."""
        return hmac.new(self.keys[key_id], DOMAIN + b"\ncheck", hashlib.sha256).hexdigest()[:16]

    def sign(self, data: bytes) -> str:
        """HMAC-SHA256 of ``data`` under the current key (a checkpoint's authenticator)."""
        return hmac.new(self._current_key, DOMAIN + b"\nseal\n" + data, hashlib.sha256).hexdigest()

    def signed(self, key_id: str, data: bytes, mac: str) -> bool:
        """Whether ``mac`` is :meth:`sign` of ``data`` under ``key_id``."""
        expected = hmac.new(self.keys[key_id], DOMAIN + b"\nseal\n" + data,
                            hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, mac)


def _prefix(key_id: str) -> bytes:
    """What every chained message under ``key_id`` starts with (domain, key id)."""
    return DOMAIN + b"\n" + key_id.encode() + b"\n"


def unkeyed_link(prev: str, seq: int, body: bytes) -> str:
    """The unkeyed chain value (what ``append.lua`` computes with ``redis.sha1hex``)."""
    return hashlib.sha1(prev.encode() + b"\n" + str(seq).encode() + b"\n" + body,
                        usedforsecurity=False).hexdigest()


def entry_link(fields: Mapping[bytes, bytes], scope: str,
               keyring: AuditKeyring | None) -> str | None:
    """The chain value of one stored entry (its ``p``, ``s``, ``e`` and ``k``); None
    when it names a key the keyring does not hold."""
    prev = fields.get(F_PREV, b"").decode()
    seq = int(fields.get(F_SEQ, b"-1"))
    body = fields.get(F_BODY, b"")
    key_id = fields.get(F_KEY)
    if key_id is None:
        return unkeyed_link(prev, seq, body)
    if keyring is None or key_id.decode() not in keyring.keys:
        return None
    return keyring.link_with(key_id.decode(), scope, prev, seq, body)


class ChainBreak(msgspec.Struct, frozen=True):
    """Where and why a log fails verification."""

    index: int
    """Position of the first bad entry (or the log's length, for a bad final hash)."""
    reason: str
    kind: str = "changed"
    """``missing`` (entries dropped), ``order`` (out of order or repeated), ``changed``
    (a chain value does not match: the entry was altered, or the key is wrong),
    ``unknown-key``, ``unkeyed`` (an entry chained without a key where a key is
    required), ``head`` (the newest entry does not match the recorded head)."""
    seq: int = -1
    """The sequence number the finding is about (-1: none)."""


class ChainCheck(msgspec.Struct):
    """The outcome of :func:`check_chain`: the first break, if any, and what was seen."""

    broken: ChainBreak | None
    count: int
    """Entries read."""
    head: str
    """The chain value after the last entry read (computed, not the recorded one)."""
    keyed: bool
    """Whether every entry was chained with a key."""
    key_ids: frozenset[str]


def check_chain(
    entries: Iterable[Mapping[bytes, bytes]],
    last_hash: str | None = None,
    *,
    scope: str = "",
    keyring: AuditKeyring | None = None,
    require_keyed: bool = False,
    first_seq: int = 0,
    first_prev: str = "",
) -> ChainCheck:
    """Check sequence numbers and chain links of raw entries.

    ``last_hash`` (the meta hash's ``h``) also covers the newest entry, which no later
    entry links to. With ``require_keyed``, an unkeyed entry after a keyed one is a
    break (a forged entry recomputed with the unkeyed formula); unkeyed entries before
    the first keyed one are a log started before the key was configured.
    ``first_seq``/``first_prev`` start the check in the middle (a trail whose oldest
    entries were archived and trimmed).
    """
    expected = first_prev
    count = 0
    seen_keyed = False
    all_keyed = True
    key_ids: set[str] = set()

    def done(broken: ChainBreak | None) -> ChainCheck:
        return ChainCheck(broken, count, expected, all_keyed and count > 0,
                          frozenset(key_ids))

    listed = list(entries)
    for index, fields in enumerate(listed):
        count = index + 1
        broken = _entry_break(index, first_seq + index, fields, expected,
                              keyring=keyring, keyed_only=require_keyed and seen_keyed)
        if broken is not None and broken.kind == "missing" and any(
                later.get(F_SEQ) == str(broken.seq).encode() for later in listed[index:]):
            broken = ChainBreak(index, f"seq {broken.seq} is out of order (found after "
                                "entries that follow it)", "order", broken.seq)
        if broken is not None:
            return done(broken)
        key_id = fields.get(F_KEY)
        if key_id is None:
            all_keyed = False
        else:
            seen_keyed = True
            key_ids.add(key_id.decode(errors="replace"))
        link = entry_link(fields, scope, keyring)
        assert link is not None  # _entry_break checked the key id
        expected = link
    if last_hash is not None and last_hash != expected:
        last = first_seq + count - 1
        return done(ChainBreak(count, "the newest entry does not match the recorded head "
                               "(it was changed, or the key is wrong)", "head", last))
    return done(None)


def _entry_break(index: int, want: int, fields: Mapping[bytes, bytes], expected: str, *,
                 keyring: AuditKeyring | None, keyed_only: bool) -> ChainBreak | None:
    """Why entry ``index`` (which should be seq ``want`` and link to ``expected``) does
    not hold; None when it does."""
    try:
        seq = int(fields.get(F_SEQ, b"-1"))
    except ValueError:
        seq = -1
    if seq > want:
        gap = f"seq {want}" if seq == want + 1 else f"seq {want} to {seq - 1}"
        return ChainBreak(index, f"{gap} missing (the entry after is seq {seq})",
                          "missing", want)
    if seq != want:
        return ChainBreak(index, f"seq {seq} where seq {want} belongs (entries out of "
                          "order or repeated)", "order", want)
    raw_key = fields.get(F_KEY)
    if raw_key is None:
        if keyed_only:
            return ChainBreak(index, "chained without a key after keyed entries (forged "
                              "with the unkeyed formula)", "unkeyed", seq)
    elif keyring is None or raw_key.decode(errors="replace") not in keyring.keys:
        known = ", ".join(sorted(keyring.keys)) if keyring else "none"
        return ChainBreak(index, f"chained under key id {raw_key.decode(errors='replace')!r}"
                          f", which the keyring does not hold (it holds: {known})",
                          "unknown-key", seq)
    if fields.get(F_PREV, b"").decode(errors="replace") != expected:
        return ChainBreak(index, f"seq {max(seq - 1, 0)} does not match the link seq {seq} "
                          "stores (an entry was changed, or the key is wrong)", "changed",
                          max(seq - 1, 0))
    return None


def verify_chain(
    entries: Iterable[Mapping[bytes, bytes]],
    last_hash: str | None = None,
    *,
    scope: str = "",
    keyring: AuditKeyring | None = None,
) -> ChainBreak | None:
    """The first break of :func:`check_chain`; None when the log is intact."""
    return check_chain(entries, last_hash, scope=scope, keyring=keyring).broken
