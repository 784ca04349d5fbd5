"""Upgrades while executions run: ctx.patched keeps old executions on the old path and
takes new ones down the new one; the replay check is the gate before a deploy."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT, count_effects, spawn_worker, stop_worker, wait_for, zart
from zart_es import Client, Context, InvalidStepName, Registry, durable
from zart_es.core import PatchMarked, StepCompleted
from zart_es.testing import WorkflowHarness, check_replay, replay


def _v1(registry: Registry) -> None:
    @durable("billing", registry=registry)
    async def billing(ctx: Context) -> str:
        for i in range(3):
            await ctx.step(f"charge-{i}", lambda: "charged")
            await ctx.sleep("1m", name=f"wait-{i}")
        return "v1"


def _v2(registry: Registry, *, patched: bool = True) -> None:
    @durable("billing", registry=registry)
    async def billing(ctx: Context) -> str:
        audit = await ctx.patched("audit-step") if patched else True
        for i in range(3):
            await ctx.step(f"charge-{i}", lambda: "charged")
            if audit:
                await ctx.step(f"audit-{i}", lambda: "audited")
            await ctx.sleep("1m", name=f"wait-{i}")
        return "v2" if audit else "v2, old path"


def _v3(registry: Registry) -> None:
    @durable("billing", registry=registry)
    async def billing(ctx: Context) -> str:
        ctx.deprecate_patch("audit-step")
        for i in range(3):
            await ctx.step(f"charge-{i}", lambda: "charged")
            await ctx.step(f"audit-{i}", lambda: "audited")
            await ctx.sleep("1m", name=f"wait-{i}")
        return "v3"


def _registry(build: Any, **options: Any) -> Registry:
    registry = Registry()
    build(registry, **options)
    return registry


async def _finish(harness: WorkflowHarness, eid: str) -> str:
    while await harness.run(eid) == "sleeping":
        harness.advance(60_000)
    return str(harness.result(eid))


def _steps(harness: WorkflowHarness, eid: str) -> list[str]:
    return [e.step for e in harness.journal(eid).events if isinstance(e, StepCompleted)]


@pytest.mark.pure
async def test_an_execution_started_by_old_code_finishes_on_the_old_path() -> None:
    harness = WorkflowHarness(_registry(_v1))
    old = harness.start("billing")
    assert await harness.run(old) == "sleeping"  # mid-loop, on a durable sleep
    harness.registry = _registry(_v2)  # the deploy
    harness.advance(60_000)
    assert await _finish(harness, old) == "v2, old path"
    assert _steps(harness, old) == ["charge-0", "charge-1", "charge-2"]
    assert not [e for e in harness.journal(old).events if isinstance(e, PatchMarked)]


@pytest.mark.pure
async def test_a_new_execution_takes_the_new_path_and_replays_it() -> None:
    harness = WorkflowHarness(_registry(_v2))
    new = harness.start("billing")
    assert await _finish(harness, new) == "v2"
    assert _steps(harness, new) == ["charge-0", "audit-0", "charge-1", "audit-1",
                                    "charge-2", "audit-2"]
    marks = [e.patch for e in harness.journal(new).events if isinstance(e, PatchMarked)]
    assert marks == ["audit-step"]  # recorded once, however often the code asks


@pytest.mark.pure
async def test_without_the_patch_the_same_deploy_breaks_running_executions() -> None:
    harness = WorkflowHarness(_registry(_v1))
    old = harness.start("billing")
    await harness.run(old)
    history = list(harness.journal(old).events)
    assert replay is check_replay  # its first name
    verdict = await check_replay(history, _registry(_v2, patched=False))
    assert not verdict.ok
    assert (verdict.position, verdict.expected, verdict.got) == (1, "sleep:wait-0", "audit-0")
    assert "non-determinism at durable call #1" in verdict.detail
    assert (await replay(history, _registry(_v2))).ok  # the patched code replays it
    harness.registry = _registry(_v2, patched=False)
    harness.advance(60_000)
    assert await harness.run(old) == "failed"  # what the gate prevents


@pytest.mark.pure
async def test_a_deprecated_patch_replays_logs_that_recorded_the_marker() -> None:
    harness = WorkflowHarness(_registry(_v2))
    new = harness.start("billing")
    await harness.run(new)
    history = list(harness.journal(new).events)
    assert (await replay(history, _registry(_v3))).ok
    harness.registry = _registry(_v3)
    assert await _finish(harness, new) == "v3"
    fresh = harness.start("billing")
    assert await _finish(harness, fresh) == "v3"
    assert not [e for e in harness.journal(fresh).events if isinstance(e, PatchMarked)]


@pytest.mark.pure
async def test_the_replay_check_runs_no_step_and_writes_nothing() -> None:
    registry = Registry()
    calls: list[str] = []

    @durable("counted", registry=registry)
    async def counted(ctx: Context) -> str:
        await ctx.step("a", lambda: calls.append("a"))
        await ctx.step("b", lambda: calls.append("b"))
        return "done"

    harness = WorkflowHarness(registry)
    eid = harness.start("counted")
    await harness.run(eid)
    calls.clear()
    complete = list(harness.journal(eid).events)
    verdict = await replay(complete, registry)
    assert (verdict.ok, verdict.detail, calls) == (True, "replays to its end", [])
    partial = complete[:2]  # started, then step a: b is new work, not run
    verdict = await replay(partial, registry)
    assert (verdict.ok, verdict.detail, calls) == (
        True, "replays up to its last recorded call", [])


@pytest.mark.pure
async def test_a_patch_id_follows_the_step_name_rules() -> None:
    registry = Registry()

    @durable("bad-patch", registry=registry)
    async def bad_patch(ctx: Context) -> bool:
        return await ctx.patched("")

    harness = WorkflowHarness(registry)
    harness.start("bad-patch")
    assert await harness.run() == "failed"
    with pytest.raises(Exception, match="must be a non-empty string"):
        harness.result()
    assert InvalidStepName.__name__ in harness.journal().state.error.error_type  # type: ignore[union-attr]


@pytest.mark.processes
@pytest.mark.pure
async def test_a_rolling_upgrade_with_old_and_new_workers_side_by_side(
    redis_url: str, tmp_path: Path, effects: Path
) -> None:
    """Old workers run an execution into the middle of its loop, where it sleeps; the
    replay gate passes the patched code and refuses the careless one; new workers join,
    the old ones leave, the running execution finishes on the old path and a new one
    takes the new path."""
    old = spawn_worker(redis_url, "tests.apps.upgrade_v1", log=tmp_path / "old.log")
    new: list[subprocess.Popen[bytes]] = []
    try:
        async with Client(redis_url) as client:
            running = await client.start("upgradable", execution_id="upgrade-1")
            await wait_for(lambda: _charged(effects, running), timeout=20)  # now asleep
            new = [spawn_worker(redis_url, "tests.apps.upgrade_v2", log=tmp_path / f"new{i}.log")
                   for i in range(2)]
            assert stop_worker(old) == 0  # the old pod leaves (SIGTERM, drained)
            gate = zart(redis_url, "replay", "--app", "tests.apps.upgrade_v2", "--id", running,
                        "--json")
            assert gate.returncode == 0, gate.stderr
            assert json.loads(gate.stdout)[0]["ok"] is True
            careless = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "zart_es", "replay", "--app", "tests.apps.upgrade_v2",
                 "--id", running, "--redis-url", redis_url],
                cwd=ROOT, capture_output=True, text=True, timeout=30, check=False,
                env={**os.environ, "UPGRADE_UNPATCHED": "1"})
            assert careless.returncode == 1, careless.stderr
            assert "non-determinism at durable call #1" in careless.stdout
            # the same gate from an exported history, without Redis (a CI job's shape)
            exported = zart(redis_url, "history", running, "--format", "export")
            assert exported.returncode == 0, exported.stderr
            recorded = tmp_path / "history.jsonl"
            recorded.write_text(exported.stdout)
            for unpatched, code in (("", 0), ("1", 1)):
                offline = await asyncio.to_thread(
                    subprocess.run,
                    [sys.executable, "-m", "zart_es", "replay", "--app", "tests.apps.upgrade_v2",
                     "--file", str(recorded), "--redis-url", "redis://127.0.0.1:1"],
                    cwd=ROOT, capture_output=True, text=True, timeout=30, check=False,
                    env={**os.environ, "UPGRADE_UNPATCHED": unpatched})
                assert offline.returncode == code, offline.stdout + offline.stderr
                assert running in offline.stdout
            # a quoted pattern (as a CI job's YAML passes it), and a page that is no history
            (tmp_path / "page.jsonl").write_text(exported.stdout.split("\n", 1)[1])
            for pattern, code, said in ((str(tmp_path / "hist*.jsonl"), 0, running),
                                        (str(tmp_path / "page.jsonl"), 1, "ExecutionStarted")):
                gate = await asyncio.to_thread(
                    subprocess.run,
                    [sys.executable, "-m", "zart_es", "replay", "--app", "tests.apps.upgrade_v2",
                     "--file", pattern], cwd=ROOT, capture_output=True, text=True, timeout=30,
                    check=False)
                assert gate.returncode == code, gate.stdout + gate.stderr
                assert said in gate.stdout + gate.stderr
            assert await client.result(running, timeout=30) == "v2, old path"
            fresh = await client.start("upgradable", execution_id="upgrade-2")
            assert await client.result(fresh, timeout=30) == "v2"
        charged, audited = count_effects(effects, "charge"), count_effects(effects, "audit")
        assert {k for k in charged if k.startswith("upgrade-1/")} == {
            "upgrade-1/0", "upgrade-1/1", "upgrade-1/2"}
        assert not [k for k in audited if k.startswith("upgrade-1/")]
        assert sorted(k for k in audited if k.startswith("upgrade-2/")) == [
            "upgrade-2/0", "upgrade-2/1", "upgrade-2/2"]
    finally:
        for proc in (old, *new):
            if proc.poll() is None:
                stop_worker(proc)


async def _charged(effects: Path, execution_id: str) -> bool:
    return f"{execution_id}/0" in count_effects(effects, "charge")
