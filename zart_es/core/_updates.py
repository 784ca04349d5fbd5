"""Updates: a durable request into a running execution, and its recorded reply. Pure.

An update is delivered as a signal under a reserved name (``zart.update:<name>``) whose
payload is an :class:`UpdateDelivery` (its id and the caller's encoded payload), so a
``ctx.wait_for_update`` is a signal wait: kept until taken, in arrival order, resolved
once and replayed the same way. The answer is an ``UpdateReplied`` event of the log,
which the caller reads back: it survives any crash after it was recorded.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from zart_es.core._events import UpdateReplied
from zart_es.core._fold import ExecutionState

UPDATE_SIGNAL_PREFIX = "zart.update:"
RESERVED_SIGNAL_PREFIX = "zart."
"""Signal names the engine uses (updates, ``zart.parent-ended``): not for applications."""


class UpdateDelivery(msgspec.Struct, frozen=True):
    """What an update's signal carries: its id and the caller's payload (encoded and,
    with payload keys, sealed like any payload)."""

    update_id: str
    payload: bytes


_DELIVERY = msgspec.msgpack.Decoder(UpdateDelivery)
_ENCODER = msgspec.msgpack.Encoder()


def update_signal(name: str) -> str:
    """The signal name an update ``name`` is delivered under."""
    return UPDATE_SIGNAL_PREFIX + name


def encode_delivery(delivery: UpdateDelivery) -> bytes:
    """The signal payload of an update."""
    return _ENCODER.encode(delivery)


def decode_delivery(data: bytes) -> UpdateDelivery:
    """An update's signal payload (msgspec.DecodeError / ValidationError otherwise)."""
    return _DELIVERY.decode(data)


def unknown_updates(state: ExecutionState, declared: Iterable[str]) -> list[UpdateReplied]:
    """The rejections owed to updates delivered under a name the workflow does not
    declare and not answered yet, oldest first: ``UpdateReplied`` with error type
    ``UnknownUpdate`` naming the declared ones."""
    known = sorted(declared)
    shown = ", ".join(repr(n) for n in known) or "none"
    rejections = []
    for signal, arrived in state.received.items():
        name = signal.removeprefix(UPDATE_SIGNAL_PREFIX)
        if name == signal or name in known:
            continue
        for received in arrived:
            try:
                update_id = decode_delivery(received.payload).update_id
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue  # not an update zart-es delivered: nobody waits for its answer
            if update_id not in state.replies:
                rejections.append(UpdateReplied(
                    update_id=update_id, name=name, error_type="UnknownUpdate",
                    message=f"workflow {state.workflow!r} has no update {name!r} "
                            f"(declared: {shown})"))
    return rejections
