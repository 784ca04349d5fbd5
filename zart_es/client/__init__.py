"""The client: start executions, read what happened to them, operate on them.

The client never imports the engine.
"""

from zart_es.client._client import Client
from zart_es.client._handle import ExecutionHandle
from zart_es.ops import ExecutionStatus

__all__ = [
    "Client",
    "ExecutionHandle",
    "ExecutionStatus",
]
