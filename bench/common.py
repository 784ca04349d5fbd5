"""Shared by the benchmarks: a private Redis, rounds, medians and report lines.

Every benchmark starts its own ``redis-server`` on a free port (AOF on, ``appendfsync
everysec`` unless said otherwise) in a temporary directory; none touches the shared Redis
on 127.0.0.1:6379.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
from collections.abc import Iterator, Sequence

from redis.typing import EncodableT, FieldT

from zart_es.engine import configure_logging
from zart_es.store import RedisServer

configure_logging(level="WARNING")

ROUNDS = 5
# What one step's log entry carries (append.lua writes s=version, p=previous hash (40 hex
# chars), e=msgpack body: 42 bytes for StepCompleted("s-1234", 1)): the raw baseline
# writes an entry of the same shape and size.
PAYLOAD: dict[FieldT, EncodableT] = {"s": 1234, "p": "x" * 40, "e": b"\x00" * 42}


def pin(pid: int, cpus: set[int]) -> None:
    """Bind every thread of process ``pid`` to ``cpus``."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):  # a thread that just ended
            os.sched_setaffinity(int(tid), cpus)


def placements() -> dict[str, tuple[set[int], set[int]]]:
    """CPU placements to measure in: name -> (this process's CPUs, redis-server's CPUs).

    On a small machine where the scheduler decides, a round trip to a local Redis costs
    either a wake-up on the same core (fast: the client's own overhead dominates) or one
    across cores (an inter-processor interrupt, slow: the round trip dominates), and it
    flips between the two from run to run. Each benchmark pins both sides and reports
    both placements instead of a bimodal mix.
    """
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux: let the scheduler decide
        return {"unpinned": (set(), set())}
    if len(cpus) < 2:
        return {"unpinned": (set(), set())}
    return {
        "one shared core": ({cpus[0]}, {cpus[0]}),
        "separate cores": ({cpus[0]}, {cpus[1]}),
    }


def place(server: RedisServer, mine: set[int], redis: set[int]) -> None:
    """Pin this process and the private redis-server (empty sets: leave as they are)."""
    if mine and server.process is not None:
        pin(os.getpid(), mine)
        pin(server.process.pid, redis)


def unpin(server: RedisServer) -> None:
    """Let the scheduler place this process and the redis-server again."""
    everything = os.sched_getaffinity(0) | set(range(os.cpu_count() or 1))
    with contextlib.suppress(OSError):
        pin(os.getpid(), everything)
        if server.process is not None:
            pin(server.process.pid, everything)


@contextlib.contextmanager
def private_redis(appendfsync: str = "everysec") -> Iterator[RedisServer]:
    """A redis-server of our own on a free port (AOF on), never the shared 6379."""
    with tempfile.TemporaryDirectory(prefix="zart-bench-") as data:
        server = RedisServer(data, appendfsync=appendfsync).start()
        try:
            yield server
        finally:
            server.stop()


def median(values: Sequence[float]) -> float:
    """Median of the rounds (the machine is shared and noisy)."""
    return statistics.median(values)


def rounded(values: Sequence[float], scale: float = 1.0) -> list[int]:
    """The rounds as integers, for the report line."""
    return [round(v * scale) for v in values]


def report_ratio(
    name: str, ours: Sequence[float], base: Sequence[float], target: float, unit: str
) -> tuple[float, bool]:
    """Print medians and ours/baseline (higher is better); return (ratio, target met).

    ``base[i]`` is measured right around ``ours[i]`` (the mean of a run just before and one
    just after), so each round's ratio cancels slow drifts of a shared machine's load; the
    ratio judged is the median of the rounds' ratios.
    """
    ratios = [o / b for o, b in zip(ours, base, strict=True)]
    ratio = median(ratios)
    met = ratio >= target
    print(f"{name}:\n    zart-es {median(ours):,.0f} {unit}, baseline {median(base):,.0f} {unit}"
          f" (medians); ratio {ratio:.2f} (median of rounds' ratios; target >= {target}: "
          f"{'MET' if met else 'NOT MET'})\n"
          f"    rounds: zart-es {rounded(ours)}, baseline {rounded(base)}, "
          f"ratios {[round(x, 2) for x in ratios]}", flush=True)
    return ratio, met
