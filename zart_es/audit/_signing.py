"""Ed25519 signatures of checkpoints: an outside auditor checks them with the public key
alone, so even a holder of the audit key cannot rewrite what was sealed and published.

Keys are PEM files: the private key (PKCS #8, unencrypted; a mounted secret) for the
sealer, ``ZART_AUDIT_SIGNING_KEY_FILE``; the public key for the verifier. Needs the
``cryptography`` package (``pip install 'zart-es[encryption]'``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zart_es.core import ConfigError


def _ed25519() -> Any:
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise ConfigError("signed checkpoints need the cryptography package: "
                          "pip install 'zart-es[encryption]'") from None
    return ed25519


def _serialization() -> Any:
    from cryptography.hazmat.primitives import serialization
    return serialization


class SigningKey:
    """An Ed25519 private key that signs checkpoint digests."""

    def __init__(self, key: Any) -> None:
        self._key = key
        raw = key.public_key().public_bytes(_serialization().Encoding.Raw,
                                            _serialization().PublicFormat.Raw)
        self.public_hex: str = raw.hex()

    @classmethod
    def from_file(cls, path: str) -> SigningKey:
        ed25519 = _ed25519()
        try:
            key = _serialization().load_pem_private_key(Path(path).read_bytes(), None)
        except OSError as exc:
            raise ConfigError(f"signing key {path!r}: {exc.strerror}") from None
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"signing key {path!r} is not an unencrypted PEM private "
                              f"key: {exc}") from None
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise ConfigError(f"signing key {path!r} is not an Ed25519 key")
        return cls(key)

    def sign(self, digest: str) -> str:
        return str(self._key.sign(digest.encode()).hex())


class PublicKey:
    """An Ed25519 public key that checks checkpoint signatures."""

    def __init__(self, key: Any) -> None:
        self._key = key
        self.hex: str = key.public_bytes(_serialization().Encoding.Raw,
                                         _serialization().PublicFormat.Raw).hex()

    @classmethod
    def from_file(cls, path: str) -> PublicKey:
        ed25519 = _ed25519()
        try:
            key = _serialization().load_pem_public_key(Path(path).read_bytes())
        except OSError as exc:
            raise ConfigError(f"public key {path!r}: {exc.strerror}") from None
        except ValueError as exc:
            raise ConfigError(f"public key {path!r} is not a PEM public key: {exc}") from None
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise ConfigError(f"public key {path!r} is not an Ed25519 key")
        return cls(key)

    def signed(self, digest: str, signature: str) -> bool:
        from cryptography.exceptions import InvalidSignature
        try:
            self._key.verify(bytes.fromhex(signature), digest.encode())
        except (InvalidSignature, ValueError):
            return False
        return True


def generate_signing_key(path: str) -> str:
    """Write a new Ed25519 private key to ``path`` (mode 0600) and its public key to
    ``path + ".pub"``; returns the public key's path."""
    ser = _serialization()
    key = _ed25519().Ed25519PrivateKey.generate()
    private = key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8,
                                ser.NoEncryption())
    public = key.public_key().public_bytes(ser.Encoding.PEM,
                                           ser.PublicFormat.SubjectPublicKeyInfo)
    target = Path(path)
    if target.exists():
        raise ConfigError(f"{path!r} exists; not overwriting a key")
    target.touch(mode=0o600)
    target.write_bytes(private)
    Path(f"{path}.pub").write_bytes(public)
    return f"{path}.pub"
