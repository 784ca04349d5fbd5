"""What one run of a workflow has visited, checked against what its log recorded.

A run replays the workflow from the top; every durable call (step, sleep, wait, child)
is either recorded already or new. A new call while recorded calls are still unvisited
means the code changed under the execution: :class:`NondeterminismError`, never a silent
mix of old results and new code.
"""

from __future__ import annotations

from zart_es.core import Cancelled, ExecutionState, NondeterminismError


class ReplayTracker:
    """Per-run bookkeeping: visited calls, cancellation delivery, ``gather`` depth."""

    __slots__ = ("_frontier", "_visited", "cancel_delivered", "concurrent")

    def __init__(self) -> None:
        self._visited: set[str] = set()
        self._frontier = 0
        """Index of the first recorded call not visited yet (only moves forward)."""
        self.cancel_delivered = False
        self.concurrent = 0
        """Depth of ``ctx.gather``: recorded order is not checked inside it."""

    def visit(self, state: ExecutionState, name: str) -> None:
        """Note a call; raise NondeterminismError if it is new while recorded ones remain."""
        self._visited.add(name)
        if name in state.ordered or self.concurrent:
            return
        self._advance(state)
        if self._frontier < len(state.order):
            raise NondeterminismError(state.order[self._frontier], name, self._frontier)

    def _advance(self, state: ExecutionState) -> None:
        """Move past the recorded calls visited, and past the steps a re-run kept (stale:
        the calls re-run before them are new ones)."""
        order = state.order
        while self._frontier < len(order) and (order[self._frontier] in self._visited
                                               or order[self._frontier] in state.stale):
            self._frontier += 1

    def replaying(self, state: ExecutionState) -> bool:
        """True while recorded calls that this replay has not met yet remain (outside a
        gather): the code is walking through history, not making new calls."""
        if self.concurrent:
            return False
        self._advance(state)
        return self._frontier < len(state.order)

    def deliver_cancel_at_wait(self, state: ExecutionState, ended_seq: int | None) -> None:
        """At a recorded durable wait (sleep, child call) that ended at log position
        ``ended_seq`` (None: not yet): deliver a cancel request that came before that end.

        Decided by log order, not by what a run happens to see: a run that found the
        wait pending got Cancelled here, so every replay must get it here too.
        """
        if ended_seq is None or ended_seq > state.cancel_seq:
            self.deliver_cancel(state)

    def deliver_cancel(self, state: ExecutionState) -> None:
        """Raise Cancelled once per run, at the first new call after a cancel request."""
        if state.cancel_requested is not None and not self.cancel_delivered:
            self.cancel_delivered = True
            raise Cancelled(state.cancel_requested)
