"""Worker memory with 10,000 sleeping executions: RSS growth over its idle RSS (< 100 MB).

The worker is a subprocess of this script (``memory.py --worker URL``: a ``Worker`` with
``concurrency=500`` under uvloop), so its RSS is its own. Its idle RSS is read once it has
set up its consumer groups; then EXECUTIONS executions of a workflow that does one step
and sleeps an hour are started, and its RSS is read again once the listing says all of
them are ``sleeping`` (and at every poll before, for the peak). A sleeping execution
lives in Redis; the worker's LRU of folded states keeps none of one due back in an hour.

    python bench/memory.py [--profile [--tracemalloc]]

``--profile`` has the worker, once all are sleeping, print where its growth went: its
Redis connection pool (and the peak of it and of executions in flight, sampled every
5 ms), its caches, live gc-tracked objects by type, glibc malloc's and pymalloc's view
(bytes in use vs kept free: memory not given back to the OS), and its RSS after
``malloc_trim(0)`` and after closing and dropping the pool's idle connections. With
``--tracemalloc`` also the top live allocations made since start-up, by file:line and
by file (tracemalloc slows the worker and adds its own memory to the RSS figures).
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import gc
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import psutil
import uvloop
from apps import sleepers
from common import private_redis

from zart_es import Client, Worker

EXECUTIONS = 10_000
LIMIT_MB = 100.0
SETTLE_S = 2.0
DEADLINE_S = 90.0
MB = 2**20
SELF = str(Path(__file__).resolve())

async def worker_main(url: str, profile: bool = False, traced: bool = False) -> None:
    """The child: run a worker until killed; say "ready" once it reads work. With
    ``profile``, print a profile (see :func:`profile_report`) at each line on stdin."""
    async with Worker(url, registry=sleepers, concurrency=500) as worker:
        await asyncio.sleep(SETTLE_S)  # groups created, readers blocked on XREADGROUP
        before = Probe(worker, traced) if profile else None
        print("ready", flush=True)
        if before is None:
            await asyncio.Event().wait()
        peaks = asyncio.create_task(watch_peaks(worker))
        reader = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while await reader.readline():
            assert before is not None
            await profile_report(worker, before)
            print("end-profile", flush=True)
        peaks.cancel()


# -- the profile (``--profile``): run in the worker subprocess --------------------------

TOP = 25


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


MALLINFO2 = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
             "uordblks", "fordblks", "keepcost")


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in MALLINFO2]


def libc() -> Any:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def mallinfo() -> dict[str, int]:
    """glibc's view (all arenas): ``arena`` bytes got with brk/mmap'd heaps, ``hblkhd``
    in large mmap'd blocks, ``uordblks`` in use, ``fordblks`` free but kept."""
    c = libc()
    if c is None or not hasattr(c, "mallinfo2"):
        return {}
    c.mallinfo2.restype = MallInfo2
    info = c.mallinfo2()
    return {name: int(getattr(info, name)) for name in MALLINFO2}


def pymalloc() -> dict[str, int]:
    """pymalloc's arenas (256 KiB each) and the bytes in their used/free blocks, parsed
    from ``sys._debugmallocstats()`` (it writes to the C-level stderr)."""
    with tempfile.TemporaryFile() as out:
        saved = os.dup(2)
        try:
            sys.stderr.flush()
            os.dup2(out.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read().decode(errors="replace")
    stats: dict[str, int] = {}
    for line in text.splitlines():
        label, _, value = line.rpartition("=")
        label = label.strip().lstrip("#").strip()
        if label in ("arenas allocated current", "bytes in allocated blocks",
                     "bytes in available blocks", "bytes lost to pool headers",
                     "bytes lost to quantization", "bytes lost to arena alignment",
                     "unused pools * 16384"):
            stats[label] = int(value.strip().replace(",", ""))
    return stats


def by_type() -> dict[str, tuple[int, int]]:
    """Live gc-tracked objects (and the dicts/lists they hold) by type: count, bytes
    (``sys.getsizeof``, shallow)."""
    out: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    for obj in gc.get_objects():
        row = out[type(obj).__qualname__]
        row[0] += 1
        row[1] += sys.getsizeof(obj)
    return {name: (row[0], row[1]) for name, row in out.items()}


def pool_of(worker: Worker) -> dict[str, int]:
    pool: Any = getattr(worker.redis, "connection_pool", None)
    if pool is None:
        return {}
    return {"idle": len(pool._available_connections),
            "in use": len(pool._in_use_connections),
            "connected": sum(c.is_connected for c in pool._available_connections)}


PEAKS = {"in flight": 0, "pool": 0}


async def watch_peaks(worker: Worker) -> None:
    """Sample the worker's in-flight count and pool size every 5 ms (their peaks)."""
    while True:
        PEAKS["in flight"] = max(PEAKS["in flight"], len(worker.intake.in_flight))
        pool = pool_of(worker)
        PEAKS["pool"] = max(PEAKS["pool"], pool.get("idle", 0) + pool.get("in use", 0))
        await asyncio.sleep(0.005)


class Probe:
    """What the profile compares: taken after start-up (which then starts tracemalloc,
    when ``traced``) and again at the end (which stops it)."""

    def __init__(self, worker: Worker, traced: bool) -> None:
        gc.collect()
        self.rss = rss()
        self.types = by_type()
        self.mall = mallinfo()
        self.pool = pool_of(worker)
        self.snapshot: tracemalloc.Snapshot | None = None
        self.traced = 0
        if tracemalloc.is_tracing():  # the end: tracemalloc replaced pymalloc's hooks
            self.traced = tracemalloc.get_traced_memory()[0]
            self.snapshot = tracemalloc.take_snapshot()
            tracemalloc.stop()
        self.py = pymalloc()
        if traced:
            tracemalloc.start(1)


def mb(n: float) -> str:
    return f"{n / MB:+.1f} MB"


async def profile_report(worker: Worker, before: Probe) -> None:
    now = Probe(worker, False)
    print(f"RSS {before.rss / MB:.1f} -> {now.rss / MB:.1f} MB ({mb(now.rss - before.rss)})"
          + ("" if now.snapshot is None else
             f"; allocated since start-up and still live (tracemalloc): {mb(now.traced)}"))
    stats = worker.store._keys_of.cache_info()
    print(f"worker: {len(worker.driver.cache)} folded states cached (cache_size "
          f"{worker.driver.cache_size}), {len(worker.intake.in_flight)} in flight; Store._keys_of "
          f"{stats.currsize} entries")
    print(f"redis-py pool: start {before.pool}, now {now.pool}; peaks seen: "
          f"{PEAKS['pool']} connections, {PEAKS['in flight']} executions in flight")
    if now.snapshot is not None:
        print_traced(now.snapshot)
    rows = sorted(((name, n - before.types.get(name, (0, 0))[0],
                    size - before.types.get(name, (0, 0))[1])
                   for name, (n, size) in now.types.items()), key=lambda r: -r[2])
    print(f"top {TOP} gc-tracked types by growth (count, shallow getsizeof):")
    for name, n, size in rows[:TOP]:
        print(f"  {size / MB:+7.2f} MB {n:+8d}  {name}")
    for label, old, new in (("glibc mallinfo2", before.mall, now.mall),
                            ("pymalloc", before.py, now.py)):
        print(f"{label}: " + "; ".join(
            f"{k} {_amount(k, old.get(k, 0))} -> {_amount(k, v)}" for k, v in new.items()
            if k not in ("smblks", "usmblks", "fsmblks", "ordblks", "hblks")))
    # what could be given back: the pool's idle connections, cycles, malloc's free pages
    pool: Any = getattr(worker.redis, "connection_pool", None)
    steps: list[tuple[str, int]] = [("as is", now.rss)]
    c = libc()
    if c is not None and hasattr(c, "malloc_trim"):
        c.malloc_trim(0)
        steps.append(("malloc_trim(0)", rss()))
    if pool is not None:
        idle = list(pool._available_connections)
        pool._available_connections.clear()
        await asyncio.gather(*(conn.disconnect() for conn in idle), return_exceptions=True)
        del idle
        gc.collect()
        steps.append(("idle connections closed and dropped, gc.collect()", rss()))
    if c is not None and hasattr(c, "malloc_trim"):
        c.malloc_trim(0)
        steps.append(("malloc_trim(0)", rss()))
    print("RSS when giving memory back: " + "; ".join(
        f"{label} {value / MB:.1f} MB" for label, value in steps))
    print("then pymalloc " + "; ".join(f"{k} {_amount(k, v)}" for k, v in pymalloc().items())
          + "; glibc " + "; ".join(f"{k} {v / MB:.1f} MB" for k, v in mallinfo().items()
                                   if k in ("arena", "hblkhd", "uordblks", "fordblks")))


def print_traced(snapshot: tracemalloc.Snapshot) -> None:
    """The top allocations since start-up (when tracemalloc was started), still live."""
    snapshot = snapshot.filter_traces([tracemalloc.Filter(False, tracemalloc.__file__),
                                       tracemalloc.Filter(False, __file__)])
    for key, top in (("lineno", TOP), ("filename", TOP // 2)):
        print(f"top {top} live allocations since start-up by {key}:")
        for stat in snapshot.statistics(key)[:top]:
            frame = stat.traceback[0]
            where = _short(frame.filename) + (f":{frame.lineno}" if key == "lineno" else "")
            print(f"  {stat.size / MB:6.2f} MB {stat.count:8d} blocks  {where}")


def _amount(key: str, value: int) -> str:
    return str(value) if key.startswith("arenas") else f"{value / MB:.1f} MB"


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/main/", "/lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


async def start_all(client: Client) -> None:
    """Start EXECUTIONS executions, 50 calls in flight."""
    ids = iter(range(EXECUTIONS))

    async def starter() -> None:
        for i in ids:
            await client.start("nap", None, execution_id=f"nap-{i}")

    await asyncio.gather(*(starter() for _ in range(50)))


async def main(profile: list[str] | None = None) -> int:
    with private_redis() as server:
        print(f"private redis-server at {server.url} (appendfsync everysec)", flush=True)
        child = await asyncio.create_subprocess_exec(
            sys.executable, SELF, "--worker", server.url, *(profile or []),
            stdout=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.PIPE if profile else None,
        )
        try:
            if child.stdout is None:
                raise RuntimeError("no pipe to the worker")
            line = await asyncio.wait_for(child.stdout.readline(), 30)
            if line.strip() != b"ready":
                print(f"worker did not start (said {line!r})")
                return 1
            proc = psutil.Process(child.pid)
            idle = proc.memory_info().rss
            print(f"worker pid {child.pid} idle RSS {idle / MB:.1f} MB; starting "
                  f"{EXECUTIONS:,} executions", flush=True)
            peak = idle
            started = time.monotonic()
            async with Client(server.url) as client:
                await start_all(client)
                print(f"  started in {time.monotonic() - started:.1f} s", flush=True)
                while True:
                    sleeping = len(await client.list(status="sleeping", limit=EXECUTIONS))
                    peak = max(peak, proc.memory_info().rss)
                    print(f"  {sleeping:,}/{EXECUTIONS:,} sleeping, worker RSS "
                          f"{proc.memory_info().rss / MB:.1f} MB", flush=True)
                    if sleeping == EXECUTIONS or time.monotonic() - started > DEADLINE_S:
                        break
                    await asyncio.sleep(1.0)
            await asyncio.sleep(1.0)
            held = proc.memory_info().rss
            peak = max(peak, held)
            if profile and child.stdin is not None:
                print("profile of the worker" + (" (its RSS includes tracemalloc's overhead)"
                                                  if "--tracemalloc" in profile else "") + ":")
                child.stdin.write(b"profile\n")
                await child.stdin.drain()
                while (line := await asyncio.wait_for(child.stdout.readline(), 120)) \
                        not in (b"", b"end-profile\n"):
                    print("  " + line.decode().rstrip(), flush=True)
        finally:
            child.kill()
            await child.wait()
    growth = (held - idle) / MB
    met = growth < LIMIT_MB and sleeping == EXECUTIONS
    print(f"worker RSS: idle {idle / MB:.1f} MB; with {sleeping:,} sleeping executions "
          f"{held / MB:.1f} MB (peak seen {peak / MB:.1f} MB); growth {growth:.1f} MB "
          f"(target < {LIMIT_MB:.0f} MB with all {EXECUTIONS:,} sleeping: "
          f"{'MET' if met else 'NOT MET'})")
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--worker":
        uvloop.run(worker_main(sys.argv[2], profile="--profile" in sys.argv[3:],
                               traced="--tracemalloc" in sys.argv[3:]))
    else:
        sys.exit(uvloop.run(main(profile=[a for a in sys.argv[1:]
                                          if a in ("--profile", "--tracemalloc")])))
