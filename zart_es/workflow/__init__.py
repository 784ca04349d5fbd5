"""The workflow API: ``@durable``, the registry, ``Context`` and the journal it records
through.

It never imports Redis, the store, the engine or the client: a ``Context`` runs over any
:class:`Journal` (the Redis one in :mod:`zart_es.engine`, an in-memory one in
:mod:`zart_es.testing`).
"""

from zart_es.workflow._context import Context, Update
from zart_es.workflow._journal import Journal
from zart_es.workflow._query import answer_query
from zart_es.workflow._registry import (
    Registry,
    Workflow,
    default_registry,
    durable,
    queue,
    schedule,
)
from zart_es.workflow._replay_check import HistoryJournal, ReplayVerdict, check_history
from zart_es.workflow._replay_pass import (
    Replayed,
    completion,
    deadline_passed,
    failure,
    failure_handler_start,
    replay,
    workflow_input,
)

__all__ = [
    "Context",
    "HistoryJournal",
    "Journal",
    "Registry",
    "ReplayVerdict",
    "Replayed",
    "Update",
    "Workflow",
    "answer_query",
    "check_history",
    "completion",
    "deadline_passed",
    "default_registry",
    "durable",
    "failure",
    "failure_handler_start",
    "queue",
    "replay",
    "schedule",
    "workflow_input",
]
