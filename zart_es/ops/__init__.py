"""Operations over a deployment, shared by the client and the engine: repairs, pause
rules, schedules, listing, the picture of one execution, deployment metrics, the operator
audit stream.
"""

from zart_es.ops._audit_log import audit
from zart_es.ops._backfill import MAX_BACKFILL, Backfilled
from zart_es.ops._console import AuditEntry, Holder, QueueSlots, audit_entries, queue_slots
from zart_es.ops._control import Started, cancel_execution, submit_execution
from zart_es.ops._folds import FoldCache
from zart_es.ops._insight import ExecutionDetail, ExecutionStatus, describe, event_record
from zart_es.ops._listing import (
    ExecutionPage,
    ExecutionSummary,
    HistoryPage,
    Stats,
    count_executions,
    decode_cursor,
    encode_cursor,
    list_executions,
    ms_of,
    page_executions,
    page_history,
)
from zart_es.ops._metrics import render_deployment_metrics
from zart_es.ops._pauses import (
    PauseRule,
    add_rule,
    list_rules,
    remove_rule,
    resume_released,
    rule_name,
)
from zart_es.ops._quarantine import quarantine_if_crashed_too_often, release
from zart_es.ops._queries import ask_query
from zart_es.ops._repairs import STORE_ERROR_TYPES, reopen, rerun, restart, retry_step
from zart_es.ops._schedules import (
    RACE_ROUNDS,
    Schedules,
    decode_schedule,
    decode_state,
    encode_record,
)
from zart_es.ops._task_queues import StreamLoad, TaskQueueLoad, stream_loads, task_queue_loads
from zart_es.ops._timeline import Mark, Row, Span, Timeline, build_timeline
from zart_es.ops._tracing import ended_run, run_span, step_attempt, traceparent
from zart_es.ops._updates import send_update

__all__ = [
    "MAX_BACKFILL",
    "RACE_ROUNDS",
    "STORE_ERROR_TYPES",
    "AuditEntry",
    "Backfilled",
    "ExecutionDetail",
    "ExecutionPage",
    "ExecutionStatus",
    "ExecutionSummary",
    "FoldCache",
    "HistoryPage",
    "Holder",
    "Mark",
    "PauseRule",
    "QueueSlots",
    "Row",
    "Schedules",
    "Span",
    "Started",
    "Stats",
    "StreamLoad",
    "TaskQueueLoad",
    "Timeline",
    "add_rule",
    "ask_query",
    "audit",
    "audit_entries",
    "build_timeline",
    "cancel_execution",
    "count_executions",
    "decode_cursor",
    "decode_schedule",
    "decode_state",
    "describe",
    "encode_cursor",
    "encode_record",
    "ended_run",
    "event_record",
    "list_executions",
    "list_rules",
    "ms_of",
    "page_executions",
    "page_history",
    "quarantine_if_crashed_too_often",
    "queue_slots",
    "release",
    "remove_rule",
    "render_deployment_metrics",
    "reopen",
    "rerun",
    "restart",
    "resume_released",
    "retry_step",
    "rule_name",
    "run_span",
    "send_update",
    "step_attempt",
    "stream_loads",
    "submit_execution",
    "task_queue_loads",
    "traceparent",
]
