"""``zart-es`` commands that go through the :class:`Client`: start, status, result, list,
history (with ``--verify``), cancel, send-event. Tables in a terminal, JSON with --json
or when piped."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from .client import Client
from .errors import ZartError
from .insight import event_record


def _client(args: argparse.Namespace) -> Client:
    return Client(args.redis_url, partitions=args.partitions)


def _json_arg(text: str, option: str) -> Any:
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except json.JSONDecodeError as exc:
        raise ZartError(f"{option} is not valid JSON: {exc}") from None
    except ValueError as exc:  # NaN / Infinity, or a number too large for a float
        raise ZartError(f"{option} is not valid JSON: {exc}") from None
    except RecursionError:
        raise ZartError(f"{option} is nested too deeply") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text} does not fit a 64-bit float")
    return value


def _print_json(value: Any) -> None:
    print(msgspec.json.encode(value, enc_hook=str).decode())


def _tables(args: argparse.Namespace) -> bool:
    return not args.json and sys.stdout.isatty()


def _show(args: argparse.Namespace, value: Any, columns: Sequence[str],
          rows: Iterable[Sequence[str]], *, title: str | None = None) -> None:
    """Print ``value`` as JSON, or, on a terminal without ``--json``, ``rows`` as a table
    (no header when ``columns`` is empty). ``rows`` is only consumed for the table."""
    if not _tables(args):
        _print_json(value)
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    bare: dict[str, Any] = {} if columns else {"show_header": False, "box": None}
    table = Table(*columns, title=title, **bare)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # user data: never rich markup
    Console().print(table)


def _when(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


async def start(args: argparse.Namespace) -> int:
    """``zart-es start NAME --input JSON [--id ID]``: prints the id."""
    data = _json_arg(args.input, "--input")
    async with _client(args) as client:
        print(await client.start(args.name, data, execution_id=args.id))
    return 0


async def status(args: argparse.Namespace) -> int:
    """``zart-es status ID``: state, steps done, current step, pending timers."""
    async with _client(args) as client:
        detail = await client.describe(args.id)
    _show(args, detail, (), ((key, str(value))
                             for key, value in msgspec.structs.asdict(detail).items()))
    return 0


async def result(args: argparse.Namespace) -> int:
    """``zart-es result ID [--wait] [--timeout S]``: the result as JSON."""
    async with _client(args) as client:
        if not args.wait:
            current = await client.status(args.id)
            if not current.done:
                raise ZartError(f"execution {args.id!r} is {current.state}; use --wait to wait")
        _print_json(await client.result(args.id, timeout=args.timeout))
    return 0


async def listing(args: argparse.Namespace) -> int:
    """``zart-es list [--status S] [--name N] [--limit K]``."""
    async with _client(args) as client:
        rows = await client.list(status=args.status, name=args.name, limit=args.limit)
    _show(args, rows, ("id", "workflow", "state", "created (UTC)", "events"),
          ((row.execution_id, row.workflow, row.state, _when(row.created_ms), str(row.version))
           for row in rows))
    return 0


async def history(args: argparse.Namespace) -> int:
    """``zart-es history ID [--format table|json|jsonl] [--verify]``."""
    async with _client(args) as client:
        if args.verify:
            broken = await client.verify(args.id)
            if broken is not None:
                raise ZartError(f"log of {args.id!r} is broken at event #{broken.index}: "
                                f"{broken.reason}")
            count = len([e async for e in client.history(args.id)])
            print(f"log of {args.id!r} verified: {count} events, sequence and hash chain intact")
            return 0
        events = [event_record(e) async for e in client.history(args.id)]
    if args.format == "json" or (args.format == "table" and args.json):
        _print_json(events)
    elif args.format == "jsonl" or not sys.stdout.isatty():
        for event in events:
            print(msgspec.json.encode(event, enc_hook=str).decode())
    else:
        envelope = ("type", "seq", "at_ms", "prev_hash")
        _show(args, events, ("seq", "time (UTC)", "event", "details"),
              ((str(e["seq"]), _when(e["at_ms"]), e["type"], msgspec.json.encode(
                  {k: v for k, v in e.items() if k not in envelope}, enc_hook=str).decode())
               for e in events))
    return 0


async def cancel(args: argparse.Namespace) -> int:
    """``zart-es cancel ID [--reason R]``."""
    async with _client(args) as client:
        requested = await client.cancel(args.id, reason=args.reason)
    print(f"cancel requested for {args.id!r}" if requested
          else f"execution {args.id!r} has already ended; nothing to cancel")
    return 0


async def send_event(args: argparse.Namespace) -> int:
    """``zart-es send-event ID NAME --payload JSON [--event-id K]``."""
    payload = _json_arg(args.payload, "--payload")
    async with _client(args) as client:
        delivered = await client.send_event(args.id, args.name, payload,
                                            event_id=args.event_id)
    print(f"event {args.name!r} delivered to {args.id!r}" if delivered
          else f"event id {args.event_id!r} was already delivered to {args.id!r}")
    return 0


async def health(args: argparse.Namespace) -> int:
    """``zart-es health [--heartbeat-file F --max-age S]``: a Kubernetes probe.

    Healthy when Redis answers and the deployment's partition count matches; with a
    heartbeat file, also when the worker touched it within ``--max-age`` seconds.
    """
    import os
    import time

    if args.heartbeat_file:
        try:
            age = time.time() - os.stat(args.heartbeat_file).st_mtime
        except FileNotFoundError:
            raise ZartError(
                f"no heartbeat file {args.heartbeat_file!r}: worker not running") from None
        if age > args.max_age:
            raise ZartError(f"worker heartbeat is {age:.0f}s old (max {args.max_age:g}s)")
    async with _client(args) as client:
        await client.redis.ping()  # type: ignore[misc]
    print("ok")
    return 0
