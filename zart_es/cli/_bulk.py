"""``zart-es bulk ACTION [filters]``: cancel, retry-step, rerun, restart or release every
execution a filter selects, with a count first, a confirmation and a progress bar."""

from __future__ import annotations

import argparse
import sys

from zart_es.cli._common import (
    AddCommand,
    Handler,
    client_for,
    moment_arg,
    operator,
    print_json,
    progress_bar,
)
from zart_es.client import BULK_ACTIONS, BulkFilter, BulkOutcome


def add_commands(add: AddCommand) -> dict[str, Handler]:
    """Add ``bulk`` to the parser; returns its handler."""
    bulk = add("bulk", "cancel, retry-step, rerun, restart or release every execution a "
               "filter selects")
    bulk.add_argument("action", choices=BULK_ACTIONS)
    bulk.add_argument("--status", default=None)
    bulk.add_argument("--workflow", default=None)
    bulk.add_argument("--started-after", default=None, metavar="TIME",
                      help="ISO 8601, or a duration ago (2h)")
    bulk.add_argument("--started-before", default=None, metavar="TIME")
    bulk.add_argument("--id-prefix", default=None)
    bulk.add_argument("--step", default=None, help="retry-step: the failed step")
    bulk.add_argument("--steps", nargs="+", default=None, metavar="STEP",
                      help="rerun: the steps to run again from")
    bulk.add_argument("--reason", default="", help="recorded with each execution's event")
    bulk.add_argument("--dry-run", action="store_true", help="only count what it selects")
    bulk.add_argument("--yes", action="store_true", help="do not ask before acting")
    return {"bulk": run}


async def run(args: argparse.Namespace) -> int:
    """Count, confirm (unless --yes or not a terminal: then --yes is needed), act."""
    where = BulkFilter(status=args.status, workflow=args.workflow,
                       started_after=moment_arg(args.started_after, "--started-after"),
                       started_before=moment_arg(args.started_before, "--started-before"),
                       id_prefix=args.id_prefix).check()
    async with client_for(args) as client:
        counted = await client.bulk(args.action, where, step=args.step, steps=args.steps,
                                    dry_run=True)
        if args.dry_run or counted.matched == 0:
            _report(args, counted, f"{counted.matched} execution(s) match; nothing done")
            return 0
        if not args.yes and not _confirmed(args.action, counted.matched):
            print("nothing done", file=sys.stderr)
            return 1
        with progress_bar(f"{args.action}", args.json) as bar:
            outcome = await client.bulk(
                args.action, where, step=args.step, steps=args.steps, reason=args.reason,
                by=operator(),
                progress=lambda o: bar(o.done + o.skipped + o.failed, o.matched))
    _report(args, outcome, f"{args.action}: {outcome.done} done, {outcome.skipped} skipped, "
                           f"{outcome.failed} failed of {outcome.matched}")
    return 1 if outcome.failed else 0


def _confirmed(action: str, matched: int) -> bool:
    if not sys.stdin.isatty():
        print(f"zart-es: error: {matched} execution(s) match; pass --yes to {action} them "
              "(or --dry-run to count only)", file=sys.stderr)
        return False
    answer = input(f"{action} {matched} execution(s)? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def _report(args: argparse.Namespace, outcome: BulkOutcome, line: str) -> None:
    if args.json:
        print_json(outcome)
        return
    print(line)
    for problem in outcome.problems:
        print(f"  {problem.execution_id}: {problem.error}")
