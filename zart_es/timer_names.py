"""How durable timers are named: one place for every naming rule.

Names are unique within an execution and deterministic over replays.
"""

from __future__ import annotations

TIMEOUT_PREFIX = "timeout:"


def sleep_timer(n: int) -> str:
    """The ``n``-th ``ctx.sleep`` of a run."""
    return f"sleep-{n}"


def retry_timer(step: str, attempt: int) -> str:
    """The timer that releases ``attempt`` of ``step``."""
    return f"retry:{attempt}:{step}"


def wait_timer(wait: str) -> str:
    """The timeout of the event wait ``wait``."""
    return f"{wait}:timer"


def timeout_timer(timeout_ms: int) -> str:
    """The execution's deadline; it carries its length so whoever fires it can say it."""
    return f"{TIMEOUT_PREFIX}{timeout_ms}"


def timeout_of(timer: str) -> int | None:
    """The deadline length named by a timeout timer, or None for any other timer."""
    if not timer.startswith(TIMEOUT_PREFIX):
        return None
    return int(timer.removeprefix(TIMEOUT_PREFIX))
