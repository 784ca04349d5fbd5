"""Simulated external services the example workflows call.

They behave like the real thing where it matters for durability: they take time, they fail
transiently, and their side effects are visible outside the worker process. Each call that
has a side effect appends one line ``<kind> <key>`` to the file named by
``$ZART_DEMO_EFFECTS`` (when set), so a demo or a test can count how often each side
effect really happened across crashes.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime

import msgspec


class Item(msgspec.Struct, frozen=True):
    """A unit of work of the batch examples."""

    id: int
    payload: str


class Record(msgspec.Struct, frozen=True):
    """A row of the transform example."""

    key: str
    value: int


def record_effect(kind: str, key: object) -> None:
    """Append ``kind key`` to the effects file (one write: atomic for short lines)."""
    path = os.environ.get("ZART_DEMO_EFFECTS")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{kind} {key}\n".encode())
        finally:
            os.close(fd)


def step_delay() -> float:
    """Seconds each simulated call takes (``$ZART_DEMO_STEP_SECONDS``, default 0)."""
    return float(os.environ.get("ZART_DEMO_STEP_SECONDS", "0"))


async def fetch_pending_items(count: int) -> list[Item]:
    """The database: items waiting to be processed."""
    await asyncio.sleep(step_delay())
    return [Item(id=i, payload=f"item-{i}") for i in range(count)]


async def process_item(item: Item) -> str:
    """The processor: handles one item (side effect)."""
    await asyncio.sleep(step_delay())
    record_effect("process", item.id)
    return f"processed:{item.payload}"


async def send_mail(index: int, item: Item) -> bool:
    """The mailer: notifies about one item (side effect)."""
    await asyncio.sleep(step_delay())
    record_effect("mail", index)
    return True


class Job(msgspec.Struct, frozen=True):
    """A job submitted to the simulated batch system."""

    job_id: str
    submitted_at: float
    runs_for: float
    fails: bool = False


async def render_thumbnail(index: int) -> str:
    """The GPU: renders one image (side effect), as the process that holds it."""
    await asyncio.sleep(step_delay())
    record_effect("render", f"{index} {os.getpid()}")
    return f"thumbnail-{index}.png"


def submit_job(name: str, runs_for: float, fails: bool = False) -> Job:
    """Submit a job; it finishes ``runs_for`` seconds later (wall clock)."""
    record_effect("submit", name)
    return Job(job_id=f"job-{name}", submitted_at=time.time(), runs_for=runs_for, fails=fails)


def job_status(job: Job) -> str:
    """``running`` until the job's time is up, then ``done`` (or ``failed``)."""
    if time.time() - job.submitted_at < job.runs_for:
        return "running"
    return "failed" if job.fails else "done"


def load_records(count: int) -> list[Record]:
    """The source table of the transform example."""
    return [Record(key=f"k{i}", value=i) for i in range(count)]


def write_records(records: list[Record]) -> int:
    """The sink: writes the transformed rows (side effect, once per execution ideally)."""
    record_effect("write", len(records))
    return len(records)


_provision_calls: dict[str, int] = {}


def provision(config: str, fail_times: int) -> dict[str, str]:
    """The cloud API: fails ``fail_times`` times per config in this process, then works."""
    calls = _provision_calls.get(config, 0) + 1
    _provision_calls[config] = calls
    record_effect("provision", config)
    if calls <= fail_times:
        raise ConnectionError(f"cloud API unavailable (call {calls})")
    return {"config": config, "instance": f"i-{abs(hash(config)) % 10_000:04d}",
            "at": datetime.now(UTC).isoformat()}


async def send_email(tenant: str, to: str) -> str:
    """The mail provider: one message (side effect, with its start and end times, so a
    demo can see how many were in flight at once)."""
    record_effect("email-begin", f"{tenant}:{to}:{time.time():.6f}")
    await asyncio.sleep(0.2)
    record_effect("email-end", f"{tenant}:{to}:{time.time():.6f}")
    return f"sent:{to}"


def charge_card(order: str) -> str:
    """The payment provider: down while the file named by ``$ZART_DEMO_OUTAGE`` exists."""
    outage = os.environ.get("ZART_DEMO_OUTAGE")
    if outage and os.path.exists(outage):
        raise ConnectionError("payment provider unavailable")
    record_effect("charge", order)
    return f"charged:{order}"
