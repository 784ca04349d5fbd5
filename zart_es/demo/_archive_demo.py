"""Part 4 of ``zart-es demo``: an execution leaves Redis for the archive and reads the same.

Runs on the demo's own embedded Redis only (never on a ``$ZART_REDIS_URL`` deployment,
whose executions are not the demo's to archive). An archiver in this process gives
``transform-records`` a retention of 0, moves the ended execution to Parquet files under
``<data dir>/archive``, and a client with that archive reads it back and verifies it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zart_es.client import Client
from zart_es.core import ConfigError


async def archive_part(client: Client, say: Any, base: Path, stamp: str) -> bool:
    """Archive one execution and read it back; True when every check held."""
    say("\n4. retention and the archive")
    try:
        from zart_es.archive import Archive, query
        from zart_es.engine import Archiver
    except (ImportError, ConfigError) as exc:  # pragma: no cover -- the extra is optional
        say(f"  skipped: {exc}")
        return True
    from zart_es.audit import Sealer, verify

    root = base / "archive"
    eid = await client.start("transform-records", 4, execution_id=f"demo-archived-{stamp}")
    value = await client.result(eid, timeout=60)
    before = [event async for event in client.history(eid)]
    sealer = Sealer(client.deployment, str(root))
    sealed = await sealer.seal()  # its head, while it is in Redis
    archiver = Archiver(client.deployment, Archive(str(root)), retention_ms=None,
                        retentions={"transform-records": 0}, owner=f"demo-{stamp}")
    while await client.redis.exists(client.keys.meta(eid)):
        await archiver.tick()
    await archiver.aclose()
    say(f"  {eid} ended (retention 0): the archiver moved it to {root} "
        f"({archiver.archived} executions of transform-records); Redis no longer has it")
    async with Client(client.url, archive_url=str(root)) as reader:
        after = [event async for event in reader.history(eid)]
        chain = await reader.verify(eid)
        again = await reader.result(eid, timeout=1)
    say(f"  read back through Client(archive_url=...): result {again}, {len(after)} events "
        f"as before, hash chain {'intact' if chain is None else chain}")
    columns, rows = await query(Archive(str(root)), "SELECT event_type, count(*) AS n FROM "
                                f"events WHERE execution_id = '{eid}' GROUP BY ALL ORDER BY 1")
    say(f"  zart-es archive query over the archive: {dict(rows)}")
    files = await sealer.seal()  # the archive files it now lives in
    report = await verify(client.deployment, str(root), execution=eid)
    say(f"  zart-es audit seal: checkpoints {sealed.seq} and {files.seq} in {root / 'ledger'}; "
        f"audit verify --execution {eid}: "
        + ("everything holds" if report.ok else "; ".join(f.line() for f in report.findings)))
    return (after == before and chain is None and again == value and bool(columns)
            and report.ok and report.sealed_executions == 1)
