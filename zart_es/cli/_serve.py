"""``zart-es`` commands that run long: worker, api, dev, demo."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator
from typing import Any

from zart_es.cli._common import import_apps
from zart_es.cli._main import EXIT_ERROR


def _worker_from(args: argparse.Namespace, redis_url: str | None) -> Any:
    from zart_es.engine import Worker

    if getattr(args, "seal_interval", None) is not None:  # the worker's archiver reads it
        os.environ["ZART_SEAL_INTERVAL"] = args.seal_interval
    return Worker(
        redis_url,
        concurrency=args.concurrency,
        lease_timeout=args.lease_timeout,
        grace_period=args.grace_period,
        poll_interval=args.poll_interval,
        partitions=args.partitions,
        heartbeat_file=getattr(args, "heartbeat_file", None),
        run_scheduler=not args.no_scheduler,
        quarantine_after=args.quarantine_after,
        task_queues=args.task_queues,
        archive_url=args.archive_url,
        retention=args.retention,
    )


def _stop_on_signals(stop: Any) -> None:
    """First SIGTERM/SIGINT: drain. Second: exit now (work is reclaimed after the lease)."""
    loop = asyncio.get_running_loop()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            os._exit(EXIT_ERROR)
        stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)


async def worker(args: argparse.Namespace) -> int:
    """``zart-es worker --app MODULE ...``: serve until SIGTERM/SIGINT, then drain."""
    from zart_es.engine import configure_logging

    configure_logging(json=args.log_json)
    import_apps(args.app)
    engine = _worker_from(args, args.redis_url)
    if args.metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port, registry=engine.metrics.registry)
    _stop_on_signals(engine.stop)
    await engine.run()
    return 0


def _uvicorn(app: Any, args: argparse.Namespace) -> Any:
    import uvicorn

    class Server(uvicorn.Server):
        # our own handlers stop the server (and the worker) and exit 0; uvicorn's would
        # re-raise the signal after shutdown and end the process with it
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    from zart_es.api import access_log

    # uvicorn's records go to the root logger, which configure_logging routes through
    # structlog (log_config=None: no handlers of its own); the access log is ours, with
    # the duration uvicorn's lacks
    return Server(uvicorn.Config(access_log(app), host=args.host, port=args.port,
                                 log_config=None, log_level=None, access_log=False,
                                 lifespan="on"))


async def api(args: argparse.Namespace) -> int:
    """``zart-es api [--host] [--port]``: the HTTP API until SIGTERM/SIGINT."""
    from zart_es.api import create_app
    from zart_es.engine import configure_logging

    configure_logging(json=args.log_json)
    if args.archive_url:  # the client create_app builds reads archived executions there
        os.environ["ZART_ARCHIVE_URL"] = args.archive_url
    app = create_app(args.redis_url, token=args.token, max_input_bytes=args.max_input_bytes,
                     partitions=args.partitions)
    http = _uvicorn(app, args)
    _stop_on_signals(lambda: setattr(http, "should_exit", True))
    print(f"zart-es API on http://{args.host}:{args.port} (OpenAPI: /schema)", flush=True)
    await http.serve()
    return 0


async def dev(args: argparse.Namespace) -> int:
    """``zart-es dev --app MODULE``: embedded Redis (unless a URL is given), a worker and
    the API in one process."""
    from zart_es.api import create_app
    from zart_es.engine import configure_logging
    from zart_es.store import RedisServer

    configure_logging(json=args.log_json)
    import_apps(args.app)
    url = args.redis_url or os.environ.get("ZART_REDIS_URL")
    server = None
    if not url:
        server = await asyncio.to_thread(RedisServer(os.path.join(args.data_dir, "redis"),
                                                     appendfsync="everysec").start)
        url = server.url
        # the embedded default archive, beside the embedded Redis (worker and API read it)
        os.environ["ZART_ARCHIVE_URL"] = (args.archive_url or os.environ.get("ZART_ARCHIVE_URL")
                                          or os.path.join(args.data_dir, "archive"))
    try:
        engine = _worker_from(args, url)
        http = _uvicorn(create_app(url, token=args.token, partitions=args.partitions,
                                   max_input_bytes=args.max_input_bytes), args)
        print(f"zart-es dev: Redis {url}, API http://{args.host}:{args.port}, "
              f"console http://{args.host}:{args.port}/ui/, "
              f"workflows {', '.join(engine.registry.names()) or '(none)'}", flush=True)
        work = asyncio.create_task(engine.run())

        def stop() -> None:
            http.should_exit = True
            engine.stop()

        _stop_on_signals(stop)
        await http.serve()
        engine.stop()
        await work
    finally:
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(server.stop)
    return 0


async def demo(args: argparse.Namespace) -> int:
    """``zart-es demo``: see :mod:`zart_es.demo._demo`."""
    from zart_es.demo import run_demo
    from zart_es.engine import configure_logging

    configure_logging(json=False, level="WARNING")  # the demo prints its own story
    return await run_demo(data_dir=args.data_dir, items=args.items, partitions=args.partitions)
