"""How long an ended execution stays in Redis before the archiver moves it out.

Pure: parsing and the due time, no clock. ``None`` means "keep for ever" (``"none"``).
"""

from __future__ import annotations

import os

from zart_es.core._durations import Duration, to_ms
from zart_es.core._errors import InvalidDuration

DEFAULT_RETENTION_MS = 7 * 86_400_000
"""The deployment default when neither ``--retention`` nor ``$ZART_RETENTION`` says: 7 days."""

KEEP = "none"
"""The retention that keeps ended executions in Redis for ever (never archived)."""

def parse_retention(value: Duration) -> int | None:
    """Milliseconds an ended execution stays in Redis; None for ``"none"`` (for ever).

    Raises :class:`InvalidDuration` for anything else that is not a duration."""
    if isinstance(value, str) and value.strip().lower() == KEEP:
        return None
    try:
        return to_ms(value)
    except InvalidDuration as exc:
        raise InvalidDuration(value, f"{exc.reason} (or 'none' to keep for ever)") from None


def deployment_retention(value: Duration | None = None) -> int | None:
    """The deployment default: ``value``, else ``$ZART_RETENTION``, else 7 days."""
    if value is None:
        value = os.environ.get("ZART_RETENTION") or DEFAULT_RETENTION_MS / 1000
    return parse_retention(value)
