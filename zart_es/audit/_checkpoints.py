"""What makes one checkpoint of the ledger trustworthy: checked the same way by the
verifier (each problem is a finding) and by a sealer before it extends the ledger (a
sealer never builds on a checkpoint it cannot authenticate)."""

from __future__ import annotations

from zart_es.archive import StoredCheckpoint, digest
from zart_es.audit._signing import PublicKey
from zart_es.core import AuditKeyring

Problem = tuple[str, str]
"""(kind, what is wrong)."""


def problems(stored: StoredCheckpoint, seq: int, prev_digest: str,
             keys: AuditKeyring | None, public_key: PublicKey | None = None) -> list[Problem]:
    """Why checkpoint ``seq`` (which should follow the one of digest ``prev_digest``)
    cannot be trusted; empty when it can. With a keyring, a checkpoint without a valid
    HMAC is refused: anyone who can write the archive could have added it."""
    checkpoint, seal = stored.checkpoint, stored.seal
    if checkpoint is None or seal is None or checkpoint.seq != seq:
        return [("changed", "the checkpoint does not decode, or its number is not its "
                            "name's")]
    value = digest(stored.body)
    if seal.digest != value:
        return [("changed", "its content does not match its sealed digest")]
    found: list[Problem] = []
    if checkpoint.prev != prev_digest:
        found.append(("changed", "it does not link to the checkpoint before it "
                                 f"(checkpoint {seq - 1} was changed or replaced)"))
    if keys is not None:
        found += _mac_problems(stored, keys)
    if public_key is not None and not (seal.signature
                                       and public_key.signed(value, seal.signature)):
        found.append(("signature", "its Ed25519 signature does not verify under the given "
                                   "public key" if seal.signature else "it is not signed"))
    return found


def _mac_problems(stored: StoredCheckpoint, keys: AuditKeyring) -> list[Problem]:
    assert stored.checkpoint is not None
    assert stored.seal is not None
    key_id, mac = stored.seal.key_id, stored.seal.mac
    if not key_id or not mac:
        return [("unsealed", "it has no HMAC under the audit key (written without the key, "
                             "or added by someone who can write the archive)")]
    if key_id not in keys.keys:
        return [("unknown-key", f"sealed under audit key id {key_id!r}, which the keyring "
                                f"does not hold (it holds: {', '.join(sorted(keys.keys))}; "
                                "keep retired keys listed: they only verify)")]
    recorded = stored.checkpoint.keys.get(key_id)
    if recorded is not None and recorded != keys.check_value(key_id):
        return [("wrong-key", f"the audit key given as {key_id!r} is not the one the "
                              "deployment sealed with")]
    if not keys.signed(key_id, stored.seal.digest.encode(), mac):
        return [("changed", f"its HMAC under key {key_id!r} does not match")]
    return []
