"""zart_es.core._durations: every form a user may write, rounding that never fires a timer early,
and a typed error naming the value for everything else."""

from __future__ import annotations

import math
from datetime import timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from zart_es.core import ConfigError, InvalidDuration, ZartError, encode_event, format_ms, to_ms
from zart_es.core import _events as ev

pytestmark = pytest.mark.pure

# -- valid forms ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected_ms"),
    [
        ("300ms", 300),
        ("5s", 5_000),
        ("5m", 300_000),
        ("6h", 21_600_000),
        ("1d", 86_400_000),
        ("1h30m", 5_400_000),
        ("1h30m15s250ms", 5_415_250),
        ("2m30s", 150_000),
        ("0ms", 0),
        ("0s", 0),
        ("1.5s", 1_500),
        ("0.25h", 900_000),
        ("1.5m", 90_000),
        (" 5s ", 5_000),
        ("1h 30m", 5_400_000),
        ("5S", 5_000),
        ("1H30M", 5_400_000),
        ("300MS", 300),
    ],
)
def test_text_with_units(value: str, expected_ms: int) -> None:
    assert to_ms(value) == expected_ms


@pytest.mark.parametrize(
    ("value", "expected_ms"),
    [
        (0, 0),
        (1, 1_000),
        (2, 2_000),
        (3600, 3_600_000),
        (0.0, 0),
        (0.5, 500),
        (1.5, 1_500),
        (0.001, 1),
        (0.0015, 2),  # 1.5 ms rounds up, never down
        (0.0001, 1),  # 100 microseconds still waits a whole millisecond
        (266774.905, 266_774_905),  # float noise (x * 1000 = ...905.00000003) adds nothing
    ],
)
def test_bare_numbers_are_seconds(value: float, expected_ms: int) -> None:
    assert to_ms(value) == expected_ms


@pytest.mark.parametrize(
    ("value", "expected_ms"),
    [("10", 10_000), ("0", 0), ("1.5", 1_500), (" 2 ", 2_000), ("0.0015", 2), ("1e3", 1_000_000)],
)
def test_numeric_strings_are_seconds(value: str, expected_ms: int) -> None:
    assert to_ms(value) == expected_ms


@pytest.mark.parametrize(
    ("value", "expected_ms"),
    [
        (timedelta(0), 0),
        (timedelta(milliseconds=300), 300),
        (timedelta(minutes=5), 300_000),
        (timedelta(hours=1, minutes=30), 5_400_000),
        (timedelta(days=2), 172_800_000),
        (timedelta(microseconds=1), 1),  # rounds up: the timer must not fire early
        (timedelta(milliseconds=1, microseconds=1), 2),
        (timedelta(microseconds=999), 1),
    ],
)
def test_timedelta(value: timedelta, expected_ms: int) -> None:
    assert to_ms(value) == expected_ms


def test_result_is_an_int() -> None:
    for value in ("5s", 1.5, 2, timedelta(seconds=1), "3"):
        assert type(to_ms(value)) is int


# -- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        -1,
        -0.001,
        "-5s",
        "-5",
        "-1h30m",
        timedelta(seconds=-1),
        timedelta(microseconds=-1),
    ],
)
def test_negative_is_rejected(value: Any) -> None:
    with pytest.raises(InvalidDuration) as info:
        to_ms(value)
    assert info.value.value == value
    assert repr(value) in str(info.value)
    assert "negative" in str(info.value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "inf", "nan", "-inf", "1e400"])
def test_non_finite_is_rejected(value: Any) -> None:
    with pytest.raises(InvalidDuration) as info:
        to_ms(value)
    assert repr(value) in str(info.value)


@pytest.mark.parametrize("value", [True, False])
def test_bool_is_rejected(value: bool) -> None:
    with pytest.raises(InvalidDuration) as info:
        to_ms(value)
    assert info.value.value is value
    assert "bool" in str(info.value)


@pytest.mark.parametrize(
    "value", ["5 parsecs", "5y", "5w", "5sec", "5mins", "m5", "1m5", "5mm", ".5s", "1.s", "s", "ms",
              "1h-30m", "0x10", "five seconds", "5s!"],
)
def test_unknown_unit_or_shape_is_rejected(value: str) -> None:
    with pytest.raises(InvalidDuration) as info:
        to_ms(value)
    assert info.value.value == value
    assert repr(value) in str(info.value)


@pytest.mark.parametrize("value", ["", " ", "\t", "   \n"])
def test_empty_is_rejected(value: str) -> None:
    with pytest.raises(InvalidDuration) as info:
        to_ms(value)
    assert "empty" in str(info.value)


@pytest.mark.parametrize(
    "value", [None, b"5s", [5], {"s": 5}, Decimal("5"), Fraction(1, 2), object(), 5j],
)
def test_wrong_type_is_rejected(value: Any) -> None:
    with pytest.raises(InvalidDuration) as info:
        to_ms(value)
    assert info.value.value is value
    assert type(value).__name__ in str(info.value)


def test_invalid_duration_is_a_config_error_and_a_value_error() -> None:
    with pytest.raises(InvalidDuration) as info:
        to_ms("5 parsecs")
    assert isinstance(info.value, ConfigError)
    assert isinstance(info.value, ZartError)
    assert isinstance(info.value, ValueError)
    assert info.value.reason


@pytest.mark.parametrize(
    "value", [10**400, "9" * 400 + "s", "9" * 400 + "ms"], ids=["int", "text-s", "text-ms"],
)
def test_out_of_range_is_an_invalid_duration(value: Any) -> None:
    # a number too large for a float must be a typed InvalidDuration, not an OverflowError
    with pytest.raises(InvalidDuration):
        to_ms(value)


@pytest.mark.parametrize(
    "value", [1e300, 10**300, "1e300", "9" * 300 + "h"], ids=["float", "int", "text", "text-h"],
)
def test_huge_duration_is_rejected_or_recordable(value: Any) -> None:
    # whatever to_ms accepts ends up in an event (TimerSet.delay_ms, RetryScheduled.delay_ms,
    # ExecutionTimedOut.timeout_ms): it must be recordable, or refused with a typed error
    try:
        ms = to_ms(value)
    except InvalidDuration:
        return
    encode_event(ev.TimerSet(timer="sleep-0", delay_ms=ms))


# -- properties ----------------------------------------------------------------------------

MAX_MS = 10**12  # ~31 years


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=MAX_MS))
def test_timedelta_of_whole_milliseconds_is_exact(n: int) -> None:
    assert to_ms(timedelta(milliseconds=n)) == n
    assert to_ms(f"{n}ms") == n


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=MAX_MS * 1000))
def test_timedelta_rounds_up_to_the_next_millisecond(us: int) -> None:
    td = timedelta(microseconds=us)
    ms = to_ms(td)
    assert timedelta(milliseconds=ms) >= td  # never early
    assert timedelta(milliseconds=ms) - td < timedelta(milliseconds=1)  # by less than 1 ms


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=10**9))
def test_whole_seconds_are_exact(seconds: int) -> None:
    assert to_ms(seconds) == seconds * 1000
    assert to_ms(str(seconds)) == seconds * 1000
    assert to_ms(f"{seconds}s") == seconds * 1000


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False))
@example(562949953.7540005)  # a float product seconds * 1e6 had lost 0.54 us here
def test_float_seconds_never_round_down(seconds: float) -> None:
    ms = to_ms(seconds)
    exact_ms = Fraction(seconds) * 1000
    # never earlier than asked (the documented tolerance is half a microsecond)
    assert ms >= exact_ms - Fraction(1, 2000)
    # and never more than one millisecond later
    assert ms <= exact_ms + 1


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=10**9), st.integers(min_value=0, max_value=999))
def test_decimal_text_seconds_are_exact(whole: int, frac: int) -> None:
    assert to_ms(f"{whole}.{frac:03d}s") == whole * 1000 + frac
    assert to_ms(f"{whole}.{frac:03d}") == whole * 1000 + frac


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=0, max_value=1000),
    st.integers(min_value=0, max_value=1000),
    st.integers(min_value=0, max_value=1000),
    st.integers(min_value=0, max_value=1000),
    st.integers(min_value=0, max_value=1000),
)
def test_combined_units_add_up(d: int, h: int, m: int, s: int, ms: int) -> None:
    expected = d * 86_400_000 + h * 3_600_000 + m * 60_000 + s * 1000 + ms
    assert to_ms(f"{d}d{h}h{m}m{s}s{ms}ms") == expected
    assert to_ms(f"{h}h{m}m") == h * 3_600_000 + m * 60_000
    assert to_ms(f"{m}m {s}s") == m * 60_000 + s * 1000
    assert to_ms(timedelta(days=d, hours=h, minutes=m, seconds=s, milliseconds=ms)) == expected


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=12))
def test_any_text_gives_ms_or_invalid_duration(text: str) -> None:
    outcome: int | InvalidDuration
    try:
        outcome = to_ms(text)
    except InvalidDuration as exc:
        outcome = exc
    if isinstance(outcome, InvalidDuration):
        assert outcome.value == text
    else:
        assert isinstance(outcome, int)
        assert outcome >= 0


# -- format_ms ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "0ms"),
        (1, "1ms"),
        (999, "999ms"),
        (1000, "1s"),
        (1500, "1.5s"),
        (59_999, "59.999s"),
        (60_000, "1m"),
        (90_000, "1.5m"),
        (300_000, "5m"),
        (3_600_000, "1h"),
        (5_400_000, "1.5h"),
        (21_600_000, "6h"),
        (86_400_000, "24h"),
    ],
)
def test_format_ms(ms: int, text: str) -> None:
    assert format_ms(ms) == text


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=59_999))
def test_format_ms_reads_back_exactly_below_a_minute(ms: int) -> None:
    assert to_ms(format_ms(ms)) == ms


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=59), st.integers(min_value=0, max_value=10_000))
def test_format_ms_reads_back_whole_minutes_and_hours(minutes: int, hours: int) -> None:
    assert to_ms(format_ms(minutes * 60_000)) == minutes * 60_000
    assert to_ms(format_ms(hours * 3_600_000)) == hours * 3_600_000
