"""``zart-es`` commands for operators: repair (retry-step, rerun, restart, release,
reopen), pause rules (pause, resume, pauses), stats and task-queues. Each is one
:class:`Client` call; see docs/operations.md."""

from __future__ import annotations

import argparse

from zart_es.cli._common import AddCommand, Handler, client_for, operator, show, when
from zart_es.ops import rule_name


def add_commands(add: AddCommand) -> dict[str, Handler]:
    """Add the operator commands to the parser; returns their handlers by name."""
    retry = add("retry-step", "run the failed step of a failed execution again")
    retry.add_argument("id")
    retry.add_argument("--step", default=None, help="the step (default: the latest failed)")
    _note(retry)

    rerun_ = add("rerun", "forget chosen steps and everything after them; run from there")
    rerun_.add_argument("id")
    rerun_.add_argument("steps", nargs="+", metavar="STEP")
    rerun_.add_argument("--preserve", nargs="+", default=None, metavar="STEP",
                        help="completed later steps to keep (listed as stale)")
    _note(rerun_)

    restart_ = add("restart", "run an ended execution again from scratch (history kept)")
    restart_.add_argument("id")
    _note(restart_)

    release_ = add("release", "let a quarantined execution run again")
    release_.add_argument("id")
    _note(release_)

    reopen_ = add("reopen", "reopen an execution a store error ended (before 0.4); it "
                  "goes on where the write was refused")
    reopen_.add_argument("id")
    _note(reopen_)

    for name, text in (("pause", "hold the executions of a workflow or queue, one "
                                 "execution, or any about to run a step matching a glob"),
                       ("resume", "lift a pause rule; the executions it held continue")):
        parser = add(name, text)
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--workflow", default=None)
        target.add_argument("--queue", default=None)
        target.add_argument("--execution", dest="execution_id", default=None, metavar="ID")
        target.add_argument("--step", default=None, metavar="GLOB",
                            help="step names matching this glob (fnmatch: charge-*)")
        if name == "pause":
            parser.add_argument("--reason", default="")

    add("pauses", "the pause rules in force")
    add("stats", "executions by state and by workflow")
    queues = add("task-queues", "each task queue's backlog (waiting, in flight) and live workers")
    queues.add_argument("names", nargs="*", metavar="NAME", help="these (default: all known)")
    return {"retry-step": retry_step, "rerun": rerun, "restart": restart, "release": release,
            "reopen": reopen,
            "pause": pause, "resume": resume, "pauses": list_pauses, "stats": stats,
            "task-queues": task_queues}


def _note(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", default="", help="recorded in the execution's history")


async def retry_step(args: argparse.Namespace) -> int:
    """``zart-es retry-step ID [--step S] [--reason R]``."""
    async with client_for(args) as client:
        step = await client.retry_step(args.id, args.step, reason=args.reason, by=operator())
    print(f"execution {args.id!r} reopened: step {step!r} runs again")
    return 0


async def rerun(args: argparse.Namespace) -> int:
    """``zart-es rerun ID STEP... [--preserve STEP...] [--reason R]``."""
    async with client_for(args) as client:
        forgotten = await client.rerun(args.id, args.steps, reason=args.reason,
                                       by=operator(), preserve=args.preserve)
    print(f"execution {args.id!r} reopened: {len(forgotten)} calls run again "
          f"({', '.join(forgotten)})")
    return 0


async def restart(args: argparse.Namespace) -> int:
    """``zart-es restart ID [--reason R]``."""
    async with client_for(args) as client:
        run = await client.restart(args.id, reason=args.reason, by=operator())
    print(f"execution {args.id!r} restarted: run {run}")
    return 0


async def reopen(args: argparse.Namespace) -> int:
    """``zart-es reopen ID [--reason R]``."""
    async with client_for(args) as client:
        await client.reopen(args.id, reason=args.reason, by=operator())
    print(f"execution {args.id!r} reopened: it goes on where Redis refused the write")
    return 0


async def release(args: argparse.Namespace) -> int:
    """``zart-es release ID [--reason R]``."""
    async with client_for(args) as client:
        await client.release(args.id, reason=args.reason, by=operator())
    print(f"execution {args.id!r} released: it runs again")
    return 0


async def pause(args: argparse.Namespace) -> int:
    """``zart-es pause --workflow W | --queue Q | --execution ID | --step GLOB
    [--reason R]``."""
    async with client_for(args) as client:
        added = await client.pause(workflow=args.workflow, queue=args.queue,
                                   execution_id=args.execution_id, step=args.step,
                                   reason=args.reason, by=operator())
    print(f"{_target(args)} paused" if added else f"{_target(args)} was already paused")
    return 0


async def resume(args: argparse.Namespace) -> int:
    """``zart-es resume --workflow W | --queue Q | --execution ID | --step GLOB``."""
    async with client_for(args) as client:
        rule = rule_name(args.workflow, args.queue, execution_id=args.execution_id,
                         step=args.step)
        was_paused = rule in {r.rule for r in await client.pauses()}
        resumed = await client.resume(workflow=args.workflow, queue=args.queue,
                                      execution_id=args.execution_id, step=args.step,
                                      by=operator())
    if was_paused:
        print(f"{_target(args)} resumed; {resumed} held executions continue")
    else:
        print(f"{_target(args)} was not paused; {resumed} held executions continue")
    return 0


def _target(args: argparse.Namespace) -> str:
    if args.workflow:
        return f"workflow {args.workflow!r}"
    if args.queue:
        return f"queue {args.queue!r}"
    if args.execution_id:
        return f"execution {args.execution_id!r}"
    return f"steps matching {args.step!r}"


async def list_pauses(args: argparse.Namespace) -> int:
    """``zart-es pauses``."""
    async with client_for(args) as client:
        rules = await client.pauses()
    show(args, rules, ("rule", "since (UTC)", "by", "reason"),
          ((rule.rule, when(rule.at_ms), rule.by, rule.reason) for rule in rules))
    return 0


async def stats(args: argparse.Namespace) -> int:
    """``zart-es stats``."""
    async with client_for(args) as client:
        counts = await client.stats()
    states = [s for s, n in counts.by_state.items() if n]
    show(args, counts, ("workflow", *states),
          ((workflow, *(str(per.get(s, 0)) for s in states))
           for workflow, per in counts.by_workflow.items()),
          title=f"{counts.total} executions")
    return 0


async def task_queues(args: argparse.Namespace) -> int:
    """``zart-es task-queues [NAME...]``."""
    async with client_for(args) as client:
        loads = await client.task_queues(args.names or None)
    show(args, loads, ("task queue", "waiting", "in flight", "backlog", "workers"),
         ((q.task_queue, str(q.waiting), str(q.pending), str(q.backlog),
           str(q.workers) if q.workers else "0 (its work waits)") for q in loads))
    return 0
