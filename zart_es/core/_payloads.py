"""How user values cross into the log: msgpack, a size limit, and, with a payload key,
encryption at rest.

Inputs, step results, results and signal payloads are encoded through one
:class:`Payloads` per deployment. Without a cipher they are plain msgpack. With one, each
is sealed on the way in and opened on the way out; a sealed payload starts with the byte
``0xc1``, which msgpack never uses, so logs written before encryption was turned on (or by
a writer without a key) keep decoding as they are. The hash chain covers the stored
bytes, so ``history --verify`` needs no key.
"""

from __future__ import annotations

from typing import Any, Protocol

from zart_es.core._codec import DEFAULT_MAX_PAYLOAD_BYTES, decode_value, encode_value
from zart_es.core._errors import PayloadDecodeError

SEALED = 0xC1
"""First byte of a sealed payload (never the first byte of a msgpack value)."""


class Cipher(Protocol):
    """Seals and opens payloads (see :class:`zart_es.core.AesGcmKeyring`)."""

    def seal(self, plaintext: bytes) -> bytes:
        """The stored form of ``plaintext``: starts with ``SEALED``, names its key."""
        ...

    def open(self, sealed: bytes) -> bytes:
        """The plaintext; ValueError naming what is wrong (an unknown key id, a forgery)."""
        ...


class Payloads:
    """Encode and decode user values for one deployment: a size limit and a cipher."""

    __slots__ = ("cipher", "max_bytes")

    def __init__(self, max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
                 cipher: Cipher | None = None) -> None:
        self.max_bytes = max_bytes
        """Largest encoded value accepted (before sealing)."""
        self.cipher = cipher

    def encode(self, value: object, what: str) -> bytes:
        """msgpack (PayloadNotEncodable / PayloadTooLarge naming ``what``), then sealed."""
        data = encode_value(value, what, self.max_bytes)
        return data if self.cipher is None else self.cipher.seal(data)

    def decode(self, data: bytes, type_: Any, what: str) -> Any:
        """The value ``data`` holds, as ``type_``; a sealed payload is opened first
        (PayloadDecodeError when there is no key for it, or it does not open)."""
        if data[:1] == bytes((SEALED,)):
            if self.cipher is None:
                raise PayloadDecodeError(what, "it is encrypted and this process has no "
                                               "payload key (ZART_PAYLOAD_KEYS)")
            try:
                data = self.cipher.open(data)
            except ValueError as exc:
                raise PayloadDecodeError(what, str(exc)) from None
        return decode_value(data, type_, what)
