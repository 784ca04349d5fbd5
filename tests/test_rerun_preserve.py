"""Re-run from a step keeping later results (issue 22), as Zart's force_rerun: the kept
steps are not run again and read as potentially stale."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from zart_es import Client, Context, Registry, RepairRefused, durable
from zart_es.core import StepCompleted, StepsInvalidated

from .helpers import read_log

pytestmark = pytest.mark.redis


def _workflow(registry: Registry, ran: list[str]) -> None:
    @durable("pipeline", registry=registry)
    async def pipeline(ctx: Context) -> str:
        parts = []
        for step in ("extract", "transform", "enrich", "load"):
            def run(step: str = step) -> str:
                ran.append(step)
                return f"{step}#{ran.count(step)}"
            parts.append(await ctx.step(step, run))
        return " ".join(parts)


async def test_rerun_keeps_the_preserved_steps_and_marks_them_stale(
    env: tuple[Client, Registry], redis: Redis
) -> None:
    client, registry = env
    ran: list[str] = []
    _workflow(registry, ran)
    await client.start("pipeline", execution_id="p1")
    assert await client.result("p1", timeout=10) == "extract#1 transform#1 enrich#1 load#1"
    forgotten = await client.rerun("p1", ["transform"], preserve=["enrich"], by="ops")
    assert forgotten == ["transform", "load"]
    assert await client.result("p1", timeout=10) == "extract#1 transform#2 enrich#1 load#2"
    assert ran == ["extract", "transform", "enrich", "load", "transform", "load"]
    detail = await client.describe("p1")
    assert detail.stale_steps == ["enrich"]
    assert sorted(detail.steps_done) == ["enrich", "extract", "load", "transform"]
    log = await read_log(redis, "p1")
    rerun = [e for e in log if isinstance(e, StepsInvalidated)]
    assert [(r.preserved, r.by) for r in rerun] == [(["enrich"], "ops")]
    assert [e.step for e in log if isinstance(e, StepCompleted)].count("enrich") == 1

    # a rerun that forgets the stale step runs it again and clears the mark; what was
    # recorded after it (in the log's order: the first re-run's calls too) runs again
    assert await client.rerun("p1", ["enrich"]) == ["enrich", "transform", "load"]
    assert await client.result("p1", timeout=10) == "extract#1 transform#3 enrich#2 load#3"
    assert (await client.describe("p1")).stale_steps == []

    for bad in (["extract"], ["transform"], ["nope"]):  # before the point, the point, unknown
        with pytest.raises(RepairRefused, match="only a completed step recorded after"):
            await client.rerun("p1", ["transform"], preserve=bad)
