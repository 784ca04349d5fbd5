"""Record the logs of this version's operations as a fixture for later versions.

``python -m tests.histories.record tests/histories/v0.3.0-operations.msgpack`` runs a
few workflows through repairs, pause rules and a queue on a private redis-server and
writes their logs (entries and last hash), which ``tests/test_histories.py`` decodes,
folds and verifies with every later version.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

import msgspec

from zart_es import Client, Context, Registry, Worker, durable, queue
from zart_es.store import RedisServer


def _registry() -> Registry:
    registry = Registry()
    failures = {"charge": 1}
    queue("recorded", concurrency=1, registry=registry)

    def charge() -> str:
        if failures["charge"]:
            failures["charge"] -= 1
            raise ConnectionError("psp down")
        return "charged"

    @durable("order", registry=registry)
    async def order(ctx: Context, n: int) -> str:
        await ctx.step("reserve", lambda: n)
        await ctx.sleep(0.05, name="settle")
        return str(await ctx.step("charge", charge))

    @durable("queued", queue="recorded", registry=registry)
    async def queued(ctx: Context) -> int:
        await ctx.sleep(0.05)
        return int(await ctx.step("one", lambda: 1))

    return registry


async def record() -> dict[str, Any]:
    """The logs, by execution id: entries (id, fields) and the meta hash's last hash."""
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp)).start()
        try:
            return await _run(server.url)
        finally:
            server.stop()


async def _run(url: str) -> dict[str, Any]:
    async with Client(url) as client, Worker(url, registry=_registry(), poll_interval=0.05):
        retried = await client.start("order", 1, execution_id="retried")
        await client.wait(retried, 10)
        await client.retry_step(retried, reason="psp back")
        rerun = await client.start("order", 2, execution_id="rerun")
        await client.wait(rerun, 10)
        await client.rerun(rerun, ["sleep:settle"])
        restarted = await client.start("queued", execution_id="restarted", queue_key="k")
        await client.wait(restarted, 10)
        await client.restart(restarted)
        await client.pause(workflow="queued")
        await asyncio.sleep(0.6)
        paused = await client.start("queued", execution_id="paused", queue_key="k")
        while (await client.status(paused)).state != "paused":
            await asyncio.sleep(0.05)
        await client.resume(workflow="queued")
        ids = [retried, rerun, restarted, paused]
        for eid in ids:
            await client.result(eid, timeout=10)
        logs: dict[str, Any] = {}
        for eid in ids:
            entries = await client.redis.xrange(client.keys.log(eid))
            last = await client.redis.hget(client.keys.meta(eid), "h")  # type: ignore[misc]
            logs[eid] = {
                "entries": [[i.decode(), {k.decode(): v for k, v in f.items()}]
                            for i, f in entries],
                "last_hash": last.decode(),
            }
    return logs


if __name__ == "__main__":
    Path(sys.argv[1]).write_bytes(msgspec.msgpack.encode(asyncio.run(record())))
