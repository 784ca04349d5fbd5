"""End to end, as users run it: ``zart-es worker`` processes, a client in a process of its
own, a private redis-server with ``appendfsync always`` and with ``everysec``; baselines
measured in the same run on the same Redis. (``steps.py`` measures the engine inside one
process: a ``Worker`` and the executions started beforehand, no ``result()`` waiters.)

Per fsync mode: a fresh redis-server; WORKERS ``python -m zart_es worker --app bench.apps
--concurrency 500`` processes (their CPU read with psutil), awaited until each of them
blocks in XREADGROUP on every partition's work stream (Redis 7.0 lists a group consumer
only once it got a message); then one client process (``e2e.py client URL``: a ``Client``
under uvloop that runs one command per line of its stdin and answers one JSON line, with
its own ``time.process_time()`` and wall time). A first pass of shape (a) warms both sides
up (connection pools, script caches); it is reported as "cold", outside the medians. Then
ROUNDS rounds, each after waiting (at most 10 s) for other processes on the shared machine
to use less than a quarter of a core, of

* baseline: 10,000 raw redis-py ``XADD`` of a step-sized entry from 100 coroutines
  (``steps.raw_concurrent``, the concurrent baseline of ``steps.py``), in the client
  process; also redis-server CPU per ``XADD`` (``INFO cpu`` delta) and ``xadd`` usec per
  call (``INFO commandstats``). Run before and after the round; the round's baseline is
  the mean of the two;
* (a) await: 500 ``start`` + ``result`` of the 20-step ``steps20``, all concurrent
  (``asyncio.gather``); clocked in the client, first start to last result;
* (b) later: 500 concurrent ``start`` calls; once the status index says all have completed
  (polled with ZCARD every 20 ms, outside the client), 500 concurrent ``result`` calls;
  clocked from the first execution's creation to the last one's end (their meta hashes,
  Redis' clock).

Reported per shape, medians of the rounds (ratios: the median of the rounds' ratios):
steps/s ÷ XADD/s (target >= 0.7); client CPU per execution (target <= 0.3 ms); worker
CPU per step; redis-server CPU per durable step (everything the shape costs Redis: starts,
steps, completions, result reads, work reads and acks, over 20 steps an execution) ÷ its
CPU per raw XADD (target <= 4); and ``INFO commandstats`` per step. Commands the Lua
scripts on the step path call are counted by Redis both on their own and inside
``evalsha``'s time; they are marked. Each window also records the CPU other processes on
the machine used meanwhile (all busy CPU minus this benchmark's processes), in cores.
CPU placement is left to the OS by default (as users run it); ``--placement split`` pins
redis-server to the last CPU and the Python processes to the others.

    python bench/e2e.py [--fsync always|everysec|both] [--rounds 3] [--workers 1]
                        [--placement scheduler|split] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import datetime
import json
import os
import platform
import re
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import uvloop
from common import median, pin, private_redis
from redis.asyncio import Redis
from steps import EXECUTIONS, RAW_WRITERS, STEPS_EACH, raw_concurrent

from zart_es import Client, Deployment
from zart_es.store import Keys

SELF = Path(__file__).resolve()
ROOT = SELF.parent.parent
APP, WORKFLOW = "bench.apps", "steps20"
CONCURRENCY = 500
STEPS = EXECUTIONS * STEPS_EACH
RATIO_TARGET, CLIENT_MS_TARGET, REDIS_RATIO_TARGET = 0.7, 0.3, 4.0

OP_TIMEOUT_S = 60.0  # one client command (one shape), in the client
REPLY_TIMEOUT_S = OP_TIMEOUT_S + 15.0  # waiting for its answer, here
READY_TIMEOUT_S = 30.0  # processes up and workers reading
STOP_TIMEOUT_S = 10.0  # SIGTERM, then SIGKILL
POLL_S = 0.02
IDLE_S = 1.0
# before each round, wait (at most QUIET_WAIT_S) for other processes on the shared machine
# to use less than QUIET_CORES over a QUIET_PROBE_S probe
QUIET_CORES, QUIET_PROBE_S, QUIET_WAIT_S = 0.25, 0.5, 10.0
OWN_COMMANDS = {"info", "zcard", "client|list"}  # this script's, not the engine's
SCRIPTS_ON_PATH = ("append.lua", "lease.lua")  # the Lua a step, a start and a lease run


# -- the client process ------------------------------------------------------------------


class ClientSide:
    """What the client process runs, one command at a time."""

    def __init__(self, client: Client, redis: Redis) -> None:
        self.client = client
        self.redis = redis
        self.ids: list[str] = []

    async def xadd(self) -> dict[str, Any]:
        return {"rate": await raw_concurrent(self.redis)}

    async def awaited(self) -> dict[str, Any]:
        async def one() -> Any:
            return await self.client.result(await self.client.start(WORKFLOW, STEPS_EACH))

        _check(await asyncio.gather(*(one() for _ in range(EXECUTIONS))))
        return {}

    async def start(self) -> dict[str, Any]:
        self.ids = list(await asyncio.gather(
            *(self.client.start(WORKFLOW, STEPS_EACH) for _ in range(EXECUTIONS))))
        return {"ids": self.ids}

    async def read(self) -> dict[str, Any]:
        _check(await asyncio.gather(*(self.client.result(i) for i in self.ids)))
        return {}

    async def do(self, command: str) -> dict[str, Any]:
        """Run ``command``; its wall and CPU time (this process), or the error."""
        run: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
            "xadd": self.xadd, "await": self.awaited, "start": self.start, "read": self.read}
        if command not in run:
            return {"error": f"unknown command {command!r}"}
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            extra = await asyncio.wait_for(run[command](), OP_TIMEOUT_S)
        except Exception as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}
        return {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
                **extra}


def _check(results: list[Any]) -> None:
    wrong = [r for r in results if r != STEPS_EACH]
    if wrong:
        raise RuntimeError(f"{len(wrong)} results were not {STEPS_EACH}: {wrong[:3]}")


async def client_main(url: str) -> None:
    """The client process: one command a line on stdin, one JSON line back on stdout;
    ends at "quit" or end of input."""
    redis = Redis.from_url(url)
    try:
        async with Client(url) as client:
            side = ClientSide(client, redis)
            while (command := (await asyncio.to_thread(sys.stdin.readline)).strip()) not in (
                    "", "quit"):
                print(json.dumps(await side.do(command)), flush=True)
    finally:
        await redis.aclose()


# -- processes ---------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM it if this process dies (Linux), so no worker
    or client outlives a benchmark killed hard."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


async def spawn(argv: list[str], log: Path, *, pipes: bool = False) -> asyncio.subprocess.Process:
    """A child process in the repository root, its output (or only stderr) to ``log``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ZART_LOG_LEVEL": "WARNING"}
    pipe = asyncio.subprocess.PIPE
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            *argv, cwd=ROOT, env=env, stdin=pipe if pipes else asyncio.subprocess.DEVNULL,
            stdout=pipe if pipes else out, stderr=out, preexec_fn=_die_with_parent)


def worker_argv(url: str) -> list[str]:
    return [sys.executable, "-m", "zart_es", "worker", "--redis-url", url, "--app", APP,
            "--concurrency", str(CONCURRENCY), "--grace-period", "2"]


async def stop(procs: list[asyncio.subprocess.Process]) -> None:
    """SIGTERM every child still running, wait, SIGKILL those that do not end in time."""
    for proc in procs:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
    for proc in procs:
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


def split(redis_pid: int | None, python_pids: list[int]) -> None:
    """``--placement split``: redis-server alone on the last CPU, the worker(s) and the
    client on the others (like a Redis across the network, and no flip between a
    same-core and a cross-core wake-up from round to round)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or redis_pid is None:
        return
    pin(redis_pid, {cpus[-1]})
    for pid in python_pids:
        pin(pid, set(cpus[:-1]))


class Child:
    """The client process, spoken to over its pipes; a worker that exits meanwhile ends
    the wait at once (its executions would never finish)."""

    def __init__(self, proc: asyncio.subprocess.Process,
                 workers: list[asyncio.subprocess.Process]) -> None:
        self.proc = proc
        self.workers = workers

    async def ask(self, command: str) -> dict[str, Any]:
        stdin, stdout = self.proc.stdin, self.proc.stdout
        if stdin is None or stdout is None:
            raise RuntimeError("no pipes to the client process")
        stdin.write(f"{command}\n".encode())
        await stdin.drain()
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        while True:
            line = await self._line(stdout, deadline)
            if not line:
                raise RuntimeError(f"the client process ended (exit {await self.proc.wait()})")
            if line.startswith(b"{"):
                reply: dict[str, Any] = json.loads(line)
                if "error" in reply:
                    raise RuntimeError(f"client {command!r}: {reply['error']}")
                return reply

    async def _line(self, stdout: asyncio.StreamReader, deadline: float) -> bytes:
        reading = asyncio.ensure_future(stdout.readline())
        try:
            while not reading.done():
                await asyncio.wait({reading}, timeout=0.5)
                if reading.done():
                    break
                dead = [w for w in self.workers if w.returncode is not None]
                if dead:
                    raise RuntimeError(f"worker {dead[0].pid} exited with {dead[0].returncode}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no answer from the client in {REPLY_TIMEOUT_S:.0f} s")
            return reading.result()
        finally:
            reading.cancel()


async def wait_ready(redis: Redis, keys: Keys, workers: list[asyncio.subprocess.Process]) -> None:
    """Until every worker blocks reading every partition's work stream (XREADGROUP: it has
    joined the consumer group there; Redis 7.0 lists a consumer only once it got a message,
    so the blocked connections are counted instead; each worker also blocks reading its
    task queue's query stream)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while await blocked_readers(redis) < (keys.partitions + 1) * len(workers):
        for proc in workers:
            if proc.returncode is not None:
                raise RuntimeError(f"worker {proc.pid} exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"workers not reading after {READY_TIMEOUT_S:.0f} s")
        await asyncio.sleep(0.05)


async def blocked_readers(redis: Redis) -> int:
    clients: list[dict[str, Any]] = await redis.client_list()
    return sum(1 for c in clients if c.get("cmd") == "xreadgroup" and "b" in c.get("flags", ""))


# -- measuring ---------------------------------------------------------------------------


@dataclass
class Snapshot:
    redis_cpu_s: float
    commands: dict[str, tuple[int, int]]
    connections: int
    reads: int  # read events redis-server processed on client sockets
    worker_cpu_s: float
    busy_s: float  # the whole machine's busy CPU time
    ours_s: float  # of which redis-server, the workers, the client and this process
    at: float


@dataclass
class Usage:
    """What happened between two snapshots."""

    redis_cpu_s: float
    worker_cpu_s: float
    commands: dict[str, tuple[int, int]]  # name -> (calls, usec), the engine's only
    new_connections: int
    reads: int
    others_cores: float  # CPU used by other processes on the machine meanwhile, in cores

    def per_step(self) -> dict[str, list[float]]:
        return {name: [calls / STEPS, usec / STEPS]
                for name, (calls, usec) in sorted(self.commands.items())}


def cpu_s(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def busy_s() -> float:
    """CPU time the whole machine has spent busy (not idle, not waiting for I/O)."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


async def snapshot(redis: Redis, workers: list[psutil.Process],
                   ours: list[psutil.Process]) -> Snapshot:
    info: dict[str, Any] = await redis.info("cpu", "commandstats", "stats")
    commands = {key.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
                for key, v in info.items() if key.startswith("cmdstat_")}
    return Snapshot(
        redis_cpu_s=float(info["used_cpu_sys"]) + float(info["used_cpu_user"]),
        commands=commands, connections=int(info["total_connections_received"]),
        reads=int(info.get("total_reads_processed", 0)),
        worker_cpu_s=sum(cpu_s(w) for w in workers), busy_s=busy_s(),
        ours_s=sum(cpu_s(p) for p in ours), at=time.monotonic())


def usage(a: Snapshot, b: Snapshot) -> Usage:
    commands = {}
    for name, (calls, usec) in b.commands.items():
        before = a.commands.get(name, (0, 0))
        if name not in OWN_COMMANDS and calls > before[0]:
            commands[name] = (calls - before[0], usec - before[1])
    return Usage(redis_cpu_s=b.redis_cpu_s - a.redis_cpu_s,
                 worker_cpu_s=b.worker_cpu_s - a.worker_cpu_s, commands=commands,
                 new_connections=b.connections - a.connections, reads=b.reads - a.reads,
                 others_cores=max(0.0, (b.busy_s - a.busy_s) - (b.ours_s - a.ours_s))
                 / max(b.at - a.at, 1e-6))


def script_commands() -> set[str]:
    """Commands the Lua scripts on the step path call (Redis counts them twice)."""
    found: set[str] = set()
    for name in SCRIPTS_ON_PATH:
        path = ROOT / "zart_es" / "store" / "scripts" / name
        if path.exists():
            found |= {c.lower() for c in re.findall(r"redis\.p?call\(\s*['\"](\w+)['\"]",
                                                    path.read_text())}
    return found


class Bench:
    """The measurements of one fsync mode, against its running Redis, workers and client."""

    def __init__(self, redis: Redis, keys: Keys, client: Child,
                 workers: list[psutil.Process], ours: list[psutil.Process]) -> None:
        self.redis = redis
        self.keys = keys
        self.client = client
        self.workers = workers
        self.ours = ours  # every process of this benchmark, for the others' share

    async def snap(self) -> Snapshot:
        return await snapshot(self.redis, self.workers, self.ours)

    async def measured(self, command: str) -> tuple[dict[str, Any], Usage]:
        before = await self.snap()
        reply = await self.client.ask(command)
        return reply, usage(before, await self.snap())

    async def xadd(self) -> dict[str, float]:
        reply, used = await self.measured("xadd")
        calls, usec = used.commands.get("xadd", (0, 0))
        return {"rate": reply["rate"], "redis_cpu_us": used.redis_cpu_s * 1e6 / STEPS,
                "xadd_usec_per_call": usec / max(calls, 1), "reads": used.reads / STEPS,
                "others_cores": used.others_cores}

    async def awaited(self) -> tuple[float, float, Usage]:
        """Shape (a): (steps/s, client CPU s, usage)."""
        reply, used = await self.measured("await")
        return STEPS / reply["wall_s"], reply["cpu_s"], used

    async def later(self) -> tuple[float, float, float, Usage]:
        """Shape (b): (steps/s, client CPU s of the starts, of the reads, usage)."""
        done = await self.completed()
        before = await self.snap()
        started = await self.client.ask("start")
        deadline = time.monotonic() + OP_TIMEOUT_S
        while await self.completed() < done + EXECUTIONS:
            if time.monotonic() > deadline:
                raise TimeoutError(f"executions not completed after {OP_TIMEOUT_S:.0f} s")
            await asyncio.sleep(POLL_S)
        read = await self.client.ask("read")
        used = usage(before, await self.snap())
        return (STEPS / await self.window(started["ids"]), started["cpu_s"], read["cpu_s"],
                used)

    async def completed(self) -> int:
        async with self.redis.pipeline(transaction=False) as pipe:
            for p in range(self.keys.partitions):
                pipe.zcard(self.keys.index(p, "completed"))
            return sum(await pipe.execute())

    async def window(self, ids: list[str]) -> float:
        """Seconds from the first creation to the last end (Redis' clock, ms)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for execution_id in ids:
                pipe.hmget(self.keys.meta(execution_id), "c", "end")
            stamps = await pipe.execute()
        return max(0.001, (max(int(e) for _, e in stamps) - min(int(c) for c, _ in stamps))
                   / 1000)

    async def idle(self) -> dict[str, Any]:
        """Background cost with nothing to do (heartbeats, polls, blocked reads)."""
        before = await self.snap()
        await asyncio.sleep(IDLE_S)
        used = usage(before, await self.snap())
        return {"redis_cpu_ms_per_s": used.redis_cpu_s * 1e3 / IDLE_S,
                "worker_cpu_ms_per_s": used.worker_cpu_s * 1e3 / IDLE_S,
                "commands_per_s": {n: c / IDLE_S for n, (c, _) in used.commands.items()}}

    async def cold(self) -> dict[str, Any]:
        """The first pass of shape (a) on fresh processes (unmeasured warm-up)."""
        rate, client_cpu, used = await self.awaited()
        return {"steps_per_s": rate, "client_cpu_ms_per_execution": client_cpu * 1e3 / EXECUTIONS,
                "worker_cpu_us_per_step": used.worker_cpu_s * 1e6 / STEPS,
                "redis_cpu_us_per_step": used.redis_cpu_s * 1e6 / STEPS,
                "new_connections": used.new_connections}

    async def quiet(self) -> tuple[float, float]:
        """Wait until other processes leave the machine alone, or QUIET_WAIT_S has passed;
        (seconds waited, their CPU use in cores over the last probe)."""
        started = time.monotonic()
        while True:
            before = await self.snap()
            await asyncio.sleep(QUIET_PROBE_S)
            others = usage(before, await self.snap()).others_cores
            waited = time.monotonic() - started - QUIET_PROBE_S
            if others < QUIET_CORES or waited >= QUIET_WAIT_S:
                return waited, others

    async def one_round(self) -> dict[str, Any]:
        before = await self.xadd()
        a_rate, a_cpu, a_used = await self.awaited()
        b_rate, b_start, b_read, b_used = await self.later()
        after = await self.xadd()
        base = {k: (before[k] + after[k]) / 2 for k in before}
        b = figures(b_rate, b_start + b_read, b_used, base)
        b["client_cpu_ms_start"] = b_start * 1e3 / EXECUTIONS
        b["client_cpu_ms_read"] = b_read * 1e3 / EXECUTIONS
        return {"baseline": base, "await": figures(a_rate, a_cpu, a_used, base), "later": b}


def figures(rate: float, client_cpu_s: float, used: Usage, base: dict[str, float]
            ) -> dict[str, Any]:
    redis_us = used.redis_cpu_s * 1e6 / STEPS
    inner = script_commands()
    commands_us = sum(usec for name, (_, usec) in used.commands.items() if name not in inner)
    return {
        "steps_per_s": rate,
        "ratio": rate / base["rate"],
        "client_cpu_ms_per_execution": client_cpu_s * 1e3 / EXECUTIONS,
        "worker_cpu_us_per_step": used.worker_cpu_s * 1e6 / STEPS,
        "redis_cpu_us_per_step": redis_us,
        "redis_cpu_ratio": redis_us / base["redis_cpu_us"],
        "new_connections": used.new_connections,
        "reads_per_step": used.reads / STEPS,
        "others_cores": used.others_cores,
        "commands_us_per_step": commands_us / STEPS,
        "commands_ratio": commands_us / STEPS / base["xadd_usec_per_call"],
        "commands_per_step": used.per_step(),
    }


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of the rounds, figure by figure (a ratio: the median of the rounds')."""
    out: dict[str, Any] = {"baseline": {k: median([r["baseline"][k] for r in rounds])
                                        for k in rounds[0]["baseline"]}}
    for shape in ("await", "later"):
        figs = [r[shape] for r in rounds]
        out[shape] = {k: median([f[k] for f in figs]) for k in figs[0]
                      if k != "commands_per_step"}
        names = sorted(set().union(*(f["commands_per_step"] for f in figs)))
        out[shape]["commands_per_step"] = {
            n: [median([f["commands_per_step"].get(n, [0.0, 0.0])[i] for f in figs])
                for i in (0, 1)] for n in names}
    return out


async def run_mode(fsync: str, args: argparse.Namespace, say: Callable[[str], None]
                   ) -> dict[str, Any]:
    """Everything measured on one private redis-server with ``appendfsync fsync``."""
    with private_redis(fsync) as server, tempfile.TemporaryDirectory(prefix="zart-e2e-") as tmp:
        redis = Redis.from_url(server.url)
        procs: list[asyncio.subprocess.Process] = []
        try:
            async with Deployment(server.url) as deployment:
                keys = deployment.keys
            workers = [await spawn(worker_argv(server.url), Path(tmp, f"worker-{i}.log"))
                       for i in range(args.workers)]
            procs += workers
            await wait_ready(redis, keys, workers)
            client = await spawn([sys.executable, str(SELF), "client", server.url],
                                 Path(tmp, "client.log"), pipes=True)
            procs.append(client)
            if args.placement == "split":
                split(server.process.pid if server.process else None,
                      [p.pid for p in procs])
            ours = [psutil.Process(p.pid) for p in procs] + [psutil.Process()]
            if server.process is not None:
                ours.append(psutil.Process(server.process.pid))
            bench = Bench(redis, keys, Child(client, workers), ours[:len(workers)], ours)
            say(f"[{fsync}] redis-server {server.url}, {args.workers} worker(s) "
                f"{[w.pid for w in workers]}, client {client.pid}, placement "
                f"{args.placement}; warm-up pass")
            result: dict[str, Any] = {"cold": await bench.cold(), "idle": await bench.idle(),
                                      "rounds": []}
            for r in range(args.rounds):
                waited, others = await bench.quiet()
                if waited > 0:
                    say(f"[{fsync}] waited {waited:.1f} s for other processes to calm down "
                        f"(now {others:.2f} cores)")
                result["rounds"].append(await bench.one_round())
                say(f"[{fsync}] round {r + 1}/{args.rounds}: {round_line(result['rounds'][-1])}")
            result["medians"] = summarize(result["rounds"])
            result["redis_version"] = (await redis.info("server"))["redis_version"]
        except BaseException:
            show_logs(Path(tmp), say)
            raise
        finally:
            await stop(procs)
            await redis.aclose()
    return result


def show_logs(directory: Path, say: Callable[[str], None]) -> None:
    """The tails of the children's logs, when something went wrong."""
    for log in sorted(directory.glob("*.log")):
        tail = log.read_text(errors="replace")[-1500:].strip()
        if tail:
            say(f"--- {log.name} (tail)\n{tail}")


def round_line(r: dict[str, Any]) -> str:
    a, b = r["await"], r["later"]
    return (f"XADD {r['baseline']['rate']:,.0f}/s; (a) {a['steps_per_s']:,.0f} steps/s "
            f"ratio {a['ratio']:.2f}, client {a['client_cpu_ms_per_execution']:.3f} ms/exec, "
            f"redis {a['redis_cpu_ratio']:.2f}x XADD; (b) {b['steps_per_s']:,.0f} steps/s "
            f"ratio {b['ratio']:.2f}, client {b['client_cpu_ms_per_execution']:.3f} ms/exec, "
            f"redis {b['redis_cpu_ratio']:.2f}x XADD; socket reads/step "
            f"{a['reads_per_step']:.2f}/{b['reads_per_step']:.2f}; other processes "
            f"{a['others_cores']:.2f}/{b['others_cores']:.2f} cores")


# -- the report --------------------------------------------------------------------------


def verdict(value: float, target: float, higher: bool) -> str:
    return "met" if (value >= target if higher else value <= target) else "MISS"


ROWS: list[tuple[str, str, str, tuple[float, bool] | None]] = [
    # label, key, format, (target, higher is better)
    ("durable steps/s", "steps_per_s", "{:,.0f}", None),
    ("steps/s ÷ 100-coroutine XADD/s", "ratio", "{:.2f}", (RATIO_TARGET, True)),
    ("client CPU per execution, ms", "client_cpu_ms_per_execution", "{:.3f}",
     (CLIENT_MS_TARGET, False)),
    ("worker CPU per step, µs", "worker_cpu_us_per_step", "{:.1f}", None),
    ("redis CPU per durable step, µs", "redis_cpu_us_per_step", "{:.1f}", None),
    ("redis CPU per step ÷ per raw XADD", "redis_cpu_ratio", "{:.2f}",
     (REDIS_RATIO_TARGET, False)),
    ("  commandstats µs per step (no †)", "commands_us_per_step", "{:.1f}", None),
    ("  ÷ xadd µs per call", "commands_ratio", "{:.1f}", None),
    ("redis socket reads per step", "reads_per_step", "{:.2f}", None),
    ("new connections in the window", "new_connections", "{:,.0f}", None),
    ("other processes' CPU meanwhile, cores", "others_cores", "{:.2f}", None),
]


def print_mode(fsync: str, result: dict[str, Any], args: argparse.Namespace) -> None:
    m, cold, idle = result["medians"], result["cold"], result["idle"]
    print(f"\n== appendfsync {fsync}: {EXECUTIONS} executions x {STEPS_EACH} steps, "
          f"{args.workers} worker process(es) --concurrency {CONCURRENCY}, client in its own "
          f"process, placement {args.placement}; medians of {args.rounds} rounds")
    print(f"{'figure':<36} {'(a) start+result':>18} {'(b) start, later':>18}   target")
    for label, key, fmt, target in ROWS:
        cells = []
        for shape in ("await", "later"):
            text = fmt.format(m[shape][key])
            if target is not None:
                text += f" {verdict(m[shape][key], *target):>4}"
            cells.append(text)
        goal = "—" if target is None else f"{'≥' if target[1] else '≤'} {target[0]:g}"
        print(f"{label:<36} {cells[0]:>18} {cells[1]:>18}   {goal}")
    for label, key, fmt in (("ratio", "ratio", "{:.2f}"),
                            ("client ms", "client_cpu_ms_per_execution", "{:.3f}"),
                            ("redis ratio", "redis_cpu_ratio", "{:.2f}"),
                            ("worker µs/step", "worker_cpu_us_per_step", "{:.0f}"),
                            ("socket reads/step", "reads_per_step", "{:.2f}"),
                            ("others' cores", "others_cores", "{:.2f}")):
        print(f"  rounds, {label}: " + "; ".join(
            f"({x}) " + " ".join(fmt.format(r[shape][key]) for r in result["rounds"])
            for x, shape in (("a", "await"), ("b", "later"))))
    base, later = m["baseline"], m["later"]
    print(f"baseline: XADD x {RAW_WRITERS} coroutines {base['rate']:,.0f}/s; redis CPU per "
          f"raw XADD {base['redis_cpu_us']:.2f} µs (INFO cpu), xadd "
          f"{base['xadd_usec_per_call']:.2f} µs/call (commandstats), {base['reads']:.2f} socket "
          "reads per XADD")
    print(f"(b) client CPU per execution: start {later['client_cpu_ms_start']:.3f} ms + "
          f"result read later {later['client_cpu_ms_read']:.3f} ms")
    print(f"cold first pass of (a) (fresh client and worker, unmeasured warm-up): "
          f"{cold['steps_per_s']:,.0f} steps/s, client {cold['client_cpu_ms_per_execution']:.3f}"
          f" ms/exec, worker {cold['worker_cpu_us_per_step']:.1f} µs/step, redis "
          f"{cold['redis_cpu_us_per_step']:.1f} µs/step, {cold['new_connections']} new "
          "connections")
    print(f"idle (worker and client connected, no work): redis {idle['redis_cpu_ms_per_s']:.1f}"
          f" ms CPU/s, worker {idle['worker_cpu_ms_per_s']:.1f} ms CPU/s")
    print_commands(m)


def print_commands(m: dict[str, Any]) -> None:
    inner = script_commands()
    a, b = m["await"]["commands_per_step"], m["later"]["commands_per_step"]
    names = sorted(set(a) | set(b), key=lambda n: -a.get(n, [0, 0])[1])
    print("INFO commandstats per durable step (calls, µs), medians; † also called by the "
          "step path's Lua, counted on its own and inside evalsha's µs:")
    print(f"  {'command':<22} {'(a) calls':>10} {'(a) µs':>8} {'(b) calls':>10} {'(b) µs':>8}")
    top = [0.0, 0.0]
    for name in names:
        ca, ua = a.get(name, [0.0, 0.0])
        cb, ub = b.get(name, [0.0, 0.0])
        mark = "†" if name in inner else ""
        if not mark:
            top = [top[0] + ua, top[1] + ub]
        print(f"  {name + mark:<22} {ca:>10.3f} {ua:>8.2f} {cb:>10.3f} {ub:>8.2f}")
    print(f"  {'top-level (without †)':<22} {'':>10} {top[0]:>8.2f} {'':>10} {top[1]:>8.2f}")
    per_exec = ", ".join(f"{n} {a[n][0] * STEPS_EACH:.1f}" for n in ("xread", "xrevrange",
                                                                    "evalsha") if n in a)
    print(f"  (a) calls per awaited execution: {per_exec} (xread, xrevrange: the client's "
          "only; evalsha: its start and the worker's appends)")


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "load_avg": os.getloadavg()}


def orchestration(json_output: bool) -> Callable[[str], None]:
    """SIGTERM unwinds the running task through its finally blocks (no process is left
    behind); returns the progress printer (stderr when stdout carries JSON)."""
    main_task = asyncio.current_task()
    if main_task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    out = sys.stderr if json_output else sys.stdout

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    return say


async def orchestrate(args: argparse.Namespace) -> int:
    say = orchestration(args.json)

    modes = ["always", "everysec"] if args.fsync == "both" else [args.fsync]
    report: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(), "executions": EXECUTIONS, "steps_each": STEPS_EACH,
        "workers": args.workers, "concurrency": CONCURRENCY, "rounds": args.rounds,
        "placement": args.placement,
        "targets": {"ratio": RATIO_TARGET, "client_cpu_ms": CLIENT_MS_TARGET,
                    "redis_cpu_ratio": REDIS_RATIO_TARGET},
        "modes": {}}
    started = time.monotonic()
    for fsync in modes:
        report["modes"][fsync] = await run_mode(fsync, args, say)
    say(f"done in {time.monotonic() - started:.0f} s")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for fsync, result in report["modes"].items():
            print_mode(fsync, result, args)
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["client"] and len(argv) == 2:
        uvloop.run(client_main(argv[1]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fsync", choices=("always", "everysec", "both"), default="both")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--placement", choices=("scheduler", "split"), default="scheduler",
                        help="CPU placement: left to the OS (as users run it), or split: "
                        "redis-server pinned to the last CPU, worker(s) and client to the rest")
    parser.add_argument("--json", action="store_true", help="JSON on stdout (progress on "
                        "stderr)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.workers < 1:
        parser.error("--rounds and --workers must be >= 1")
    try:
        return uvloop.run(orchestrate(args))
    except (asyncio.CancelledError, KeyboardInterrupt):  # SIGTERM / SIGINT
        print("e2e: interrupted; its processes were stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
