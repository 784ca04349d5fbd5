"""The client: start executions, read what happened to them, operate on them.

The client never imports the engine.
"""

from zart_es.client._bulk import (
    BULK_ACTIONS,
    BulkFilter,
    BulkOutcome,
    BulkProblem,
    run_bulk,
)
from zart_es.client._bulk import operation as bulk_operation
from zart_es.client._bulk import select as bulk_select
from zart_es.client._client import Client
from zart_es.client._handle import ExecutionHandle
from zart_es.ops import ExecutionStatus

__all__ = [
    "BULK_ACTIONS",
    "BulkFilter",
    "BulkOutcome",
    "BulkProblem",
    "Client",
    "ExecutionHandle",
    "ExecutionStatus",
    "bulk_operation",
    "bulk_select",
    "run_bulk",
]
