"""``zart-es schedule add|list|show|remove|pause|resume|backfill|next``: recurring schedules through
:class:`~zart_es.Schedules` (docs/schedules.md)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

from zart_es.cli._common import (
    AddCommand,
    Handler,
    client_for,
    json_arg,
    moment_arg,
    operator,
    print_json,
    progress_bar,
    show,
)
from zart_es.core import (
    DEFAULT_ID_TEMPLATE,
    EVERY_ANCHORS,
    MAX_NEXT_OCCURRENCES,
    OVERLAP_POLICIES,
    ConfigError,
    ScheduleNotFound,
    cron_occurrences,
    schedule_to_dict,
)
from zart_es.ops import Schedules


def add_commands(
    add: AddCommand, common: argparse.ArgumentParser
) -> dict[str, Handler]:
    """Add ``schedule`` and its subcommands (each takes the ``common`` connection
    options); returns the handler by name."""
    schedule = add("schedule", "recurring schedules: add, list, show, remove, pause, resume, "
                   "backfill, next")
    sub = schedule.add_subparsers(dest="schedule_command", required=True)
    new = sub.add_parser("add", help="define a schedule (or --replace one)", parents=[common])
    new.add_argument("name")
    new.add_argument("workflow")
    when = new.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", help='cron expression: 5 fields ("0 2 * * *"), or 6/7 with the '
                      'seconds first, as Zart ("0 */5 * * * *": every 5 minutes)')
    when.add_argument("--every", help='interval, e.g. "15m" (whole seconds, >= 1s)')
    new.add_argument("--input", default="null", help="workflow input as JSON")
    new.add_argument("--timezone", default="UTC", help="IANA time zone of --cron")
    new.add_argument("--overlap", default="skip", choices=OVERLAP_POLICIES)
    new.add_argument("--id-template", default=DEFAULT_ID_TEMPLATE)
    new.add_argument("--anchor", default="epoch", choices=EVERY_ANCHORS,
                     help="--every from the Unix epoch, or from now (Zart's fixed delay)")
    new.add_argument("--replace", action="store_true", help="redefine an existing schedule")
    sub.add_parser("list", help="every schedule, with its progress", parents=[common])
    upcoming = sub.add_parser("next", help="the next occurrences of a cron expression, one "
                              "per line (ISO 8601, UTC): check one before adding it",
                              parents=[common])
    upcoming.add_argument("expr", metavar="EXPR")
    upcoming.add_argument("--count", type=int, default=5)
    upcoming.add_argument("--after", default=None, metavar="ISO-TIME",
                          help="from this instant (default: now; UTC without an offset)")
    upcoming.add_argument("--tz", default="UTC", metavar="ZONE",
                          help="the IANA time zone the expression is read in")
    fill = sub.add_parser("backfill", help="start the occurrences of a past range, once each",
                          parents=[common])
    fill.add_argument("name")
    fill.add_argument("--from", dest="start", required=True, metavar="TIME",
                      help="ISO 8601 (UTC without an offset), or a duration ago (2d)")
    fill.add_argument("--to", dest="end", required=True, metavar="TIME",
                      help="the end, excluded (ISO 8601, or a duration ago: 0s is now)")
    fill.add_argument("--overlap", default=None, choices=OVERLAP_POLICIES,
                      help="among the backfilled occurrences (default: the schedule's)")
    fill.add_argument("--dry-run", action="store_true", help="only count the occurrences")
    for name, text in (("show", "one schedule, its progress and next occurrences"),
                       ("remove", "delete a schedule"),
                       ("pause", "start no occurrences until resumed"),
                       ("resume", "start occurrences again (from now on)")):
        sub.add_parser(name, help=text, parents=[common]).add_argument("name")
    return {"schedule": schedule_command}


async def schedule_command(args: argparse.Namespace) -> int:
    """Dispatch ``zart-es schedule <subcommand>``."""
    if args.schedule_command == "next":  # pure: no Redis
        _print_next(args)
        return 0
    async with client_for(args) as client:
        schedules = Schedules(client)
        match args.schedule_command:
            case "add":
                data = json_arg(args.input, "--input")
                created = await schedules.add(
                    args.name, args.workflow, data, cron=args.cron, every=args.every,
                    timezone=args.timezone, overlap=args.overlap,
                    id_template=args.id_template, anchor=args.anchor, replace=args.replace,
                    by=operator())
                upcoming = await schedules.next_occurrences(created.name, 1)
                done = "replaced" if args.replace else "added"
                print(f"schedule {created.name!r} {done}; next occurrence "
                      f"{upcoming[0].isoformat() if upcoming else 'none'}")
            case "list":
                rows = [(s, await schedules.state(s.name)) for s in await schedules.list()]
                _print_schedules(args, rows)
            case "backfill":
                await _backfill(args, schedules)
            case "show":
                one = await schedules.get(args.name)
                print_json({**schedule_to_dict(one),
                             "state": await schedules.state(one.name),
                             "next": [t.isoformat() for t in
                                      await schedules.next_occurrences(one.name, 5)]})
            case "remove":
                if not await schedules.remove(args.name, by=operator()):
                    raise ScheduleNotFound(args.name)
                print(f"schedule {args.name!r} removed")
            case "pause":
                await schedules.pause(args.name, by=operator())
                print(f"schedule {args.name!r} paused")
            case "resume":
                await schedules.resume(args.name, by=operator())
                print(f"schedule {args.name!r} resumed")
    return 0


def _print_next(args: argparse.Namespace) -> None:
    if not 1 <= args.count <= MAX_NEXT_OCCURRENCES:
        raise ConfigError(f"--count must be 1..{MAX_NEXT_OCCURRENCES}, got {args.count}")
    after = moment_arg(args.after, "--after") or datetime.now(UTC)
    times = cron_occurrences(args.expr, args.tz, int(after.timestamp() * 1000), args.count)
    for ms in times:
        print(datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z"))
    if not times:
        print(f"zart-es: {args.expr!r} fires no more", file=sys.stderr)


async def _backfill(args: argparse.Namespace, schedules: Schedules) -> None:
    start, end = moment_arg(args.start, "--from"), moment_arg(args.end, "--to")
    if start is None or end is None:
        raise ConfigError("a backfill needs --from and --to")
    with progress_bar(f"backfill {args.name}", args.json) as bar:
        done = await schedules.backfill(args.name, start, end, overlap=args.overlap,
                                        dry_run=args.dry_run, by=operator(), progress=bar)
    if args.json:
        print_json(done)
    elif args.dry_run:
        print(f"{done.occurrences} occurrence(s) of {args.name!r} in the range; nothing started")
    else:
        print(f"backfill of {args.name!r} ({done.overlap}): {len(done.started)} started, "
              f"{len(done.existed)} existed, {len(done.skipped)} skipped, "
              f"{len(done.cancelled)} cancelled, of {done.occurrences}")


def _print_schedules(args: argparse.Namespace, rows: list[tuple[Any, Any]]) -> None:
    def when(s: Any) -> str:
        text = s.cron or f"every {s.every_ms // 1000}s"
        return text + (f" ({s.timezone})" if s.cron and s.timezone != "UTC" else "")

    show(args, [{**schedule_to_dict(s), "state": state} for s, state in rows],
          ("name", "workflow", "when", "overlap", "paused", "last (UTC)", "started", "skipped"),
          ((s.name, s.workflow, when(s), s.overlap, "yes" if s.paused else "",
            when(state.last_ms) if state else "", str(state.started if state else 0),
            str(state.skipped if state else 0)) for s, state in rows))
