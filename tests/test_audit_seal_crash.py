"""Sealing as it runs in production: a worker's archiver seals on its own, and a sealer
killed with SIGKILL mid-seal leaves a ledger that verifies and that the next seal
continues (issue: audit that holds against a Redis writer)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from zart_es.audit import verify
from zart_es.core import ExecutionStarted
from zart_es.store import Deployment

from .helpers import ROOT, spawn_worker, stop_worker, wait_for, zart

pytestmark = pytest.mark.processes

KEY = "k1:" + "3c" * 32


async def test_a_worker_seals_periodically(redis_url: str, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    archive = tmp_path / "archive"
    monkeypatch.setenv("ZART_AUDIT_KEY", KEY)
    env = {"ZART_AUDIT_KEY": KEY, "ZART_ARCHIVE_URL": str(archive),
           "ZART_SEAL_INTERVAL": "1s"}
    worker = spawn_worker(redis_url, "workers.examples", env=env)
    try:
        async with Deployment(redis_url) as deployment:
            await deployment.store.create(ExecutionStarted(
                execution_id="sealed-1", workflow="no-such-workflow", input=b"\xc0"),
                "sealed-1", "no-such-workflow")
            ledger = archive / "ledger"

            async def sealed(count: int) -> bool:
                return ledger.is_dir() and len(list(ledger.iterdir())) >= count

            await wait_for(lambda: sealed(1), timeout=30)
            await deployment.store.create(ExecutionStarted(  # a change: sealed next time
                execution_id="sealed-2", workflow="no-such-workflow", input=b"\xc0"),
                "sealed-2", "no-such-workflow")
            await wait_for(lambda: sealed(2), timeout=30)
            report = await verify(deployment, str(archive))
    finally:
        stop_worker(worker)
    assert report.findings == []
    assert report.checkpoints >= 2


async def test_a_sealer_killed_mid_seal_leaves_a_ledger_that_verifies(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = str(tmp_path / "archive")
    monkeypatch.setenv("ZART_AUDIT_KEY", KEY)
    monkeypatch.setenv("ZART_ARCHIVE_URL", archive)
    async with Deployment(redis_url) as deployment:
        store = deployment.store
        for first in range(0, 20_000, 1000):
            await asyncio.gather(*(store.create(ExecutionStarted(
                execution_id=f"x{i}", workflow="w", input=b"\xc0"), f"x{i}", "w")
                for i in range(first, first + 1000)))
        assert zart(redis_url, "audit", "seal").returncode == 0  # checkpoint 0
        for i in range(0, 20_000, 2):  # half of them move on
            await store.append(f"x{i}", 1, ExecutionStarted(
                execution_id=f"x{i}", workflow="w", input=b"\xc0"))
        killed = 0
        for delay in (0.3, 0.6, 0.9, 1.2):  # wherever the seal is then: reading or writing
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "zart_es", "audit", "seal", "--redis-url", redis_url,
                cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            await asyncio.sleep(delay)
            if proc.returncode is None:
                proc.kill()  # SIGKILL
                killed += 1
            await proc.wait()
            report = await verify(deployment, archive)
            assert report.findings == [], [f.line() for f in report.findings]
        assert killed >= 1
        after = zart(redis_url, "--json", "audit", "seal")
        assert after.returncode == 0, after.stderr
        report = await verify(deployment, archive)
    assert report.findings == []
    ledger = sorted((tmp_path / "archive" / "ledger").iterdir())
    assert [p.name for p in ledger] == [f"{n:012d}.json" for n in range(len(ledger))]
    assert len(ledger) >= 2
