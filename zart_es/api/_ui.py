"""The web console: static pages under ``/ui/`` and the read routes only it needs (an
execution's timeline and chain check, queue slots, the operator audit stream).

The pages are plain HTML, CSS and JavaScript shipped in the wheel (``zart_es/api/ui``): no
build step, nothing from a CDN. They are public (they hold no data); every call they make
goes to the API with the bearer token the page asks for and keeps in ``sessionStorage``,
so the console sees and changes exactly what the token allows, through the same routes
(and Client calls) as every other caller.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import msgspec
from litestar import Request, Router, get
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, QueryParameter
from litestar.static_files import create_static_files_router

from zart_es.api._problems import errors
from zart_es.client import Client
from zart_es.ops import AuditEntry, QueueSlots, Timeline, audit_entries, build_timeline, queue_slots
from zart_es.store import redis_now_ms

UI_DIR = Path(__file__).parent / "ui"
"""The console's files (index.html, console.js, console.css)."""


class ChainCheck(msgspec.Struct, frozen=True):
    """Reply of ``GET /executions/{id}/verify``: the log's sequence numbers and chain, and
    (with an archive) the log against the sealed ledger."""

    id: str
    intact: bool
    events: int
    broken_at: int | None = None
    """Position of the first entry that does not link (None when intact)."""
    reason: str = ""
    keyed: bool = False
    """Chained with the audit key (else an unkeyed chain: accidents, not tampering)."""
    sealed: bool | None = None
    """With an archive: True when its sealed head was checked and held, False when it is
    not sealed yet or a finding stands; None without an archive."""
    findings: list[str] = []
    """``zart-es audit verify --execution ID``'s findings, one line each."""


class AuditFinding(msgspec.Struct, frozen=True):
    """One finding of ``GET /audit/verify``."""

    where: str
    kind: str
    detail: str
    execution_id: str
    seq: int
    line: str


class AuditReport(msgspec.Struct, frozen=True):
    """Reply of ``GET /audit/verify``: ``zart-es audit verify`` over the API."""

    ok: bool
    findings: list[AuditFinding]
    checkpoints: int
    executions: int
    files: int
    trail_entries: int
    keyed: bool
    notes: list[str]


def _client(request: Request[Any, Any, Any]) -> Client:
    client: Client = request.app.state.client
    return client


@get("/executions/{execution_id:str}/timeline", summary="The execution's timeline",
     **errors("not_found", "invalid_request"))
async def get_timeline(
    request: Request[Any, Any, Any], execution_id: FromPath[str]
) -> Timeline:
    """Each durable call's spans (attempts, backoffs, sleeps, waits, children) on Redis'
    clock, to scale; spans still going are open (``end_ms`` null) up to ``end_ms``, now."""
    client = _client(request)
    events = [e async for e in client.history(execution_id)]
    return build_timeline(events, await redis_now_ms(client.redis))


@get("/executions/{execution_id:str}/verify", summary="Check the log's hash chain",
     **errors("not_found", "invalid_request"))
async def verify_log(
    request: Request[Any, Any, Any], execution_id: FromPath[str]
) -> ChainCheck:
    """Sequence numbers and hash links of every event, as ``zart-es history --verify``."""
    client = _client(request)
    checked = await client.check_chain(execution_id)
    broken, count = checked.broken, checked.count
    sealed: bool | None = None
    findings: list[str] = []
    if client.archive.url is not None:
        report = await _audit(client, execution_id)
        sealed = report.ok and report.sealed_executions > 0
        findings = [f.line() for f in report.findings]
    if broken is None:
        return ChainCheck(execution_id, True, count, keyed=checked.keyed, sealed=sealed,
                          findings=findings)
    return ChainCheck(execution_id, False, count, broken.index, broken.reason,
                      keyed=checked.keyed, sealed=sealed, findings=findings)


async def _audit(client: Client, execution_id: str | None) -> Any:
    from zart_es.audit import verify  # the archive extra: loaded when an archive is set

    return await verify(client.deployment, client.archive.url, execution=execution_id)


@get("/audit/verify", summary="Verify Redis and the archive against the sealed ledger",
     **errors("invalid_request", "archive_unavailable"))
async def verify_audit(
    request: Request[Any, Any, Any],
    execution_id: Annotated[str | None, QueryParameter(min_length=1, max_length=255)] = None,
) -> AuditReport:
    """``zart-es audit verify [--execution ID]``: every finding names where, the execution
    and the sequence number. ``ok`` only when everything holds. Without ``execution_id``
    it reads every execution and archive file: for large deployments use the CLI."""
    client = _client(request)
    report = await _audit(client, execution_id)
    return AuditReport(
        report.ok, [AuditFinding(f.where, f.kind, f.detail, f.execution_id, f.seq, f.line())
                    for f in report.findings],
        report.checkpoints, report.executions, report.files, report.trail_entries,
        report.keyed, report.notes)


@get("/queues", summary="Queue slots and waiting lines", **errors("invalid_request"))
async def list_queues(
    request: Request[Any, Any, Any],
    limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
) -> list[QueueSlots]:
    """Each queue key with executions: who holds a slot (since when), who waits (in line
    order, with priority and arrival). At most ``limit`` ids per list."""
    client = _client(request)
    return await queue_slots(client.redis, client.keys, limit=limit)


@get("/audit", summary="The operator audit stream, newest first",
     **errors("invalid_request"))
async def list_audit(
    request: Request[Any, Any, Any],
    limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    before: Annotated[str | None, QueryParameter(pattern=r"^\d{1,19}-\d{1,19}$")] = None,
) -> list[AuditEntry]:
    """Pauses, resumes, schedule changes, repairs, quarantines: who, what, when.
    ``before`` (an entry id) pages to older entries."""
    client = _client(request)
    return await audit_entries(client.redis, client.keys, limit=limit, before=before)


ROUTES: list[HTTPRouteHandler | Router] = [
    get_timeline, verify_log, verify_audit, list_queues, list_audit,
    create_static_files_router("/ui", directories=[UI_DIR], html_mode=True,
                               opt={"public": True}, name="console"),
]
