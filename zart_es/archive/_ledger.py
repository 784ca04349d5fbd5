"""The sealed ledger: checkpoints of every execution's chain head, kept in the archive.

One object per checkpoint, ``ledger/<seq, 12 digits>.json``, written once (a conditional
put: two sealers racing for the same number cannot both win, and a crash leaves either
the whole object or none). Its first line is the checkpoint (JSON); its second line the
seal: the checkpoint's SHA-256 digest, an HMAC of that digest under the audit key, and
optionally an Ed25519 signature. Each checkpoint names the digest of the one before it
(``prev``), so the ledger is an append-only chain like a transparency log: removing or
changing a checkpoint breaks the next one's link.

A checkpoint lists only what changed since the one before it (executions whose head
moved, archive files written or compacted away); folding the ledger from the first
checkpoint gives the sealed state.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import msgspec

from zart_es.archive._objects import ObjectStore
from zart_es.core import ArchiveError

FOLDER = "ledger"
DATA_FOLDERS = ("events", "executions", "audit")
"""The archive folders whose files the ledger records digests of."""


class Head(msgspec.Struct, array_like=True, frozen=True):
    """One execution's chain head when sealed: its events so far and the newest value."""

    execution_id: str
    version: int
    head: str


class Checkpoint(msgspec.Struct, frozen=True, kw_only=True):
    """What one seal recorded (what changed since the checkpoint before)."""

    seq: int
    at_ms: int
    prev: str
    """Digest of the previous checkpoint ("" for the first)."""
    heads: list[Head] = []
    trail: tuple[int, str] = (0, "")
    """The operator trail's head: entries so far, newest chain value."""
    files: dict[str, str] = {}
    """Archive files written since: path -> SHA-256 (hex)."""
    gone: list[str] = []
    """Archive files recorded before and merged away by compaction since."""
    keys: dict[str, str] = {}
    """Audit key id -> its check value (:meth:`AuditKeyring.check_value`)."""
    prefix: str = ""
    """The deployment's key prefix."""


class Seal(msgspec.Struct, frozen=True, kw_only=True):
    """How a checkpoint is authenticated."""

    digest: str
    key_id: str = ""
    mac: str = ""
    """HMAC-SHA256 of the digest under ``key_id`` ("": no audit key)."""
    signature: str = ""
    """Ed25519 signature of the digest (hex; "": not signed)."""
    public_key: str = ""
    """The signer's public key (raw, hex), to tell which key signed; a verifier trusts
    the public key it was given, not this one."""


class StoredCheckpoint(msgspec.Struct, frozen=True):
    """A checkpoint as read back: its exact bytes, decoded, and its seal."""

    path: str
    body: bytes
    checkpoint: Checkpoint | None
    """None when the body is not a checkpoint."""
    seal: Seal | None


def digest(body: bytes) -> str:
    """SHA-256 of a checkpoint's body (hex)."""
    return hashlib.sha256(body).hexdigest()


def checkpoint_path(seq: int) -> str:
    return f"{FOLDER}/{seq:012d}.json"


def encode_checkpoint(checkpoint: Checkpoint) -> bytes:
    """A checkpoint's body: the bytes its digest covers."""
    return msgspec.json.encode(checkpoint)


class Ledger:
    """The ledger of one archive."""

    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects

    async def paths(self) -> list[str]:
        """Every checkpoint object, oldest first."""
        return [p for p in await self.objects.list(FOLDER) if p.endswith(".json")]

    async def read(self, path: str) -> StoredCheckpoint:
        """One checkpoint; a body or seal that does not decode reads as None."""
        data = await self.objects.get(path)
        body, _, rest = data.partition(b"\n")
        try:
            checkpoint: Checkpoint | None = msgspec.json.decode(body, type=Checkpoint)
        except msgspec.DecodeError:
            checkpoint = None
        try:
            seal: Seal | None = msgspec.json.decode(rest.strip(), type=Seal)
        except msgspec.DecodeError:
            seal = None
        return StoredCheckpoint(path, body, checkpoint, seal)

    async def all(self, after: int = -1) -> AsyncIterator[StoredCheckpoint]:
        """The checkpoints numbered above ``after``, oldest first."""
        for path in await self.paths():
            if seq_of(path) > after:
                yield await self.read(path)

    async def write(self, checkpoint: Checkpoint, seal: Seal) -> bool:
        """Store a checkpoint; False when that number is taken (another sealer won)."""
        data = encode_checkpoint(checkpoint) + b"\n" + msgspec.json.encode(seal) + b"\n"
        path = checkpoint_path(checkpoint.seq)
        written = await self.objects.put_new(path, data)
        if written:
            self.objects.make_durable(path)
        return written

    async def data_files(self) -> list[str]:
        """The archive's data files (the ones checkpoints record digests of)."""
        found: list[str] = []
        for folder in DATA_FOLDERS:
            found += [p for p in await self.objects.list(folder) if p.endswith(".parquet")]
        return found

    async def file_digest(self, path: str) -> str | None:
        """SHA-256 of one archive file; None when it is gone."""
        data = await self.objects.get_if_exists(path)
        return None if data is None else hashlib.sha256(data).hexdigest()


def seq_of(path: str) -> int:
    """The number of the checkpoint at ``path``."""
    try:
        return int(path.rsplit("/", 1)[-1].removesuffix(".json"))
    except ValueError:
        raise ArchiveError(f"{path!r} in the archive's ledger is not a checkpoint") from None
