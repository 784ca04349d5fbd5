"""What an ended execution tells the executions around it: pure, no I/O.

An execution that ends reports to its parent (``ChildCompleted``) and applies each live
child's cancel policy. The engine and the test harness both deliver exactly these
notices, on every replay of the ended execution (each has an idempotency token, so a
crash between two deliveries loses nothing and repeats nothing).
"""

from __future__ import annotations

from typing import ClassVar

import msgspec

from zart_es.core._errors import ConfigError
from zart_es.core._events import CancelRequested, ChildCompleted, Event, SignalReceived
from zart_es.core._fold import CANCELLED, ExecutionState
from zart_es.core._payloads import Payloads

CASCADE = "cascade"
"""The child is cancelled (``CancelRequested``) when its parent ends: its own
``except Cancelled`` / ``finally`` compensation runs. The default."""
ABANDON = "abandon"
"""The child keeps running when its parent ends."""
REQUEST = "request"
"""The child receives the signal :data:`PARENT_ENDED` when its parent ends, and decides."""
CANCEL_POLICIES = (CASCADE, ABANDON, REQUEST)

PARENT_ENDED = "zart.parent-ended"
"""The signal a child started with ``cancel="request"`` receives when its parent ends
(payload: :class:`ParentEnded`)."""


class ParentEnded(msgspec.Struct, frozen=True):
    """The payload of :data:`PARENT_ENDED` (``ParentEnded.SIGNAL``): which parent ended
    how. ``await ctx.wait_for_signal(ParentEnded.SIGNAL, type=ParentEnded)``."""

    SIGNAL: ClassVar[str] = PARENT_ENDED

    parent_id: str
    status: str
    """``completed``, ``failed``, ``cancelled`` or ``timed_out``."""
    reason: str = ""
    """The cancel's reason when the parent was cancelled."""


class Notice(msgspec.Struct, frozen=True):
    """One append an ended execution owes another: ``event`` to ``execution_id``'s log,
    once (``token``), with a work message."""

    execution_id: str
    event: Event
    token: str


def check_cancel_policy(policy: object) -> str:
    """A child's cancel policy, or ConfigError naming the ones there are."""
    if policy not in CANCEL_POLICIES:
        raise ConfigError(f"cancel policy must be one of {', '.join(CANCEL_POLICIES)}, "
                          f"got {policy!r}")
    return str(policy)


def end_notices(state: ExecutionState, payloads: Payloads) -> list[Notice]:
    """What the ended execution ``state`` owes others: its end to its parent, then each
    child that has not reported its own end its policy's notice (nothing when it was
    started with ``abandon``). Empty while the execution has not ended."""
    if not state.terminal:
        return []
    notices = []
    if state.parent_id:
        notices.append(Notice(state.parent_id, child_completed(state),
                              f"child:{state.execution_id}"))
    reason = state.error.message if state.status == CANCELLED and state.error else ""
    for child in state.children.values():
        if child.child_id in state.child_results or child.cancel == ABANDON:
            continue
        if child.cancel == REQUEST:
            ended = ParentEnded(state.execution_id, str(state.status), reason)
            payload = payloads.encode(ended, f"signal {PARENT_ENDED!r}")
            notices.append(Notice(child.child_id, SignalReceived(
                name=PARENT_ENDED, payload=payload, by=f"parent:{state.execution_id}"),
                f"event:{PARENT_ENDED}:{state.execution_id}:{state.opened_seq}"))
        else:
            why = f"parent {state.execution_id} ended {state.status}"
            notices.append(Notice(child.child_id, CancelRequested(
                reason=f"{why}: {reason}" if reason else why,
                by=f"parent:{state.execution_id}"), "cancel"))
    return notices


def child_completed(state: ExecutionState) -> ChildCompleted:
    """The ``ChildCompleted`` an ended child reports to its parent."""
    failure = state.error
    return ChildCompleted(
        child_id=state.execution_id, status=state.status, result=state.result or b"",
        error_type=failure.error_type if failure else "",
        message=failure.message if failure else "",
    )
