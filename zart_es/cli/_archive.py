"""``zart-es archiver`` and ``zart-es archive compact|query``: the archive of ended
executions (``zart-es audit`` is :mod:`zart_es.cli._audit`).

The archive's URL comes from ``--archive-url``, else ``$ZART_ARCHIVE_URL``; retention
from ``--retention``, else ``$ZART_RETENTION``, else 7 days (``none``: keep for ever).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import socket
import uuid
from typing import Any

import msgspec

from zart_es.cli._common import AddCommand, Handler, client_for, operator, show, when
from zart_es.core import ConfigError


def archive_options(p: argparse.ArgumentParser) -> None:
    """``--retention`` (the worker's and the archiver's; ``--archive-url`` is a connection
    option of every command: without one, nothing leaves Redis)."""
    p.add_argument("--retention", default=None,
                   help="how long ended executions stay in Redis before they are archived "
                        "(default: $ZART_RETENTION or 7d; 'none': for ever)")
    p.add_argument("--seal-interval", default=None,
                   help="how often the archiver seals the audit ledger (default: "
                        "$ZART_SEAL_INTERVAL or 5m; 'none': never)")


def add_commands(add: AddCommand, nested: argparse.ArgumentParser) -> dict[str, Handler]:
    """Add ``archiver`` and ``audit``; returns their handlers by name. ``nested`` carries
    the connection options of a sub-subcommand (``audit log --redis-url ...``)."""
    archiver_ = add("archiver", "move ended executions past their retention to the archive")
    archive_options(archiver_)
    archiver_.add_argument("--poll-interval", type=float, default=1.0)
    archiver_.add_argument("--batch", type=int, default=500,
                           help="executions per batch (per partition and day)")
    archiver_.add_argument("--batch-wait", type=float, default=None,
                           help="seconds due executions wait for a full batch (default: "
                                "300, or 0 with a retention of 0)")
    archiver_.add_argument("--lease-timeout", type=float, default=30.0,
                           help="seconds before a killed archiver's partitions are taken over")
    archive_ = add("archive", "the archive: SQL over it, merge a day's batch files")
    tasks = archive_.add_subparsers(dest="archive_command", required=True)
    query_options(tasks.add_parser(
        "query", parents=[nested],
        help="run SQL (DuckDB) over the views events, executions, audit"))
    compact_ = tasks.add_parser("compact", parents=[nested],
                                help="merge each closed day's batch files into one file per "
                                     "partition and table (readers see each row once throughout)")
    days = compact_.add_mutually_exclusive_group()
    days.add_argument("--day", default=None, help="compact this day (YYYY-MM-DD) only")
    days.add_argument("--before", default=None,
                      help="compact the closed days before this one (YYYY-MM-DD)")
    compact_.add_argument("--force", action="store_true",
                          help="also compact a day not closed yet (today, or within the "
                               "archiver's batch wait after midnight)")
    return {"archiver": archiver, "archive": archive}


def query_options(query_: argparse.ArgumentParser) -> None:
    """The arguments of ``archive query`` (and of its deprecated name ``audit query``)."""
    query_.add_argument("sql")
    query_.add_argument("--since", default="", help="first day read (YYYY-MM-DD)")
    query_.add_argument("--until", default="", help="last day read (YYYY-MM-DD)")


def archive_url(args: argparse.Namespace) -> str:
    url = args.archive_url or os.environ.get("ZART_ARCHIVE_URL")
    if not url:
        raise ConfigError("no archive: pass --archive-url or set ZART_ARCHIVE_URL")
    return str(url)


async def archiver(args: argparse.Namespace) -> int:
    """``zart-es archiver``: archive until SIGTERM/SIGINT."""
    import asyncio
    import signal

    from zart_es.archive import Archive
    from zart_es.core import deployment_retention
    from zart_es.engine import BATCH_WAIT_MS, Archiver, configure_logging, seal_interval
    from zart_es.store import Deployment

    configure_logging()
    retention = deployment_retention(args.retention)
    async with Deployment(args.redis_url, partitions=args.partitions) as deployment:
        engine = Archiver(deployment, Archive(archive_url(args)), retention_ms=retention,
                          owner=f"archiver-{socket.gethostname()}-{uuid.uuid4().hex[:6]}",
                          poll_interval=args.poll_interval, batch=args.batch,
                          lease_ms=round(args.lease_timeout * 1000),
                          seal_every_ms=seal_interval(args.seal_interval),
                          batch_wait_ms=(0 if retention == 0 else BATCH_WAIT_MS)
                          if args.batch_wait is None else round(args.batch_wait * 1000))
        task = asyncio.create_task(engine.run())
        for sig in (signal.SIGTERM, signal.SIGINT):  # a batch cut short resumes next time
            asyncio.get_running_loop().add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task  # its run() closes it
    return 0


async def archive(args: argparse.Namespace) -> int:
    """``zart-es archive compact [--day D | --before D] [--force]`` / ``archive query SQL``."""
    import time

    from zart_es.archive import Archive, compact_day, day_of
    from zart_es.engine import BATCH_WAIT_MS

    if args.archive_command == "query":
        return await query(args)
    store = Archive(archive_url(args))
    for given in (args.day, args.before):
        if given is not None:
            _check_day(given)
    # a day is closed once it is over and a partial batch of its last minute has gone out
    closed_before = day_of(round(time.time() * 1000) - BATCH_WAIT_MS)
    if args.day is not None:
        if args.day >= closed_before and not args.force:
            raise ConfigError(f"day {args.day} is not closed yet (days before {closed_before} "
                              f"are); pass --force to compact it anyway")
        days = [args.day]
    else:
        last = closed_before
        if args.before is not None:
            last = args.before if args.force else min(args.before, closed_before)
        days = [d for d in await store.days() if d < last]
    done = [c for day in days for c in await compact_day(store, day)]
    if done:
        await _record_compaction(args, done)
    show(args, [msgspec.to_builtins(c) for c in done],
         ["folder", "files", "bytes", "rows"],
         ([c.folder, f"{c.files_before} -> {c.files_after}",
           f"{c.bytes_before} -> {c.bytes_after}", str(c.rows)] for c in done))
    if not done and not args.json:
        print(f"nothing to compact ({len(days)} day(s) looked at)")
    return 0


async def _record_compaction(args: argparse.Namespace, done: list[Any]) -> None:
    """Compaction deletes archive files: say so in the operator trail (``audit verify``
    and the next seal take the merged-away files as gone, not missing)."""
    import sys

    from redis.exceptions import RedisError

    from zart_es.core import RedisUnavailable
    from zart_es.store import Deployment

    try:
        async with Deployment(args.redis_url, partitions=args.partitions) as deployment:
            for compacted in done:
                await deployment.trail.record(
                    "archive.compact", by=operator(), folder=compacted.folder,
                    files=f"{compacted.files_before} -> {compacted.files_after}",
                    rows=str(compacted.rows))
    except (RedisUnavailable, RedisError, OSError) as exc:  # compaction needs no Redis
        print(f"zart-es: warning: compacted, but not recorded in the operator trail "
              f"({exc})", file=sys.stderr)


def _check_day(day: str) -> None:
    try:
        dt.date.fromisoformat(day)
    except ValueError:
        raise ConfigError(f"not a day: {day!r} (use YYYY-MM-DD)") from None


async def query(args: argparse.Namespace) -> int:
    """``zart-es archive query SQL [--since D] [--until D]``."""
    from zart_es.archive import Archive, query  # DuckDB: loaded only to query

    columns, rows = await query(Archive(archive_url(args)), args.sql, since=args.since,
                                until=args.until)
    show(args, [dict(zip(columns, row, strict=True)) for row in rows], columns,
         ([_cell(value) for value in row] for row in rows))
    return 0


async def trail_log(args: argparse.Namespace) -> int:
    """``zart-es audit log [--follow]``: the operator trail, archived, then live."""
    from zart_es.archive import Archive
    from zart_es.store import AuditArchiveQueue

    archive = Archive(archive_url(args))

    table = await archive.audit()
    last: bytes | None = None
    for row in table.to_pylist():
        _print_entry(args, row["entry_id"], row["what"], row["operator"], json.loads(row["detail"]))
        last = row["entry_id"].encode()
    async with client_for(args) as client:
        live = AuditArchiveQueue(client.redis, client.keys)
        while True:
            entries = await live.live(last, 5000 if args.follow else None)
            for entry_id, fields in entries:
                if last is not None and entry_id <= last:
                    continue
                detail = {k.decode(): v.decode(errors="replace") for k, v in fields.items()}
                _print_entry(args, entry_id.decode(), detail.pop("what", ""),
                             detail.pop("by", ""), detail)
                last = entry_id
            if not args.follow:
                return 0


def _print_entry(args: argparse.Namespace, entry_id: str, what: str, by: str,
                 detail: dict[str, Any]) -> None:
    at = when(int(entry_id.split("-", maxsplit=1)[0]))
    detail = {k: v for k, v in detail.items() if k not in ("s", "p", "k")}  # the chain's
    if args.json:
        print(json.dumps({"id": entry_id, "at": at, "what": what, "by": by, **detail}),
              flush=True)
    else:
        rest = " ".join(f"{k}={v}" for k, v in detail.items())
        print(f"{at}  {what:<16} by {by or '-':<12} {rest}", flush=True)


def _cell(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return "" if value is None else str(value)
