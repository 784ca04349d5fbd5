"""A worker's cached copy of the pause rules (the rules themselves: :mod:`zart_es.ops`)."""

from __future__ import annotations

import asyncio
import fnmatch
import time

import structlog

from zart_es.engine._aio import reraise_if_cancelling
from zart_es.ops import resume_released
from zart_es.store import (
    Deployment,
    HasDeployment,
    Keys,
    RedisClient,
    RedisError,
    Store,
    deployment_of,
)

log = structlog.get_logger("zart_es.worker")

PAUSE_SWEEP_EVERY = 10
"""Refreshes of the pause rules between two sweeps for executions whose rule is gone."""

STEP = "step:"
"""The prefix of step-glob rules."""


class PauseRules:
    """A worker's copy of the active rules, refreshed by :meth:`refresh`."""

    def __init__(self, deployment: Deployment | HasDeployment) -> None:
        handle = deployment_of(deployment)
        self._redis: RedisClient = handle.redis
        self._keys: Keys = handle.keys
        self._rules = handle.store.tables.pause_rules
        self.active: frozenset[str] = frozenset()
        self._step_globs: tuple[str, ...] = ()

    async def refresh(self) -> frozenset[str]:
        """Read the rules again (one HKEYS); returns them."""
        fields = await self._rules.fields()
        # a field that is not UTF-8 names no workflow or queue (nothing zart-es wrote)
        self.active = frozenset(f.decode(errors="replace") for f in fields)
        self._step_globs = tuple(sorted(rule.removeprefix(STEP) for rule in self.active
                                        if rule.startswith(STEP)))
        return self.active

    def covering(self, workflow: str, queue: str | None, execution_id: str = "",
                 step: str | None = None) -> str | None:
        """The rule (by the cached copy) that holds this execution of ``workflow`` (in
        ``queue``) before its next durable call (``step``: the step it is about to
        run), if any."""
        active = self.active
        if not active:
            return None
        for rule in (f"workflow:{workflow}", f"execution:{execution_id}",
                     None if queue is None else f"queue:{queue}"):
            if rule in active:
                return rule
        if step is not None:
            for glob in self._step_globs:
                if fnmatch.fnmatchcase(step, glob):
                    return STEP + glob
        return None

    async def confirm(self, rule: str) -> bool:
        """Whether ``rule`` is active in Redis right now (the cache may be stale)."""
        return await self._rules.has(rule)

    async def hold(self, execution_id: str, rule: str) -> None:
        """Put the execution in its partition's paused set (before ``ExecutionPaused`` is
        recorded: a resume that runs in between finds it and resumes it)."""
        p = self._keys.partition_of(execution_id)
        await self._redis.zadd(self._keys.paused(p),
                               {f"{execution_id}\n{rule}": int(time.time() * 1000)})


async def watch_pauses(rules: PauseRules, store: Store, interval: float) -> None:
    """Refresh the cached pause rules every ``interval`` seconds, forever; every
    PAUSE_SWEEP_EVERY refreshes, resume the executions whose rule is gone (a resume that
    stopped half-way, or a pause recorded from a stale cache)."""
    rounds = 0
    while True:
        await asyncio.sleep(interval)
        rounds += 1
        try:
            active = await rules.refresh()
            if rounds % PAUSE_SWEEP_EVERY == 0:
                await resume_released(store, set(active))
        except (RedisError, OSError) as exc:
            reraise_if_cancelling(exc)
            log.warning("refreshing pause rules failed", error=str(exc))
