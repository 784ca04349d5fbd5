"""Which archive a process uses: its option, else ``$ZART_ARCHIVE_URL``."""

from __future__ import annotations

import os


def resolve_archive_url(url: str | None) -> str | None:
    """The archive's URL: ``url``, else ``$ZART_ARCHIVE_URL``, else None (no archive)."""
    return url or os.environ.get("ZART_ARCHIVE_URL") or None
