"""The ``zart-es`` command in real subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .helpers import ROOT, spawn_worker, stop_worker


def zart(url: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zart_es", *args, "--redis-url", url],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
    )


def test_start_status_result_history(redis_url: str, tmp_path: Path) -> None:
    worker = spawn_worker(redis_url, "workers.examples", log=tmp_path / "w.log")
    try:
        started = zart(redis_url, "start", "transform-records", "--input", "3", "--id", "cli-1")
        assert started.returncode == 0, started.stderr
        assert started.stdout.strip() == "cli-1"
        result = zart(redis_url, "result", "cli-1", "--wait", "--timeout", "20")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == 3
    finally:
        stop_worker(worker)
    status = zart(redis_url, "status", "cli-1")
    assert json.loads(status.stdout)["state"] == "completed"
    lines = zart(redis_url, "history", "cli-1", "--format", "jsonl").stdout.splitlines()
    events = [json.loads(line) for line in lines]
    assert events[0]["type"] == "ExecutionStarted"
    assert events[-1] == {**events[-1], "type": "ExecutionCompleted", "result": 3}
    assert [e["seq"] for e in events] == list(range(len(events)))
    table = zart(redis_url, "history", "cli-1").stdout
    assert "StepCompleted" in table


def test_errors_are_one_line_without_traceback(redis_url: str) -> None:
    missing = zart(redis_url, "status", "nope")
    assert missing.returncode == 1
    assert missing.stderr.strip() == "zart-es: error: no execution 'nope'"
    bad_json = zart(redis_url, "start", "w", "--input", "{oops")
    assert bad_json.returncode == 1
    assert bad_json.stderr.startswith("zart-es: error: --input is not valid JSON")
    assert len(bad_json.stderr.strip().splitlines()) == 1
    bad_app = zart(redis_url, "worker", "--app", "no_such_module_here")
    assert bad_app.returncode == 1
    assert "cannot import --app 'no_such_module_here'" in bad_app.stderr
    assert "Traceback" not in bad_app.stderr
    down = zart("redis://127.0.0.1:1/0", "status", "x")
    assert down.returncode == 1
    assert down.stderr.startswith("zart-es: error: cannot reach Redis at redis://127.0.0.1:1/0")
