"""``zart-es`` commands that go through the :class:`Client`: start, status, result, list,
history (with ``--verify``), cancel, send-signal. Tables in a terminal, JSON with --json
or when piped."""

from __future__ import annotations

import argparse
import shlex
import sys

import msgspec

from zart_es.cli._common import (
    client_for,
    json_arg,
    moment_arg,
    operator,
    print_json,
    show,
    when,
)
from zart_es.core import AnyEvent, ConfigError, ZartError, export_event
from zart_es.ops import event_record


async def start(args: argparse.Namespace) -> int:
    """``zart-es start NAME --input JSON [--id ID] [--debounce W --debounce-key K]``:
    prints the id."""
    data = json_arg(args.input, "--input")
    async with client_for(args) as client:
        print(await client.start(args.name, data, execution_id=args.id,
                                 task_queue=args.task_queue, debounce=args.debounce,
                                 debounce_key=args.debounce_key, if_ended=args.if_ended,
                                 if_running=args.if_running))
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
    """``zart-es list [--status S] [--name N] [--limit K] [--since W] [--until W]
    [--cursor C | --all]``: one page, and on stderr how to get the next one."""
    since, until = moment_arg(args.since, "--since"), moment_arg(args.until, "--until")
    async with client_for(args) as client:
        if args.archived:
            if args.cursor or since or until:
                raise ConfigError("--archived lists without --cursor, --since or --until")
            rows, cursor = await client.list(status=args.status, name=args.name,
                                             limit=args.limit, archived=True), None
        else:
            rows, cursor = [], args.cursor
            while True:
                page = await client.list_page(status=args.status, name=args.name,
                                              limit=args.limit, cursor=cursor,
                                              started_after=since, started_before=until)
                rows, cursor = rows + page.items, page.next
                if not (args.all and cursor):
                    break
    show(args, rows, ("id", "workflow", "status", "created (UTC)", "events"),
          ((row.execution_id, row.workflow, row.status, when(row.created_ms), str(row.version))
           for row in rows))
    _next_page_hint(args, cursor)
    return 0


def _next_page_hint(args: argparse.Namespace, cursor: str | None) -> None:
    """Say, on stderr (stdout stays the page), how to read the next page: the same command
    with this ``--cursor``."""
    if cursor is None:
        return
    argv: list[str] = []
    skip = False
    for arg in args.argv:
        if not skip and not arg.startswith("--cursor="):
            skip = arg == "--cursor"
            argv += [] if skip else [arg]
        else:
            skip = False
    print(f"more: zart-es {' '.join(shlex.quote(a) for a in argv)} --cursor {cursor}",
          file=sys.stderr)


async def history(args: argparse.Namespace) -> int:
    """``zart-es history ID [--format table|json|jsonl|export] [--limit N [--cursor C]]
    [--verify] [--timeline]``; read a page at a time."""
    if args.timeline:
        from zart_es.cli._timeline import timeline
        return await timeline(args)
    async with client_for(args) as client:
        if args.verify:
            checked = await client.check_chain(args.id)
            broken = checked.broken
            if broken is not None:
                raise ZartError(f"log of {args.id!r} is broken at seq {broken.seq} "
                                f"(entry #{broken.index}): {broken.reason}")
            print(f"log of {args.id!r} verified: {checked.count} events, sequence and "
                  f"hash chain intact")
            if not checked.keyed:
                print("note: this chain is unkeyed: it detects accidents, not tampering "
                      "(set ZART_AUDIT_KEY; see docs/audit.md)", file=sys.stderr)
            return 0
        stored: list[AnyEvent] = []
        cursor = args.cursor
        while True:
            page = await client.history_page(args.id, cursor=cursor, limit=args.limit or 1000)
            stored, cursor = stored + page.items, page.next
            if args.limit or cursor is None:
                break
    if args.format == "export":
        for raw in stored:
            sys.stdout.buffer.write(export_event(raw) + b"\n")
        sys.stdout.flush()
        _next_page_hint(args, cursor)
        return 0
    events = [event_record(e) for e in stored]
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
    _next_page_hint(args, cursor)
    return 0


async def cancel(args: argparse.Namespace) -> int:
    """``zart-es cancel ID [--reason R]``."""
    async with client_for(args) as client:
        requested = await client.cancel(args.id, reason=args.reason, by=operator())
    print(f"cancel requested for {args.id!r}" if requested
          else f"execution {args.id!r} has already ended; nothing to cancel")
    return 0


async def send_signal(args: argparse.Namespace) -> int:
    """``zart-es send-signal ID NAME --payload JSON [--signal-id K]`` (or ``send-event``)."""
    payload = json_arg(args.payload, "--payload")
    async with client_for(args) as client:
        delivered = await client.send_signal(args.id, args.name, payload,
                                             signal_id=args.signal_id, by=operator())
    print(f"signal {args.name!r} delivered to {args.id!r}" if delivered
          else f"signal id {args.signal_id!r} was already delivered to {args.id!r}")
    return 0


async def update(args: argparse.Namespace) -> int:
    """``zart-es update ID NAME [--payload JSON] [--update-id K] [--timeout S]``: the
    workflow's answer, as JSON."""
    payload = json_arg(args.payload, "--payload")
    async with client_for(args) as client:
        answer = await client.update(args.id, args.name, payload, update_id=args.update_id,
                                     timeout=args.timeout, by=operator())
    print_json(answer)
    return 0


async def query(args: argparse.Namespace) -> int:
    """``zart-es query ID NAME [ARG ...] [--timeout S]``: the answer, as JSON."""
    values = [json_arg(text, f"argument {i + 1}") for i, text in enumerate(args.args)]
    async with client_for(args) as client:
        answer = await client.query(args.id, args.name, *values, timeout=args.timeout)
    print_json(answer)
    return 0


async def health(args: argparse.Namespace) -> int:
    """``zart-es health [--heartbeat-file F --max-age S] [--ready]``: a Kubernetes probe.

    Healthy when Redis answers and the deployment's partition count matches; with a
    heartbeat file, also when the worker rewrote it within ``--max-age`` seconds and none
    of its background loops crashed within the last minute (each one that did is its own
    line: which loop, how often, the last error). With ``--ready`` (readiness), also
    while the worker's Redis refuses writes; without it that is printed, not failed.
    """
    from zart_es.engine import read_heartbeat

    if args.heartbeat_file:
        try:
            beat = read_heartbeat(args.heartbeat_file)
        except FileNotFoundError:
            raise ZartError(
                f"no heartbeat file {args.heartbeat_file!r}: worker not running") from None
        if beat.age_s > args.max_age:
            raise ZartError(f"worker heartbeat is {beat.age_s:.0f}s old "
                            f"(max {args.max_age:g}s)")
        said = [f.describe() for f in beat.loops]
        if beat.store_refusing:
            refusing = f"store refusing writes ({beat.store_refusing}); runs held"
            if not args.ready:  # liveness: restarting the worker would not help
                print(refusing, file=sys.stderr)
            else:
                said.append(refusing)
        if said:
            raise ZartError("; ".join(said))
    async with client_for(args) as client:
        await client.store.ping()
    print("ok")
    return 0
