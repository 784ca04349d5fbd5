"""``zart-es demo``: the examples on a real Redis, with a worker killed mid-loop.

With no ``$ZART_REDIS_URL`` it starts a private redis-server (AOF on) in ``data_dir``.
Workers are real subprocesses (``zart-es worker --app workers.examples``); the kill is a
real SIGKILL. Side effects are counted from the file the example services append to.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zart_es.client import Client
from zart_es.core import AuditKeyring
from zart_es.demo._archive_demo import archive_part
from zart_es.ops import Schedules
from zart_es.store import RedisServer

LEASE = "2"


class _Screen:
    """Progress on one line in a terminal, plain lines otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self._open = False

    def progress(self, text: str) -> None:
        if self.tty:
            print(f"\r  {text}\033[K", end="", flush=True)
            self._open = True

    def say(self, text: str) -> None:
        if self._open:
            print()
            self._open = False
        print(text, flush=True)


def _demo_audit_key(base: Path) -> str:
    """The embedded demo's audit keyring: one key kept in its data dir, made once."""
    path = base / "audit-key"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(AuditKeyring.generate())
    return f"demo:{path.read_text().strip()}"


def _spawn_worker(url: str, log_path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log_file:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "zart_es", "--redis-url", url, "worker",
             "--app", "workers.examples", "--lease-timeout", LEASE, "--log-json"],
            stdout=log_file, stderr=log_file, env=env, start_new_session=True,
        )


async def run_demo(data_dir: str, items: int = 30, partitions: int | None = None) -> int:
    """Run the demo; returns the process exit code (0 when every check held)."""
    screen = _Screen()
    base = Path(os.path.abspath(data_dir))  # noqa: ASYNC240 -- once, before anything runs
    await asyncio.to_thread(base.mkdir, parents=True, exist_ok=True)
    url = os.environ.get("ZART_REDIS_URL")
    server: RedisServer | None = None
    if not url:
        server = await asyncio.to_thread(
            RedisServer(base / "redis", appendfsync="everysec").start
        )
        url = server.url
        screen.say(f"embedded redis-server {server.binary} on port {server.port} "
                   f"(AOF in {server.data_dir})")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    effects = base / f"effects-{stamp}.log"
    env = {**os.environ, "ZART_REDIS_URL": url, "ZART_DEMO_EFFECTS": str(effects),
           "ZART_DEMO_STEP_SECONDS": "0.1",
           "ZART_DEMO_OUTAGE": str(base / f"outage-{stamp}")}
    if partitions is not None:
        env["ZART_PARTITIONS"] = str(partitions)
    if server is not None and not os.environ.get("ZART_AUDIT_KEY"):
        env["ZART_AUDIT_KEY"] = os.environ["ZART_AUDIT_KEY"] = _demo_audit_key(base)
        screen.say(f"events chained with HMAC-SHA256 under the demo's audit key "
                   f"({base / 'audit-key'}; set ZART_AUDIT_KEY to use your own)")
    workers: list[subprocess.Popen[bytes]] = []
    try:
        workers.append(_spawn_worker(url, base / "worker.log", env))
        screen.say(f"worker 1 started (pid {workers[0].pid}); logs in {base / 'worker.log'}")
        async with Client(url, partitions=partitions) as client:
            run = _Demo(client, screen, workers, base, env, stamp, effects)
            ok = await _crash_and_resume(run, items)
            ok = await _other_examples(client, screen, stamp) and ok
            ok = await _operations(run) and ok
            if server is not None:  # the demo's own Redis: its executions are its to archive
                ok = await archive_part(client, screen.say, base, stamp) and ok
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.kill()
        if server is not None:
            server.stop()
    screen.say("demo finished: every check held" if ok else "demo finished: a check FAILED")
    return 0 if ok else 1


@dataclass
class _Demo:
    """What the demo's parts share."""

    client: Client
    screen: _Screen
    workers: list[subprocess.Popen[bytes]]
    base: Path
    env: dict[str, str]
    stamp: str
    effects: Path


async def _crash_and_resume(run: _Demo, items: int) -> bool:
    client, screen, workers, stamp = run.client, run.screen, run.workers, run.stamp
    screen.say(f"\n1. batch-processor over {items} items, one durable step per item")
    eid = await client.start("batch-processor", {"count": items},
                             execution_id=f"demo-batch-{stamp}")
    kill_at = max(1, items // 3)
    while (done := await _items_done(client, eid)) < kill_at:
        screen.progress(f"[worker 1] {done}/{items} items recorded")
        await asyncio.sleep(0.05)
    workers[0].send_signal(signal.SIGKILL)
    workers[0].wait()
    done = await _items_done(client, eid)
    screen.say(f"  kill -9 worker 1 with {done}/{items} items recorded (one step in flight)")
    workers.append(_spawn_worker(run.env["ZART_REDIS_URL"], run.base / "worker.log", run.env))
    screen.say(f"  worker 2 started (pid {workers[-1].pid}); it reclaims the execution "
               f"after the {LEASE}s lease")
    while (status := await client.status(eid)).state not in ("completed", "failed"):
        screen.progress(f"[worker 2] {await _items_done(client, eid)}/{items} items recorded")
        await asyncio.sleep(0.05)
    result = await client.result(eid)
    text = await asyncio.to_thread(run.effects.read_text)
    runs = collections.Counter(
        line.split()[1] for line in text.splitlines() if line.startswith("process ")
    )
    twice = sorted(int(k) for k, n in runs.items() if n > 1)
    missing = [i for i in range(items) if str(i) not in runs]
    screen.say(f"  {status.status}: processed={result['processed']}; side effects: "
               f"{sum(1 for n in runs.values() if n == 1)} items ran once, "
               f"re-run after the crash: {twice or 'none'} (at most the one in flight)")
    ok = status.status == "completed" and not missing and len(twice) <= 1 and runs["0"] == 1
    if not ok:
        screen.say(f"  CHECK FAILED: missing={missing} re-run={twice}")
    return ok


async def _items_done(client: Client, eid: str) -> int:
    status = await client.status(eid)
    return max(0, status.version - 2)  # ExecutionStarted + fetch-items precede the items


async def _other_examples(client: Client, screen: _Screen, stamp: str) -> bool:
    screen.say("\n2. the other examples, concurrently")
    starts: dict[str, tuple[str, Any]] = {
        "durable-loop": ("durable-loop", {"count": 10}),
        "job-poller": ("job-poller", {"name": "nightly", "runs_for": 1.0, "every": 0.3}),
        "transform-records": ("transform-records", 8),
        "chunked-processing": ("chunked-processing", {"total": 10_000, "chunk_size": 1_000}),
        "provision (2 failures, exponential backoff)": ("provision", {"fail_times": 2}),
    }
    ids = {label: await client.start(name, data, execution_id=f"demo-{name}-{stamp}")
           for label, (name, data) in starts.items()}
    ok = True
    for label, eid in ids.items():
        try:
            value = await client.result(eid, timeout=60)
            screen.say(f"  {label}: {value}")
        except Exception as exc:
            screen.say(f"  {label}: FAILED {exc}")
            ok = False
    return ok


async def _operations(run: _Demo) -> bool:
    """A queue's per-tenant cap, an operator's repair, a pause and a schedule."""
    client, screen, stamp = run.client, run.screen, run.stamp
    screen.say("\n3. operating executions")
    emails = [await client.start("send-email", {"tenant": "acme", "to": f"user{i}@acme.test"},
                                 queue_key="acme", execution_id=f"demo-email-{i}-{stamp}")
              for i in range(6)]
    for eid in emails:
        await client.result(eid, timeout=60)
    peak = _peak_in_flight(await asyncio.to_thread(run.effects.read_text))
    screen.say(f"  queue 'emails' (cap 2 per tenant): 6 emails for acme sent, at most "
               f"{peak} in flight at once")
    ok = peak == 2

    outage = Path(run.env["ZART_DEMO_OUTAGE"])
    await asyncio.to_thread(outage.touch)
    order = await client.start("checkout", "order-7", execution_id=f"demo-checkout-{stamp}")
    failed = await client.wait(order, 60)
    screen.say(f"  checkout during a payment outage: {failed.status} ({failed.error})")
    await asyncio.to_thread(outage.unlink)
    step = await client.retry_step(order, reason="provider is back", by="demo")
    repaired = await client.result(order, timeout=60)
    screen.say(f"  retry_step({step!r}) after the outage: {repaired} "
               "(the reservation was not made again)")
    ok = ok and failed.status == "failed" and repaired.startswith("reserved:")

    await client.pause(workflow="transform-records", reason="demo", by="demo")
    await asyncio.sleep(1.2)  # workers refresh their copy of the rules within a second
    held = await client.start("transform-records", 3, execution_id=f"demo-paused-{stamp}")
    while (await client.status(held)).status != "paused":
        screen.progress("pause rule: waiting for the new execution to be held")
        await asyncio.sleep(0.05)
    resumed = await client.resume(workflow="transform-records", by="demo")
    value = await client.result(held, timeout=60)
    screen.say(f"  paused 'transform-records': a new execution waited 'paused'; resume let "
               f"{resumed} go on -> {value}")
    ok = ok and value == 3

    schedules = Schedules(client)
    name = f"demo-every-second-{stamp}"
    await schedules.add(name, "durable-loop", {"count": 2}, every="1s", by="demo")
    while (state := await schedules.state(name)) is None or state.started < 2:
        screen.progress("schedule every 1s: waiting for two occurrences")
        await asyncio.sleep(0.1)
    await schedules.remove(name, by="demo")
    screen.say(f"  schedule every 1s: started {state.started} executions "
               f"(ids {name}-<occurrence>), then removed")
    return ok


def _peak_in_flight(effects: str) -> int:
    marks: list[tuple[float, int]] = []
    for line in effects.splitlines():
        kind, _, key = line.partition(" ")
        if kind in ("email-begin", "email-end"):
            marks.append((float(key.rsplit(":", 1)[1]), 1 if kind == "email-begin" else -1))
    peak = running = 0
    for _t, delta in sorted(marks):
        running += delta
        peak = max(peak, running)
    return peak
