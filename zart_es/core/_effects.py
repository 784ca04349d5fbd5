"""What an append does besides adding its event to the log: one pure function.

Appending an event can move the execution's status (unless a held status keeps it), end
the execution, reopen it after its end, arm a timer, take timers off the wheel and wake
the execution with a work message. :func:`effects_of` decides all of it from the event
and, where the writer folded the log, its state. The store hands the result to
``append.lua`` as one msgpack array (the layout of :class:`Effects`); the in-memory test
journal applies the same value to its list and its wheel, so the two apply one rule. (They
differ only where the writer differs: the harness always has the folded state, so its
deadline takes the pending timers off its wheel, where the poller's, which has no state,
leaves them to come due and find the execution ended.)
"""

from __future__ import annotations

import msgspec

from zart_es.core._events import (
    REOPENING_EVENTS,
    TERMINAL_EVENTS,
    Event,
    ExecutionQuarantined,
    ExecutionTimedOut,
    RetryScheduled,
    SignalConsumed,
    TimerFired,
    TimerSet,
)
from zart_es.core._fold import ExecutionState, kept_through, status_after
from zart_es.core._timer_names import timeout_of, wait_timer


class Effects(msgspec.Struct, frozen=True, array_like=True):
    """An append's side-writes, in the order ``append.lua`` reads them (its ``ARGV[1]``
    carries this array as the last field of the call; see ``store/scripts/append.lua``)."""

    status: str = ""
    """The status the execution moves to ("": it keeps its status)."""
    kept: tuple[str, ...] = ()
    """Held statuses that stay although the event names ``status`` (see ``HELD``)."""
    terminal: bool = False
    """The event ends the execution: nothing but a repair may follow it."""
    reopens: bool = False
    """The event is a repair: it may only follow the end, which it lifts."""
    timer: str = ""
    """A timer to arm ("": none), due ``delay_ms`` after the entry or at ``due_ms``."""
    delay_ms: int = 0
    due_ms: int = 0
    drops: tuple[str, ...] = ()
    """Timers to take off the wheel: nothing will wait for them."""
    wakes: bool = False
    """Send the execution a work message: something from outside changed its log."""


def effects_of(event: Event, state: ExecutionState | None = None, *,
               by_run: bool = False) -> Effects:
    """What appending ``event`` to a log folded as ``state`` does.

    ``by_run``: the writer is the run holding the execution (its steps, its waits, its
    end; its quarantine by the worker that ran it), which goes on by itself; any other
    writer (a signal, a timer firing, a child's end, an operator's repair) wakes it.
    Without ``state`` (a writer that did not fold the log) no timer is dropped: an ended
    execution's timers leave the wheel as they come due.
    """
    plain = _PLAIN.get((type(event), by_run))
    if plain is not None:  # every step's path: the same value for each event of a type
        return plain
    status = status_after(event)
    timer, delay_ms, due_ms = _armed(event)
    effects = Effects(
        status=status or "",
        kept=kept_through(event),
        terminal=isinstance(event, TERMINAL_EVENTS),
        reopens=isinstance(event, REOPENING_EVENTS),
        timer=timer, delay_ms=delay_ms, due_ms=due_ms,
        drops=() if state is None else dropped_by(event, state),
        wakes=not by_run and not isinstance(event, ExecutionQuarantined),
    )
    if not isinstance(event, _VARIES):
        _PLAIN[type(event), by_run] = effects
    return effects


_VARIES: tuple[type[Event], ...] = (*TERMINAL_EVENTS, *REOPENING_EVENTS, TimerSet,
                                    RetryScheduled, SignalConsumed)
"""Events whose effects depend on their fields or on the state (the others' are cached)."""
_ENDS: tuple[type[Event], ...] = (*TERMINAL_EVENTS, *REOPENING_EVENTS)
_PLAIN: dict[tuple[type[Event], bool], Effects] = {}


def _armed(event: Event) -> tuple[str, int, int]:
    """The timer an event arms: its name, delay and absolute due time."""
    if isinstance(event, TimerSet):
        return event.timer, event.delay_ms, event.due_ms
    if isinstance(event, RetryScheduled):
        return event.timer, event.delay_ms, 0
    return "", 0, 0


def dropped_by(event: Event, state: ExecutionState) -> tuple[str, ...]:
    """Timers ``event`` takes off the wheel: at an end (or a repair reopening one) every
    timer that has not fired; when a signal wait resolves, its timeout."""
    if isinstance(event, _ENDS):
        return state.pending_timers()
    if isinstance(event, SignalConsumed):
        name = wait_timer(event.wait)
        timer = state.timers.get(name)
        if timer is not None and not timer.fired:
            return (name,)
    return ()


def fired(timer: str) -> Event:
    """The event a due timer records: ``TimerFired``, or ``ExecutionTimedOut`` for the
    execution's deadline (which ends it, even while a step of it is in flight)."""
    timeout_ms = timeout_of(timer)
    return TimerFired(timer=timer) if timeout_ms is None else ExecutionTimedOut(
        timeout_ms=timeout_ms)
