"""Capacity plan on paper, from costs measured here: CPU per unit of work, per Redis shard.

Wall-clock scaling cannot be measured on a 2-core machine; CPU per unit of work can. This
benchmark builds, side by side,

* a local Redis Cluster of 3 primaries, no replicas (``LocalCluster``: AOF on,
  ``appendfsync everysec``, ``stream-node-max-bytes 1024``, a node timeout of 1 s), with
  one ``zart-es worker --concurrency 500`` process and one client process
  (``plan.py client URL PARTITIONS``) on its ``redis+cluster://`` URL;
* a one-primary Redis Cluster (the same node settings, all 16,384 slots on it: ``redis-cli
  --cluster create`` wants three), with its own worker and client: the cluster code path
  without three redis-servers sharing two cores (the control for what that adds);
* a private single redis-server (``RedisServer``, the same settings but not in cluster
  mode) with its own worker and client processes, the same commands,

then, ROUNDS times (the setups in rotating order, each after waiting at most 5 s for
other processes on the shared machine to use less than a quarter of a core), has each
client start EXECUTIONS executions of the 20-step ``steps20`` (``bench.apps``) and await
their results, all concurrently. Measured per pass:

* per shard (primary): redis-server CPU (``INFO cpu``: ``used_cpu_sys + used_cpu_user``
  delta) per durable step on that shard. The steps are counted per shard from the
  executions' ids: ``Keys.partition_of(id)`` -> the partition's hash tag -> ``CLUSTER
  KEYSLOT`` -> the primary owning that slot. "Per durable step" is all-in: the start, the
  20 steps, the completion, the worker's work reads and acks, the client's result reads;
  and the shard's background (cluster bus, the worker's reclaim polls) meanwhile;
* the worker process's CPU (psutil) per step; the client process's CPU (its own
  ``time.process_time()``) per awaited execution.

After the rounds, on the 3-primary cluster and the single Redis, LISTEN_PASSES more passes
with a second client process that awaits nothing (it awaited one execution before, so it
follows every partition's ``ended`` stream as any awaiting client does): its CPU per
execution ended elsewhere, the cost every further client process adds. And the
redis-server CPU of one round trip (5,000 ``COMMAND GETKEYS`` from 100 coroutines on the
cluster's first node: redis-py's cluster client sends one to that node for every XREAD
and XREADGROUP, whose keys it cannot find by itself).

Medians of the rounds; then a plan for 10k, 100k and 1M durable steps/s: Redis shards at a
utilisation ceiling per Redis core (``--ceiling``, default 0.7), partitions, worker
processes and client CPU, with every assumption printed beside it.

    python bench/plan.py [--rounds 5] [--executions 600] [--partitions 16]
                         [--ceiling 0.7] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import uvloop
from common import median, private_redis
from e2e import Child, busy_s, cpu_s, orchestration, spawn, stop
from redis.asyncio import Redis

from zart_es import Client
from zart_es.store import Keys, RedisServer
from zart_es.store._embedded import LocalCluster

SELF = Path(__file__).resolve()
APP, WORKFLOW, STEPS_EACH = "bench.apps", "steps20", 20
CONCURRENCY = 500
MASTERS = 3
TARGETS = (10_000, 100_000, 1_000_000)  # durable steps/s to plan for
PARTITION_CHOICES = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)  # Keys allows 1..4096
SLOTS = 16_384

OP_TIMEOUT_S = 60.0  # one client command, in the client (e2e.Child waits 75 s for it)
READY_TIMEOUT_S = 30.0
IDLE_S = 2.0  # psutil's CPU times tick in 10 ms
OWN_COMMANDS = {"info", "client|list"}  # this script's, not the engine's
GETKEYS = "command|getkeys"
RT_CALLS, RT_WRITERS = 5_000, 100  # the round-trip probe: calls, concurrent coroutines
LISTEN_PASSES = 3  # passes with a listener client, after the rounds
BUDGET_S = 120.0  # no new round is begun after this long (the whole run stays < ~3 min)
QUIET_CORES, QUIET_PROBE_S, QUIET_WAIT_S = 0.25, 0.5, 5.0


# -- the client process ------------------------------------------------------------------


async def client_main(url: str, partitions: int) -> None:
    """The client process: ``await N`` a line on stdin (N executions started and their
    results awaited, all concurrently) or ``cpu`` (its CPU time so far), one JSON line
    back; ends at "quit" or EOF."""
    async with Client(url, partitions=partitions) as client:

        async def one() -> tuple[str, Any]:
            execution_id = await client.start(WORKFLOW, STEPS_EACH)
            return execution_id, await client.result(execution_id)

        while (line := (await asyncio.to_thread(sys.stdin.readline)).strip()) not in ("", "quit"):
            command, _, arg = line.partition(" ")
            if command == "cpu":  # this process's CPU time so far (finer than psutil's ticks)
                print(json.dumps({"cpu_s": time.process_time()}), flush=True)
                continue
            if command != "await" or not arg.isdigit():
                print(json.dumps({"error": f"unknown command {line!r}"}), flush=True)
                continue
            cpu, wall = time.process_time(), time.perf_counter()
            try:
                done = await asyncio.wait_for(
                    asyncio.gather(*(one() for _ in range(int(arg)))), OP_TIMEOUT_S)
            except Exception as exc:
                print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
                continue
            reply = {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
                     "ids": [i for i, _ in done]}
            wrong = [r for _, r in done if r != STEPS_EACH]
            if wrong:
                reply = {"error": f"{len(wrong)} results were not {STEPS_EACH}: {wrong[:3]}"}
            print(json.dumps(reply), flush=True)


# -- one setup: its Redis primaries, a worker, a client -----------------------------------


@dataclass
class NodeSnap:
    cpu_s: float
    sys_s: float
    reads: int
    connections: int
    evalsha: int
    commands: dict[str, tuple[int, int]]  # name -> (calls, usec)


async def node_snap(node: Redis) -> NodeSnap:
    info: dict[str, Any] = await node.info("cpu", "stats", "commandstats")
    return NodeSnap(cpu_s=float(info["used_cpu_sys"]) + float(info["used_cpu_user"]),
                    sys_s=float(info["used_cpu_sys"]),
                    reads=int(info.get("total_reads_processed", 0)),
                    connections=int(info["total_connections_received"]),
                    evalsha=int(info.get("cmdstat_evalsha", {}).get("calls", 0)),
                    commands={k.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
                              for k, v in info.items() if k.startswith("cmdstat_")})


@dataclass
class Setup:
    """A deployment under measurement: its primaries (one for the single Redis), which
    primary owns each partition, and its worker and client processes."""

    name: str
    url: str
    keys: Keys
    nodes: list[Redis]
    ports: list[int]
    owner: list[int]  # partition -> index into nodes
    server_pids: list[int]
    procs: list[asyncio.subprocess.Process] = field(default_factory=list)
    child: Child | None = None
    worker: psutil.Process | None = None
    listener: Child | None = None
    """A second client process that awaits nothing in the measured passes but, having
    awaited once, follows every partition's ``ended`` stream like any client does."""

    def partitions_of(self, shard: int) -> int:
        return sum(1 for o in self.owner if o == shard)

    async def snap(self) -> tuple[list[NodeSnap], float]:
        nodes = list(await asyncio.gather(*(node_snap(n) for n in self.nodes)))
        return nodes, cpu_s(self.worker) if self.worker is not None else 0.0

    async def blocked_readers(self) -> int:
        total = 0
        for node in self.nodes:
            clients: list[dict[str, Any]] = await node.client_list()
            total += sum(1 for c in clients
                         if c.get("cmd") == "xreadgroup" and "b" in c.get("flags", ""))
        return total

    async def launch(self, log_dir: Path) -> None:
        """The worker (awaited until it blocks reading every partition's work stream, on
        whichever primary holds it), then the client."""
        argv = [sys.executable, "-m", "zart_es", "--redis-url", self.url, "--partitions",
                str(self.keys.partitions), "worker", "--app", APP, "--concurrency",
                str(CONCURRENCY), "--grace-period", "2"]
        worker = await spawn(argv, log_dir / f"{self.name}-worker.log")
        self.procs.append(worker)
        deadline = time.monotonic() + READY_TIMEOUT_S
        # + 1: the worker's query loop blocks reading its task queue's query stream too
        while await self.blocked_readers() < self.keys.partitions + 1:
            if worker.returncode is not None:
                raise RuntimeError(f"{self.name} worker exited with {worker.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} worker not reading after {READY_TIMEOUT_S} s")
            await asyncio.sleep(0.05)
        client = await spawn([sys.executable, str(SELF), "client", self.url,
                              str(self.keys.partitions)],
                             log_dir / f"{self.name}-client.log", pipes=True)
        self.procs.append(client)
        self.child = Child(client, [worker])
        self.worker = psutil.Process(worker.pid)

    async def add_listener(self, log_dir: Path) -> None:
        """Start the listener: a client process that awaits one execution (which starts
        its reading of the ``ended`` streams) and then nothing."""
        if self.child is None:
            raise RuntimeError("launch() first")
        proc = await spawn([sys.executable, str(SELF), "client", self.url,
                            str(self.keys.partitions)],
                           log_dir / f"{self.name}-listener.log", pipes=True)
        self.procs.append(proc)
        self.listener = Child(proc, self.child.workers)
        await self.listener.ask("await 1")

    async def listener_cpu(self) -> float:
        return float((await self.listener.ask("cpu"))["cpu_s"]) if self.listener else 0.0

    async def idle(self) -> dict[str, Any]:
        """Background cost with nothing to do (cluster bus, polls, blocked reads)."""
        before, w0 = await self.snap()
        await asyncio.sleep(IDLE_S)
        after, w1 = await self.snap()
        return {"redis_ms_per_s": [(b.cpu_s - a.cpu_s) * 1e3 / IDLE_S
                                   for a, b in zip(before, after, strict=True)],
                "worker_ms_per_s": (w1 - w0) * 1e3 / IDLE_S}

    async def one_pass(self, executions: int) -> dict[str, Any]:
        """``executions`` started and awaited; the costs, per shard and in all."""
        if self.child is None:
            raise RuntimeError("launch() first")
        before, w0 = await self.snap()
        busy0, l0 = busy_s(), await self.listener_cpu()
        reply = await self.child.ask(f"await {executions}")
        after, w1 = await self.snap()
        busy, l1 = busy_s() - busy0, await self.listener_cpu()
        per_shard = Counter(self.owner[self.keys.partition_of(i)] for i in reply["ids"])
        steps = executions * STEPS_EACH
        shards = []
        for s, (a, b) in enumerate(zip(before, after, strict=True)):
            shard_steps = per_shard.get(s, 0) * STEPS_EACH
            shards.append({
                "port": self.ports[s], "partitions": self.partitions_of(s),
                "executions": per_shard.get(s, 0), "steps": shard_steps,
                "redis_cpu_s": b.cpu_s - a.cpu_s,
                "redis_us_per_step": (b.cpu_s - a.cpu_s) * 1e6 / max(shard_steps, 1),
                "sys_share": (b.sys_s - a.sys_s) / max(b.cpu_s - a.cpu_s, 1e-9),
                "reads_per_step": (b.reads - a.reads) / max(shard_steps, 1),
                "evalsha_per_step": (b.evalsha - a.evalsha) / max(shard_steps, 1),
                "new_connections": b.connections - a.connections,
                # redis-py's cluster client asks its first node for the keys of every
                # XREAD / XREADGROUP (movable keys): per step of the whole setup
                "getkeys_per_step": (b.commands.get(GETKEYS, (0, 0))[0]
                                     - a.commands.get(GETKEYS, (0, 0))[0]) / steps})
        redis_s = sum(x["redis_cpu_s"] for x in shards)
        commands: Counter[str] = Counter()
        usec: Counter[str] = Counter()
        for a, b in zip(before, after, strict=True):
            for name, (calls, us) in b.commands.items():
                was = a.commands.get(name, (0, 0))
                if name not in OWN_COMMANDS and calls > was[0]:
                    commands[name] += calls - was[0]
                    usec[name] += us - was[1]
        return {
            "steps_per_s": steps / reply["wall_s"],
            "redis_us_per_step": redis_s * 1e6 / steps,
            "worker_us_per_step": (w1 - w0) * 1e6 / steps,
            "client_ms_per_execution": reply["cpu_s"] * 1e3 / executions,
            "listener_ms_per_execution": (l1 - l0) * 1e3 / executions,
            "busy_cores": busy / reply["wall_s"],
            "commands_per_step": {n: [c / steps, usec[n] / steps]
                                  for n, c in commands.most_common()},
            "shards": shards}


async def round_trip_cost(node: Redis, keys: Keys) -> float:
    """redis-server CPU (µs) per COMMAND GETKEYS of an XREADGROUP sent alone from one of
    RT_WRITERS coroutines (what the cluster client's key lookup costs the node it asks):
    mostly the socket read and write of a round trip."""
    args = ("COMMAND GETKEYS", "XREADGROUP", "GROUP", "g", "c", "COUNT", "100", "BLOCK",
            "5000", "STREAMS", keys.work(0), ">")

    async def writer() -> None:
        for _ in range(RT_CALLS // RT_WRITERS):
            await node.execute_command(*args)  # type: ignore[no-untyped-call]

    before = await node_snap(node)
    await asyncio.gather(*(writer() for _ in range(RT_WRITERS)))
    after = await node_snap(node)
    return (after.cpu_s - before.cpu_s) * 1e6 / RT_CALLS


async def cluster_owner(seed: Redis, keys: Keys, ports: list[int]) -> list[int]:
    """The primary (index into ``ports``) owning each partition's hash slot."""
    slots: list[Any] = await seed.execute_command("CLUSTER SLOTS")  # type: ignore[no-untyped-call]
    ranges = [(int(r[0]), int(r[1]), ports.index(int(r[2][1]))) for r in slots]
    owner = []
    for p in range(keys.partitions):
        slot = int(await seed.execute_command("CLUSTER KEYSLOT", keys.work(p)))  # type: ignore[no-untyped-call]
        owner.append(next(i for lo, hi, i in ranges if lo <= slot <= hi))
    return owner


# -- the run -----------------------------------------------------------------------------


async def quiet(ours: list[psutil.Process]) -> float:
    """Wait (at most QUIET_WAIT_S) until other processes use < QUIET_CORES; seconds waited."""
    started = time.monotonic()
    while True:
        b0, o0 = busy_s(), sum(_cpu(p) for p in ours)
        await asyncio.sleep(QUIET_PROBE_S)
        others = (busy_s() - b0 - (sum(_cpu(p) for p in ours) - o0)) / QUIET_PROBE_S
        waited = time.monotonic() - started - QUIET_PROBE_S
        if others < QUIET_CORES or waited >= QUIET_WAIT_S:
            return waited


def _cpu(proc: psutil.Process) -> float:
    try:
        return cpu_s(proc)
    except psutil.Error:
        return 0.0


async def start_one_primary(solo: LocalCluster) -> None:
    """A cluster of one primary holding all 16,384 slots (``redis-cli --cluster create``
    wants three): the cluster client path on one redis-server, the control for what
    three redis-servers on two cores add."""
    node = solo.nodes[0].start()
    redis = Redis(port=node.port)
    try:
        await redis.execute_command("CLUSTER ADDSLOTSRANGE", 0, SLOTS - 1)  # type: ignore[no-untyped-call]
        deadline = time.monotonic() + READY_TIMEOUT_S
        while (await redis.execute_command("CLUSTER INFO")).get("cluster_state") != "ok":  # type: ignore[no-untyped-call]
            if time.monotonic() > deadline:
                raise TimeoutError("the one-primary cluster did not reach state ok")
            await asyncio.sleep(0.05)
    finally:
        await redis.aclose()


async def measure(args: argparse.Namespace, say: Callable[[str], None]) -> dict[str, Any]:
    keys = Keys(partitions=args.partitions)
    with tempfile.TemporaryDirectory(prefix="zart-plan-") as tmp, \
            private_redis("everysec") as single:
        cluster = LocalCluster(Path(tmp, "cluster"), masters=MASTERS, replicas=0)
        solo = LocalCluster(Path(tmp, "solo"), masters=1, replicas=0)
        setups: list[Setup] = []
        try:
            started = time.monotonic()
            cluster.start()
            await start_one_primary(solo)
            say(f"clusters of {MASTERS} and 1 primaries up in "
                f"{time.monotonic() - started:.1f} s: {cluster.url}, {solo.url}")
            ports = [n.port for n in cluster.nodes]
            nodes = [Redis(port=p) for p in ports]
            setups.append(Setup(
                "cluster", cluster.url, keys, nodes, ports,
                await cluster_owner(nodes[0], keys, ports), _pids(cluster.nodes)))
            setups.append(Setup(
                "cluster-1", solo.url, keys, [Redis(port=solo.nodes[0].port)],
                [solo.nodes[0].port], [0] * keys.partitions, _pids(solo.nodes)))
            setups.append(Setup(
                "single", single.url, keys, [Redis(port=single.port)], [single.port],
                [0] * keys.partitions, _pids([single])))
            return await run_rounds(setups, args, say, Path(tmp))
        finally:
            await stop([p for s in setups for p in s.procs])
            for s in setups:
                for node in s.nodes:
                    await node.aclose()
            cluster.stop()
            solo.stop()


def _pids(servers: list[RedisServer]) -> list[int]:
    return [s.process.pid for s in servers if s.process is not None]


async def run_rounds(setups: list[Setup], args: argparse.Namespace,
                     say: Callable[[str], None], log_dir: Path) -> dict[str, Any]:
    cluster = setups[0]
    say("partitions per primary: " + ", ".join(
        f":{p} {cluster.partitions_of(i)}" for i, p in enumerate(cluster.ports)))
    try:
        for s in setups:
            await s.launch(log_dir)
    except BaseException:
        for log in sorted(log_dir.glob("*.log")):  # noqa: ASYNC240 -- on failure only
            tail = log.read_text(errors="replace")[-1500:].strip()
            if tail:
                say(f"--- {log.name} (tail)\n{tail}")
        raise
    ours = [psutil.Process()]
    ours += [psutil.Process(p.pid) for s in setups for p in s.procs]
    ours += [psutil.Process(pid) for s in setups for pid in s.server_pids]
    report: dict[str, Any] = {s.name: {"rounds": []} for s in setups}
    for s in setups:  # warm-up: connection pools, script caches (reported, not in medians)
        report[s.name]["cold"] = await s.one_pass(args.executions)
        report[s.name]["idle"] = await s.idle()
        say(f"[{s.name}] warm-up: {line(report[s.name]['cold'])}")
    began = time.monotonic()
    for r in range(args.rounds):
        if r and time.monotonic() - began > BUDGET_S:
            say(f"time budget ({BUDGET_S:.0f} s) spent: {r} rounds")
            break
        for s in setups[r % len(setups):] + setups[:r % len(setups)]:  # rotating order
            waited = await quiet(ours)
            if waited >= 0.05:
                say(f"  waited {waited:.1f} s for other processes to calm down")
            result = await s.one_pass(args.executions)
            report[s.name]["rounds"].append(result)
            say(f"[{s.name}] round {r + 1}/{args.rounds}: {line(result)}")
    for s in (setups[0], setups[-1]):  # the 3-primary cluster and the single Redis
        await s.add_listener(log_dir)
        ours.append(psutil.Process(s.procs[-1].pid))
        report[s.name]["listened"] = []
        for r in range(LISTEN_PASSES):
            await quiet(ours)
            report[s.name]["listened"].append(await s.one_pass(args.executions))
            say(f"[{s.name}] with a listener {r + 1}/{LISTEN_PASSES}: "
                f"{line(report[s.name]['listened'][-1])}")
        report[s.name]["listener_ms_per_execution"] = median(
            [p["listener_ms_per_execution"] for p in report[s.name]["listened"]])
    for s in setups:
        report[s.name]["medians"] = summarize(report[s.name]["rounds"])
        report[s.name]["partitions_per_shard"] = [s.partitions_of(i) for i in range(len(s.nodes))]
        report[s.name]["ports"] = s.ports
    report["getkeys_round_trip_us"] = median(
        [await round_trip_cost(cluster.nodes[0], cluster.keys) for _ in range(3)])
    report["redis_version"] = (await setups[-1].nodes[0].info("server"))["redis_version"]
    return report


def line(p: dict[str, Any]) -> str:
    shards = " ".join(f"{x['redis_us_per_step']:.1f}({x['executions']})" for x in p["shards"])
    return (f"{p['steps_per_s']:,.0f} steps/s, redis {p['redis_us_per_step']:.1f} µs/step "
            f"[per shard µs/step (executions): {shards}], worker "
            f"{p['worker_us_per_step']:.1f} µs/step, client {p['client_ms_per_execution']:.3f} "
            f"ms/exec" + (f", listener {p['listener_ms_per_execution']:.3f} ms/exec"
                          if p["listener_ms_per_execution"] else "")
            + f", machine busy {p['busy_cores']:.2f} cores")


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("steps_per_s", "redis_us_per_step", "worker_us_per_step", "client_ms_per_execution",
            "busy_cores")
    out: dict[str, Any] = {k: median([r[k] for r in rounds]) for k in keys}
    names = sorted(set().union(*(r["commands_per_step"] for r in rounds)))
    out["commands_per_step"] = {
        n: [median([r["commands_per_step"].get(n, [0.0, 0.0])[i] for r in rounds])
            for i in (0, 1)] for n in names}
    out["shards"] = [
        {k: median([r["shards"][i][k] for r in rounds]) for k in rounds[0]["shards"][i]}
        for i in range(len(rounds[0]["shards"]))]
    return out


# -- the plan ----------------------------------------------------------------------------


def default_ranges(masters: int) -> list[tuple[int, int]]:
    """The slot ranges ``redis-cli --cluster create`` gives ``masters`` primaries."""
    per, cursor, first, out = SLOTS / masters, 0.0, 0, []
    for i in range(masters):
        last = round(cursor + per - 1)
        if last > SLOTS - 1 or i == masters - 1:
            last = SLOTS - 1
        out.append((first, last))
        first, cursor = last + 1, cursor + per
    return out


def default_spread(partitions: int, masters: int) -> int:
    """Partitions on the fullest primary with the default slot ranges (hash tags
    ``{zart:p}``, as ``Keys`` builds them)."""
    from redis.crc import key_slot

    keys = Keys(partitions=partitions)
    ranges = default_ranges(masters)
    count = Counter(next(i for i, (lo, hi) in enumerate(ranges) if lo <= slot <= hi)
                    for slot in (key_slot(keys.work(p).encode()) for p in range(partitions)))
    return max(count.values())


def shards_whole(rate: float, us_per_step: float, ceiling: float, partitions: int) -> int | None:
    """Primaries needed when each holds whole partitions, as evenly as they divide (the
    executions spread evenly over the partitions); None if one partition alone is more
    than a core at the ceiling."""
    per_partition = rate / partitions * us_per_step / 1e6  # cores
    fit = math.floor(ceiling / per_partition)
    return None if fit < 1 else math.ceil(partitions / fit)


def clients_needed(executions: float, own_ms: float, listen_ms: float,
                   ceiling: float) -> int | None:
    """Client processes to await ``executions``/s: each spends ``own_ms`` per execution it
    awaits and ``listen_ms`` per execution that ends anywhere (it follows every partition's
    ``ended`` stream); None if following the ends alone is over the ceiling."""
    listening = executions * listen_ms / 1e3  # cores, in every client process
    if listening >= ceiling:
        return None
    return max(1, math.ceil(executions * own_ms / 1e3 / (ceiling - listening)))


def plan(report: dict[str, Any], ceiling: float) -> dict[str, Any]:
    c, s = report["cluster"]["medians"], report["single"]["medians"]
    solo = report["cluster-1"]["medians"]
    redis_us = c["redis_us_per_step"]
    worst_shard_us = max(x["redis_us_per_step"] for x in c["shards"])
    getkeys = sum(x["getkeys_per_step"] for x in c["shards"])
    round_trip = report["getkeys_round_trip_us"]
    xread = c["commands_per_step"].get("xread", [0.0, 0.0])[0]  # the one client's, a step
    listen_ms = report["cluster"]["listener_ms_per_execution"]
    own_ms = max(c["client_ms_per_execution"] - listen_ms, 0.0)
    rows = []
    for rate in TARGETS:
        cores = rate * redis_us / 1e6
        ideal = max(1, math.ceil(cores / ceiling))
        whole = {p: shards_whole(rate, redis_us, ceiling, p) for p in PARTITION_CHOICES}
        # the smallest partition count (of the choices) within 10% of the ideal shard count
        chosen = next((p for p in PARTITION_CHOICES
                       if whole[p] is not None and whole[p] <= math.ceil(ideal * 1.1)),
                      PARTITION_CHOICES[-1])
        executions = rate / STEPS_EACH
        clients = clients_needed(executions, own_ms, listen_ms, ceiling)
        row: dict[str, Any] = {
            "steps_per_s": rate, "executions_per_s": executions,
            "redis_cores": cores, "shards_even": ideal, "min_partitions": ideal,
            "shards_default_16": whole[16], "partitions": chosen,
            "shards": whole[chosen] or ideal,
            "fullest_default_ranges": default_spread(chosen, whole[chosen] or ideal),
            "shards_if_single_cost": max(1, math.ceil(rate * s["redis_us_per_step"] / 1e6
                                                      / ceiling)),
            "shards_if_solo_cost": max(1, math.ceil(rate * solo["redis_us_per_step"] / 1e6
                                                    / ceiling)),
            "shards_at_worst_shard": max(1, math.ceil(rate * worst_shard_us / 1e6 / ceiling)),
            "worker_cores": rate * c["worker_us_per_step"] / 1e6,
            "workers": max(1, math.ceil(rate * c["worker_us_per_step"] / 1e6 / ceiling)),
            "workers_if_single_cost": max(1, math.ceil(rate * s["worker_us_per_step"] / 1e6
                                                       / ceiling)),
            "client_cores_own": executions * own_ms / 1e3,
            "listening_cores_each": executions * listen_ms / 1e3,
            "clients": clients,
            # if a client followed only the ends of executions it awaits: its measured cost
            # per awaited execution (which then includes all its listening), no more
            "clients_own_only": max(1, math.ceil(
                executions * c["client_ms_per_execution"] / 1e3 / ceiling)),
            "client_cores_own_only": executions * c["client_ms_per_execution"] / 1e3}
        row["mean_per_shard"] = chosen / row["shards"]
        row["getkeys_cores_measured"] = rate * getkeys * round_trip / 1e6
        # the first node's own share of the steps plus the key lookups it answers
        row["first_node_over"] = cores / row["shards"] + row["getkeys_cores_measured"] > ceiling
        if clients is not None:
            # every further client process reads every end: xread round trips on the
            # primaries, and as many COMMAND GETKEYS on the one the client library asks
            fanned = redis_us + (clients - 1) * xread * round_trip
            row.update({
                "client_cores": row["client_cores_own"] + clients * row["listening_cores_each"],
                "redis_us_with_clients": fanned,
                "shards_with_clients": max(1, math.ceil(rate * fanned / 1e6 / ceiling)),
                "getkeys_cores": rate * (getkeys + (clients - 1) * xread) * round_trip / 1e6})
            row["first_node_over_with_clients"] = (
                rate * fanned / 1e6 / row["shards_with_clients"] + row["getkeys_cores"]
                > ceiling)
        rows.append(row)
    return {"ceiling": ceiling, "redis_us_per_step": redis_us,
            "getkeys_per_step": getkeys, "getkeys_round_trip_us": round_trip,
            "xread_per_step": xread, "client_own_ms": own_ms, "listener_ms": listen_ms,
            "max_executions_per_s": ceiling / listen_ms * 1e3 if listen_ms else math.inf,
            "worst_shard_us_per_step": worst_shard_us,
            "shard_steps_per_s": ceiling / redis_us * 1e6,
            "single_steps_per_s": ceiling / s["redis_us_per_step"] * 1e6,
            "rows": rows}


# -- the report --------------------------------------------------------------------------


LABELS = {"cluster": f"cluster of {MASTERS}", "cluster-1": "cluster of 1",
          "single": "single Redis"}


def print_report(report: dict[str, Any], the_plan: dict[str, Any],
                 args: argparse.Namespace) -> None:
    setups = [(name, report[name]) for name in LABELS]
    n = len(report["cluster"]["rounds"])
    print(f"\n== Measured costs: {args.executions} executions x {STEPS_EACH} steps started and "
          f"awaited per pass, one worker process (--concurrency {CONCURRENCY}) and one client "
          f"process per setup, {args.partitions} partitions, appendfsync everysec, Redis "
          f"{report['redis_version']}; medians of {n} rounds")
    print(f"{'redis-server':<20} {'partitions':>10} {'executions':>10} {'µs/step':>8} "
          f"{'sys share':>9} {'reads/step':>10} {'evalsha/step':>12} {'getkeys/step':>12} "
          f"{'idle ms/s':>9}")
    for name, setup in setups:
        for i, x in enumerate(setup["medians"]["shards"]):
            label = LABELS[name] + (f" :{setup['ports'][i]}" if name == "cluster" else "")
            print(f"{label:<20} {setup['partitions_per_shard'][i]:>10} {x['executions']:>10.0f} "
                  f"{x['redis_us_per_step']:>8.1f} {x['sys_share']:>9.0%} "
                  f"{x['reads_per_step']:>10.2f} {x['evalsha_per_step']:>12.2f} "
                  f"{x['getkeys_per_step']:>12.3f} "
                  f"{setup['idle']['redis_ms_per_s'][i]:>9.1f}")
        if name == "cluster":
            print(f"{LABELS[name] + ', all':<20} {args.partitions:>10} {args.executions:>10} "
                  f"{setup['medians']['redis_us_per_step']:>8.1f}")
    print(f"{'setup':<20} {'worker µs/step':>14} {'client ms/exec':>14} {'steps/s (wall)':>14} "
          f"{'machine busy':>12} {'idle worker ms/s':>16}")
    for name, setup in setups:
        m = setup["medians"]
        print(f"{LABELS[name]:<20} {m['worker_us_per_step']:>14.1f} "
              f"{m['client_ms_per_execution']:>14.3f} {m['steps_per_s']:>14,.0f} "
              f"{m['busy_cores']:>10.2f} c {setup['idle']['worker_ms_per_s']:>16.1f}")
    for label, key, fmt in (("redis µs/step", "redis_us_per_step", "{:.1f}"),
                            ("worker µs/step", "worker_us_per_step", "{:.1f}"),
                            ("client ms/exec", "client_ms_per_execution", "{:.3f}")):
        print(f"  rounds, {label}: " + "; ".join(
            f"{LABELS[name]} " + " ".join(fmt.format(r[key]) for r in setup["rounds"])
            for name, setup in setups))
    print("  INFO commandstats per durable step, calls (µs), all primaries; the Lua's own "
          "calls also inside evalsha's µs:")
    for name, setup in setups:
        per = setup["medians"]["commands_per_step"]
        top = sorted(per, key=lambda c: -per[c][0])[:9]
        print(f"    {LABELS[name]:<14} " + ", ".join(
            f"{c} {per[c][0]:.3f} ({per[c][1]:.1f})" for c in top))
    print(f"  rounds, {LABELS['cluster']} per primary µs/step: " + "; ".join(
        "/".join(f"{x['redis_us_per_step']:.1f}" for x in r["shards"])
        for r in report["cluster"]["rounds"]))
    print("  warm-up pass, new connections per primary: " + "; ".join(
        f"{LABELS[name]} {[x['new_connections'] for x in setup['cold']['shards']]}"
        for name, setup in setups))

    for name in ("cluster", "single"):
        passes = report[name]["listened"]
        print(f"  with a listener (a second client process that awaits nothing), "
              f"{LABELS[name]}, {len(passes)} passes: listener "
              f"{report[name]['listener_ms_per_execution']:.3f} ms per execution ended; "
              "meanwhile redis " + " ".join(f"{x['redis_us_per_step']:.1f}" for x in passes)
              + " µs/step, awaiting client " + " ".join(
                  f"{x['client_ms_per_execution']:.3f}" for x in passes) + " ms/exec")
    p, u = the_plan, the_plan["ceiling"]
    single, solo = report["single"]["medians"], report["cluster-1"]["medians"]
    print(f"\n== Capacity plan at {u:.0%} of a core per Redis primary and per worker/client "
          f"process, from the {LABELS['cluster']}'s medians")
    print(f"one primary: {p['redis_us_per_step']:.1f} µs of Redis CPU per durable step -> "
          f"{p['shard_steps_per_s']:,.0f} steps/s at {u:.0%} (the fullest measured primary: "
          f"{p['worst_shard_us_per_step']:.1f} µs); same run, {LABELS['cluster-1']}: "
          f"{solo['redis_us_per_step']:.1f} µs -> {u / solo['redis_us_per_step'] * 1e6:,.0f} "
          f"steps/s; a single Redis: {single['redis_us_per_step']:.1f} µs -> "
          f"{p['single_steps_per_s']:,.0f} steps/s")
    print("Redis primaries (from the measured cost per step; one client process's reads "
          "included):")
    print(f"{'steps/s':>10} {'exec/s':>8} {'Redis cores':>11} {'shards':>6} {'min part.':>9} "
          f"{'16 part.':>8} {'partitions':>10} {'-> shards':>9} {'fullest dflt':>12} "
          f"{'GETKEYS cores':>13}")
    for r in p["rows"]:
        sixteen = "—" if r["shards_default_16"] is None else str(r["shards_default_16"])
        print(f"{r['steps_per_s']:>10,} {r['executions_per_s']:>8,.0f} {r['redis_cores']:>11.1f} "
              f"{r['shards_even']:>6} {r['min_partitions']:>9} {sixteen:>8} {r['partitions']:>10} "
              f"{r['shards']:>9} {r['fullest_default_ranges']:>5} vs {r['mean_per_shard']:>4.1f} "
              f"{r['getkeys_cores_measured']:>12.2f}{'!' if r['first_node_over'] else ' '}")
    print(f"Processes (worker {report['cluster']['medians']['worker_us_per_step']:.1f} µs/step; "
          f"a client {p['client_own_ms']:.3f} ms per execution it awaits + "
          f"{p['listener_ms']:.3f} ms per execution that ends anywhere, "
          f"{p['xread_per_step']:.3f} XREADs per step per client process):")
    print(f"{'steps/s':>10} {'worker cores':>12} {'workers':>7} {'awaiting cores':>14} "
          f"{'listening each':>14} {'clients':>7} {'client cores':>12} {'Redis µs/step':>13} "
          f"{'shards':>6} {'GETKEYS cores':>13}")
    for r in p["rows"]:
        if r["clients"] is None:
            rest = f"{'—':>7} {'—':>12} {'—':>13} {'—':>6} {'—':>13}"
        else:
            rest = (f"{r['clients']:>7} {r['client_cores']:>12.2f} "
                    f"{r['redis_us_with_clients']:>13.1f} {r['shards_with_clients']:>6} "
                    f"{r['getkeys_cores']:>12.2f}"
                    f"{'!' if r['first_node_over_with_clients'] else ' '}")
        print(f"{r['steps_per_s']:>10,} {r['worker_cores']:>12.1f} {r['workers']:>7} "
              f"{r['client_cores_own']:>14.2f} {r['listening_cores_each']:>14.2f} {rest}")
    print(f"  (— : following every end costs one client process more than {u:.0%} of a core: "
          f"awaiting with Client.result() tops out near {p['max_executions_per_s']:,.0f} "
          f"executions/s = {p['max_executions_per_s'] * STEPS_EACH:,.0f} steps/s of these "
          "20-step executions, however many client processes)")
    print("what if (shards for 10k / 100k / 1M): at the fullest primary's cost "
          + " / ".join(str(r["shards_at_worst_shard"]) for r in p["rows"])
          + f"; at the {LABELS['cluster-1']}'s cost "
          + " / ".join(str(r["shards_if_solo_cost"]) for r in p["rows"])
          + "; at the single Redis' cost (script calls batched per connection) "
          + " / ".join(str(r["shards_if_single_cost"]) for r in p["rows"])
          + "; workers at the single-Redis worker cost "
          + " / ".join(str(r["workers_if_single_cost"]) for r in p["rows"])
          + "; client processes if each followed only the ends it awaits (the measured "
          "cost per awaited execution) " + " / ".join(
              f"{r['clients_own_only']} ({r['client_cores_own_only']:.1f} cores)"
              for r in p["rows"]))
    print(f"GETKEYS cores: redis-py's cluster client looks up the keys of every XREAD and "
          f"XREADGROUP (movable keys) with a COMMAND GETKEYS round trip to one node (the "
          f"URL's), {p['getkeys_per_step']:.3f} per step here, measured "
          f"{p['getkeys_round_trip_us']:.1f} µs of Redis CPU each (5,000 from 100 "
          "coroutines); all on that one primary, on top of its share, however many there are"
          f" (! : that primary's share plus these is over {u:.0%} of a core)")
    print(ASSUMPTIONS.format(ceiling=u))


ASSUMPTIONS = """Assumptions:
* costs are CPU per unit of work measured on this machine (2 shared cores, everything
  local); a plan multiplies them out, it does not measure scaling. Durable steps are the
  20-step steps20 with trivial step bodies, each execution started and awaited by a
  client; Redis cost per step is all-in (start, steps, completion, work reads and acks,
  result reads, background) from the 3-primary cluster;
* a Redis primary runs commands on one core: a shard is full at {ceiling:.0%} of one core
  (headroom for bursts, AOF rewrites, failover catch-up); no io-threads;
* executions spread evenly over partitions (crc32 of random ids) and partitions evenly
  over primaries: "shards" = ceil(Redis cores / ceiling), "min part." = as many
  partitions (one per primary); "partitions -> shards" = the smallest of 16, 32 ... 4096
  partitions whose whole-partition layout (each primary holding whole partitions, as
  many as fit under the ceiling) needs at most 10% more primaries, and how many it needs;
  "16 part." = primaries with zart-es' default 16 partitions (— : one partition alone is
  over the ceiling). Even layouts need slots placed by hand (CLUSTER SETSLOT / redis-cli
  --cluster reshard): with the equal slot ranges redis-cli --cluster create gives, the
  fullest primary holds "fullest dflt" partitions vs the mean;
* a worker or client process is single-threaded Python: workers = ceil(worker cores /
  ceiling). Every client process follows every partition's ended stream, so each spends
  "listening each" cores whatever share it awaits; clients = the fewest processes whose
  awaiting share plus listening fits under the ceiling. Each one adds an XREAD round trip
  per end on the primaries ("Redis µs/step", "shards" of the second table) and a COMMAND
  GETKEYS on the client library's first node ("GETKEYS cores", on top of that primary's
  share), ends not batched (a partition ends executions further apart than a round trip);
* not measured here: network round trips (everything is on loopback; they cost latency,
  and in-flight executions = rate x duration, not CPU), replication (a replica per primary
  doubles Redis processes, and a primary spends CPU feeding it), AOF fsync on real disks
  (everysec fsyncs in a background thread; `always` costs more: see e2e.py), many workers
  x many partitions (every worker reads and reclaims every partition: blocked readers and
  XAUTOCLAIM polls per primary grow with workers x partitions / primaries)."""


# -- main --------------------------------------------------------------------------------


async def orchestrate(args: argparse.Namespace) -> int:
    say = orchestration(args.json)

    started = time.monotonic()
    report = await measure(args, say)
    say(f"done in {time.monotonic() - started:.0f} s")
    the_plan = plan(report, args.ceiling)
    if args.json:
        print(json.dumps({
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "load_avg": os.getloadavg()},
            "executions": args.executions, "partitions": args.partitions,
            "measured": report, "plan": the_plan}, indent=2))
    else:
        print_report(report, the_plan, args)
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["client"] and len(argv) == 3:
        uvloop.run(client_main(argv[1], int(argv[2])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--executions", type=int, default=600,
                        help="executions of the 20-step workflow started and awaited a pass")
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--ceiling", type=float, default=0.7,
                        help="utilisation ceiling of one core (Redis primary, worker, client)")
    parser.add_argument("--json", action="store_true",
                        help="JSON on stdout (progress on stderr)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.executions < 1 or not 0 < args.ceiling <= 1:
        parser.error("--rounds and --executions must be >= 1, --ceiling in (0, 1]")
    try:
        return uvloop.run(orchestrate(args))
    except (asyncio.CancelledError, KeyboardInterrupt):
        print("plan: interrupted; its processes were stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
