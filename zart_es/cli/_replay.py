"""``zart-es replay``: the pre-deploy gate. Replays recorded histories against the code
about to be deployed, runs no step and writes nothing, and says which executions would
fail with NondeterminismError (exit 1 if any)."""

from __future__ import annotations

import argparse
import builtins
import glob

from zart_es.cli._common import AddCommand, Handler, client_for, import_apps, print_json, show
from zart_es.core import AnyEvent, ExecutionStarted, ZartError, import_events
from zart_es.store import payloads_for
from zart_es.workflow import ReplayVerdict, check_history, default_registry


def add_commands(add: AddCommand) -> dict[str, Handler]:
    """The ``replay`` subcommand."""
    replay_ = add("replay", "check that the code replays recorded executions (pre-deploy)")
    replay_.add_argument("--app", required=True, action="append",
                         help="module whose @durable functions to check (repeatable)")
    which = replay_.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", action="append", default=None, help="an execution (repeatable)")
    which.add_argument("--sample", type=int, default=None,
                       help="the N newest executions of the app's workflows")
    which.add_argument("--file", nargs="+", action="extend", default=None,
                       help="histories exported with 'zart-es history ID --format export' "
                            "(JSON lines; one or more executions per file; several files "
                            "or a glob); needs no Redis")
    return {"replay": replay}


async def replay(args: argparse.Namespace) -> int:
    """Replay each chosen execution's log; one line each; exit 1 if one would fail."""
    import_apps(args.app)
    if args.file:
        payloads = payloads_for()
        verdicts = [await check_history(events, default_registry, payloads)
                    for path in _expand(args.file) for events in _histories(path)]
        _report(args, verdicts)
        return 0 if all(v.ok for v in verdicts) else 1
    async with client_for(args) as client:
        ids = args.id or [s.execution_id for s in await client.list(limit=args.sample or 1)
                          if s.workflow in default_registry]
        verdicts = [await check_history([e async for e in client.history(eid)],
                                        default_registry, client.deployment.payloads)
                    for eid in ids]
    _report(args, verdicts)
    return 0 if all(v.ok for v in verdicts) else 1


def _histories(path: str) -> builtins.list[builtins.list[AnyEvent]]:
    """The executions' logs in an exported file: each starts at its ExecutionStarted."""
    try:
        with open(path, "rb") as lines:
            events = import_events(lines, source=path)
    except OSError as exc:
        raise ZartError(f"cannot read {path}: {exc.strerror}") from None
    if not events:
        raise ZartError(f"{path} holds no events")
    if not isinstance(events[0], ExecutionStarted):
        raise ZartError(f"{path} does not begin with an ExecutionStarted event: export whole "
                        "histories ('zart-es history ID --format export', no --cursor)")
    histories: builtins.list[builtins.list[AnyEvent]] = []
    for event in events:
        if isinstance(event, ExecutionStarted):
            histories.append([])
        histories[-1].append(event)
    return histories


def _expand(paths: builtins.list[str]) -> builtins.list[str]:
    """The files named, a pattern (quoted, as in a CI job's YAML) by what it matches."""
    out: builtins.list[str] = []
    for path in paths:
        matches = sorted(glob.glob(path)) if any(c in path for c in "*?[") else [path]
        if not matches:
            raise ZartError(f"no file matches {path}")
        out += matches
    return out


def _report(args: argparse.Namespace, verdicts: builtins.list[ReplayVerdict]) -> None:
    if args.json:
        print_json(verdicts)
        return
    show(args, verdicts, ("", "execution", "workflow", "replay"),
         (("ok" if v.ok else "FAIL", v.execution_id, v.workflow, v.detail) for v in verdicts))
