"""Operations over many executions by filter (issue 21): the client, the CLI, the API job.

Each execution gets the one-execution operation, so its own event and operator-trail
entry with ``by``; what does not apply is skipped with the reason; a dry run counts.
"""

from __future__ import annotations

import collections
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from zart_es import BulkFilter, Client, ConfigError, Context, Registry, durable
from zart_es.core import CancelRequested, StepRetryRequested
from zart_es.ops import audit_entries
from zart_es.store._embedded import free_port

from .helpers import read_log, spawn_worker, stop_worker, wait_for, zart
from .test_api import _serve  # the API process, as that module starts it

pytestmark = pytest.mark.redis

flaky_runs: collections.Counter[str] = collections.Counter()


def _workflows(registry: Registry) -> None:
    @durable("nap", registry=registry)
    async def nap(ctx: Context) -> None:
        await ctx.sleep("1h")

    @durable("quick", registry=registry)
    async def quick(ctx: Context) -> str:
        return await ctx.step("only", lambda: "ok")

    @durable("flaky", registry=registry)
    async def flaky(ctx: Context) -> str:
        def attempt() -> str:
            flaky_runs[ctx.execution_id] += 1
            if flaky_runs[ctx.execution_id] == 1:
                raise RuntimeError("provider down")
            return "charged"
        return await ctx.step("charge", attempt)


async def _status(client: Client, eid: str) -> str:
    return (await client.status(eid)).status


async def _all(client: Client, ids: list[str], status: str) -> bool:
    return all([await _status(client, eid) == status for eid in ids])


async def test_bulk_cancel_by_filter_with_a_dry_run_first(
    env: tuple[Client, Registry], redis: Redis
) -> None:
    client, registry = env
    _workflows(registry)
    naps = [await client.start("nap", execution_id=f"nap-{i}") for i in range(6)]
    other = await client.start("nap", execution_id="other-1")
    done = await client.start("quick", execution_id="nap-done")
    await wait_for(lambda: _all(client, [*naps, other], "sleeping"))
    await client.result(done, timeout=5)

    where = BulkFilter(workflow="nap", status="sleeping", id_prefix="nap-")
    counted = await client.bulk("cancel", where, dry_run=True)
    assert (counted.matched, counted.done) == (6, 0)
    assert await _all(client, naps, "sleeping")  # a dry run does nothing

    seen: list[int] = []
    outcome = await client.bulk("cancel", where, reason="tenant closed", by="ops",
                                progress=lambda o: seen.append(o.done + o.skipped))
    assert (outcome.matched, outcome.done, outcome.skipped, outcome.failed) == (6, 6, 0, 0)
    assert sorted(seen) == list(range(1, 7))
    await wait_for(lambda: _all(client, naps, "cancelled"))
    assert await _status(client, other) == "sleeping"
    for eid in naps:
        cancels = [e for e in await read_log(redis, eid) if isinstance(e, CancelRequested)]
        assert [(c.by, c.reason) for c in cancels] == [("ops", "tenant closed")]
    trail = await audit_entries(client.redis, client.keys, limit=50)
    assert sorted(e.detail["execution_id"] for e in trail if e.what == "cancel") == sorted(naps)
    summary = next(e for e in trail if e.what == "bulk-cancel")
    assert (summary.detail["matched"], summary.detail["done"], summary.detail["by"]) == (
        "6", "6", "ops")

    # everything with the prefix, ended ones too: those are skipped, with the reason
    again = await client.bulk("cancel", BulkFilter(id_prefix="nap-"), by="ops")
    assert (again.matched, again.done, again.skipped) == (7, 0, 7)
    assert {p.error for p in again.problems} == {"it has ended: nothing to cancel"}


async def test_bulk_repairs_retry_step_restart_and_rerun(
    env: tuple[Client, Registry], redis: Redis
) -> None:
    client, registry = env
    _workflows(registry)
    failed = [await client.start("flaky", execution_id=f"pay-{i}") for i in range(3)]
    await wait_for(lambda: _all(client, failed, "failed"))
    before = datetime.now(UTC) + timedelta(seconds=1)
    fixed = await client.bulk("retry-step", BulkFilter(workflow="flaky", status="failed",
                                                       started_before=before), by="ops")
    assert (fixed.matched, fixed.done) == (3, 3)
    for eid in failed:
        assert await client.result(eid, timeout=10) == "charged"
        retries = [e for e in await read_log(redis, eid) if isinstance(e, StepRetryRequested)]
        assert [(r.step, r.by) for r in retries] == [("charge", "ops")]
    refused = await client.bulk("retry-step", BulkFilter(workflow="flaky"), by="ops")
    assert (refused.done, refused.skipped) == (0, 3)  # completed: nothing failed to retry

    restarted = await client.bulk("restart", BulkFilter(workflow="flaky"), by="ops")
    assert restarted.done == 3
    await wait_for(lambda: _all(client, failed, "completed"))
    rerun = await client.bulk("rerun", BulkFilter(workflow="flaky"), steps=["charge"])
    assert rerun.done == 3
    with pytest.raises(ConfigError, match="needs the steps"):
        await client.bulk("rerun", BulkFilter(workflow="flaky"))
    with pytest.raises(ConfigError, match="unknown bulk action 'explode'"):
        await client.bulk("explode", BulkFilter())
    with pytest.raises(ConfigError, match="unknown status 'asleep'"):
        await client.bulk("cancel", BulkFilter(status="asleep"))


@pytest.mark.processes
def test_bulk_from_the_cli_counts_confirms_and_acts(redis_url: str, tmp_path: Path) -> None:
    worker = spawn_worker(redis_url, "workers.examples", log=tmp_path / "w.log")
    try:
        for i in range(3):
            zart(redis_url, "start", "job-poller", "--input",
                 '{"runs_for": 60, "every": 5}', "--id", f"cli-b{i}")
        counted = zart(redis_url, "bulk", "cancel", "--workflow", "job-poller", "--dry-run")
        assert counted.stdout.strip() == "3 execution(s) match; nothing done", counted.stderr
        refused = zart(redis_url, "bulk", "cancel", "--workflow", "job-poller")
        assert refused.returncode == 1
        assert refused.stderr.strip().splitlines()[0] == (
            "zart-es: error: 3 execution(s) match; pass --yes to cancel them (or --dry-run "
            "to count only)")
        acted = zart(redis_url, "bulk", "cancel", "--workflow", "job-poller", "--yes",
                     "--json")
        assert acted.returncode == 0, acted.stderr
        outcome = json.loads(acted.stdout)
        assert (outcome["matched"], outcome["done"]) == (3, 3)
        bad = zart(redis_url, "bulk", "cancel", "--started-after", "yesterday-ish")
        assert bad.returncode == 1
        assert "--started-after must be ISO 8601" in bad.stderr
    finally:
        stop_worker(worker)


@pytest.mark.processes
def test_bulk_over_the_api_is_a_job_to_poll(redis_url: str, tmp_path: Path) -> None:
    port = free_port()
    api = _serve(redis_url, port)
    worker = spawn_worker(redis_url, "workers.examples", log=tmp_path / "w.log")
    base = f"http://127.0.0.1:{port}"
    try:
        for i in range(4):
            httpx.post(f"{base}/executions", json={
                "name": "job-poller", "id": f"api-b{i}", "input": {"runs_for": 60, "every": 5}})
        body = {"filter": {"workflow": "job-poller", "id_prefix": "api-b"}, "by": "ops"}
        dry = httpx.post(f"{base}/admin/bulk/cancel", json={**body, "dry_run": True})
        assert dry.status_code == 200, dry.text
        assert (dry.json()["state"], dry.json()["matched"]) == ("counted", 4)
        started = httpx.post(f"{base}/admin/bulk/cancel", json=body)
        assert started.status_code == 202, started.text
        job = started.json()["job"]
        deadline = time.monotonic() + 20
        while (polled := httpx.get(f"{base}/admin/bulk/{job}").json())["state"] == "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert (polled["state"], polled["done"], polled["by"]) == ("done", 4, "ops")
        missing = httpx.get(f"{base}/admin/bulk/nope")
        assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
        wrong = httpx.post(f"{base}/admin/bulk/explode", json=body)
        assert wrong.status_code in (404, 422)
        bad = httpx.post(f"{base}/admin/bulk/cancel", json={"filter": {"status": "asleep"}})
        assert (bad.status_code, bad.json()["code"]) == (422, "invalid_request")
    finally:
        stop_worker(worker)
        api.terminate()
        api.wait(timeout=10)
