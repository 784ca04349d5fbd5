"""Would the current code replay a recorded history? The pre-deploy gate.

:func:`check_history` folds a recorded log, replays the registered workflow over it
without running any step (recorded calls return what the log says) and without writing
anything, and stops at the first call the log does not have (where a worker would go on
with new work). A :class:`NondeterminismError` on the way (a step inserted, renamed or
moved under running executions) is reported with its position, what the log recorded
there and what the code asks for. ``zart-es replay`` and :func:`zart_es.testing.check_replay`
call it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from zart_es.core import (
    Cancelled,
    Event,
    ExecutionState,
    Interrupted,
    LeaseLost,
    NondeterminismError,
    Paused,
    PayloadError,
    Payloads,
    Suspend,
    UnknownWorkflow,
    apply,
)
from zart_es.workflow._context import Context
from zart_es.workflow._registry import Registry
from zart_es.workflow._replay_pass import workflow_input


@dataclass(frozen=True, slots=True)
class ReplayVerdict:
    """What replaying one history against the current code found."""

    execution_id: str
    workflow: str
    ok: bool
    detail: str
    """"replays to its end", "replays up to its last recorded call", or the failure."""
    position: int | None = None
    expected: str | None = None
    got: str | None = None


class HistoryJournal:
    """A recorded log as a read-only journal: new work interrupts the replay there."""

    def __init__(self, events: Iterable[Event] = (), state: ExecutionState | None = None
                 ) -> None:
        """Over ``events`` folded, or over ``state`` as folded already (a query's replay:
        the caller must not fold into it while the replay runs)."""
        self.state = state if state is not None else ExecutionState()
        for event in events:
            apply(self.state, event)

    def interrupted(self) -> bool:
        return True  # asked only before a call the log does not have: stop there

    def superseded(self) -> bool:
        return False

    def pause_rule(self, step: str | None = None) -> str | None:
        return None

    def observe_step(self, step: str, attempt: int, took_us: int, outcome: str) -> None:
        return None

    async def create_child(self, child_id: str, workflow: str, payload: bytes) -> None:
        raise LeaseLost(child_id)  # never reached: a new call interrupts first

    async def record(self, event: Event) -> None:
        raise LeaseLost(self.state.execution_id)  # a replay writes nothing


async def check_history(events: Iterable[Event], registry: Registry,
                        payloads: Payloads | None = None) -> ReplayVerdict:
    """Replay ``events`` (one execution's log, oldest first) against ``registry``."""
    journal = HistoryJournal(events)
    state = journal.state
    verdict = _Verdict(state.execution_id, state.workflow)
    payloads = payloads or Payloads()
    try:
        workflow = registry.get(state.workflow)
        data = workflow_input(workflow, state, payloads)
        await workflow.fn(Context(journal, payloads=payloads, updates=workflow.updates), data)
    except NondeterminismError as exc:
        return verdict(False, str(exc), exc.position, exc.expected, exc.got)
    except (UnknownWorkflow, PayloadError) as exc:
        return verdict(False, str(exc))
    except (Suspend, Interrupted, Cancelled, Paused, LeaseLost):
        return verdict(True, "replays up to its last recorded call")
    except Exception as exc:  # the workflow's own failure, as the log recorded it
        return verdict(True, f"replays to its end (raises {type(exc).__name__})")
    return verdict(True, "replays to its end")


@dataclass(frozen=True, slots=True)
class _Verdict:
    execution_id: str
    workflow: str

    def __call__(self, ok: bool, detail: str, position: int | None = None,
                 expected: str | None = None, got: str | None = None) -> ReplayVerdict:
        return ReplayVerdict(self.execution_id, self.workflow, ok, detail, position,
                             expected, got)
