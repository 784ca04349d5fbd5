"""The worker's heartbeat file: touched while its event loop runs, holding what is wrong.

The file's age says whether the worker is alive (its event loop runs and the heartbeat
loop with it). Its content, JSON, lists the background loops that crashed within the last
minute: one broken loop (the timer poller, the scheduler) is reported as its own finding
by ``zart-es health``, not as a dead worker whose heartbeat went stale.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict

import msgspec

from zart_es.engine._aio import LoopFinding


class _Beat(msgspec.Struct):
    pid: int
    loops: list[dict[str, object]] = []
    store_refusing: str | None = None


class Heartbeat(msgspec.Struct, frozen=True):
    """What a heartbeat file says: its age, the loops that crashed recently, and the store
    error the worker is waiting out (Redis refusing writes), if any."""

    age_s: float
    loops: list[LoopFinding]
    store_refusing: str | None = None


def write_heartbeat(path: str, findings: list[LoopFinding], *,
                    store_refusing: str | None = None) -> None:
    """Replace the file at once (never half-written): this process and its findings."""
    body = msgspec.json.encode(_Beat(os.getpid(), [asdict(f) for f in findings],
                                     store_refusing))
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as out:
        out.write(body)
    os.replace(tmp, path)


def read_heartbeat(path: str) -> Heartbeat:
    """What the file says (FileNotFoundError when there is none). A file of an older
    version (empty) or one that cannot be read holds no findings."""
    age = time.time() - os.stat(path).st_mtime
    try:
        with open(path, "rb") as f:
            beat = msgspec.json.decode(f.read(), type=_Beat)
        loops = [msgspec.convert(loop, LoopFinding) for loop in beat.loops]
    except (msgspec.DecodeError, msgspec.ValidationError, OSError):
        return Heartbeat(age, [])
    return Heartbeat(age, loops, beat.store_refusing)
