"""Every Redis key and stream field name zart-es uses, built here and nowhere else.

All keys of one partition share the hash tag ``{<prefix>:<p>}``, so every script touches a
single slot and the same code runs on one Redis and on a Redis Cluster.
"""

from __future__ import annotations

import re
import zlib

from zart_es.core import DEFAULT_TASK_QUEUE, check_execution_id

DEFAULT_PREFIX = "zart"
"""The key prefix of a deployment that names none."""
GROUP = "workers"
"""The consumer group every worker joins on every partition's work stream."""

# fields of a log entry
F_SEQ = b"s"
F_PREV = b"p"
F_BODY = b"e"
# field of a work message
F_EXEC = b"x"
# field of an execution's meta hash: its task queue (absent: the default one)
M_TASK_QUEUE = "q"
# field of an execution's meta hash kept outside the append script
M_CRASHES = "crashes"
"""How often the engine crashed running the execution since it was last released."""


class Keys:
    """Key builder for one deployment (a prefix and a fixed partition count)."""

    __slots__ = ("partitions", "prefix")

    def __init__(self, prefix: str = DEFAULT_PREFIX, partitions: int = 16) -> None:
        if partitions < 1 or partitions > 4096:
            raise ValueError(f"partitions must be 1..4096, got {partitions}")
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", prefix):
            raise ValueError(f"invalid key prefix {prefix!r}")
        self.prefix = prefix
        self.partitions = partitions

    def partition_of(self, execution_id: str) -> int:
        """Stable partition of an execution: crc32 of its id, mod the partition count."""
        return zlib.crc32(execution_id.encode()) % self.partitions

    def _tag(self, partition: int) -> str:
        return f"{{{self.prefix}:{partition}}}"

    def work(self, partition: int, task_queue: str = DEFAULT_TASK_QUEUE) -> str:
        """Stream of "run execution X" messages of one task queue, read by the consumer
        group of the workers serving it. The default queue's is ``<tag>:work`` (the one
        stream of releases before task queues), another's ``<tag>:work:<task queue>``;
        the append script builds the same names from ``work_prefix`` and the meta hash."""
        if task_queue == DEFAULT_TASK_QUEUE:
            return self.work_prefix(partition)
        return f"{self.work_prefix(partition)}:{task_queue}"

    def work_prefix(self, partition: int) -> str:
        """The default task queue's work stream, and the prefix of the others'."""
        return f"{self._tag(partition)}:work"

    def timers(self, partition: int) -> str:
        """Sorted set: member = timer member, score = due time in ms (Redis clock)."""
        return f"{self._tag(partition)}:timers"

    def ended(self, partition: int) -> str:
        """Stream of the partition's executions as they end (``x=<id>``, capped near
        ENDED_MAXLEN): what clients wait on, one XREAD for all their waits."""
        return f"{self._tag(partition)}:ended"

    def archive_due(self, partition: int) -> str:
        """Sorted set of the partition's ended executions waiting for the archiver:
        member = execution id, score = when its retention passes (ms, Redis' clock)."""
        return f"{self._tag(partition)}:archive:due"

    def archiver(self, partition: int) -> str:
        """Hash of the partition's archiver: ``cursor`` (the last ``ended`` entry it read),
        ``plan`` (the batch it is moving, until its executions left Redis) and ``lease``
        (``<owner> <expiry ms>``: who archives the partition now)."""
        return f"{self._tag(partition)}:archive"

    def retention(self) -> str:
        """Hash: workflow name -> the retention its code declares (ms, or ``none``),
        written by every worker at start, read by a standalone archiver."""
        return f"{self.prefix}:retention"

    def audit_archive(self) -> str:
        """Hash of the operator audit stream's archiver: ``cursor`` and ``plan``, as
        :meth:`archiver` (the audit stream has no partition: one key of its own)."""
        return f"{self.prefix}:audit:archive"

    def bad_timers(self, partition: int) -> str:
        """Sorted set of timer members the poller could not fire (unparseable, or naming an
        execution of another partition), moved aside for inspection; score = due ms."""
        return f"{self._tag(partition)}:timers:bad"

    def index_prefix(self, partition: int) -> str:
        """Prefix of the partition's status indexes (zsets, score = creation ms).

        ``<prefix>all`` holds every execution, ``<prefix><status>`` those in that status;
        the append script keeps them current (it appends the status to this prefix).
        """
        return f"{self._tag(partition)}:ix:"

    def index(self, partition: int, status: str | None) -> str:
        """One status index of a partition (``None``: every execution)."""
        return f"{self.index_prefix(partition)}{status or 'all'}"

    def counts(self, partition: int) -> str:
        """Hash of the partition's executions by ``<workflow>\n<status>`` (the append
        script keeps it current; derived from the index prefix, as the script does)."""
        return f"{self.index_prefix(partition)}@counts"

    def log(self, execution_id: str) -> str:
        """The execution's append-only event stream: the truth."""
        return f"{self._tag(self.partition_of(execution_id))}:x:{execution_id}"

    def meta(self, execution_id: str) -> str:
        """Small hash derived from the log: workflow, status, version, last hash."""
        return f"{self._tag(self.partition_of(execution_id))}:m:{execution_id}"

    def meta_pattern(self) -> str:
        """SCAN pattern of every execution's meta hash, any partition (the id follows the
        first ``:m:``)."""
        return f"{{{self.prefix}:*}}:m:*"

    def config(self) -> str:
        """Deployment settings every client and worker must agree on (partition count)."""
        return f"{self.prefix}:config"

    def audit(self) -> str:
        """The operator trail: a chained stream of operators' actions (who, what, why)."""
        return f"{self.prefix}:audit"

    def audit_head(self) -> str:
        """Hash of the operator trail's head: ``v`` entries so far, ``h`` newest chain
        value (hash tag = the trail's own name: the same slot as the trail)."""
        return f"{{{self.prefix}:audit}}:head"

    def routes(self) -> str:
        """Hash: workflow name -> the task queue its code declares, written by every worker
        at start: where a client that has no registry sends a new execution's work."""
        return f"{self.prefix}:routes"

    def task_queues(self) -> str:
        """Set of the task queues any worker ever served or any workflow declared."""
        return f"{self.prefix}:task-queues"

    def task_queue_workers(self, task_queue: str) -> str:
        """Sorted set: consumer -> the ms (Redis' clock) that worker last said it serves
        ``task_queue`` (its heartbeat): whether the queue has live workers."""
        return f"{self.prefix}:tq:{task_queue}:workers"

    def queries(self, task_queue: str) -> str:
        """Stream of query requests for executions of ``task_queue``, read by the
        ``queries`` consumer group of the workers serving it."""
        return f"{self.prefix}:tq:{task_queue}:queries"

    def query_reply(self, task_queue: str, token: str) -> str:
        """Stream a query's answer is added to (it expires soon after)."""
        return f"{self.prefix}:tq:{task_queue}:reply:{token}"

    def debounce(self, workflow: str, key: str) -> str:
        """Hash of the debounce window of ``workflow`` and ``key``: the execution it
        holds (``x``), the latest input (``in``), when it closes (``due``, Redis' clock),
        how many starts joined (``n``), and closed windows' inputs (``c:<id>``)."""
        p = zlib.crc32(f"{workflow}\n{key}".encode()) % self.partitions
        return f"{self._tag(p)}:debounce:{workflow}\n{key}"

    def bulk_job(self, job_id: str) -> str:
        """Hash of one bulk operation's progress (field ``j``: its JSON), kept a week."""
        return f"{self.prefix}:bulk:{job_id}"

    def schedules(self) -> str:
        """Hash: schedule name -> its msgpack-encoded definition."""
        return f"{self.prefix}:schedules"

    def schedule_state(self) -> str:
        """Hash: schedule name -> msgpack-encoded progress (last occurrence, execution)."""
        return f"{self.prefix}:schedules:state"

    def pauses(self) -> str:
        """Hash of active pause rules: ``workflow:<name>`` / ``queue:<name>`` -> reason."""
        return f"{self.prefix}:pauses"

    def paused(self, partition: int) -> str:
        """Sorted set of the partition's paused executions (score = ms paused)."""
        return f"{self._tag(partition)}:paused"

    def queue_slot(self, queue: str, key: str) -> str:
        """Prefix of one queue key's admission keys (``running``, ``waiting``, ``starts``);
        all share one hash tag, so the admission script touches one slot."""
        return f"{{{self.prefix}:q:{queue}:{key}}}:"

    def queue_index(self) -> str:
        """Set of ``<queue> <key>`` pairs that have admitted or waiting executions."""
        return f"{self.prefix}:queues"

    @staticmethod
    def timer_member(execution_id: str, timer: str) -> str:
        """Member of the timer wheel: execution id and timer name (ids have no spaces)."""
        return f"{execution_id} {timer}"

    @staticmethod
    def parse_timer_member(member: str) -> tuple[str, str]:
        """Inverse of :meth:`timer_member`; ValueError for a member zart-es did not write."""
        execution_id, _, timer = member.partition(" ")
        if not timer:
            raise ValueError(f"timer member {member!r} has no timer name")
        check_execution_id(execution_id)
        return execution_id, timer
