"""The Redis log store: connections, the deployment handle, keys, Lua scripts, the
append path, the hash chain, Redis' clock and private redis-server processes.
"""

from zart_es.core import ChainBreak, verify_chain
from zart_es.store._archiving import ArchiveQueue
from zart_es.store._audit_archiving import AuditArchiveQueue
from zart_es.store._autopipe import ScriptCaller, script_caller
from zart_es.store._clock import redis_now_ms
from zart_es.store._connection import RedisClient
from zart_es.store._debounce import DebounceClosed, DebounceOpen, Debounces
from zart_es.store._deployment import (
    Deployment,
    HasDeployment,
    deployment_for,
    deployment_of,
    payloads_for,
)
from zart_es.store._embedded import STREAM_NODE_MAX_BYTES, RedisServer
from zart_es.store._keys import DEFAULT_PREFIX, F_EXEC, GROUP, M_CRASHES, M_TASK_QUEUE, Keys
from zart_es.store._queries import QUERY_GROUP, QueryChannel
from zart_es.store._redis_errors import (
    BusyLoadingError,
    ClusterDownError,
    MasterDownError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisConnectionError,
    RedisError,
    RedisTimeoutError,
    ResponseError,
    TryAgainError,
    is_cluster,
)
from zart_es.store._routes import WORKER_SEEN_MS, Routes
from zart_es.store._scripts import load_script
from zart_es.store._store import Store, to_event
from zart_es.store._trail import CHAIN_FIELDS, TRAIL_SCOPE, Trail, trail_body, trail_entry_fields

__all__ = [
    "CHAIN_FIELDS",
    "DEFAULT_PREFIX",
    "F_EXEC",
    "GROUP",
    "M_CRASHES",
    "M_TASK_QUEUE",
    "QUERY_GROUP",
    "STREAM_NODE_MAX_BYTES",
    "TRAIL_SCOPE",
    "WORKER_SEEN_MS",
    "ArchiveQueue",
    "AuditArchiveQueue",
    "BusyLoadingError",
    "ChainBreak",
    "ClusterDownError",
    "DebounceClosed",
    "DebounceOpen",
    "Debounces",
    "Deployment",
    "HasDeployment",
    "Keys",
    "MasterDownError",
    "NoPermissionError",
    "NoScriptError",
    "OutOfMemoryError",
    "QueryChannel",
    "ReadOnlyError",
    "RedisClient",
    "RedisConnectionError",
    "RedisError",
    "RedisServer",
    "RedisTimeoutError",
    "ResponseError",
    "Routes",
    "ScriptCaller",
    "Store",
    "Trail",
    "TryAgainError",
    "deployment_for",
    "deployment_of",
    "is_cluster",
    "load_script",
    "payloads_for",
    "redis_now_ms",
    "script_caller",
    "to_event",
    "trail_body",
    "trail_entry_fields",
    "verify_chain",
]
