"""What a name, an id or a priority may be: checked before anything reaches Redis.

Execution ids, workflow names, queue names and queue keys become parts of Redis keys and
stream fields, so they are checked at the edge (client, registry, API) with a clear
:class:`~zart_es.core.ConfigError` or :class:`~zart_es.core.InvalidExecutionId`.
"""

from __future__ import annotations

import re
import uuid

from zart_es.core._errors import ConfigError, InvalidExecutionId

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@=+\-]{0,199}")
_QUEUE_KEY = re.compile(r"[A-Za-z0-9._:@=+\-]{0,200}")

PRIORITY_LIMIT = 1000
"""Priorities are integers in ``-PRIORITY_LIMIT..PRIORITY_LIMIT`` (exact scores)."""


def check_execution_id(execution_id: str) -> str:
    """Return the id if it is allowed, else raise :class:`InvalidExecutionId`."""
    if not isinstance(execution_id, str) or not _ID.fullmatch(execution_id):
        raise InvalidExecutionId(execution_id)
    return execution_id


def check_workflow_name(name: object, what: str = "workflow name") -> str:
    """Return the name if it is 1-200 printable characters, else raise ConfigError."""
    if not isinstance(name, str) or not name.strip() or len(name) > 200 or not name.isprintable():
        raise ConfigError(f"{what} must be 1-200 printable characters, got {name!r}")
    return name


_QUEUE_NAME_FORBIDDEN = re.compile(r"[\s:{}]")


def check_queue_name(name: object, what: str = "queue name") -> str:
    """A workflow-like name without spaces, ':', '{' or '}' (it is part of key names and
    of ``"<queue> <key>"`` pairs), else ConfigError."""
    value = check_workflow_name(name, what=what)
    if _QUEUE_NAME_FORBIDDEN.search(value):
        raise ConfigError(f"{what} must not contain spaces, ':', '{{' or '}}', got {value!r}")
    return value


DEFAULT_TASK_QUEUE = "default"
"""The task queue of a workflow that names none, and the one a worker serves besides its
workflows' own when given no ``task_queues``."""
_TASK_QUEUE = re.compile(r"[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?")


def check_task_queue(name: object) -> str:
    """Return the task queue name if it is 1-40 lowercase letters, digits and inner
    dashes (it is part of work streams' keys and of Kubernetes objects' names), else
    raise ConfigError."""
    if not isinstance(name, str) or not _TASK_QUEUE.fullmatch(name):
        raise ConfigError("task queue must be 1-40 lowercase letters, digits or inner '-' "
                          f"(like a Kubernetes name), got {name!r}")
    return name


def check_priority(priority: object) -> int:
    """Return the priority if it is an int in ``-1000..1000``, else raise ConfigError."""
    if (not isinstance(priority, int) or isinstance(priority, bool)
            or not -PRIORITY_LIMIT <= priority <= PRIORITY_LIMIT):
        raise ConfigError(f"queue priority must be an integer from {-PRIORITY_LIMIT} to "
                          f"{PRIORITY_LIMIT}, got {priority!r}")
    return priority


def check_queue_key(key: object) -> str:
    """Return the queue key if it is ``""`` or 1-200 of ``A-Z a-z 0-9 . _ : @ = + -``."""
    if not isinstance(key, str) or not _QUEUE_KEY.fullmatch(key):
        raise ConfigError(f"invalid queue key {key!r}: use \"\" or 1-200 characters from "
                          "A-Z a-z 0-9 . _ : @ = + -")
    return key


def derived_id(base: str, suffix: str) -> str:
    """The id of an execution derived from another's (a child call, a failure handler):
    ``base + suffix``, or, past 200 characters, a shortened form that still depends only
    on the two (so every replay derives the same id)."""
    candidate = base + suffix
    if len(candidate) <= 200:
        return candidate
    digest = uuid.uuid5(uuid.NAMESPACE_OID, base).hex[:16]
    return f"{base[:150]}.{digest}.{suffix.lstrip('.')[-30:]}"
