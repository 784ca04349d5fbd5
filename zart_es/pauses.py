"""Pause rules: hold every execution of a workflow (or of a queue) and let them go later.

A rule is a field of one small hash (``workflow:<name>`` or ``queue:<name>`` -> a JSON
note of who paused and why). Workers keep a copy they refresh every ``poll_interval``;
an execution a rule covers stops before its next new durable call, records
``ExecutionPaused`` and is put in its partition's ``paused`` set. Nothing runs for it
meanwhile; timers still fire on the wheel (the log records them, the status stays
``paused``). Resuming deletes the rule and appends ``ExecutionResumed`` (with a work
message) to each execution it held; a worker that finds a paused execution whose rule
is gone resumes it itself, so a resume interrupted half-way loses nothing.

Every change of a rule is also an entry of the deployment's audit stream.
"""

from __future__ import annotations

import json
import time
from typing import Any

import msgspec
import structlog

from .config import RedisClient
from .errors import ConfigError, ExecutionEnded, ExecutionNotFound, VersionConflict
from .events import ExecutionResumed
from .keys import Keys, check_queue_name, check_workflow_name
from .state import PAUSED
from .store import Store

log = structlog.get_logger("zart_es.pauses")

KINDS = ("workflow", "queue")


class PauseRule(msgspec.Struct, frozen=True):
    """An active rule ``<kind>:<name>`` (kind workflow or queue), and its note."""

    rule: str
    kind: str
    name: str
    reason: str = ""
    by: str = ""
    at_ms: int = 0


def rule_name(workflow: str | None, queue: str | None) -> str:
    """``workflow:<name>`` or ``queue:<name>``; exactly one of the two must be given."""
    if (workflow is None) == (queue is None):
        raise ConfigError("name exactly one of workflow or queue to pause or resume")
    if workflow is not None:
        return f"workflow:{check_workflow_name(workflow)}"
    return f"queue:{check_queue_name(queue)}"


async def audit(redis: RedisClient, keys: Keys, what: str, **detail: str) -> None:
    """Append one entry to the deployment's audit stream (capped near 100,000 entries)."""
    fields: dict[Any, Any] = {"what": what, **detail}
    await redis.xadd(keys.audit(), fields, maxlen=100_000, approximate=True)


async def add_rule(
    redis: RedisClient, keys: Keys, rule: str, *, reason: str = "", by: str = ""
) -> bool:
    """Activate ``rule``; False if it was active already (its note is kept)."""
    note = json.dumps({"reason": reason, "by": by, "at_ms": int(time.time() * 1000)})
    added = bool(await redis.hsetnx(keys.pauses(), rule, note))  # type: ignore[misc]
    if added:
        await audit(redis, keys, "pause", rule=rule, reason=reason, by=by)
    return added


async def list_rules(redis: RedisClient, keys: Keys) -> list[PauseRule]:
    """The active rules, sorted."""
    raw: dict[bytes, bytes] = await redis.hgetall(keys.pauses())  # type: ignore[misc]
    out = []
    for field, note in sorted(raw.items()):
        rule = field.decode()
        kind, _, name = rule.partition(":")
        info = json.loads(note)
        out.append(PauseRule(rule, kind, name, info.get("reason", ""), info.get("by", ""),
                             int(info.get("at_ms", 0))))
    return out


async def remove_rule(
    store: Store, rule: str, *, by: str = "", active: set[str] | None = None
) -> int:
    """Deactivate ``rule`` and resume what it held; returns how many executions resumed."""
    redis, keys = store.redis, store.keys
    if await redis.hdel(keys.pauses(), rule):  # type: ignore[misc]
        await audit(redis, keys, "resume", rule=rule, by=by)
    return await resume_released(store, active)


async def resume_released(store: Store, active: set[str] | None = None) -> int:
    """Resume every paused execution whose rule is no longer active (``active``: the rules
    in force; read from Redis when None). Safe to run anywhere, any number of times."""
    redis, keys = store.redis, store.keys
    pipe = redis.pipeline(transaction=False)
    for p in range(keys.partitions):
        pipe.zrange(keys.paused(p), 0, -1)
    members: list[list[bytes]] = await pipe.execute()
    if active is None or any(m.decode().partition("\n")[2] not in active
                             for held in members for m in held):
        # read after the members: a worker puts a member in only after it saw its rule in
        # Redis, so a rule this misses was lifted. A copy from before (``active``) may not
        # know a new rule whose first hold is being recorded right now, whose member must
        # not be taken for a lifted rule's
        active = {f.decode() for f in await redis.hkeys(keys.pauses())}  # type: ignore[misc]
    resumed = 0
    for p, held in enumerate(members):
        for member in held:
            execution_id, _, rule = member.decode().partition("\n")
            if rule in active:
                continue
            if await _resume_one(store, execution_id, rule):
                resumed += 1
            await redis.zrem(keys.paused(p), member)
    return resumed


async def _resume_one(store: Store, execution_id: str, rule: str) -> bool:
    """Append ``ExecutionResumed`` if the execution is still paused (version-checked)."""
    while True:
        meta = await store.meta(execution_id)
        if not meta or meta.get(b"st") != PAUSED.encode():
            return False
        try:
            await store.append(execution_id, int(meta[b"v"]), ExecutionResumed(rule=rule),
                               enqueue=True)
        except VersionConflict:
            continue  # something else was appended meanwhile: look again
        except (ExecutionEnded, ExecutionNotFound):
            return False
        log.debug("execution resumed", execution_id=execution_id, rule=rule)
        return True


class PauseRules:
    """A worker's copy of the active rules, refreshed by :meth:`refresh`."""

    def __init__(self, redis: RedisClient, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self.active: frozenset[str] = frozenset()

    async def refresh(self) -> frozenset[str]:
        """Read the rules again (one HKEYS); returns them."""
        fields = await self._redis.hkeys(self._keys.pauses())  # type: ignore[misc]
        self.active = frozenset(f.decode() for f in fields)
        return self.active

    def covering(self, workflow: str, queue: str | None) -> str | None:
        """The rule (by the cached copy) that holds this workflow or queue, if any."""
        if not self.active:
            return None
        rule = f"workflow:{workflow}"
        if rule in self.active:
            return rule
        if queue is not None and f"queue:{queue}" in self.active:
            return f"queue:{queue}"
        return None

    async def confirm(self, rule: str) -> bool:
        """Whether ``rule`` is active in Redis right now (the cache may be stale)."""
        return bool(await self._redis.hexists(self._keys.pauses(), rule))  # type: ignore[misc]

    async def hold(self, execution_id: str, rule: str) -> None:
        """Put the execution in its partition's paused set (before ``ExecutionPaused`` is
        recorded: a resume that runs in between finds it and resumes it)."""
        p = self._keys.partition_of(execution_id)
        await self._redis.zadd(self._keys.paused(p),
                               {f"{execution_id}\n{rule}": int(time.time() * 1000)})
