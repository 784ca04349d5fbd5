"""The workflow API: ``@durable``, the registry, ``Context`` and the journal it records
through.

It never imports Redis, the store, the engine or the client: a ``Context`` runs over any
:class:`Journal` (the Redis one in :mod:`zart_es.engine`, an in-memory one in
:mod:`zart_es.testing`).
"""

from zart_es.workflow._context import Context
from zart_es.workflow._registry import (
    Registry,
    Workflow,
    default_registry,
    durable,
    queue,
    schedule,
)

__all__ = [
    "Context",
    "Registry",
    "Workflow",
    "default_registry",
    "durable",
    "queue",
    "schedule",
]
