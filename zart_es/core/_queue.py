"""What a queue is: its admission rules, validated when declared.

The gate that applies them over Redis is :class:`zart_es.engine.QueueGate`.
"""

from __future__ import annotations

import math

import msgspec

from zart_es.core._errors import ConfigError
from zart_es.core._names import check_priority, check_queue_name


class Queue(msgspec.Struct, frozen=True, kw_only=True):
    """A queue's admission rules (validated when built; ConfigError if invalid).

    ``concurrency``: most executions admitted and not yet released, per queue key
    (``None``: no cap). ``priority``: default priority of its executions, higher first,
    ``-1000..1000``. ``rate``: most admissions per second per queue key, over a sliding
    window: ``n = max(1, floor(rate))`` admissions per ``n / rate`` seconds, which is a
    1-second window for whole rates (``rate=0.5``: one admission per 2 s).
    """

    name: str
    concurrency: int | None = None
    priority: int = 0
    rate: float | None = None
    pool: str | None = None
    """Queues of one pool share its limits and its waiting line: the higher-priority
    queue of the pool is served first (every queue of a pool declares the same
    ``concurrency`` and ``rate``)."""

    @property
    def slot(self) -> str:
        """Whose admission keys this queue uses: its pool's, or its own."""
        return self.pool or self.name

    def __post_init__(self) -> None:
        for what, value in (("queue name", self.name), ("queue pool", self.pool)):
            if value is None:
                continue
            check_queue_name(value, what=what)
        if self.concurrency is not None and (
                not isinstance(self.concurrency, int) or isinstance(self.concurrency, bool)
                or self.concurrency < 1):
            raise ConfigError(f"queue {self.name!r}: concurrency must be an integer >= 1 "
                              f"or None, got {self.concurrency!r}")
        check_priority(self.priority)
        if self.rate is not None and (
                not isinstance(self.rate, int | float) or isinstance(self.rate, bool)
                or not math.isfinite(self.rate) or self.rate <= 0):
            raise ConfigError(f"queue {self.name!r}: rate must be a number > 0 "
                              f"(admissions per second) or None, got {self.rate!r}")

    @property
    def rate_window(self) -> tuple[int, float]:
        """``(admissions allowed, window ms)`` of the rate limit; ``(0, 0.0)`` without one."""
        if self.rate is None:
            return 0, 0.0
        allowed = max(1, math.floor(self.rate))
        return allowed, allowed * 1000.0 / self.rate


