"""Shared by the benchmarks: a private Redis, rounds, medians and a report line."""

from __future__ import annotations

import contextlib
import statistics
import tempfile
from collections.abc import Iterator

from zart_es.embedded import RedisServer
from zart_es.logs import configure_logging

configure_logging(level="WARNING")

ROUNDS = 5
PAYLOAD = {"s": 1, "p": "x" * 40, "e": b"\x00" * 40}  # what one log entry carries


@contextlib.contextmanager
def private_redis(appendfsync: str = "everysec") -> Iterator[RedisServer]:
    """A redis-server of our own (AOF, everysec by default), never the shared 6379."""
    with tempfile.TemporaryDirectory() as data:
        server = RedisServer(data, appendfsync=appendfsync).start()
        try:
            yield server
        finally:
            server.stop()


def median(values: list[float]) -> float:
    """Median of the rounds (the machines are shared and noisy)."""
    return statistics.median(values)


def report(name: str, ours: list[float], base: list[float], target: float, unit: str) -> bool:
    """Print medians and the ratio; True when the ratio meets the target."""
    ratio = median(ours) / median(base)
    verdict = "meets" if ratio >= target else "MISSES"
    print(f"{name}: zart-es {median(ours):,.0f} {unit}, baseline {median(base):,.0f} {unit}, "
          f"ratio {ratio:.2f} (target >= {target}: {verdict}); "
          f"rounds {[round(x) for x in ours]} vs {[round(x) for x in base]}", flush=True)
    return ratio >= target
