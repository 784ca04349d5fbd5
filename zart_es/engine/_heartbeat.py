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


def write_heartbeat(path: str, findings: list[LoopFinding]) -> None:
    """Replace the file at once (never half-written): this process and its findings."""
    body = msgspec.json.encode(_Beat(os.getpid(), [asdict(f) for f in findings]))
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as out:
        out.write(body)
    os.replace(tmp, path)


def read_heartbeat(path: str) -> tuple[float, list[LoopFinding]]:
    """The file's age in seconds and the loop findings it holds (FileNotFoundError when
    there is none). A file of an older version (empty) or unreadable holds none."""
    age = time.time() - os.stat(path).st_mtime
    try:
        with open(path, "rb") as f:
            beat = msgspec.json.decode(f.read(), type=_Beat)
        return age, [msgspec.convert(loop, LoopFinding) for loop in beat.loops]
    except (msgspec.DecodeError, msgspec.ValidationError, OSError):
        return age, []
