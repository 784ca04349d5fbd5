"""A query's request and answer as they cross Redis (msgpack), and the answer's reading.

A client adds a :class:`QueryRequest` to its execution's task queue's query stream; a
worker serving that queue folds the log, replays the workflow read-only, calls the
handler and adds a :class:`QueryAnswer` to the request's reply stream. Nothing is
written to the execution's log.
"""

from __future__ import annotations

import msgspec

from zart_es.core._errors import QueryFailed, UnknownQuery

MAX_QUERY_SECONDS = 300.0
"""The longest a client waits for an answer."""


class QueryRequest(msgspec.Struct, frozen=True):
    """Ask ``name`` of ``execution_id`` with ``args`` (a payload-encoded list); answer to
    stream ``reply`` unless the wall clock passed ``deadline_ms``."""

    execution_id: str
    name: str
    args: bytes
    reply: str
    deadline_ms: int


class QueryAnswer(msgspec.Struct, frozen=True, omit_defaults=True):
    """The handler's value (payload-encoded), or why there is none: ``unknown`` (no such
    handler; ``registered`` lists those there are) or ``failed`` (the handler raised,
    or the execution could not be replayed)."""

    value: bytes = b""
    outcome: str = "ok"
    error_type: str = ""
    message: str = ""
    registered: list[str] = []


_REQUEST = msgspec.msgpack.Decoder(QueryRequest)
_ANSWER = msgspec.msgpack.Decoder(QueryAnswer)
_ENCODER = msgspec.msgpack.Encoder()


def encode_query(message: QueryRequest | QueryAnswer) -> bytes:
    """The bytes of a request or an answer."""
    return _ENCODER.encode(message)


def decode_request(data: bytes) -> QueryRequest:
    """A request's bytes (msgspec.DecodeError / ValidationError for anything else)."""
    return _REQUEST.decode(data)


def decode_answer(data: bytes) -> QueryAnswer:
    """An answer's bytes (msgspec.DecodeError / ValidationError for anything else)."""
    return _ANSWER.decode(data)


def answer_value(answer: QueryAnswer, execution_id: str, name: str) -> bytes:
    """The encoded value of an answer, or the typed error it carries."""
    if answer.outcome == "unknown":
        raise UnknownQuery(execution_id, name, answer.registered)
    if answer.outcome != "ok":
        raise QueryFailed(execution_id, name, answer.error_type, answer.message)
    return answer.value
