"""The archiver: moves ended executions whose retention passed from Redis to the archive.

It runs inside every worker (one archiver works a partition at a time, by a lease that a
killed worker loses when it expires) and on its own (``zart-es archiver``). Per batch:

1. record the plan (batch name, day, each execution's id and version) in Redis;
2. write the batch's events, then its executions row set, as new objects (a retry of the
   same plan finds them and writes nothing: object names come from the plan);
3. remove each execution from Redis with ``purge.lua``, which re-checks it is still
   ended at the archived version (a repair that reopened it meanwhile keeps it live);
4. clear the plan.

A crash between any two steps resumes the recorded plan: nothing is lost (Redis is
cleared only after the archive holds the batch) and nothing is archived twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections import defaultdict
from typing import TYPE_CHECKING

import msgspec
import structlog

from zart_es.archive import ExecutionRecord, day_of, resolve_archive_url
from zart_es.core import (
    UNREADABLE,
    AnyEvent,
    ArchiveError,
    ConfigError,
    CorruptLog,
    Duration,
    deployment_retention,
    end_failure,
    to_ms,
)
from zart_es.engine._aio import tick_forever
from zart_es.engine._logs import Complaints
from zart_es.store import (
    ArchiveQueue,
    AuditArchiveQueue,
    Deployment,
    NoPermissionError,
    redis_now_ms,
    to_event,
)

if TYPE_CHECKING:
    from zart_es.archive import Archive
    from zart_es.audit import Sealer

log = structlog.get_logger("zart_es.archiver")

BATCH = 500
"""Executions moved per batch (per partition and day)."""
LEASE_MS = 30_000
"""How long a partition stays with an archiver that stopped renewing (killed)."""
BATCH_WAIT_MS = 300_000
"""How long workers and ``zart-es archiver`` let due executions wait for a full batch
(unless the retention is 0): a partition writes a few files a day, not one per execution."""


class Plan(msgspec.Struct, frozen=True):
    """The batch an archiver is moving, recorded in Redis before anything is written."""

    batch: str
    day: str
    members: list[tuple[str, int]]
    """Each execution's id and the version (event count) archived."""


_plans = msgspec.msgpack.Encoder()
_plan_decoder = msgspec.msgpack.Decoder(Plan)


class Archiver:
    """Archives a deployment's ended executions once their retention has passed.

    ``retention_ms`` is the deployment default (None: keep for ever); ``retentions`` the
    retentions the code declares per workflow, which win over it (and over what other
    workers recorded in Redis for workflows this process does not import).
    """

    def __init__(self, deployment: Deployment, archive: Archive, *,
                 retention_ms: int | None, retentions: dict[str, int | None] | None = None,
                 owner: str, poll_interval: float = 1.0, batch: int = BATCH,
                 lease_ms: int = LEASE_MS, batch_wait_ms: int = 0,
                 seal_every_ms: int | None = None) -> None:
        self.deployment = deployment
        self.archive = archive
        self.queue = ArchiveQueue(deployment.redis, deployment.keys)
        self.audit = AuditArchiveQueue(deployment.redis, deployment.keys)
        self.retention_ms = retention_ms
        self._code = dict(retentions or {})
        self._recorded: dict[str, int | None] = {}
        self.owner = owner
        self._poll = poll_interval
        self._batch = batch
        self._lease_ms = lease_ms
        self._batch_wait_ms = batch_wait_ms
        self._wake = asyncio.Event()
        self.archived = 0
        """Executions this archiver removed from Redis after archiving them."""
        self.seal_every_ms = seal_every_ms
        """How often the ledger is sealed (``zart-es audit seal``); None: never."""
        self._sealer: Sealer | None = None
        self._complaints = Complaints(log)
        self._sealed_at = 0.0

    async def run(self) -> None:
        """Archive forever (until cancelled); Redis and archive errors are retried.

        With ``retention_ms`` None the operator audit stream is not archived either."""
        try:
            await self.queue.announce_retention(self._code)
            await tick_forever(self.tick, self._wake, self._poll, log, "archiving")
        finally:  # cancelled (the worker stops): a batch cut short resumes from its plan
            await self.aclose()

    async def aclose(self) -> None:
        """Close the scripts' connections."""
        await self.queue.aclose()

    def _retention_of(self, workflow: str) -> int | None:
        if workflow in self._code:
            return self._code[workflow]
        return self._recorded.get(workflow, self.retention_ms)

    async def tick(self) -> float:
        """One pass over the partitions this archiver holds; seconds until the next."""
        self._recorded = await self.queue.retentions()
        busy = await self._archive_audit()
        await self._seal_if_due()
        for p in range(self.deployment.keys.partitions):
            if not await self.queue.lease(p, self.owner, self._lease_ms):
                continue
            try:
                busy = await self.archive_partition(p) or busy
            except (ArchiveError, OSError) as exc:  # an outage: Redis keeps it all meanwhile
                log.warning("archiving failed; retrying", partition=p, error=str(exc))
            except UNREADABLE as exc:  # a record no check foresaw (or a bug: hence the
                # traceback): the other partitions go on
                self._complaints.once("archiving a partition failed on a record it cannot "
                                      "read", f"partition {p}", exc, exc_info=exc)
        return 0.0 if busy else self._poll

    async def _archive_audit(self) -> bool:
        """Archive the operator audit stream's new entries (one day per batch), holding
        the lease of partition 0 for it; True if a full batch was moved."""
        if self.retention_ms is None or not await self.queue.lease(0, self.owner,
                                                                   self._lease_ms):
            return False
        entries = await self.audit.pending(self._batch)
        if not entries:
            return False
        day = day_of(int(entries[0][0].split(b"-")[0]))
        batch = [e for e in entries if day_of(int(e[0].split(b"-")[0])) == day]
        # named by its first entry: a retry after a crash (before the cursor moved) finds
        # the batch stored and continues after what it holds
        last = await self.archive.write_audit(day, batch[0][0].decode(), batch)
        now = await redis_now_ms(self.deployment.redis)
        await self.audit.archived(last, now - self.retention_ms)
        return len(entries) >= self._batch

    async def _seal_if_due(self) -> None:
        """Seal the ledger every ``seal_every_ms``, holding the lease of partition 0 (so
        one archiver of the deployment seals; a second one racing loses the put)."""
        if self.seal_every_ms is None:
            return
        now = time.monotonic()
        if now - self._sealed_at < self.seal_every_ms / 1000:
            return
        if not await self.queue.lease(0, self.owner, self._lease_ms):
            return
        self._sealed_at = now
        if self._sealer is None:
            from zart_es.audit import Sealer, SigningKey  # the archive extra, as Archive

            path = os.environ.get("ZART_AUDIT_SIGNING_KEY_FILE")
            self._sealer = Sealer(self.deployment, self.archive.objects,
                                  signing_key=SigningKey.from_file(path) if path else None)
        try:
            sealed = await self._sealer.seal()
        except ConfigError as exc:  # a signed ledger and no signing key here: for good
            self.seal_every_ms = None
            log.warning("this archiver does not seal", error=str(exc))
            return
        except (ArchiveError, OSError) as exc:  # an outage, or a ledger to look at
            log.warning("sealing failed; retrying at the next interval", error=str(exc))
            return
        except UNREADABLE as exc:  # a record no check foresaw: archiving goes on
            self._complaints.once("sealing failed on a record it cannot read", "seal", exc,
                                  exc_info=exc)
            return
        if sealed.written:
            log.info("ledger sealed", checkpoint=sealed.seq, heads=sealed.heads,
                     files=sealed.files)

    async def archive_partition(self, partition: int) -> bool:
        """Finish an interrupted batch, file new ends, move one due batch; True if a full
        batch was moved (more may be due)."""
        queue = self.queue
        pending = await queue.plan(partition)
        if pending is not None:
            try:
                plan = _plan_decoder.decode(pending)
            except msgspec.DecodeError as exc:  # no plan an archiver wrote: nothing to resume
                log.error("archive plan cannot be read; dropped", partition=partition,  # noqa: TRY400
                          error=str(exc), plan=pending[:200].decode("utf-8", "backslashreplace"))
                await queue.clear_plan(partition, pending)
            else:
                await self._move(partition, pending, plan, {})
        while await queue.file_ended(partition, self._retention_of) >= 1000:
            pass
        now = await redis_now_ms(self.deployment.redis)
        ids = await queue.due(partition, now, self._batch)
        if not ids:
            return False
        if len(ids) < self._batch and self._batch_wait_ms:
            oldest = await queue.earliest(partition)  # a partial batch waits to fill up
            if oldest is not None and now - oldest < self._batch_wait_ms:
                return False
        records: dict[str, ExecutionRecord] = {}
        by_day: dict[str, list[tuple[str, int]]] = defaultdict(list)
        stale: list[tuple[str, int]] = []
        for execution_id, (meta, entries) in zip(ids, await queue.snapshots(ids), strict=True):
            if b"end" not in meta or b"v" not in meta:
                stale.append((execution_id, -1))  # gone or reopened: drop it from the due set
                continue
            try:
                record = ExecutionRecord(execution_id, meta, entries)
                day, version = day_of(record.ended_ms), record.version
            except UNREADABLE as exc:  # a meta hash zart-es did not write: left for an operator
                self._complaints.once("execution cannot be archived",
                                      self.deployment.keys.meta(execution_id), exc)
                continue
            records[execution_id] = record
            by_day[day].append((execution_id, version))
        if stale:
            await queue.purge(partition, stale)
        if not by_day:
            return bool(stale)
        day = min(by_day)
        members = by_day[day]
        plan = Plan(_batch_name(partition, members, now), day, members)
        encoded = _plans.encode(plan)
        await queue.save_plan(partition, encoded)
        await self._move(partition, encoded, plan, records)
        return len(ids) >= self._batch

    async def _move(self, partition: int, encoded: bytes, plan: Plan,
                    records: dict[str, ExecutionRecord]) -> None:
        missing = [execution_id for execution_id, _ in plan.members
                   if execution_id not in records]
        if missing:
            for execution_id, (meta, entries) in zip(
                    missing, await self.queue.snapshots(missing), strict=True):
                records[execution_id] = ExecutionRecord(execution_id, meta, entries)
        # only what is still ended at the planned version goes in (a repair may have
        # reopened one since the plan: it stays live and is archived when it ends again)
        kept = [records[execution_id] for execution_id, version in plan.members
                if records[execution_id].meta.get(b"end") is not None
                and records[execution_id].meta.get(b"v") == str(version).encode()]
        if kept:
            now = await redis_now_ms(self.deployment.redis)
            await self.archive.write_batch(partition, plan.day, plan.batch, kept,
                                           errors=[_error_of(r) for r in kept],
                                           archived_ms=now)
        replies = await self.queue.purge(partition, plan.members)
        await self.queue.clear_plan(partition, encoded)
        moved = sum(reply == "ok" for reply in replies.values())
        self.archived += moved
        if moved:  # what left Redis, in the operator trail (verify finds it archived)
            await self.deployment.trail.record(
                "archive.purge", by=self.owner, partition=str(partition), batch=plan.batch,
                day=plan.day, executions=str(moved))
        log.info("archived", partition=partition, batch=plan.batch, executions=moved,
                 archive=self.archive.url)


def _batch_name(partition: int, members: list[tuple[str, int]], now_ms: int) -> str:
    """Deterministic for one plan (it is recorded before the objects are written)."""
    digest = hashlib.sha1(repr(members).encode(), usedforsecurity=False).hexdigest()[:12]
    return f"{now_ms:013d}-{partition:04d}-{digest}"


def _error_of(record: ExecutionRecord) -> str | None:
    """The error summary of an ended execution (the executions table's ``error``)."""
    if not record.entries:
        return None
    entry_id, fields = record.entries[-1]
    try:
        last: AnyEvent = to_event(entry_id, fields, record.execution_id)
    except CorruptLog as exc:
        return str(exc)
    failure = end_failure(last)
    return None if failure is None else f"{failure.error_type}: {failure.message}"



async def archiver_for(deployment: Deployment, retentions: dict[str, int | None],
                       archive_url: str | None, retention: Duration | None, owner: str, *,
                       poll_interval: float = 1.0, lease_ms: int = LEASE_MS,
                       seal_every: Duration | None = None) -> Archiver | None:
    """The archiver a worker runs: None without an archive (``archive_url`` or
    ``$ZART_ARCHIVE_URL``), for then nothing may leave Redis. ``retention`` is the
    deployment default (``--retention``, else ``$ZART_RETENTION``, else 7 days).

    Either way the retentions the worker's code declares are recorded in Redis first, so
    an archiver that does not import that code (``zart-es archiver``) honours them: a
    ``retention="none"`` is never archived by the deployment default."""
    try:
        await ArchiveQueue(deployment.redis, deployment.keys).announce_retention(
            retentions, deployment.trail, by=owner)
    except NoPermissionError as exc:  # an ACL without the key: archiving needs it anyway
        log.warning("cannot record the workflows' retentions; an archiver elsewhere "
                    "applies its default to them", key=deployment.keys.retention(),
                    error=str(exc))
    url = resolve_archive_url(archive_url)
    if url is None:
        log.info("no archive configured: ended executions stay in Redis "
                 "(set --archive-url or ZART_ARCHIVE_URL to apply retention)")
        return None
    from zart_es.archive import Archive

    default = deployment_retention(retention)
    return Archiver(deployment, Archive(url), retention_ms=default, retentions=retentions,
                    owner=owner, poll_interval=poll_interval, lease_ms=lease_ms,
                    batch_wait_ms=0 if default == 0 else BATCH_WAIT_MS,
                    seal_every_ms=seal_interval(seal_every))


DEFAULT_SEAL_EVERY = "5m"


def seal_interval(every: Duration | None = None) -> int | None:
    """How often an archiver seals the ledger, in ms: ``every``, else
    ``$ZART_SEAL_INTERVAL``, else 5 minutes; ``none`` (or 0): never."""
    text = every if every is not None else os.environ.get("ZART_SEAL_INTERVAL",
                                                           DEFAULT_SEAL_EVERY)
    if isinstance(text, str) and text.strip().lower() in ("none", "off", "0"):
        return None
    ms = to_ms(text)
    return ms or None
