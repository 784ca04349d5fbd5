"""Helpers shared by the tests: subprocess workers, effect counting, log reading."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from zart_es.store import Keys, to_event

ROOT = Path(__file__).resolve().parent.parent


def spawn_worker(
    url: str,
    app: str,
    *,
    env: dict[str, str] | None = None,
    lease: float = 1.0,
    log: Path | None = None,
    extra: list[str] | None = None,
) -> subprocess.Popen[bytes]:
    """A real worker process: ``python -m zart_es worker --app APP``."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "ZART_LOG_LEVEL": "WARNING",
                **(env or {})}
    out = log.open("ab") if log else None
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "zart_es", "--redis-url", url, "worker", "--app", app,
             "--lease-timeout", str(lease), "--poll-interval", "0.1", "--log-json",
             *(extra or [])],
            cwd=ROOT, env=full_env, start_new_session=True,
            stdout=out or subprocess.DEVNULL, stderr=out or subprocess.DEVNULL,
        )
    finally:
        if out is not None:
            out.close()  # the child has its own copy of the descriptor


def zart(url: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """``zart-es ARGS --redis-url URL`` in a subprocess, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "zart_es", *args, "--redis-url", url],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
    )


def stop_worker(proc: subprocess.Popen[bytes], timeout: float = 15) -> int:
    """SIGTERM and wait (SIGKILL if it does not drain in time); returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def kill9(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL: the worker gets no chance to clean up."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()


def count_effects(path: Path, kind: str) -> collections.Counter[str]:
    """How often each ``kind key`` line was written to the effects file."""
    return collections.Counter(
        parts[1]
        for line in path.read_text().splitlines()
        if (parts := line.split()) and parts[0] == kind
    )


def effect_times(path: Path, kind: str) -> list[tuple[str, float]]:
    """(key, unix time) of ``kind key time`` lines, in file order."""
    out = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == kind and len(parts) >= 3:
            out.append((parts[1], float(parts[2])))
    return out


async def read_log(redis: Redis, execution_id: str, partitions: int = 16) -> list[Any]:
    """The execution's events straight from its stream."""
    entries = await redis.xrange(Keys(partitions=partitions).log(execution_id))
    return [to_event(entry_id, fields) for entry_id, fields in entries]


async def wait_for(predicate: Any, timeout: float = 30, interval: float = 0.02) -> Any:
    """Poll an async predicate until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
