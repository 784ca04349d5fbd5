"""``zart-es audit seal``: write a checkpoint of every execution's chain head to the ledger.

Reads every execution's ``v``/``h`` from Redis (running and ended alike: each partition's
``ix:all`` index, HMGET in pipelines), the operator trail's head, and the archive's file
list; writes what changed since the last checkpoint as the next one, chained to it,
authenticated with the audit key and, with a signing key, signed. A crash leaves the
ledger as it was (one conditional put per checkpoint) and the next seal continues it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import msgspec

from zart_es.archive import (
    Checkpoint,
    Head,
    Ledger,
    ObjectStore,
    Seal,
    StoredCheckpoint,
    digest,
    encode_checkpoint,
    folder_of,
    is_compacted,
    seq_of,
)
from zart_es.audit._checkpoints import problems
from zart_es.audit._signing import SigningKey
from zart_es.core import ArchiveError, AuditKeyring, ConfigError
from zart_es.store import Deployment, RedisClient

PIPELINE = 2000
"""HMGETs per round trip while reading heads."""
RACES = 5
"""Times a seal reads the ledger again after another sealer took its number."""

Progress = Callable[[int, int], None]


class SealedState(msgspec.Struct):
    """The ledger folded: what the newest checkpoint says is sealed."""

    seq: int = -1
    digest: str = ""
    at_ms: int = 0
    heads: dict[str, tuple[int, str]] = {}
    files: dict[str, str] = {}
    trail: tuple[int, str] = (0, "")

    def add(self, stored: StoredCheckpoint) -> None:
        """Fold one more checkpoint in (the caller checks it first, if it must)."""
        checkpoint = stored.checkpoint
        if checkpoint is None:
            raise ArchiveError(f"ledger checkpoint {stored.path!r} does not decode")
        for head in checkpoint.heads:
            self.heads[head.execution_id] = (head.version, head.head)
        for path in checkpoint.gone:
            self.files.pop(path, None)
        self.files.update(checkpoint.files)
        self.trail = checkpoint.trail
        self.seq, self.digest, self.at_ms = checkpoint.seq, digest(stored.body), checkpoint.at_ms


class SealResult(msgspec.Struct, frozen=True):
    """What one seal wrote (``written`` False: nothing had changed, no checkpoint)."""

    seq: int
    heads: int
    files: int
    written: bool
    executions: int
    """Executions in Redis when sealed."""


class Sealer:
    """Seals one deployment into one archive; keeps the folded ledger between seals."""

    def __init__(self, deployment: Deployment, archive: str | ObjectStore, *,
                 signing_key: SigningKey | None = None) -> None:
        self.deployment = deployment
        self.ledger = Ledger(archive if isinstance(archive, ObjectStore) else ObjectStore(archive))
        self.signing_key = signing_key
        self.state = SealedState()
        self.signed = False
        """Whether the newest checkpoint is signed (then so must the next one be)."""

    async def refresh(self) -> SealedState:
        """Fold the checkpoints written since the last look (by any sealer), each one
        authenticated first: a sealer never extends a ledger it cannot trust."""
        async for stored in self.ledger.all(after=self.state.seq):
            seq = seq_of(stored.path)
            found = ([("missing", f"checkpoint {self.state.seq + 1} is missing")]
                     if seq != self.state.seq + 1 else
                     problems(stored, seq, self.state.digest, self.deployment.audit_keys))
            if found:
                raise ArchiveError(f"the ledger's checkpoint {seq} cannot be trusted "
                                   f"({found[0][1]}); not extending it: run `zart-es audit "
                                   "verify`")
            self.state.add(stored)
            self.signed = bool(stored.seal is not None and stored.seal.signature)
        return self.state

    async def seal(self, progress: Progress | None = None, *, force: bool = False) -> SealResult:
        """Write the next checkpoint (none when nothing changed, unless ``force``)."""
        for _ in range(RACES):
            state = await self.refresh()
            if self.signed and self.signing_key is None:
                raise ConfigError(f"the ledger is signed (checkpoint {state.seq}); this "
                                  "sealer has no signing key, so it leaves sealing to one "
                                  "that has (--signing-key / ZART_AUDIT_SIGNING_KEY_FILE)")
            heads, count = await _changed_heads(self.deployment, state.heads, progress)
            trail = await self.deployment.trail.head()
            files, gone = await self._files(state.files)
            if not (heads or files or gone or trail != state.trail or force
                    or state.seq < 0):
                return SealResult(state.seq, 0, 0, written=False, executions=count)
            checkpoint = Checkpoint(
                seq=state.seq + 1, at_ms=int(time.time() * 1000), prev=state.digest,
                heads=heads, trail=trail, files=files, gone=gone,
                keys=_check_values(self.deployment.audit_keys),
                prefix=self.deployment.keys.prefix)
            if await self.ledger.write(checkpoint, self._seal(encode_checkpoint(checkpoint))):
                return SealResult(checkpoint.seq, len(heads), len(files), written=True,
                                  executions=count)
        raise ArchiveError(f"another sealer kept taking the next checkpoint number "
                           f"({RACES} tries)")

    def _seal(self, body: bytes) -> Seal:
        value = digest(body)
        keys = self.deployment.audit_keys
        return Seal(
            digest=value,
            key_id=keys.current if keys else "",
            mac=keys.sign(value.encode()) if keys else "",
            signature=self.signing_key.sign(value) if self.signing_key else "",
            public_key=self.signing_key.public_hex if self.signing_key else "")

    async def _files(self, sealed: dict[str, str]) -> tuple[dict[str, str], list[str]]:
        """Archive files new since the last checkpoint (with digests: each file is read
        once, when first sealed), and files compaction merged away since."""
        present = await self.ledger.data_files()
        listed = set(present)
        new: dict[str, str] = {}
        for path in present:
            if path not in sealed:
                value = await self.ledger.file_digest(path)
                if value is not None:
                    new[path] = value
        compacted = {folder_of(p) for p in present if is_compacted(p)}
        # a recorded file that vanished without a compacted file beside it stays recorded:
        # verify reports it missing
        gone = sorted(p for p in sealed if p not in listed and folder_of(p) in compacted)
        return new, gone


def _check_values(keys: AuditKeyring | None) -> dict[str, str]:
    return {} if keys is None else {key_id: keys.check_value(key_id) for key_id in keys.keys}


async def _changed_heads(deployment: Deployment, sealed: dict[str, tuple[int, str]],
                         progress: Progress | None) -> tuple[list[Head], int]:
    """Executions in Redis whose head differs from the sealed one, and how many exist."""
    ids = await execution_ids(deployment.redis, deployment)
    changed: list[Head] = []
    for first in range(0, len(ids), PIPELINE):
        chunk = ids[first:first + PIPELINE]
        pipe = deployment.redis.pipeline(transaction=False)
        for execution_id in chunk:
            pipe.hmget(deployment.keys.meta(execution_id), ["v", "h"])
        replies: list[list[bytes | None]] = await pipe.execute()
        for execution_id, (version, head) in zip(chunk, replies, strict=True):
            if version is None:
                continue  # archived and purged since the index was read
            if not version.isdigit():
                # a meta hash no append wrote: no head to seal (verify reports its log)
                continue
            now = (int(version), (head or b"").decode())
            if sealed.get(execution_id) != now:
                changed.append(Head(execution_id, *now))
        if progress is not None:
            progress(min(first + PIPELINE, len(ids)), len(ids))
    return changed, len(ids)


async def execution_ids(redis: RedisClient, deployment: Deployment) -> list[str]:
    """Every execution id in Redis: each partition's ``ix:all`` index, and every meta hash
    (SCAN), so an id taken out of the index by hand is still found."""
    keys = deployment.keys
    pipe = redis.pipeline(transaction=False)
    for partition in range(keys.partitions):
        pipe.zrange(keys.index(partition, None), 0, -1)
    found: list[list[bytes]] = await pipe.execute()
    ids = {member.decode() for members in found for member in members}
    async for key in redis.scan_iter(match=keys.meta_pattern(), count=1000):
        ids.add(key.decode().split(":m:", 1)[1])
    return sorted(ids)


async def seal(deployment: Deployment, archive: str | ObjectStore, *,
               signing_key: SigningKey | None = None, progress: Progress | None = None,
               force: bool = False) -> SealResult:
    """One seal of ``deployment`` into ``archive`` (see :class:`Sealer`)."""
    return await Sealer(deployment, archive, signing_key=signing_key).seal(progress,
                                                                          force=force)
