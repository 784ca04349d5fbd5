"""What the workflow API needs from the engine, and nothing more.

:class:`~zart_es.workflow.Context` depends on this protocol, never on the worker or on
Redis, so it can be driven by the real store or by a test double of the same shape.
"""

from __future__ import annotations

from typing import Protocol

from zart_es.core import Event, ExecutionState


class Journal(Protocol):
    """The folded log of one execution, and the one way to add to it."""

    @property
    def state(self) -> ExecutionState:
        """The state folded from every event recorded so far."""
        ...

    def interrupted(self) -> bool:
        """True when the run should stop before starting new work (the worker drains)."""
        ...

    def superseded(self) -> bool:
        """True once an operator's repair reopened the execution after this run began:
        the run must stop (the repair's own run continues the execution)."""
        ...

    def pause_rule(self, step: str | None = None) -> str | None:
        """The pause rule holding this execution (before ``step``, when it is about to run
        that step), by the worker's cached copy (None: none)."""
        ...

    def observe_step(self, step: str, attempt: int, took_us: int, outcome: str) -> None:
        """Attempt ``attempt`` of ``step`` ran its function for ``took_us`` (the
        duration its outcome event records) with ``outcome``: completed, retry or failed
        (for metrics and traces; no durable effect)."""
        ...

    async def create_child(self, child_id: str, workflow: str, payload: bytes) -> None:
        """Create child execution ``child_id`` (idempotent on the id) with this parent."""
        ...

    async def record(self, event: Event) -> None:
        """Append ``event`` durably and fold it into :attr:`state`, with the effects
        :func:`~zart_es.core.effects_of` gives it (the timer it arms, those it drops).

        Returns once Redis acknowledged it, or once the log turned out to record the same
        thing already (another worker won the race: its record stands). Raises
        :class:`~zart_es.core.LeaseLost` when the execution ended elsewhere.
        """
        ...
