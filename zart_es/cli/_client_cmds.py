"""``zart-es`` commands that go through the :class:`Client`: start, status, result, list,
history (with ``--verify``), cancel, send-signal. Tables in a terminal, JSON with --json
or when piped."""

from __future__ import annotations

import argparse
import sys

import msgspec

from zart_es.cli._common import client_for, json_arg, print_json, show, when
from zart_es.core import ZartError, export_event
from zart_es.ops import event_record


async def start(args: argparse.Namespace) -> int:
    """``zart-es start NAME --input JSON [--id ID]``: prints the id."""
    data = json_arg(args.input, "--input")
    async with client_for(args) as client:
        print(await client.start(args.name, data, execution_id=args.id,
                                 task_queue=args.task_queue))
    return 0


async def status(args: argparse.Namespace) -> int:
    """``zart-es status ID``: status, steps done, current step, pending timers."""
    async with client_for(args) as client:
        detail = await client.describe(args.id)
    show(args, detail, (), ((key, str(value))
                             for key, value in msgspec.structs.asdict(detail).items()))
    return 0


async def result(args: argparse.Namespace) -> int:
    """``zart-es result ID [--wait] [--timeout S]``: the result as JSON."""
    async with client_for(args) as client:
        if not args.wait:
            current = await client.status(args.id)
            if not current.done:
                raise ZartError(f"execution {args.id!r} is {current.status}; use --wait to wait")
        print_json(await client.result(args.id, timeout=args.timeout))
    return 0


async def listing(args: argparse.Namespace) -> int:
    """``zart-es list [--status S] [--name N] [--limit K]``."""
    async with client_for(args) as client:
        rows = await client.list(status=args.status, name=args.name, limit=args.limit,
                                 archived=args.archived)
    show(args, rows, ("id", "workflow", "status", "created (UTC)", "events"),
          ((row.execution_id, row.workflow, row.status, when(row.created_ms), str(row.version))
           for row in rows))
    return 0


async def history(args: argparse.Namespace) -> int:
    """``zart-es history ID [--format table|json|jsonl] [--verify] [--timeline]``."""
    if args.timeline:
        from zart_es.cli._timeline import timeline
        return await timeline(args)
    async with client_for(args) as client:
        if args.verify:
            broken = await client.verify(args.id)
            if broken is not None:
                raise ZartError(f"log of {args.id!r} is broken at event #{broken.index}: "
                                f"{broken.reason}")
            count = len([e async for e in client.history(args.id)])
            print(f"log of {args.id!r} verified: {count} events, sequence and hash chain intact")
            return 0
        if args.format == "export":
            for stored in [e async for e in client.history(args.id)]:
                sys.stdout.buffer.write(export_event(stored) + b"\n")
            return 0
        events = [event_record(e) async for e in client.history(args.id)]
    if args.format == "json" or (args.format == "table" and args.json):
        print_json(events)
    elif args.format == "jsonl" or not sys.stdout.isatty():
        for event in events:
            print(msgspec.json.encode(event, enc_hook=str).decode())
    else:
        envelope = ("type", "seq", "at_ms", "prev_hash")
        show(args, events, ("seq", "time (UTC)", "event", "details"),
              ((str(e["seq"]), when(e["at_ms"]), e["type"], msgspec.json.encode(
                  {k: v for k, v in e.items() if k not in envelope}, enc_hook=str).decode())
               for e in events))
    return 0


async def cancel(args: argparse.Namespace) -> int:
    """``zart-es cancel ID [--reason R]``."""
    async with client_for(args) as client:
        requested = await client.cancel(args.id, reason=args.reason)
    print(f"cancel requested for {args.id!r}" if requested
          else f"execution {args.id!r} has already ended; nothing to cancel")
    return 0


async def send_signal(args: argparse.Namespace) -> int:
    """``zart-es send-signal ID NAME --payload JSON [--signal-id K]`` (or ``send-event``)."""
    payload = json_arg(args.payload, "--payload")
    async with client_for(args) as client:
        delivered = await client.send_signal(args.id, args.name, payload,
                                             signal_id=args.signal_id)
    print(f"signal {args.name!r} delivered to {args.id!r}" if delivered
          else f"signal id {args.signal_id!r} was already delivered to {args.id!r}")
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
    async with client_for(args) as client:
        await client.redis.ping()  # type: ignore[misc]
    print("ok")
    return 0
