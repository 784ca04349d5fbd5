"""Bytes in, bytes out: events and user values, msgpack via msgspec, built once.

Nothing here can run code while decoding (no pickle): a log outlives the code that wrote
it, and a hostile log must at worst fail to decode.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from zart_es.core._errors import PayloadDecodeError, PayloadNotEncodable, PayloadTooLarge
from zart_es.core._events import AnyEvent, Event

DEFAULT_MAX_PAYLOAD_BYTES = 8 * 1024 * 1024
"""Largest encoded input or step result accepted (Redis itself allows 512 MB per value)."""

_encoder = msgspec.msgpack.Encoder()
_event_decoder: msgspec.msgpack.Decoder[AnyEvent] = msgspec.msgpack.Decoder(AnyEvent)
_any_decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder()
_typed_decoders: dict[Any, msgspec.msgpack.Decoder[Any]] = {}


def encode_event(event: Event) -> bytes:
    """The body stored in the stream entry (envelope fields left at their defaults)."""
    return _encoder.encode(event)


def decode_event(body: bytes, *, seq: int, at_ms: int, prev_hash: str) -> AnyEvent:
    """Decode one stored event body and attach its envelope."""
    try:
        event = _event_decoder.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise PayloadDecodeError(f"event #{seq}", str(exc)) from None
    return msgspec.structs.replace(event, seq=seq, at_ms=at_ms, prev_hash=prev_hash)


_export_encoder = msgspec.json.Encoder()
_export_decoder: msgspec.json.Decoder[AnyEvent] = msgspec.json.Decoder(AnyEvent)


def export_event(event: Event) -> bytes:
    """One event as a line of an exported history (JSON: the event's tag as ``type``, its
    envelope, byte fields in base64): lossless, unlike the readable ``history`` output
    that decodes payloads, so :func:`import_events` gives back the very events."""
    return _export_encoder.encode(event)


def import_events(lines: Iterable[bytes | str], source: str = "history") -> list[AnyEvent]:
    """The events of exported history lines (blank lines skipped), in order."""
    events: list[AnyEvent] = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                events.append(_export_decoder.decode(line))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise PayloadDecodeError(f"line {number} of {source}", str(exc)) from None
    return events


def encode_value(value: object, what: str, limit: int = DEFAULT_MAX_PAYLOAD_BYTES) -> bytes:
    """Encode a user value (workflow input, step result, workflow result)."""
    try:
        data = _encoder.encode(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise PayloadNotEncodable(what, value, str(exc)) from None
    if len(data) > limit:
        raise PayloadTooLarge(what, len(data), limit)
    return data


def decode_value(data: bytes, type_: Any, what: str) -> Any:
    """Decode recorded bytes to ``type_`` (``None``/``Any``: plain msgpack types)."""
    decoder = _any_decoder if type_ is None or type_ is Any else _decoder_for(type_)
    try:
        return decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
        # msgspec reports a msgpack string that is not UTF-8 as UnicodeDecodeError
        raise PayloadDecodeError(what, str(exc)) from None


def _decoder_for(type_: Any) -> msgspec.msgpack.Decoder[Any]:
    try:
        return _typed_decoders[type_]
    except (KeyError, TypeError):
        pass
    try:
        decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(type_)
    except TypeError as exc:
        raise PayloadDecodeError(f"values of type {type_!r}", str(exc)) from None
    try:
        if len(_typed_decoders) < 4096:
            _typed_decoders[type_] = decoder
    except TypeError:  # unhashable type expression: use it uncached
        pass
    return decoder
