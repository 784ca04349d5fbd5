"""Durations as users write them: ``timedelta``, seconds, or ``"300ms"``/``"5s"``/``"5m"``/``"6h"``.

Pure functions, no clock. Every duration inside the engine is an ``int`` of milliseconds.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from fractions import Fraction

from zart_es.core._errors import InvalidDuration

Duration = timedelta | int | float | str
"""What every ``delay=``, ``timeout=`` and ``ctx.sleep()`` accepts."""

MAX_MS = 100 * 365 * 86_400_000
"""A century: longer durations are refused (they could not be recorded as timers)."""

_UNITS_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")


def to_ms(value: Duration) -> int:
    """Milliseconds in ``value``; raises :class:`InvalidDuration` for anything doubtful.

    ``"1h30m"`` combines units; a bare number (int, float or numeric string) is seconds.
    Durations are taken to the microsecond and fractions of a millisecond round up, so a
    timer never fires earlier than asked (by more than half a microsecond).
    """
    if isinstance(value, bool):
        raise InvalidDuration(value, "a bool is not a duration")
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise InvalidDuration(value, "negative")
        return _bounded(value, _ceil_ms(value // timedelta(microseconds=1)))
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            raise InvalidDuration(value, "too large") from None
    elif isinstance(value, str):
        return _parse_text(value)
    else:
        raise InvalidDuration(
            value, f"expected timedelta, seconds or text, got {type(value).__name__}"
        )
    if not math.isfinite(seconds):
        raise InvalidDuration(value, "not finite")
    if seconds < 0:
        raise InvalidDuration(value, "negative")
    # whole microseconds first, exactly (a float product rounds: at 5.6e8 s it lost 0.54
    # us), so float noise (266774.905 s is 266774.90499999997 s) does not add a
    # millisecond; then round up, so a timer never fires early
    return _bounded(value, _ceil_ms(round(Fraction(seconds) * 1_000_000)))


def _bounded(value: object, ms: int) -> int:
    if ms > MAX_MS:
        raise InvalidDuration(value, "longer than a century")
    return ms


def _ceil_ms(microseconds: int) -> int:
    return -(-microseconds // 1000)


def _parse_text(text: str) -> int:
    compact = text.strip().replace(" ", "").lower()
    if not compact:
        raise InvalidDuration(text, "empty")
    try:
        number = float(compact)
    except ValueError:
        pass
    else:
        if not math.isfinite(number):
            raise InvalidDuration(text, "not finite")
        if number < 0:
            raise InvalidDuration(text, "negative")
        try:
            return to_ms(number)
        except InvalidDuration as exc:
            raise InvalidDuration(text, exc.reason) from None  # name what the user wrote
    if compact.startswith("-"):
        raise InvalidDuration(text, "negative")
    if not _WHOLE.fullmatch(compact):
        raise InvalidDuration(
            text, "use a number and a unit: ms, s, m, h or d (e.g. '5m', '1h30m')"
        )
    total_us = 0.0
    for number, unit in _PART.findall(compact):
        total_us += float(number) * _UNITS_MS[unit] * 1000
    if not math.isfinite(total_us) or total_us > MAX_MS * 1000:
        raise InvalidDuration(text, "longer than a century")
    return _bounded(text, _ceil_ms(round(total_us)))


def format_ms(ms: int) -> str:
    """Short human form, used in logs and errors: 1500 -> '1.5s'."""
    if ms < 1_000:
        return f"{ms}ms"
    if ms < 60_000:
        return f"{ms / 1000:g}s"
    if ms < 3_600_000:
        return f"{ms / 60_000:g}m"
    return f"{ms / 3_600_000:g}h"
