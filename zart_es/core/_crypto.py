"""AES-GCM payload encryption with a keyring, for :class:`~zart_es.core.Payloads`.

A keyring holds named 256-bit keys; the first is current (it seals), every one opens.
Each sealed payload carries the id of the key that sealed it, so keys rotate without
rewriting a log: put the new key first, keep the old ones until nothing needs them.
``ZART_PAYLOAD_KEYS="k2:<base64 key>,k1:<base64 key>"`` sets one for every client and
worker; ``AesGcmKeyring.generate_key()`` makes a key. Needs the ``cryptography`` package
(``pip install 'zart-es[encryption]'``).

Stored form: ``0xc1``, a version byte (1), the key id's length and the key id, a 12-byte
random nonce, then the ciphertext with its 16-byte tag. The header is authenticated
(associated data), so a key id cannot be swapped.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from typing import Any

from zart_es.core._errors import ConfigError
from zart_es.core._payloads import SEALED

VERSION = 1
NONCE_BYTES = 12


class AesGcmKeyring:
    """Named AES-256-GCM keys; ``current`` seals, all open."""

    def __init__(self, keys: Mapping[str, bytes], current: str) -> None:
        try:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError:
            raise ConfigError("payload encryption needs the cryptography package: "
                              "pip install 'zart-es[encryption]'") from None
        if current not in keys:
            raise ConfigError(f"the current payload key {current!r} is not in the keyring")
        for key_id, key in keys.items():
            _check_key(key_id, key)
        self._ciphers: dict[str, Any] = {k: AESGCM(v) for k, v in keys.items()}
        self.current = current

    @classmethod
    def parse(cls, text: str) -> AesGcmKeyring:
        """``"id:<base64 key>,id2:<base64 key>"``: the first key is current."""
        keys: dict[str, bytes] = {}
        for item in (part.strip() for part in text.split(",") if part.strip()):
            key_id, sep, encoded = item.partition(":")
            if not sep:
                raise ConfigError("payload keys are 'id:<base64 key>' separated by commas")
            try:
                keys[key_id] = base64.b64decode(encoded, validate=True)
            except binascii.Error:
                raise ConfigError(f"payload key {key_id!r} is not base64") from None
        if not keys:
            raise ConfigError("no payload key given")
        return cls(keys, next(iter(keys)))

    @staticmethod
    def generate_key() -> str:
        """A new random 256-bit key, base64 (for ZART_PAYLOAD_KEYS)."""
        return base64.b64encode(os.urandom(32)).decode()

    def seal(self, plaintext: bytes) -> bytes:
        """Encrypt with the current key."""
        header = _header(self.current)
        nonce = os.urandom(NONCE_BYTES)
        sealed: bytes = self._ciphers[self.current].encrypt(nonce, plaintext, header)
        return header + nonce + sealed

    def open(self, sealed: bytes) -> bytes:
        """Decrypt with the key the payload names; ValueError if unknown or forged."""
        if len(sealed) < 3 or sealed[0] != SEALED or sealed[1] != VERSION:
            raise ValueError("not a sealed payload of a known version")
        end = 3 + sealed[2]
        key_id = sealed[3:end].decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise ValueError(f"it was encrypted with payload key {key_id!r}, which is not "
                             "in this process's keyring")
        nonce = sealed[end:end + NONCE_BYTES]
        try:
            return bytes(cipher.decrypt(nonce, sealed[end + NONCE_BYTES:], sealed[:end]))
        except Exception:  # cryptography's InvalidTag: altered bytes or the wrong key
            raise ValueError(f"it does not decrypt with payload key {key_id!r} "
                             "(altered, or a different key under that id)") from None


def _header(key_id: str) -> bytes:
    encoded = key_id.encode()
    return bytes((SEALED, VERSION, len(encoded))) + encoded


def _check_key(key_id: str, key: bytes) -> None:
    if not key_id or len(key_id.encode()) > 255 or not key_id.isprintable() or "," in key_id:
        raise ConfigError(f"invalid payload key id {key_id!r}")
    if len(key) != 32:
        raise ConfigError(f"payload key {key_id!r} must be 32 bytes (AES-256), "
                          f"got {len(key)}")
