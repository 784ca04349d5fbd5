"""The deployment's operator trail: who paused, resumed, scheduled, cancelled or repaired
what, and why.

Every entry is chained (:class:`zart_es.store.Trail`), like an execution's log, and
sealed with the rest by ``zart-es audit seal``; ``zart-es audit verify`` checks it.
"""

from __future__ import annotations

from zart_es.store import Store


async def audit(store: Store, what: str, *, by: str = "", reason: str = "",
                **detail: str) -> None:
    """Append one entry to the deployment's operator trail (never capped: the archiver
    moves old entries to the archive and deletes only those)."""
    await store.trail.record(what, by=by, reason=reason, **detail)
