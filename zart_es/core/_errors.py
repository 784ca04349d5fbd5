"""Every error zart-es raises, in one tree.

::

    ZartError                         root of everything the library raises on purpose
    ├── ConfigError                   bad settings: bad URL, bad duration, bad name
    │   ├── PartitionMismatch         this process's partition count is not the deployment's
    │   ├── InvalidDuration           "5 parsecs", negative or non-finite durations
    │   └── ScheduleExists            adding a schedule whose name is taken (without replace)
    ├── InvalidExecutionId            an execution id with characters outside the allowed set
    ├── InvalidStepName               empty, too long, or with control characters
    ├── DuplicateStepName             one step name used twice in one run of an execution
    ├── UnknownWorkflow               no @durable function registered under that name
    ├── DuplicateWorkflow             two @durable functions registered under one name
    ├── PayloadError                  a value that cannot cross the wire
    │   ├── PayloadNotEncodable       a step result / input msgspec cannot encode
    │   ├── PayloadDecodeError        recorded bytes that do not decode to the asked type
    │   └── PayloadTooLarge           over the configured size limit
    ├── ExecutionNotFound             no execution with that id
    ├── ExecutionExists               a start of an id in use, refused by its reuse policy
    ├── ExecutionFailedError          Client.result() of an execution that ended failed
    ├── ResultTimeout                 Client.result(timeout=) ran out (also a TimeoutError)
    ├── StepFailedError               a step raised (after its retries, if any); recorded
    ├── StepTimedOut                  a step attempt ran past its timeout= (a step failure)
    ├── NonRetryableError             raised by step code: fail the step now, no more retries
    ├── SignalTimeout                 ctx.wait_for_signal(timeout=) ran out; recorded
    ├── ChildFailedError              a child execution (ctx.call) did not complete
    ├── NondeterminismError           replayed code asked for another durable call than recorded
    ├── TaskError                     raised by user code to fail its execution on purpose
    ├── RepairRefused                 an admin operation that makes no sense for the execution now
    │   └── ExecutionArchived         a repair of an execution whose log moved to the archive
    ├── UnknownStep                   an admin operation named a step that was never recorded
    ├── ScheduleNotFound              no recurring schedule with that name
    ├── UnknownQuery                  a query the execution registered no handler for
    ├── QueryFailed                   a query handler raised
    ├── QueryTimeout                  no worker answered a query in time (also a TimeoutError)
    ├── UnknownUpdate                 an update the workflow does not declare
    ├── UpdateFailed                  the workflow failed the update, or ended without answering
    ├── UpdateTimeout                 no answer to an update in time (also a TimeoutError)
    ├── ArchiveError                  the archive cannot be read or written (URL, objects)
    └── StoreError                    Redis answered something the engine cannot accept
        ├── VersionConflict           an append lost the optimistic-concurrency race
        ├── ExecutionEnded            an append to a log that already has its terminal event
        ├── TimerNotDue               a timer that is not (or no longer) due in the wheel
        ├── CorruptLog                a log entry zart-es did not write (missing field, bad body)
        └── RedisUnavailable          Redis cannot be reached at the configured URL

Engine control flow is not an error and derives from ``BaseException`` so that a user's
``except Exception:`` cannot swallow it: :class:`Suspend` (the execution waits for a
durable timer), :class:`Cancelled` (the execution was asked to stop), :class:`LeaseLost`
(another worker took the execution over), :class:`Interrupted` (this worker is
shutting down; the execution continues elsewhere), :class:`Paused` (a pause rule holds
the execution at a step boundary) and :class:`StoreRefused` (Redis refused a call made for
the workflow: the run stops unrecorded and resumes when Redis accepts writes again).
"""

from __future__ import annotations


class ZartError(Exception):
    """Root of every error zart-es raises on purpose."""


class ConfigError(ZartError):
    """A setting is invalid or disagrees with what the Redis deployment records."""


class PartitionMismatch(ConfigError):
    """This process's partition count differs from the one the deployment recorded: a
    misconfigured process, not a bad request."""


class InvalidDuration(ConfigError, ValueError):
    """A duration that is negative, non-finite or in an unknown unit."""

    def __init__(self, value: object, reason: str) -> None:
        super().__init__(f"invalid duration {value!r}: {reason}")
        self.value = value
        self.reason = reason


class InvalidExecutionId(ZartError, ValueError):
    """An execution id outside ``[A-Za-z0-9._:@=+-]{1,200}`` (starting alphanumeric)."""

    def __init__(self, execution_id: object) -> None:
        super().__init__(
            f"invalid execution id {execution_id!r}: use 1-200 characters from "
            "A-Z a-z 0-9 . _ : @ = + -, starting with a letter or digit"
        )
        self.execution_id = execution_id


class InvalidStepName(ZartError, ValueError):
    """A step name that is empty, longer than 200 characters or has control characters."""

    def __init__(self, name: object, reason: str) -> None:
        super().__init__(f"invalid step name {name!r}: {reason}")
        self.name = name


class DuplicateStepName(ZartError):
    """One step name was used twice in one run; step names are the keys of the record."""

    def __init__(self, execution_id: str, step: str) -> None:
        super().__init__(
            f"step name {step!r} used twice in execution {execution_id!r}: give each step "
            f"a unique name (in loops: f'{step}-{{i}}')"
        )
        self.execution_id = execution_id
        self.step = step


class UnknownWorkflow(ZartError, LookupError):
    """No ``@durable`` function is registered under this name."""

    def __init__(self, name: str, known: list[str] | None = None) -> None:
        hint = f" (registered: {', '.join(sorted(known))})" if known else ""
        super().__init__(f"unknown workflow {name!r}{hint}")
        self.name = name


class DuplicateWorkflow(ZartError):
    """Two different functions were registered under one workflow name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"workflow {name!r} is already registered to another function")
        self.name = name


class PayloadError(ZartError):
    """A value that cannot be recorded or read back."""


class PayloadNotEncodable(PayloadError, TypeError):
    """msgspec cannot encode this value (what: 'input', 'result of step X', ...)."""

    def __init__(self, what: str, value: object, detail: str) -> None:
        super().__init__(f"{what} cannot be encoded ({type(value).__name__}): {detail}")
        self.what = what
        self.type_name = type(value).__name__


class PayloadDecodeError(PayloadError, ValueError):
    """Recorded bytes do not decode to the requested type."""

    def __init__(self, what: str, detail: str) -> None:
        super().__init__(f"{what} cannot be decoded: {detail}")
        self.what = what


class PayloadTooLarge(PayloadError, ValueError):
    """An encoded value is over the size limit (``max_payload_bytes``)."""

    def __init__(self, what: str, size: int, limit: int) -> None:
        super().__init__(f"{what} is {size} bytes encoded, over the limit of {limit} bytes")
        self.what = what
        self.size = size
        self.limit = limit


class ExecutionNotFound(ZartError, LookupError):
    """No execution with this id exists."""

    def __init__(self, execution_id: str) -> None:
        super().__init__(f"no execution {execution_id!r}")
        self.execution_id = execution_id


class ExecutionExists(ZartError):
    """A start named an id that is in use and its reuse policy (``if_ended="reject"``,
    ``if_running="fail"``) refused it (HTTP: 409 ``execution_exists``)."""

    def __init__(self, execution_id: str, status: str, policy: str) -> None:
        super().__init__(f"execution {execution_id!r} exists ({status}); the start's {policy} "
                         "refuses to reuse the id")
        self.execution_id = execution_id
        self.status = status
        self.policy = policy


class ExecutionFailedError(ZartError):
    """The execution ended ``failed``; carries the recorded error type and message."""

    def __init__(self, execution_id: str, error_type: str, message: str) -> None:
        super().__init__(f"execution {execution_id!r} failed: {error_type}: {message}")
        self.execution_id = execution_id
        self.error_type = error_type
        self.message = message


class ResultTimeout(ZartError, TimeoutError):
    """``Client.result(timeout=...)`` gave up before the execution finished."""

    def __init__(self, execution_id: str, timeout: float) -> None:
        super().__init__(f"execution {execution_id!r} did not finish within {timeout:g}s")
        self.execution_id = execution_id
        self.timeout = timeout


class StepFailedError(ZartError):
    """A step raised (after exhausting its retries, if it had any).

    The failure is recorded as ``StepFailed``: on every replay the same error is raised
    again at the same place, without calling the step function.
    """

    def __init__(self, step: str, error_type: str, message: str, attempts: int) -> None:
        super().__init__(
            f"step {step!r} failed after {attempts} attempt(s): {error_type}: {message}"
        )
        self.step = step
        self.error_type = error_type
        self.message = message
        self.attempts = attempts


class SignalTimeout(ZartError, TimeoutError):
    """``ctx.wait_for_signal(name, timeout=...)``: the durable timer fired first."""

    def __init__(self, name: str, timeout_ms: int) -> None:
        super().__init__(f"no event {name!r} arrived within {timeout_ms}ms")
        self.name = name
        self.timeout_ms = timeout_ms


class ChildFailedError(ZartError):
    """A child execution started with ``ctx.call`` ended other than completed."""

    def __init__(self, child_id: str, status: str, error_type: str, message: str) -> None:
        super().__init__(f"child execution {child_id!r} {status}: {error_type}: {message}")
        self.child_id = child_id
        self.status = status
        self.error_type = error_type
        self.message = message


class NondeterminismError(ZartError):
    """The workflow's code no longer matches its recorded history.

    Raised when a replay asks for durable call ``got`` while the log recorded ``expected``
    at ``position`` (for example, a step was inserted or renamed under a running
    execution). The execution fails with this message; results are never mixed.
    """

    def __init__(self, expected: str, got: str, position: int) -> None:
        super().__init__(
            f"non-determinism at durable call #{position}: the log recorded {expected!r} "
            f"there, the code now asks for {got!r} (version the workflow instead of "
            "changing it under running executions)"
        )
        self.expected = expected
        self.got = got
        self.position = position


class TaskError(ZartError):
    """Raise from a workflow to fail its execution with a message of your choosing."""

    def __init__(self, message: str, *, kind: str = "custom") -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind

    @classmethod
    def custom(cls, message: str) -> TaskError:
        """A failure in the workflow's own terms: ``raise TaskError.custom("...")``."""
        return cls(message, kind="custom")


class StoreError(ZartError):
    """Redis answered something the engine does not accept."""


class VersionConflict(StoreError):
    """The execution's log moved on since the writer folded it."""

    def __init__(self, execution_id: str, expected: int, actual: int) -> None:
        super().__init__(
            f"execution {execution_id!r}: log is at version {actual}, writer expected {expected}"
        )
        self.execution_id = execution_id
        self.expected = expected
        self.actual = actual


class ExecutionEnded(StoreError):
    """The log already ends with a terminal event: nothing more can be appended."""

    def __init__(self, execution_id: str, version: int) -> None:
        super().__init__(f"execution {execution_id!r} has already ended (version {version})")
        self.execution_id = execution_id
        self.version = version


class RepairRefused(ZartError):
    """An admin operation (retry a step, restart, re-run, resume) that makes no sense for
    the execution as it is; nothing was recorded."""

    def __init__(self, execution_id: str, why: str) -> None:
        self.execution_id = execution_id
        self.why = why
        super().__init__(f"cannot repair execution {execution_id!r}: {why}")


class ExecutionArchived(RepairRefused):
    """A repair (retry a step, re-run, restart, release) of an execution whose retention
    passed: its log left Redis for the archive, where it stays read-only. Nothing was
    recorded; start a new execution (under a new id) to run the work again."""

    def __init__(self, execution_id: str, archive: str) -> None:
        super().__init__(execution_id, f"it was archived (to {archive}) when its retention "
                         "passed; archived executions are read-only")
        self.archive = archive


class ArchiveError(ZartError):
    """The archive of ended executions cannot be used: a bad ``archive_url``, an object
    store that refuses a read or a write, an object that is not an archive file."""


class UnknownStep(ZartError, LookupError):
    """An admin operation named a step the execution never recorded."""

    def __init__(self, execution_id: str, step: str, known: list[str]) -> None:
        self.execution_id = execution_id
        self.step = step
        shown = ", ".join(repr(k) for k in known[:20]) or "none"
        super().__init__(f"execution {execution_id!r} has no recorded step {step!r} "
                         f"(recorded: {shown})")


class ScheduleNotFound(ZartError, LookupError):
    """No schedule with this name (HTTP: 404 ``not_found``)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no schedule {name!r}")
        self.name = name


class UnknownQuery(ZartError, LookupError):
    """``Client.query`` named a query the execution has no handler for at its current
    point (HTTP: 404 ``unknown_query``); ``registered`` lists the ones it has."""

    def __init__(self, execution_id: str, name: str, registered: list[str]) -> None:
        shown = ", ".join(repr(r) for r in registered) or "none"
        super().__init__(f"execution {execution_id!r} has no query {name!r} "
                         f"(registered: {shown})")
        self.execution_id = execution_id
        self.name = name
        self.registered = registered


class QueryFailed(ZartError):
    """The query handler raised (HTTP: 422 ``query_failed``): its error type and message.
    Nothing was recorded; the execution goes on."""

    def __init__(self, execution_id: str, name: str, error_type: str, message: str) -> None:
        super().__init__(f"query {name!r} of execution {execution_id!r} failed: "
                         f"{error_type}: {message}")
        self.execution_id = execution_id
        self.name = name
        self.error_type = error_type
        self.message = message


class QueryTimeout(ZartError, TimeoutError):
    """No worker serving the execution's task queue answered within the timeout
    (HTTP: 504 ``query_timeout``): none runs, or all are busy."""

    def __init__(self, execution_id: str, name: str, timeout: float, task_queue: str) -> None:
        super().__init__(f"no worker of task queue {task_queue!r} answered query {name!r} "
                         f"of execution {execution_id!r} within {timeout:g}s")
        self.execution_id = execution_id
        self.name = name
        self.timeout = timeout
        self.task_queue = task_queue


class UnknownUpdate(ZartError, LookupError):
    """``Client.update`` named an update the workflow does not declare
    (``@durable(..., updates=[...])``; HTTP: 404 ``unknown_update``). The engine records
    the rejection, so a retry with the same update id is rejected the same way."""

    def __init__(self, execution_id: str, name: str, message: str) -> None:
        super().__init__(f"execution {execution_id!r}: {message}")
        self.execution_id = execution_id
        self.name = name


class UpdateFailed(ZartError):
    """The workflow answered the update with ``fail(error)``, or ended without answering
    it (HTTP: 422 ``update_failed``)."""

    def __init__(self, execution_id: str, name: str, update_id: str, error_type: str,
                 message: str) -> None:
        super().__init__(f"update {name!r} ({update_id}) of execution {execution_id!r} "
                         f"failed: {error_type}: {message}")
        self.execution_id = execution_id
        self.name = name
        self.update_id = update_id
        self.error_type = error_type
        self.message = message


class UpdateTimeout(ZartError, TimeoutError):
    """No answer within the timeout (HTTP: 504 ``update_timeout``). The update stays
    delivered: call again with the same ``update_id`` to keep waiting for its answer."""

    def __init__(self, execution_id: str, name: str, update_id: str, timeout: float) -> None:
        super().__init__(f"update {name!r} of execution {execution_id!r} not answered within "
                         f"{timeout:g}s (it stays delivered: update_id={update_id!r} "
                         "waits for the same answer)")
        self.execution_id = execution_id
        self.name = name
        self.update_id = update_id
        self.timeout = timeout


class ScheduleExists(ConfigError):
    """``add`` of a name that is already a schedule, without ``replace=True``
    (HTTP: 409 ``schedule_exists``)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"schedule {name!r} exists already (to redefine it: replace=True, "
                         "--replace in the CLI, \"replace\": true over HTTP)")
        self.name = name


class TimerNotDue(StoreError):
    """The timer is not in the wheel any more (fired already) or not due yet."""

    def __init__(self, member: str, reason: str) -> None:
        super().__init__(f"timer {member!r}: {reason}")
        self.member = member
        self.reason = reason


class CorruptLog(StoreError):
    """An entry of an execution's log is not one zart-es wrote: a field is missing or its
    body does not decode. Nothing is repaired or skipped silently: the entry is named."""

    def __init__(self, execution_id: str, entry_id: str, reason: str) -> None:
        where = f"execution {execution_id!r}" if execution_id else "an execution's log"
        super().__init__(f"{where}: entry {entry_id} is corrupt: {reason}")
        self.execution_id = execution_id
        self.entry_id = entry_id
        self.reason = reason


class RedisUnavailable(StoreError, ConnectionError):
    """Redis cannot be reached (wrong URL, server down, network)."""

    def __init__(self, url: str, detail: str) -> None:
        super().__init__(f"cannot reach Redis at {url}: {detail}")
        self.url = url


class StepTimedOut(ZartError, TimeoutError):
    """An attempt of step ``step`` ran longer than its ``timeout``: recorded as the step's
    failure (``error_type`` "StepTimedOut"), retried by its policy like any other. With
    ``attempts``, the step's ``total_timeout`` ran out after that many attempts: the
    step fails, not retried."""

    def __init__(self, step: str, timeout_ms: int, attempts: int = 0) -> None:
        if attempts:
            super().__init__(f"step {step!r} did not finish within its total timeout of "
                             f"{timeout_ms}ms ({attempts} attempt(s))")
        else:
            super().__init__(f"step {step!r} did not finish within {timeout_ms}ms")
        self.step = step
        self.timeout_ms = timeout_ms
        self.attempts = attempts


class NonRetryableError(ZartError):
    """Raise it from step code to fail the step at once, whatever retries are left (like
    Temporal's non-retryable ``ApplicationError``). Recorded with ``error_type`` when given
    (else "NonRetryableError") and the message."""

    def __init__(self, message: str, *, error_type: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type or type(self).__name__


class Suspend(BaseException):
    """The execution waits for a durable timer; the worker stops running it for now."""


class Cancelled(BaseException):
    """The execution was asked to stop (``Client.cancel``). Raised at the workflow's next
    durable call; ``finally:`` blocks and compensation steps still run and are recorded.
    Letting it propagate ends the execution ``cancelled``."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason or "cancelled")
        self.reason = reason


class LeaseLost(BaseException):
    """Another worker owns the execution now (or it ended elsewhere); stop quietly."""


class Interrupted(BaseException):
    """This worker is draining: stop before the next step; another worker continues."""


class StoreRefused(BaseException):
    """The store refused or lost a call the engine made for workflow code (out of memory,
    READONLY after a failover, LOADING, a lost connection, a timeout while recording).

    Raised through workflow code as engine control flow, so an ``except Exception`` around
    a step cannot take it for the workflow's failure; the worker turns it back into
    :attr:`error`, stops the run where it is and resumes it once Redis accepts writes.
    """

    def __init__(self, error: Exception) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.error = error


class Paused(BaseException):
    """A pause rule covers the execution: it stops before its next new durable call."""

    def __init__(self, rule: str) -> None:
        super().__init__(rule)
        self.rule = rule


EventTimeout = SignalTimeout
"""The first name of :class:`SignalTimeout`."""


UNREADABLE: tuple[type[Exception], ...] = (
    ValueError, LookupError, TypeError, AttributeError, ArithmeticError,
    ConfigError, PayloadError,
)
"""What decoding and using one record that someone else wrote into Redis can raise: bytes
that are not UTF-8, a number that is not one, a msgpack shape of no struct (msgspec's
errors are ValueErrors), a setting no check would pass. A loop that reads such records
catches these for each record, sets it aside or skips it, and goes on with the others;
a Redis error is not among them (that is an outage, retried as a whole)."""
