"""The pure parts without Redis: durations, backoff, codec, keys, registry, public API."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import zart_es
from zart_es.core import (
    ConfigError,
    InvalidDuration,
    InvalidExecutionId,
    PayloadDecodeError,
    PayloadNotEncodable,
    PayloadTooLarge,
    RetryPolicy,
    check_execution_id,
    decode_value,
    encode_value,
    to_ms,
)
from zart_es.store import Keys

pytestmark = pytest.mark.pure

# -- durations ----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "ms"), [
    ("300ms", 300), ("5s", 5000), ("5m", 300_000), ("6h", 21_600_000), ("1h30m", 5_400_000),
    ("1d", 86_400_000), ("1.5s", 1500), (" 2 s ", 2000), ("10", 10_000), (0, 0), (2, 2000),
    (0.0015, 2), (timedelta(minutes=5), 300_000),
])
def test_durations(text: Any, ms: int) -> None:
    assert to_ms(text) == ms


@pytest.mark.parametrize("bad", [-1, -0.5, "-5s", "5 parsecs", "", "s", float("nan"),
                                 float("inf"), True, None, [1], timedelta(seconds=-1)])
def test_bad_durations_name_the_value(bad: Any) -> None:
    with pytest.raises(InvalidDuration) as info:
        to_ms(bad)
    assert repr(bad) in str(info.value)


@given(st.integers(min_value=0, max_value=10**12))
def test_timedelta_milliseconds_round_trip(ms: int) -> None:
    assert to_ms(timedelta(milliseconds=ms)) == ms


@given(st.floats(min_value=0, max_value=1e7, allow_nan=False))
def test_durations_never_round_down(seconds: float) -> None:
    # rounded to the microsecond, then up to the millisecond: never early by a microsecond
    assert to_ms(seconds) * 1000 >= seconds * 1_000_000 - 0.5
    assert to_ms(seconds) <= math.ceil(seconds * 1000) + 1


@given(st.integers(0, 99), st.integers(0, 59), st.integers(0, 59), st.integers(0, 999))
def test_combined_units_add_up(h: int, m: int, s: int, ms: int) -> None:
    assert to_ms(f"{h}h{m}m{s}s{ms}ms") == ((h * 60 + m) * 60 + s) * 1000 + ms


# -- backoff ------------------------------------------------------------------------------


def test_backoff_sequences() -> None:
    def seq(kind: str) -> list[int]:
        policy = RetryPolicy.build(5, kind, "1s", "10s", jitter=False)
        return [policy.delay_before(a) for a in range(2, 8)]

    assert seq("exponential") == [1000, 2000, 4000, 8000, 10000, 10000]
    assert seq("linear") == [1000, 2000, 3000, 4000, 5000, 6000]
    assert seq("fixed") == [1000] * 6


@pytest.mark.parametrize(("args", "message"), [
    ((-1, "fixed", "1s", "1s"), "retries"), ((1, "random", "1s", "1s"), "backoff"),
    ((1, "fixed", "5s", "1s"), "max_delay"), ((True, "fixed", "1s", "1s"), "retries"),
])
def test_bad_retry_policies(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RetryPolicy.build(*args)


@given(st.sampled_from(["exponential", "linear", "fixed"]), st.integers(1, 10_000),
       st.integers(0, 10**7), st.integers(2, 10_000))
def test_backoff_is_monotone_and_capped(kind: str, delay: int, extra: int, attempt: int) -> None:
    policy = RetryPolicy.build(10, kind, delay / 1000, (delay + extra) / 1000, jitter=False)
    a, b = policy.delay_before(attempt), policy.delay_before(attempt + 1)
    assert policy.delay_ms <= a <= b <= policy.max_delay_ms


# -- codec --------------------------------------------------------------------------------


class Point(msgspec.Struct, frozen=True):
    x: int
    y: float
    label: str = ""


@dataclasses.dataclass
class Shape:
    name: str
    points: list[Point]
    when: datetime


values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text()
    | st.floats(allow_nan=False) | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200)
@given(values)
def test_plain_values_round_trip(value: Any) -> None:
    assert decode_value(encode_value(value, "v"), None, "v") == value


@given(st.builds(Point, x=st.integers(-1000, 1000), y=st.floats(allow_nan=False), label=st.text()),
       st.datetimes(timezones=st.just(UTC)))
def test_structs_dataclasses_and_datetimes_round_trip(point: Point, when: datetime) -> None:
    shape = Shape("s", [point, point], when)
    assert decode_value(encode_value(shape, "v"), Shape, "v") == shape
    assert decode_value(encode_value(when, "v"), datetime, "v") == when


def test_codec_errors_are_typed_and_named() -> None:
    with pytest.raises(PayloadNotEncodable, match="result of step 'x'"):
        encode_value(object(), "result of step 'x'")
    with pytest.raises(PayloadTooLarge, match="2006 bytes"):
        encode_value("x" * 2003, "input", limit=1000)
    with pytest.raises(PayloadDecodeError, match="input of 'w'"):
        decode_value(b"\xc1", None, "input of 'w'")
    with pytest.raises(PayloadDecodeError, match="Expected `int`"):
        decode_value(encode_value("text", "v"), int, "v")


# -- keys ---------------------------------------------------------------------------------

ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:@=+\-]{0,60}", fullmatch=True)


@given(ids, st.integers(1, 512))
def test_every_key_of_an_execution_shares_its_partition_tag(eid: str, partitions: int) -> None:
    keys = Keys(partitions=partitions)
    p = keys.partition_of(eid)
    assert 0 <= p < partitions
    tag = keys.work(p).split("}")[0] + "}"
    for key in (keys.log(eid), keys.meta(eid), keys.timers(p), keys.index(p, "failed")):
        assert key.startswith(tag)
    assert keys.parse_timer_member(keys.timer_member(eid, "retry:2:s x")) == (eid, "retry:2:s x")


@pytest.mark.parametrize("bad", ["", " x", "a b", "-lead", "x" * 201, "new\nline", "{tag}"])
def test_bad_execution_ids(bad: str) -> None:
    with pytest.raises(InvalidExecutionId):
        check_execution_id(bad)


# -- registry -----------------------------------------------------------------------------


def test_registry_rules() -> None:
    registry = zart_es.Registry()

    @zart_es.durable("one-arg", registry=registry, timeout="1m")
    async def one_arg(ctx: zart_es.Context) -> int:
        return 1

    @zart_es.durable("typed", registry=registry)
    async def typed(ctx: zart_es.Context, data: Point) -> Point:
        return data

    assert registry.get("typed").input_type is Point
    assert registry.get("one-arg").timeout_ms == 60_000
    assert registry.names() == ["one-arg", "typed"]
    zart_es.durable("typed", registry=registry)(typed)  # the same function again: fine

    async def other(ctx: zart_es.Context) -> None:
        return None

    with pytest.raises(zart_es.DuplicateWorkflow):
        registry.register("typed", other)
    with pytest.raises(ConfigError, match="async def"):
        registry.register("sync", lambda ctx: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(ConfigError, match="printable"):
        registry.register("bad\nname", other)
    with pytest.raises(zart_es.UnknownWorkflow, match="registered: one-arg, typed"):
        registry.get("missing")
    with pytest.raises(InvalidDuration):
        registry.register("neg", other, timeout="-5s")
