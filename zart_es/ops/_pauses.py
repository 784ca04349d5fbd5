"""Pause rules: hold executions at a step boundary and let them go later.

A rule is a field of one small hash (``workflow:<name>``, ``queue:<name>``,
``execution:<id>`` or ``step:<glob>`` -> a JSON note of who paused and why). A workflow,
queue or execution rule holds the executions it names before their next new durable
call; a step rule holds any execution about to run a step whose name matches the glob
(``fnmatch``: ``charge-*``, ``send-?``), before that step runs. Workers keep a copy they
refresh every ``poll_interval``; an execution a rule covers stops there, records
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

import msgspec
import structlog

from zart_es.core import (
    PAUSED,
    UNREADABLE,
    ConfigError,
    ExecutionEnded,
    ExecutionNotFound,
    ExecutionResumed,
    VersionConflict,
    check_execution_id,
    check_queue_name,
    check_workflow_name,
)
from zart_es.ops._audit_log import audit
from zart_es.store import Store

log = structlog.get_logger("zart_es.pauses")

KINDS = ("workflow", "queue", "execution", "step")


class PauseRule(msgspec.Struct, frozen=True):
    """An active rule ``<kind>:<name>`` (kind workflow, queue, execution or step), and its
    note."""

    rule: str
    kind: str
    name: str
    reason: str = ""
    by: str = ""
    at_ms: int = 0


def rule_name(workflow: str | None = None, queue: str | None = None, *,
              execution_id: str | None = None, step: str | None = None) -> str:
    """``workflow:<name>``, ``queue:<name>``, ``execution:<id>`` or ``step:<glob>``;
    exactly one of the four must be given."""
    given = [v for v in (workflow, queue, execution_id, step) if v is not None]
    if len(given) != 1:
        raise ConfigError("name exactly one of a workflow, a queue, an execution id or a "
                          "step glob to pause or resume")
    if workflow is not None:
        return f"workflow:{check_workflow_name(workflow)}"
    if queue is not None:
        return f"queue:{check_queue_name(queue)}"
    if execution_id is not None:
        return f"execution:{check_execution_id(execution_id)}"
    return f"step:{check_workflow_name(step, what='step glob')}"


async def add_rule(store: Store, rule: str, *, reason: str = "", by: str = "") -> bool:
    """Activate ``rule``; False if it was active already (its note is kept)."""
    note = json.dumps({"reason": reason, "by": by, "at_ms": int(time.time() * 1000)})
    added = await store.tables.pause_rules.put_new(rule, note)
    if added:
        await audit(store, "pause", rule=rule, reason=reason, by=by)
    return added


async def list_rules(store: Store) -> list[PauseRule]:
    """The active rules, sorted."""
    raw = await store.tables.pause_rules.all()
    out = []
    for field, note in sorted(raw.items()):
        rule = field.decode(errors="replace")
        kind, _, name = rule.partition(":")
        try:
            info = json.loads(note)
            at_ms = int(info.get("at_ms", 0))
        except UNREADABLE:  # a note zart-es did not write: the rule holds all the same
            info, at_ms = {"reason": note.decode(errors="replace")}, 0
        out.append(PauseRule(rule, kind, name, str(info.get("reason", "")),
                             str(info.get("by", "")), at_ms))
    return out


async def remove_rule(
    store: Store, rule: str, *, by: str = "", active: set[str] | None = None
) -> int:
    """Deactivate ``rule`` and resume what it held; returns how many executions resumed."""
    if await store.tables.pause_rules.delete(rule):
        await audit(store, "resume", rule=rule, by=by)
    return await resume_released(store, active)


async def resume_released(store: Store, active: set[str] | None = None) -> int:
    """Resume every paused execution whose rule is no longer active (``active``: the rules
    in force; read from Redis when None). Safe to run anywhere, any number of times."""
    redis, keys = store.redis, store.keys
    pipe = redis.pipeline(transaction=False)
    for p in range(keys.partitions):
        pipe.zrange(keys.paused(p), 0, -1)
    members: list[list[bytes]] = await pipe.execute()
    if active is None or any(m.decode(errors="replace").partition("\n")[2] not in active
                             for held in members for m in held):
        # read after the members: a worker puts a member in only after it saw its rule in
        # Redis, so a rule this misses was lifted. A copy from before (``active``) may not
        # know a new rule whose first hold is being recorded right now, whose member must
        # not be taken for a lifted rule's
        active = {f.decode(errors="replace") for f in await store.tables.pause_rules.fields()}
    resumed = 0
    for p, held in enumerate(members):
        for member in held:
            try:
                execution_id, _, rule = member.decode().partition("\n")
                check_execution_id(execution_id)
            except UNREADABLE:  # no member zart-es wrote: it holds nothing
                await redis.zrem(keys.paused(p), member)
                continue
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
            version = int(meta[b"v"])
        except UNREADABLE:  # a meta hash zart-es did not write: nothing to resume
            return False
        try:
            await store.append(execution_id, version, ExecutionResumed(rule=rule))
        except VersionConflict:
            continue  # something else was appended meanwhile: look again
        except (ExecutionEnded, ExecutionNotFound):
            return False
        log.debug("execution resumed", execution_id=execution_id, rule=rule)
        return True
