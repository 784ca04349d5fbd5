"""zart-es: durable execution for Python, event-sourced on Redis Streams.

Write a workflow as an ``async def`` of named steps; each step's result is recorded in the
execution's event stream, so a process that dies mid-way resumes where it stopped.
"""

from .client import Client, ExecutionStatus
from .context import Context
from .errors import (
    Cancelled,
    ChildFailedError,
    ConfigError,
    DuplicateStepName,
    DuplicateWorkflow,
    EventTimeout,
    ExecutionEnded,
    ExecutionFailedError,
    ExecutionNotFound,
    InvalidDuration,
    InvalidExecutionId,
    InvalidStepName,
    NondeterminismError,
    PartitionMismatch,
    PayloadDecodeError,
    PayloadError,
    PayloadNotEncodable,
    PayloadTooLarge,
    RedisUnavailable,
    RepairRefused,
    ResultTimeout,
    ScheduleExists,
    ScheduleNotFound,
    StepFailedError,
    StoreError,
    TaskError,
    UnknownStep,
    UnknownWorkflow,
    VersionConflict,
    ZartError,
)
from .listing import ExecutionSummary
from .queues import Queue
from .registry import Registry, default_registry, durable, queue, schedule
from .schedules import Scheduler, Schedules
from .worker import Worker

__version__ = "0.3.0"

__all__ = [
    "Cancelled",
    "ChildFailedError",
    "Client",
    "ConfigError",
    "Context",
    "DuplicateStepName",
    "DuplicateWorkflow",
    "EventTimeout",
    "ExecutionEnded",
    "ExecutionFailedError",
    "ExecutionNotFound",
    "ExecutionStatus",
    "ExecutionSummary",
    "InvalidDuration",
    "InvalidExecutionId",
    "InvalidStepName",
    "NondeterminismError",
    "PartitionMismatch",
    "PayloadDecodeError",
    "PayloadError",
    "PayloadNotEncodable",
    "PayloadTooLarge",
    "Queue",
    "RedisUnavailable",
    "Registry",
    "RepairRefused",
    "ResultTimeout",
    "ScheduleExists",
    "ScheduleNotFound",
    "Scheduler",
    "Schedules",
    "StepFailedError",
    "StoreError",
    "TaskError",
    "UnknownStep",
    "UnknownWorkflow",
    "VersionConflict",
    "Worker",
    "ZartError",
    "__version__",
    "default_registry",
    "durable",
    "queue",
    "schedule",
]
