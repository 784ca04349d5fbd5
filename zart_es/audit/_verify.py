"""``zart-es audit verify``: check Redis and the archive together against the sealed ledger.

In order: the ledger itself (numbers without gaps, each checkpoint's digest, link, HMAC
under the audit key and, given a public key, Ed25519 signature); every execution's chain
(in Redis, else in the archive), that every sealed execution still exists and that its
log extends the sealed head; every sealed archive file's digest; the operator trail
(archived part and live part) and that it extends its sealed head. Each finding names
where, the execution id and the sequence number, and what differs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from zart_es.archive import Archive, Ledger, StoredCheckpoint, checkpoint_path, digest, seq_of
from zart_es.audit._checkpoints import problems
from zart_es.audit._seal import SealedState, execution_ids
from zart_es.audit._signing import PublicKey
from zart_es.core import ArchiveError, AuditKeyring, ChainBreak, ChainCheck, check_chain
from zart_es.store import TRAIL_SCOPE, Deployment, trail_entry_fields

Progress = Callable[[int, int], None]


class Finding(msgspec.Struct, frozen=True):
    """One thing that does not hold."""

    where: str
    """``ledger``, ``execution``, ``file`` or ``trail``."""
    kind: str
    """``missing``, ``cut``, ``changed``, ``order``, ``unkeyed``, ``unknown-key``,
    ``wrong-key``, ``head``, ``signature``, ``unsealed``."""
    detail: str
    execution_id: str = ""
    seq: int = -1
    """The event's (or checkpoint's, trail entry's) sequence number; -1: none."""

    def line(self) -> str:
        """The finding as one line of text."""
        what = {"ledger": f"checkpoint {self.seq}", "file": "archive file",
                "trail": f"operator trail seq {self.seq}"}.get(
                    self.where, f"execution {self.execution_id!r} seq {self.seq}")
        if self.where == "file":
            what = f"archive file {self.execution_id!r}"
        return f"{self.kind}: {what}: {self.detail}"


class Report(msgspec.Struct):
    """The outcome of one verification."""

    findings: list[Finding]
    checkpoints: int = 0
    executions: int = 0
    sealed_executions: int = 0
    """Of those, how many had a sealed head to compare with."""
    files: int = 0
    trail_entries: int = 0
    keyed: bool = False
    """Whether an audit key was given (without one, chains detect accidents only)."""
    signed: bool = False
    """Whether checkpoint signatures were checked (a public key was given)."""
    notes: list[str] = []

    @property
    def ok(self) -> bool:
        return not self.findings


class Verifier:
    """Verifies one deployment's Redis and archive against the archive's ledger."""

    def __init__(self, deployment: Deployment, archive_url: str | None, *,
                 public_key: PublicKey | None = None, allow_unkeyed: bool = False) -> None:
        self.deployment = deployment
        self.keys: AuditKeyring | None = deployment.audit_keys
        self.archive = Archive(archive_url) if archive_url else None
        self.public_key = public_key
        self.allow_unkeyed = allow_unkeyed
        self.findings: list[Finding] = []
        self.notes: list[str] = []

    async def run(self, *, execution: str | None = None, since_ms: int = 0,
                  progress: Progress | None = None) -> Report:
        report = Report(self.findings, keyed=self.keys is not None,
                        signed=self.public_key is not None, notes=self.notes)
        state = SealedState()
        if self.archive is None:
            report.notes.append("no archive: nothing is sealed, only the chains in Redis "
                                "are checked (a cut tail or a deleted execution goes unseen)")
        else:
            state, seals = await self._ledger()
            report.checkpoints = state.seq + 1
            if report.checkpoints == 0:
                report.notes.append("the ledger is empty: run `zart-es audit seal`")
            if seals is not None:
                report.notes.append(seals)
        if self.keys is None:
            report.notes.append("no audit key: the chains are unkeyed SHA-1, which detects "
                                "accidents, not tampering (set ZART_AUDIT_KEY)")
        ids = await self._ids(state, execution, since_ms)
        for done, execution_id in enumerate(ids, 1):
            await self._execution(execution_id, state.heads.get(execution_id))
            if progress is not None:
                progress(done, len(ids))
        report.executions = len(ids)
        report.sealed_executions = sum(1 for i in ids if i in state.heads)
        if execution is None and self.archive is not None:
            report.files = await self._files(state.files)
        if execution is None:
            report.trail_entries = await self._trail(state.trail)
        return report

    # -- the ledger --------------------------------------------------------------------

    async def _ledger(self) -> tuple[SealedState, str | None]:
        assert self.archive is not None
        ledger = Ledger(self.archive.objects)
        state = SealedState()
        wrong_keys: set[str] = set()
        unsigned = 0
        expected = 0
        for path in await ledger.paths():
            try:
                seq = seq_of(path)
            except ArchiveError as exc:
                self._add("ledger", "changed", f"{exc} (a file was added to the ledger)")
                continue
            while expected < seq:
                self._add("ledger", "missing", f"{checkpoint_path(expected)} is not in the "
                          "archive (a checkpoint was deleted)", seq=expected)
                expected += 1
            stored = await ledger.read(path)
            if self._checkpoint(stored, seq, state, wrong_keys):
                state.add(stored)
            else:
                state.seq, state.digest = seq, digest(stored.body)
            if stored.seal is not None and not stored.seal.signature:
                unsigned += 1
            expected = seq + 1
        note = None
        if self.public_key is None and state.seq >= 0:
            note = ("signatures not checked (pass --public-key to check the checkpoints "
                    "without trusting the audit key)")
        elif unsigned:
            note = f"{unsigned} checkpoint(s) are not signed"
        return state, note

    def _checkpoint(self, stored: StoredCheckpoint, seq: int, state: SealedState,
                    wrong_keys: set[str]) -> bool:
        """Check one checkpoint against the one before; False when it cannot be trusted."""
        found = problems(stored, seq, state.digest, self.keys, self.public_key)
        for kind, detail in found:
            if kind == "wrong-key":  # said once, not for every checkpoint
                if detail in wrong_keys:
                    continue
                wrong_keys.add(detail)
            self._add("ledger", kind, detail, seq=seq)
        return not found

    # -- executions --------------------------------------------------------------------

    async def _ids(self, state: SealedState, execution: str | None, since_ms: int) -> list[str]:
        """Every execution to check: in Redis (by its meta hash: an index is easy to take
        an id out of), in the archive, or in the ledger. ``since_ms`` skips unsealed
        executions not updated since (by their ``u``, which a Redis writer can set, so
        it is a convenience, not a check); sealed ones are always compared."""
        if execution is not None:
            return [execution]
        found = set(await execution_ids(self.deployment.redis, self.deployment))
        if self.archive is not None:  # archived between two seals: their files are sealed
            found |= set((await self.archive.executions())["execution_id"].to_pylist())
        if since_ms:
            found = {i for i in found - set(state.heads)
                     if await self._touched_since(i, since_ms)}
        return sorted(found | set(state.heads))

    async def _touched_since(self, execution_id: str, since_ms: int) -> bool:
        updated = await self.deployment.store.tables.meta(execution_id).get("u")
        return updated is None or int(updated) >= since_ms  # gone: always checked

    async def _execution(self, execution_id: str, sealed: tuple[int, str] | None) -> None:
        redis, keys = self.deployment.redis, self.deployment.keys
        raw: list[Any] = await redis.xrange(keys.log(execution_id))
        head = await self.deployment.store.tables.meta(execution_id).get("h")
        where = "Redis"
        if not raw and self.archive is not None:
            try:
                found = await self.archive.find(execution_id, keys.partition_of(execution_id))
            except ArchiveError as exc:
                self._add("execution", "missing", f"listed in the archive but unreadable: "
                          f"{exc}", execution_id, 0 if sealed is None else sealed[0] - 1)
                return
            if found is not None:
                raw, head, where = found.entries, found.meta.get(b"h"), "the archive"
        if not raw:
            if sealed is not None:
                self._add("execution", "missing", f"sealed with {sealed[0]} events, now in "
                          "neither Redis nor the archive (deleted)", execution_id,
                          sealed[0] - 1)
            return
        fields = [f for _, f in raw]
        checked = check_chain(fields, head.decode() if head is not None else None,
                              scope=execution_id, keyring=self.keys,
                              require_keyed=self.keys is not None)
        if checked.broken is not None:
            self._break(execution_id, checked.broken, where)
            return
        if self.keys is not None and not checked.keyed and not self.allow_unkeyed:
            first = next(i for i, f in enumerate(fields) if b"k" not in f)
            self._add("execution", "unkeyed", f"chained without a key in {where} (written "
                      "before ZART_AUDIT_KEY was set, or forged; --allow-unkeyed accepts "
                      "the first)", execution_id, first)
        if sealed is not None:
            self._against_seal(execution_id, fields, checked, sealed, where)

    def _against_seal(self, execution_id: str, fields: list[dict[bytes, bytes]],
                      checked: ChainCheck, sealed: tuple[int, str], where: str) -> None:
        version, sealed_head = sealed
        if len(fields) < version:
            self._add("execution", "cut", f"the log in {where} ends at seq {len(fields) - 1}"
                      f"; it was sealed with {version} events (its tail was cut)",
                      execution_id, len(fields))
            return
        at = checked.head if len(fields) == version else fields[version].get(b"p", b"").decode()
        if at != sealed_head:
            self._add("execution", "changed", f"the log in {where} does not extend the "
                      "sealed head (it was rewritten since it was sealed)", execution_id,
                      version - 1)

    def _break(self, execution_id: str, broken: ChainBreak, where: str) -> None:
        self._add("execution", broken.kind, f"{broken.reason} (in {where})", execution_id,
                  broken.seq)

    # -- archive files and the trail ----------------------------------------------------

    async def _files(self, sealed: dict[str, str]) -> int:
        assert self.archive is not None
        ledger = Ledger(self.archive.objects)
        for path, value in sorted(sealed.items()):
            now = await ledger.file_digest(path)
            if now is None:
                self._add("file", "missing", "sealed, now gone from the archive (deleted)",
                          path)
            elif now != value:
                self._add("file", "changed", "its content does not match the digest sealed "
                          "for it (rewritten)", path)
        return len(sealed)

    async def _trail(self, sealed: tuple[int, str]) -> int:
        entries = await self._trail_entries()
        version, sealed_head = sealed
        head = (await self.deployment.trail.head())[1]
        first = next((i for i, f in enumerate(entries) if b"s" in f), len(entries))
        chained = entries[first:]  # entries before the first chained one predate the chain
        for index, fields in enumerate(chained):
            if b"s" not in fields:  # one added by hand after the chain began
                self._add("trail", "changed", f"an entry ({fields.get(b'what', b'').decode()!r}"
                          " by " f"{fields.get(b'by', b'').decode()!r}) without a chain "
                          "position, after chained ones (inserted)",
                          seq=int(chained[index - 1][b"s"]) + 1 if index else 0)
                return len(chained)
        start = int(chained[0][b"s"]) if chained else 0
        if start and self.archive is None:
            self.notes.append(f"the trail's first {start} entries are in the archive: pass "
                              "--archive-url to check them")
        checked = check_chain(
            (trail_entry_fields(f) for f in chained), head or None, scope=TRAIL_SCOPE,
            keyring=self.keys, require_keyed=self.keys is not None,
            first_seq=start if self.archive is None else 0,
            first_prev=chained[0].get(b"p", b"").decode() if start and self.archive is None
            else "")
        count = start + len(chained) if self.archive is None else len(chained)
        if checked.broken is not None:
            self._add("trail", checked.broken.kind, checked.broken.reason,
                      seq=checked.broken.seq)
        elif self.keys is not None and chained and not checked.keyed and not self.allow_unkeyed:
            at = next(int(f[b"s"]) for f in chained if b"k" not in f)
            self._add("trail", "unkeyed", "chained without a key (written before "
                      "ZART_AUDIT_KEY was set, or forged; --allow-unkeyed accepts the first)",
                      seq=at)
        elif count < version:
            self._add("trail", "cut", f"the trail ends at seq {count - 1}; it was sealed with "
                      f"{version} entries (truncated)", seq=count)
        elif version and version > start and (
                checked.head if count == version else
                chained[version - (count - len(chained))].get(b"p", b"").decode()
        ) != sealed_head:
            self._add("trail", "changed", "the trail does not extend its sealed head",
                      seq=version - 1)
        return len(chained)

    async def _trail_entries(self) -> list[dict[bytes, bytes]]:
        """The trail: what the archive holds, then what Redis holds after it."""
        rows: dict[str, dict[bytes, bytes]] = {}
        if self.archive is not None:
            table = await self.archive.audit()
            for row in table.to_pylist():
                detail = msgspec.json.decode(row["detail"] or "{}")
                fields = {b"what": (row["what"] or "").encode(),
                          b"by": (row["operator"] or "").encode()}
                fields.update((k.encode(), str(v).encode()) for k, v in detail.items())
                rows[row["entry_id"]] = fields
        live: list[Any] = await self.deployment.redis.xrange(self.deployment.keys.audit())
        for entry_id, fields in live:
            rows[entry_id.decode()] = dict(fields)
        return [rows[i] for i in sorted(rows, key=_entry_order)]

    def _add(self, where: str, kind: str, detail: str, execution_id: str = "",
             seq: int = -1) -> None:
        self.findings.append(Finding(where, kind, detail, execution_id, seq))


def _entry_order(entry_id: str) -> tuple[int, int]:
    ms, _, n = entry_id.partition("-")
    return int(ms), int(n or 0)


async def verify(deployment: Deployment, archive_url: str | None, *,
                 execution: str | None = None, since_ms: int = 0,
                 public_key: PublicKey | None = None, allow_unkeyed: bool = False,
                 progress: Progress | None = None) -> Report:
    """Verify ``deployment`` (see :class:`Verifier`)."""
    return await Verifier(deployment, archive_url, public_key=public_key,
                          allow_unkeyed=allow_unkeyed).run(
                              execution=execution, since_ms=since_ms, progress=progress)


def summary(report: Report) -> Iterable[str]:
    """The report's last lines: what was checked."""
    yield (f"checked {report.checkpoints} checkpoint(s), {report.executions} execution(s), "
           f"{report.files} archive file(s), {report.trail_entries} trail entries: "
           + ("everything holds" if report.ok else f"{len(report.findings)} finding(s)"))
    for note in report.notes:
        yield f"note: {note}"
