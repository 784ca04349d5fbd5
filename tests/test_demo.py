"""The README's first command: ``zart-es demo`` runs to its end and every check holds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import ROOT

pytestmark = pytest.mark.processes


def test_demo_runs_and_every_check_holds(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ZART_REDIS_URL"}  # embedded Redis
    done = subprocess.run(
        [sys.executable, "-m", "zart_es", "demo", "--data-dir", str(tmp_path / "data"),
         "--items", "12"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = done.stdout
    assert "demo finished: every check held" in out
    assert "at most 2 in flight at once" in out
    assert "retry_step('charge') after the outage" in out
    assert "schedule every 1s: started 2 executions" in out
    assert "hash chain intact" in out  # part 4: archived, read back, verified
