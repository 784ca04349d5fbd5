"""The ``zart-es`` command: parsing and error reporting; the commands live in
``_client_cmds`` (through the Client), ``_ops``, ``_schedule`` and ``_serve`` (worker,
api, dev, demo).

Errors print one line (``zart-es: error: ...``) and exit non-zero; no tracebacks.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable
from typing import Any

from redis.exceptions import RedisClusterException, RedisError

from zart_es.cli._common import AddCommand, Handler
from zart_es.core import ZartError

EXIT_ERROR = 1



def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("zart-es")
    except PackageNotFoundError:  # a source tree that was not installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``zart-es`` (exposed for tests and docs)."""

    # the connection options are accepted before or after the subcommand (and after a
    # sub-subcommand: `schedule list --redis-url ...`)
    def connection_options(p: argparse.ArgumentParser, prefix: str, default: Any = None) -> None:
        p.add_argument("--redis-url", dest=f"{prefix}redis_url", default=default,
                       help="Redis URL (default: $ZART_REDIS_URL or redis://localhost:6379/0)")
        p.add_argument("--partitions", dest=f"{prefix}partitions", type=int, default=default,
                       help="partition count of the deployment (default: $ZART_PARTITIONS or 16)")
        p.add_argument("--archive-url", dest=f"{prefix}archive_url", default=default,
                       help="the archive of ended executions: a directory or s3://bucket/"
                            "prefix (default: $ZART_ARCHIVE_URL)")
        p.add_argument("--json", dest=f"{prefix}json", action="store_true",
                       default=default if default is not None else False,
                       help="plain JSON output")

    common = argparse.ArgumentParser(add_help=False)
    connection_options(common, "sub_")
    # a nested level must not overwrite what the level above it parsed with its defaults
    nested = argparse.ArgumentParser(add_help=False)
    connection_options(nested, "sub_", default=argparse.SUPPRESS)
    parser = argparse.ArgumentParser(prog="zart-es", description="Durable execution on Redis")
    parser.add_argument("--version", action="version", version=f"zart-es {_version()}")
    connection_options(parser, "")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help_text: str, *aliases: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, parents=[common], aliases=list(aliases))

    worker = add("worker", "run a worker until SIGTERM/SIGINT")
    _worker_options(worker)
    worker.add_argument("--metrics-port", type=int, default=None,
                        help="serve this worker's Prometheus metrics on this port")
    worker.add_argument("--heartbeat-file", default=None,
                        help="touch this file while healthy (for 'zart-es health')")

    health = add("health", "probe: Redis reachable (and a worker's heartbeat fresh); exit 0/1")
    health.add_argument("--heartbeat-file", default=None,
                        help="also require this worker heartbeat file to be fresh")
    health.add_argument("--max-age", type=float, default=30.0,
                        help="seconds a heartbeat may be old (default 30)")
    health.add_argument("--ready", action="store_true",
                        help="readiness: also fail while the worker's Redis refuses writes "
                             "(without it, that is printed but the probe passes: a restart "
                             "would not help)")

    api = add("api", "serve the HTTP API (uvicorn)")
    _api_options(api)
    api.add_argument("--log-json", action="store_true", default=None,
                     help="JSON log lines (default when stderr is not a terminal)")

    dev = add("dev", "embedded Redis + a worker + the API in one process, for development")
    _worker_options(dev)
    _api_options(dev)
    dev.add_argument("--data-dir", default=".zart-data", help="the embedded Redis' data")

    demo = add("demo", "run the examples, kill a worker mid-loop, watch it resume")
    demo.add_argument("--data-dir", default=".zart-data",
                      help="where the embedded Redis keeps its AOF (when $ZART_REDIS_URL is unset)")
    demo.add_argument("--items", type=int, default=30)

    _client_commands(add)
    from zart_es.cli import _archive as cli_archive
    from zart_es.cli import _audit as cli_audit
    from zart_es.cli import _bulk as cli_bulk
    from zart_es.cli import _completion as cli_completion
    from zart_es.cli import _ops as cli_ops
    from zart_es.cli import _replay as cli_replay
    from zart_es.cli import _schedule as cli_schedule

    parser.set_defaults(ops={**cli_ops.add_commands(add), **cli_replay.add_commands(add),
                             **cli_bulk.add_commands(add),
                             **cli_archive.add_commands(add, nested),
                             **cli_audit.add_commands(add, nested),
                             **cli_completion.add_commands(add),
                             **cli_schedule.add_commands(add, nested)})
    return parser


def _client_commands(add: AddCommand) -> None:
    start = add("start", "start an execution; prints its id")
    start.add_argument("name")
    start.add_argument("--input", default="null", help="input as JSON")
    start.add_argument("--id", default=None, help="execution id (idempotent)")
    start.add_argument("--task-queue", default=None,
                       help="run it on this task queue (default: the one its workflow declares)")
    start.add_argument("--debounce", default=None, metavar="WINDOW",
                       help="starts in this window (5s) with the same --debounce-key are one "
                            "execution, run with the last input")
    start.add_argument("--debounce-key", default="")
    start.add_argument("--if-ended", default="return", choices=("return", "reject", "reset"),
                       help="an --id whose execution ended: return it, refuse, or run it "
                            "again with this input (as Zart)")
    start.add_argument("--if-running", default="return",
                       choices=("return", "fail", "terminate"),
                       help="an --id whose execution runs: return it, refuse, or end it and "
                            "run it again with this input")

    add("status", "state of an execution").add_argument("id")

    result = add("result", "result of an execution, as JSON")
    result.add_argument("id")
    result.add_argument("--wait", action="store_true", help="wait until it ends")
    result.add_argument("--timeout", type=float, default=None)

    listing = add("list", "executions, newest first, a page at a time")
    listing.add_argument("--status", default=None)
    listing.add_argument("--name", default=None, help="workflow name")
    listing.add_argument("--limit", type=int, default=50, help="rows per page (default 50)")
    listing.add_argument("--cursor", default=None,
                         help="the page after this cursor (printed under the previous page)")
    listing.add_argument("--since", default=None, metavar="WHEN",
                         help="started at or after: ISO 8601 (UTC unless it has an offset) "
                         "or a duration ago (30m, 2h, 7d)")
    listing.add_argument("--until", default=None, metavar="WHEN",
                         help="started before: ISO 8601 or a duration ago")
    listing.add_argument("--all", action="store_true", help="follow the cursors to the end")
    listing.add_argument("--archived", action="store_true", help="include archived ones")

    history = add("history", "the event log of an execution")
    history.add_argument("id")
    history.add_argument("--format", choices=("table", "json", "jsonl", "export"),
                         default="table", help="export: lossless JSON lines, for "
                         "'zart-es replay --file' (payloads stay as recorded)")
    history.add_argument("--verify", action="store_true",
                         help="check sequence numbers and the hash chain; exit 1 if broken")
    history.add_argument("--limit", type=int, default=None,
                         help="print one page of this many events (default: the whole log)")
    history.add_argument("--cursor", default=None,
                         help="the page after this cursor (printed under the previous page)")
    history.add_argument("--timeline", action="store_true",
                         help="draw the steps, retries, sleeps, waits and children to scale")

    cancel = add("cancel", "ask an execution to stop")
    cancel.add_argument("id")
    cancel.add_argument("--reason", default=None)

    send = add("send-signal", "deliver a signal to an execution (first name: send-event)",
               "send-event")
    send.add_argument("id")
    send.add_argument("name")
    send.add_argument("--payload", default="null", help="payload as JSON")
    send.add_argument("--signal-id", "--event-id", dest="signal_id", default=None,
                      help="idempotency key")

    update = add("update", "send an update to an execution and wait for its answer")
    update.add_argument("id")
    update.add_argument("name")
    update.add_argument("--payload", default="null", help="payload as JSON")
    update.add_argument("--update-id", default=None,
                        help="idempotency key: the same id again waits for the same answer")
    update.add_argument("--timeout", type=float, default=30.0,
                        help="seconds to wait for the answer")

    query = add("query", "ask a running or ended execution a query (ctx.on_query); "
                "nothing is recorded")
    query.add_argument("id")
    query.add_argument("name")
    query.add_argument("args", nargs="*", help="the handler's arguments, each as JSON")
    query.add_argument("--timeout", type=float, default=5.0,
                       help="seconds to wait for a worker's answer")


def _worker_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--app", required=True, action="append",
                   help="module whose @durable functions to serve (repeatable)")
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--lease-timeout", type=float, default=30.0,
                   help="seconds before a silent worker's work is reclaimed")
    p.add_argument("--grace-period", type=float, default=10.0,
                   help="seconds in-flight executions get to finish on SIGTERM")
    p.add_argument("--poll-interval", type=float, default=0.5)
    p.add_argument("--quarantine-after", type=int, default=5,
                   help="engine crashes on one execution before it is quarantined")
    p.add_argument("--task-queue", action="append", dest="task_queues", default=None,
                   metavar="NAME", help="serve only this task queue (repeatable; default: "
                   "'default' and every task queue the apps' workflows declare)")
    from zart_es.cli._archive import archive_options

    archive_options(p)
    p.add_argument("--no-scheduler", action="store_true",
                   help="do not start the occurrences of recurring schedules here")
    p.add_argument("--log-json", action="store_true", default=None,
                   help="JSON log lines (default when stderr is not a terminal)")


def _api_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--token", default=None,
                   help="require this bearer token (default: $ZART_API_TOKEN; none: no auth)")
    p.add_argument("--max-input-bytes", type=int, default=8 * 1024 * 1024)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``zart-es`` console script."""
    args = build_parser().parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv  # to print the next page's command
    args.redis_url = args.sub_redis_url or args.redis_url
    args.partitions = args.partitions if args.sub_partitions is None else args.sub_partitions
    args.json = args.sub_json or args.json
    args.archive_url = args.sub_archive_url or args.archive_url
    from zart_es.cli import _client_cmds as cli_client
    from zart_es.cli import _serve as cli_serve

    handlers: dict[str, Handler] = {
        "worker": cli_serve.worker, "api": cli_serve.api, "dev": cli_serve.dev,
        "health": cli_client.health,
        "demo": cli_serve.demo, "start": cli_client.start, "status": cli_client.status,
        "result": cli_client.result, "list": cli_client.listing,
        "history": cli_client.history, "cancel": cli_client.cancel,
        "send-signal": cli_client.send_signal, "send-event": cli_client.send_signal,
        "query": cli_client.query, "update": cli_client.update,
        **args.ops,
    }
    try:
        return _run(handlers[args.command](args))
    except KeyboardInterrupt:
        return 130
    except (ZartError, RedisError, RedisClusterException, OSError, ValueError,
            RecursionError) as exc:
        print(f"zart-es: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR


def _run(coro: Awaitable[int]) -> int:
    try:
        import uvloop
    except ImportError:  # pragma: no cover -- uvloop is a dependency where it builds
        return asyncio.run(coro)  # type: ignore[arg-type]
    return uvloop.run(coro)  # type: ignore[arg-type]


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    message = text[0] if text else type(exc).__name__
    return message if isinstance(exc, ZartError) else f"{type(exc).__name__}: {message}"
