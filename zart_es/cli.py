"""The ``zart-es`` command: every command goes through the public Client or Worker.

Errors print one line (``zart-es: error: ...``) and exit non-zero; no tracebacks.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import msgspec
from redis.exceptions import RedisError

from .errors import ZartError

EXIT_ERROR = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``zart-es`` (exposed for tests and docs)."""
    # the connection options are accepted before or after the subcommand
    def connection_options(p: argparse.ArgumentParser, prefix: str) -> None:
        p.add_argument("--redis-url", dest=f"{prefix}redis_url", default=None,
                       help="Redis URL (default: $ZART_REDIS_URL or redis://localhost:6379/0)")
        p.add_argument("--partitions", dest=f"{prefix}partitions", type=int, default=None,
                       help="partition count of the deployment (default: $ZART_PARTITIONS or 16)")

    common = argparse.ArgumentParser(add_help=False)
    connection_options(common, "sub_")
    parser = argparse.ArgumentParser(prog="zart-es", description="Durable execution on Redis")
    connection_options(parser, "")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, parents=[common])

    worker = add("worker", "run a worker until SIGTERM/SIGINT")
    worker.add_argument("--app", required=True, action="append",
                        help="module whose @durable functions to serve (repeatable)")
    worker.add_argument("--concurrency", type=int, default=100)
    worker.add_argument("--lease-timeout", type=float, default=30.0,
                        help="seconds before a silent worker's work is reclaimed")
    worker.add_argument("--grace-period", type=float, default=10.0,
                        help="seconds in-flight executions get to finish on SIGTERM")
    worker.add_argument("--poll-interval", type=float, default=0.5)
    worker.add_argument("--log-json", action="store_true", default=None,
                        help="JSON log lines (default when stderr is not a terminal)")

    demo = add("demo", "run the examples, kill a worker mid-loop, watch it resume")
    demo.add_argument("--data-dir", default=".zart-data",
                      help="where the embedded Redis keeps its AOF (when $ZART_REDIS_URL is unset)")
    demo.add_argument("--items", type=int, default=30)

    start = add("start", "start an execution; prints its id")
    start.add_argument("name")
    start.add_argument("--input", default="null", help="input as JSON")
    start.add_argument("--id", default=None, help="execution id (idempotent)")

    status = add("status", "state of an execution, as JSON")
    status.add_argument("id")

    result = add("result", "result of an execution, as JSON")
    result.add_argument("id")
    result.add_argument("--wait", action="store_true", help="wait until it ends")
    result.add_argument("--timeout", type=float, default=None)

    history = add("history", "the event log of an execution")
    history.add_argument("id")
    history.add_argument("--format", choices=("table", "json", "jsonl"), default="table")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``zart-es`` console script."""
    args = build_parser().parse_args(argv)
    args.redis_url = args.sub_redis_url or args.redis_url
    args.partitions = args.sub_partitions or args.partitions
    handlers: dict[str, Callable[[argparse.Namespace], Coroutine[Any, Any, int]]] = {
        "worker": _worker,
        "demo": _demo,
        "start": _start,
        "status": _status,
        "result": _result,
        "history": _history,
    }
    try:
        return _run(handlers[args.command](args))
    except KeyboardInterrupt:
        return 130
    except (ZartError, RedisError, OSError, ValueError) as exc:
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


async def _worker(args: argparse.Namespace) -> int:
    from .logs import configure_logging
    from .worker import Worker

    configure_logging(json=args.log_json)
    sys.path.insert(0, os.getcwd())
    for module in args.app:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ZartError(f"cannot import --app {module!r}: {exc}") from None
    worker = Worker(
        args.redis_url,
        concurrency=args.concurrency,
        lease_timeout=args.lease_timeout,
        grace_period=args.grace_period,
        poll_interval=args.poll_interval,
        partitions=args.partitions,
    )
    loop = asyncio.get_running_loop()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals > 1:  # second signal: stop now; pending work is reclaimed after the lease
            os._exit(EXIT_ERROR)
        worker.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    await worker.run()
    return 0


async def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return await run_demo(data_dir=args.data_dir, items=args.items, partitions=args.partitions)


def _client(args: argparse.Namespace) -> Any:
    from .client import Client

    return Client(args.redis_url, partitions=args.partitions)


async def _start(args: argparse.Namespace) -> int:
    try:
        data = json.loads(args.input)
    except json.JSONDecodeError as exc:
        raise ZartError(f"--input is not valid JSON: {exc}") from None
    async with _client(args) as client:
        print(await client.start(args.name, data, execution_id=args.id))
    return 0


async def _status(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        status = await client.status(args.id)
        _print_json({**msgspec.to_builtins(status), "done": status.done})
    return 0


async def _result(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        if args.wait:
            value = await client.result(args.id, timeout=args.timeout)
        else:
            status = await client.status(args.id)
            if not status.done:
                raise ZartError(f"execution {args.id!r} is {status.state}; use --wait to wait")
            value = await client.result(args.id)
        _print_json(value)
    return 0


async def _history(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        events = [e async for e in client.history(args.id)]
    if args.format == "json":
        _print_json([_event_dict(e) for e in events])
    elif args.format == "jsonl":
        for event in events:
            print(json.dumps(_event_dict(event), default=str))
    else:
        for event in events:
            detail = {k: v for k, v in _event_dict(event).items()
                      if k not in ("type", "seq", "at_ms", "prev_hash")}
            print(f"{event.seq:>5}  {event.at_ms}  {type(event).__name__:<20} "
                  f"{json.dumps(detail, default=str)}")
    return 0


def _event_dict(event: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": type(event).__name__}
    for field in event.__struct_fields__:
        value = getattr(event, field)
        if isinstance(value, bytes):
            try:
                value = msgspec.msgpack.decode(value)
            except msgspec.DecodeError:
                value = value.hex()
        out[field] = value
    return out


def _print_json(value: Any) -> None:
    print(msgspec.json.encode(value, enc_hook=str).decode())
