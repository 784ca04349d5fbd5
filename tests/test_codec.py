"""zart_es.core._codec: user values and events through msgpack, typed errors for everything else.

A log outlives the code that wrote it, so decoding must never run code and must fail with
:class:`PayloadDecodeError` (never anything else) on bytes it cannot accept.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import typing
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zart_es.core import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    PayloadDecodeError,
    PayloadError,
    PayloadNotEncodable,
    PayloadTooLarge,
    decode_event,
    decode_value,
    encode_event,
    encode_value,
    export_event,
    import_events,
)
from zart_es.core import _events as ev

pytestmark = pytest.mark.pure


class Item(msgspec.Struct, frozen=True):
    sku: str
    qty: int
    price: float = 0.0


class Order(msgspec.Struct):
    id: str
    items: list[Item]
    placed_at: datetime
    note: str | None = None
    tags: dict[str, int] = msgspec.field(default_factory=dict)


@dataclasses.dataclass
class Point:
    x: int
    y: int
    label: str = ""


@dataclasses.dataclass
class Route:
    name: str
    points: list[Point]


INT64_MIN, UINT64_MAX = -(2**63), 2**64 - 1

# -- strategies ----------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=INT64_MIN, max_value=UINT64_MAX),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.binary(max_size=20),
)

# what an untyped decode gives back unchanged: no tuples, str keys
plain_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.text(max_size=8), children, max_size=5),
    ),
    max_leaves=30,
)

offsets = st.sampled_from(
    [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-7, minutes=-30))]
)
aware_datetimes = st.datetimes(
    min_value=datetime(1900, 1, 2),  # hypothesis takes naive bounds, then attaches timezones
    max_value=datetime(2200, 1, 1),
    timezones=offsets,
)
int64 = st.integers(min_value=INT64_MIN, max_value=2**63 - 1)
finite = st.floats(allow_nan=False, allow_infinity=False)

items = st.builds(Item, sku=st.text(max_size=10), qty=int64, price=finite)
orders = st.builds(
    Order,
    id=st.text(max_size=10),
    items=st.lists(items, max_size=4),
    placed_at=aware_datetimes,
    note=st.none() | st.text(max_size=10),
    tags=st.dictionaries(st.text(max_size=5), int64, max_size=3),
)
points = st.builds(Point, x=int64, y=int64, label=st.text(max_size=5))
routes = st.builds(Route, name=st.text(max_size=10), points=st.lists(points, max_size=4))


# -- user values ---------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(plain_values)
def test_plain_values_round_trip_untyped(value: Any) -> None:
    data = encode_value(value, "result of step 'x'")
    assert isinstance(data, bytes)
    assert decode_value(data, None, "result of step 'x'") == value
    assert decode_value(data, Any, "result of step 'x'") == value


@settings(max_examples=150, deadline=None)
@given(orders)
def test_structs_round_trip_typed(order: Order) -> None:
    back = decode_value(encode_value(order, "input"), Order, "input")
    assert type(back) is Order
    assert back == order
    assert back.placed_at == order.placed_at  # the same instant (returned in UTC)
    assert back.placed_at.tzinfo is not None


@settings(max_examples=150, deadline=None)
@given(routes)
def test_dataclasses_round_trip_typed(route: Route) -> None:
    back = decode_value(encode_value(route, "input"), Route, "input")
    assert type(back) is Route
    assert all(type(p) is Point for p in back.points)
    assert back == route


@settings(max_examples=150, deadline=None)
@given(aware_datetimes)
def test_aware_datetimes_round_trip(moment: datetime) -> None:
    data = encode_value(moment, "result")
    typed = decode_value(data, datetime, "result")
    assert typed == moment
    assert typed.utcoffset() == timedelta(0)
    assert decode_value(data, None, "result") == moment


@settings(max_examples=150, deadline=None)
@given(st.lists(items, max_size=5), st.dictionaries(st.text(max_size=5), points, max_size=4))
def test_containers_of_typed_values(item_list: list[Item], by_name: dict[str, Point]) -> None:
    assert decode_value(encode_value(item_list, "r"), list[Item], "r") == item_list
    assert decode_value(encode_value(by_name, "r"), dict[str, Point], "r") == by_name


@pytest.mark.parametrize(
    ("value", "type_"),
    [
        (None, None),
        (True, bool),
        (0, int),
        (-(2**63), int),
        (2**64 - 1, int),
        (1.5, float),
        ("", str),
        ("héllo ✓", str),
        (b"\x00\xff", bytes),
        ([1, 2, 3], list[int]),
        ((1, "a"), tuple[int, str]),
        ({"a": 1}, dict[str, int]),
        ({1: "a"}, dict[int, str]),
        ({"x", "y"}, set[str]),
        (None, int | None),
        (3, int | None),
    ],
)
def test_scalars_and_generics_typed(value: Any, type_: Any) -> None:
    back = decode_value(encode_value(value, "r"), type_, "r")
    assert back == value
    assert type(back) is type(value)


def test_typed_decode_gives_the_struct_not_a_dict() -> None:
    item = Item(sku="a", qty=2, price=1.25)
    assert decode_value(encode_value(item, "r"), None, "r") == {"sku": "a", "qty": 2, "price": 1.25}
    assert decode_value(encode_value(item, "r"), Item, "r") == item


def test_int_decodes_into_float_field() -> None:
    # msgspec accepts an int where a float is asked; a recorded 2 reads back as 2.0
    back = decode_value(encode_value(2, "r"), float, "r")
    assert back == 2.0
    assert type(back) is float


@pytest.mark.parametrize(
    "value",
    [object(), {1, object()}, lambda: 1, [object()], {"k": object()}, 2**64, -(2**63) - 1],
    ids=["object", "set-of-object", "lambda", "list-of-object", "dict-of-object", "uint64+1",
         "int64-1"],
)
def test_not_encodable(value: Any) -> None:
    with pytest.raises(PayloadNotEncodable) as info:
        encode_value(value, "result of step 'fetch'")
    assert info.value.what == "result of step 'fetch'"
    assert "result of step 'fetch'" in str(info.value)
    assert info.value.type_name == type(value).__name__
    assert isinstance(info.value, PayloadError)
    assert isinstance(info.value, TypeError)


def test_too_large() -> None:
    value = b"x" * 100
    size = len(encode_value(value, "input"))
    assert encode_value(value, "input", limit=size) == encode_value(value, "input")
    with pytest.raises(PayloadTooLarge) as info:
        encode_value(value, "input", limit=size - 1)
    assert (info.value.what, info.value.size, info.value.limit) == ("input", size, size - 1)
    assert str(size) in str(info.value)
    assert str(size - 1) in str(info.value)
    assert isinstance(info.value, PayloadError)


def test_default_limit_applies() -> None:
    with pytest.raises(PayloadTooLarge) as info:
        encode_value(b"\x00" * DEFAULT_MAX_PAYLOAD_BYTES, "input")
    assert info.value.limit == DEFAULT_MAX_PAYLOAD_BYTES


@pytest.mark.parametrize(
    "data",
    [b"", b"\xc1", b"\x92\x01", b"\xa5ab", b"\x01\x02", b"\xdc\xff\xff", b"\xc7\x05\x01ab"],
    ids=["empty", "never-used-byte", "short-array", "short-str", "trailing", "huge-array",
         "short-ext"],
)
@pytest.mark.parametrize("type_", [None, Any, int, Order, list[int]])
def test_garbage_bytes(data: bytes, type_: Any) -> None:
    with pytest.raises(PayloadDecodeError) as info:
        decode_value(data, type_, "result of step 'x'")
    assert info.value.what == "result of step 'x'"
    assert isinstance(info.value, PayloadError)


@pytest.mark.parametrize(
    ("value", "type_"),
    [
        ("abc", int),
        (1.5, int),
        ([1, "a"], list[int]),
        ({"sku": "a"}, Item),  # missing field
        ({"sku": "a", "qty": "two"}, Item),
        ([1, 2], Item),
        (None, str),
        (b"bytes", str),
        ({"id": "o", "items": [], "placed_at": "not a date"}, Order),
        (-1, typing.Literal[1, 2]),
    ],
)
def test_type_mismatch(value: Any, type_: Any) -> None:
    with pytest.raises(PayloadDecodeError) as info:
        decode_value(encode_value(value, "r"), type_, "result of step 'y'")
    assert "result of step 'y'" in str(info.value)


def test_undecodable_type_is_a_decode_error() -> None:
    with pytest.raises(PayloadDecodeError):
        decode_value(encode_value(1, "r"), object(), "r")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64), st.sampled_from([None, int, str, Item, Order, list[Item]]))
def test_any_bytes_decode_or_raise_decode_error(data: bytes, type_: Any) -> None:
    with contextlib.suppress(PayloadDecodeError):  # the only failure allowed
        decode_value(data, type_, "r")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_any_bytes_decode_to_an_event_or_raise_decode_error(data: bytes) -> None:
    with contextlib.suppress(PayloadDecodeError):  # the only failure allowed
        decode_event(data, seq=3, at_ms=0, prev_hash="")


@pytest.mark.parametrize(
    ("data", "type_"),
    [(b"\xa2a\x80", None), (b"\xa2a\x80", str), (b"\x91\xa2a\x80", list[str])],
    ids=["untyped", "str", "list-of-str"],
)
def test_invalid_utf8_string_is_a_decode_error(data: bytes, type_: Any) -> None:
    # msgpack str 'a' + 0x80: a str whose bytes are not UTF-8 (a corrupted or forged record)
    with pytest.raises(PayloadDecodeError):
        decode_value(data, type_, "result of step 'x'")


def test_invalid_utf8_in_event_body_is_a_decode_error() -> None:
    body = encode_event(ev.TimerFired(timer="ab")).replace(b"\xa2ab", b"\xa2a\x80")
    assert body != encode_event(ev.TimerFired(timer="ab"))
    with pytest.raises(PayloadDecodeError):
        decode_event(body, seq=7, at_ms=0, prev_hash="")


# -- events --------------------------------------------------------------------------------

ENVELOPE = ("seq", "at_ms", "prev_hash")

EVENT_CLASSES: list[type[ev.Event]] = sorted(
    (
        cls
        for name, cls in inspect.getmembers(ev, inspect.isclass)
        if issubclass(cls, ev.Event) and cls is not ev.Event and cls.__module__ == ev.__name__
        and cls.__name__ == name  # not a first name kept as an alias (EventReceived)
    ),
    key=lambda cls: cls.__name__,
)


def test_every_event_class_is_decodable() -> None:
    # a class missing from AnyEvent could be written but never read back
    assert set(typing.get_args(ev.AnyEvent)) == set(EVENT_CLASSES)
    assert len(EVENT_CLASSES) >= 12
    assert set(ev.TERMINAL_EVENTS) <= set(EVENT_CLASSES)


def _field_strategy(type_: Any) -> st.SearchStrategy[Any]:
    if type_ is str:
        return st.text(max_size=12)
    if type_ is bytes:
        return st.binary(max_size=12)
    if type_ is int:
        return int64
    if type_ == int | None:
        return st.none() | int64
    if type_ == list[str]:
        return st.lists(st.text(max_size=12), max_size=4)
    raise AssertionError(f"add a strategy for event field type {type_!r}")


def event_bodies(cls: type[ev.Event]) -> st.SearchStrategy[ev.Event]:
    """Events of ``cls`` as a writer builds them: every field but the envelope."""
    fields = {
        f.name: _field_strategy(f.type)
        for f in msgspec.structs.fields(cls)
        if f.name not in ENVELOPE
    }
    return st.fixed_dictionaries(fields).map(lambda kwargs: cls(**kwargs))


any_event_body = st.sampled_from(EVENT_CLASSES).flatmap(event_bodies)


@settings(max_examples=200, deadline=None)
@given(
    any_event_body,
    st.integers(min_value=0, max_value=2**40),
    st.integers(min_value=0, max_value=2**50),
    st.text(alphabet="0123456789abcdef", min_size=40, max_size=40) | st.just(""),
)
def test_event_round_trip_with_envelope(
    event: ev.Event, seq: int, at_ms: int, prev_hash: str
) -> None:
    body = encode_event(event)
    back = decode_event(body, seq=seq, at_ms=at_ms, prev_hash=prev_hash)
    assert type(back) is type(event)
    assert (back.seq, back.at_ms, back.prev_hash) == (seq, at_ms, prev_hash)
    assert msgspec.structs.replace(back, seq=-1, at_ms=0, prev_hash="") == event
    for field in msgspec.structs.fields(event):
        if field.name not in ENVELOPE:
            assert getattr(back, field.name) == getattr(event, field.name)


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda cls: cls.__name__)
def test_envelope_is_not_in_the_body(cls: type[ev.Event]) -> None:
    event = _example(cls)
    decoded = msgspec.msgpack.decode(encode_event(event))
    assert isinstance(decoded, dict)
    assert decoded["type"] == cls.__struct_config__.tag  # the class name, or its first name
    assert not set(ENVELOPE) & set(decoded)
    required = {f.name for f in msgspec.structs.fields(cls) if f.required}
    assert required <= set(decoded)


def _example(cls: type[ev.Event]) -> ev.Event:
    values: dict[Any, Any] = {str: "v", bytes: b"\x01", int: 7, int | None: 3,
                              list[str]: ["v"]}
    return cls(**{
        f.name: values[f.type]
        for f in msgspec.structs.fields(cls)
        if f.name not in ENVELOPE
    })


def test_tag_selects_the_class() -> None:
    body = encode_event(ev.TimerFired(timer="sleep-0"))
    assert decode_event(body, seq=4, at_ms=1_000, prev_hash="ab") == ev.TimerFired(
        timer="sleep-0", seq=4, at_ms=1_000, prev_hash="ab"
    )


def test_old_body_without_new_defaulted_fields_decodes() -> None:
    # schema evolution: fields appended with defaults may be missing from older bodies
    body = msgspec.msgpack.encode(
        {"type": "ExecutionStarted", "execution_id": "x", "workflow": "w", "input": b"\x90"}
    )
    event = decode_event(body, seq=0, at_ms=5, prev_hash="")
    assert event == ev.ExecutionStarted(
        execution_id="x", workflow="w", input=b"\x90", seq=0, at_ms=5
    )
    assert isinstance(event, ev.ExecutionStarted)
    assert event.parent_id == ""


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\xc1",
        msgspec.msgpack.encode({"type": "NoSuchEvent"}),
        msgspec.msgpack.encode({"type": "TimerFired"}),  # missing field
        msgspec.msgpack.encode({"type": "TimerFired", "timer": 5}),  # wrong type
        msgspec.msgpack.encode({"timer": "t"}),  # no tag
        msgspec.msgpack.encode(["TimerFired", "t"]),
    ],
    ids=["empty", "garbage", "unknown-tag", "missing-field", "wrong-type", "no-tag", "array"],
)
def test_bad_event_body(body: bytes) -> None:
    with pytest.raises(PayloadDecodeError) as info:
        decode_event(body, seq=12, at_ms=0, prev_hash="")
    assert "#12" in str(info.value)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["type", "timer", "step", "result", "seq", "workflow", "input"]),
        st.one_of(st.sampled_from([c.__name__ for c in EVENT_CLASSES]), scalars),
        max_size=5,
    )
)
def test_any_map_decodes_to_an_event_or_a_decode_error(body: dict[str, Any]) -> None:
    try:
        event = decode_event(msgspec.msgpack.encode(body), seq=1, at_ms=2, prev_hash="")
    except PayloadDecodeError:
        return
    assert isinstance(event, tuple(EVENT_CLASSES))
    assert (event.seq, event.at_ms) == (1, 2)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(any_event_body, st.integers(min_value=0, max_value=2**40)),
                max_size=6))
def test_exported_histories_import_as_the_same_events(
        bodies: list[tuple[ev.Event, int]]) -> None:
    """``history --format export`` / ``replay --file``: lossless, bytes and tags included."""
    events = [msgspec.structs.replace(event, seq=seq, at_ms=seq + 1, prev_hash="ab" * 20)
              for event, seq in bodies]
    lines = [export_event(event) for event in events]
    assert all(b"\n" not in line for line in lines)
    assert import_events([*lines, b"  "]) == events


def test_an_exported_history_that_does_not_decode_names_its_line() -> None:
    good = export_event(ev.TimerFired(timer="t", seq=1))
    with pytest.raises(PayloadDecodeError, match=r"line 2 of saved\.jsonl"):
        import_events([good, b'{"type": "NoSuchEvent"}'], source="saved.jsonl")
