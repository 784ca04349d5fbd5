"""The archive of ended executions: Parquet tables of events, executions and the operator
audit stream, in a directory or an object store (obstore), read back transparently and
queried with DuckDB. Redis holds the working set; the archive holds the history.

The Parquet, object-store and DuckDB packages are the optional ``zart-es[archive]``
extra: the names that need them load on first use, so a worker or client without an
archive never imports them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from zart_es.archive._records import Entry, ExecutionRecord, day_of
from zart_es.archive._url import resolve_archive_url

if TYPE_CHECKING:
    from zart_es.archive._archive import Archive, ArchivedExecution
    from zart_es.archive._compact import Compacted, compact_day
    from zart_es.archive._ledger import (
        Checkpoint,
        Head,
        Ledger,
        Seal,
        StoredCheckpoint,
        checkpoint_path,
        digest,
        encode_checkpoint,
        seq_of,
    )
    from zart_es.archive._objects import ObjectStore
    from zart_es.archive._query import query
    from zart_es.archive._view import folder_of, is_compacted

_LAZY = {"Archive": "_archive", "ArchivedExecution": "_archive", "Compacted": "_compact",
         "ObjectStore": "_objects", "compact_day": "_compact", "query": "_query",
         **dict.fromkeys(("Checkpoint", "Head", "Ledger", "Seal", "StoredCheckpoint",
                          "checkpoint_path", "digest", "encode_checkpoint", "seq_of"),
                         "_ledger"),
         "folder_of": "_view", "is_compacted": "_view"}

__all__ = [
    "Archive",
    "ArchivedExecution",
    "Checkpoint",
    "Compacted",
    "Entry",
    "ExecutionRecord",
    "Head",
    "Ledger",
    "ObjectStore",
    "Seal",
    "StoredCheckpoint",
    "checkpoint_path",
    "compact_day",
    "day_of",
    "digest",
    "encode_checkpoint",
    "folder_of",
    "is_compacted",
    "query",
    "resolve_archive_url",
    "seq_of",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        module = importlib.import_module(f"zart_es.archive.{_LAZY[name]}")
    except ImportError as exc:
        from zart_es.core import ConfigError

        raise ConfigError(f"the archive needs the optional packages of zart-es[archive] "
                          f"(pip install 'zart-es[archive]'): {exc}") from None
    return getattr(module, name)
