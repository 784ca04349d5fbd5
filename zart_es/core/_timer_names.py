"""How durable timers (and other recorded calls) are named: one place for every naming rule.

Names are unique within an execution and deterministic over replays.
"""

from __future__ import annotations

TIMEOUT_PREFIX = "timeout:"


def sleep_timer(n: int) -> str:
    """The ``n``-th ``ctx.sleep`` of a run."""
    return f"sleep-{n}"


def named_sleep_timer(name: str) -> str:
    """A ``ctx.sleep(..., name=name)``."""
    return f"sleep:{name}"


RETRY_PREFIX = "retry:"


def retry_timer(step: str, attempt: int) -> str:
    """The timer that releases ``attempt`` of ``step``."""
    return f"{RETRY_PREFIX}{attempt}:{step}"


def retry_step_of(timer: str) -> str:
    """The step a retry timer belongs to (inverse of :func:`retry_timer`)."""
    return timer.removeprefix(RETRY_PREFIX).partition(":")[2]


def wait_timer(wait: str) -> str:
    """The timeout of the signal wait ``wait``."""
    return f"{wait}:timer"


def timeout_timer(timeout_ms: int) -> str:
    """The execution's deadline; it carries its length so whoever fires it can say it."""
    return f"{TIMEOUT_PREFIX}{timeout_ms}"


DEBOUNCE_PREFIX = "debounce-"


def debounce_timer(n: int) -> str:
    """The ``n``-th timer a debounced execution waits on for its window to close."""
    return f"{DEBOUNCE_PREFIX}{n}"


def patch_call(patch: str) -> str:
    """The durable call a ``ctx.patched(patch)`` marker stands for in the order of calls."""
    return f"patch:{patch}"


def timeout_of(timer: str) -> int | None:
    """The deadline length named by a timeout timer, or None for any other timer."""
    if not timer.startswith(TIMEOUT_PREFIX):
        return None
    return int(timer.removeprefix(TIMEOUT_PREFIX))


