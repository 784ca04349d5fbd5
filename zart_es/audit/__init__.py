"""Audit that holds against someone who can write to Redis: the sealed ledger of chain
heads in the archive (``zart-es audit seal``) and the verification of Redis and the
archive against it (``zart-es audit verify``). See ``docs/audit.md``.

Needs the archive extra (``zart-es[archive]``); signed checkpoints need ``cryptography``.
"""

from zart_es.audit._seal import SealedState, Sealer, SealResult, seal
from zart_es.audit._signing import PublicKey, SigningKey, generate_signing_key
from zart_es.audit._verify import Finding, Report, Verifier, summary, verify

__all__ = [
    "Finding",
    "PublicKey",
    "Report",
    "SealResult",
    "SealedState",
    "Sealer",
    "SigningKey",
    "Verifier",
    "generate_signing_key",
    "seal",
    "summary",
    "verify",
]
