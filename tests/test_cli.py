"""The ``zart-es`` command in real subprocesses."""

from __future__ import annotations

import json
import os
import pty
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

import zart_es

from .helpers import ROOT, spawn_worker, stop_worker, zart

pytestmark = pytest.mark.processes


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
    assert json.loads(status.stdout)["status"] == "completed"
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
    for number in ("NaN", "Infinity", "1e400"):
        odd = zart(redis_url, "start", "w", "--input", number)
        assert odd.returncode == 1
        assert odd.stderr.startswith("zart-es: error: --input is not valid JSON")
    unknown = zart(redis_url, "schedule", "remove", "no-such")
    assert (unknown.returncode, unknown.stderr.strip()) == (1, "zart-es: error: no schedule "
                                                               "'no-such'")
    bad_app = zart(redis_url, "worker", "--app", "no_such_module_here")
    assert bad_app.returncode == 1
    assert "cannot import --app 'no_such_module_here'" in bad_app.stderr
    assert "Traceback" not in bad_app.stderr
    down = zart("redis://127.0.0.1:1/0", "status", "x")
    assert down.returncode == 1
    assert down.stderr.startswith("zart-es: error: cannot reach Redis at redis://127.0.0.1:1/0")


def test_more_errors_are_one_line(redis_url: str) -> None:
    for timeout in ("inf", "nan", "-3"):
        odd = zart(redis_url, "result", "x", "--wait", f"--timeout={timeout}")
        assert odd.returncode == 1
        assert odd.stderr.startswith("zart-es: error: timeout must be a finite number"), odd
    deep = zart(redis_url, "start", "w", "--input", "[" * 3000 + "]" * 3000)
    assert (deep.returncode, deep.stderr.strip()) == (1, "zart-es: error: --input is nested "
                                                         "too deeply")
    zero = zart(redis_url, "stats", "--partitions", "0")
    assert zero.returncode == 1
    assert "partitions must be 1..4096, got 0" in zero.stderr
    cluster = zart("redis+cluster://127.0.0.1:1/0", "stats")
    assert cluster.returncode == 1
    assert cluster.stderr.startswith("zart-es: error: cannot reach Redis at "
                                     "redis+cluster://127.0.0.1:1/0")
    assert "Traceback" not in cluster.stderr


def test_connection_options_at_every_level(redis_url: str) -> None:
    """`schedule --redis-url U list` and `schedule list --redis-url U` both use U."""
    env = {**os.environ, "ZART_REDIS_URL": "redis://127.0.0.1:1/0"}
    for argv in (["schedule", "--redis-url", redis_url, "list", "--json"],
                 ["--redis-url", redis_url, "schedule", "list", "--json"],
                 ["schedule", "list", "--redis-url", redis_url, "--json"]):
        done = subprocess.run([sys.executable, "-m", "zart_es", *argv], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=30, check=False)
        assert (done.returncode, done.stdout.strip()) == (0, "[]"), (argv, done.stderr)


def test_tables_show_user_text_as_it_is(redis_url: str) -> None:
    """Brackets in names and reasons are text, not rich markup (on a terminal)."""
    assert zart(redis_url, "pause", "--workflow", "x[/b]", "--reason", "PSP [/down]"
                ).returncode == 0
    try:
        leader, follower = pty.openpty()
        done = subprocess.run(
            [sys.executable, "-m", "zart_es", "pauses", "--redis-url", redis_url],
            cwd=ROOT, stdout=follower, stderr=subprocess.PIPE, timeout=30, check=False,
            env={**os.environ, "COLUMNS": "120"})
        os.close(follower)
        shown = os.read(leader, 65536).decode()
        os.close(leader)
        assert done.returncode == 0, done.stderr
        assert "workflow:x[/b]" in shown
        assert "PSP [/down]" in shown
    finally:
        zart(redis_url, "resume", "--workflow", "x[/b]")


def test_history_verify_accepts_intact_and_rejects_tampered_logs(
    redis_url: str, tmp_path: Path
) -> None:
    import redis as redis_sync

    from zart_es.store import Keys

    worker = spawn_worker(redis_url, "workers.examples", log=tmp_path / "w.log")
    try:
        zart(redis_url, "start", "transform-records", "--input", "2", "--id", "audit-1")
        zart(redis_url, "start", "transform-records", "--input", "2", "--id", "audit-2")
        for eid in ("audit-1", "audit-2"):
            assert zart(redis_url, "result", eid, "--wait", "--timeout", "20").returncode == 0
    finally:
        stop_worker(worker)
    ok = zart(redis_url, "history", "audit-1", "--verify")
    assert ok.returncode == 0, ok.stderr
    assert "verified: 6 events" in ok.stdout

    keys = Keys()
    with redis_sync.Redis.from_url(redis_url) as r:
        entries = r.xrange(keys.log("audit-1"))
        r.xdel(keys.log("audit-1"), entries[2][0])  # an event removed from the middle
        last_id, last = r.xrange(keys.log("audit-2"))[-1]
        r.xdel(keys.log("audit-2"), last_id)  # the result rewritten
        r.xadd(keys.log("audit-2"), {**last, b"e": last[b"e"].replace(b"\x02", b"\x03")})
    removed = zart(redis_url, "history", "audit-1", "--verify")
    assert removed.returncode == 1
    assert removed.stderr.strip() == (
        "zart-es: error: log of 'audit-1' is broken at seq 2 (entry #2): seq 2 missing "
        "(the entry after is seq 3)")
    forged = zart(redis_url, "history", "audit-2", "--verify")
    assert forged.returncode == 1
    assert "broken at seq 5 (entry #6): the newest entry does not match" in forged.stderr


def test_list_cancel_send_signal_and_its_first_name(redis_url: str, tmp_path: Path) -> None:
    worker = spawn_worker(redis_url, "workers.examples", log=tmp_path / "w.log")
    try:
        zart(redis_url, "start", "job-poller", "--input", '{"runs_for": 60, "every": 0.2}',
             "--id", "cli-poll")
        sent = zart(redis_url, "send-signal", "cli-poll", "nudge", "--payload", '{"a": 1}',
                    "--event-id", "n1")
        assert sent.stdout.strip() == "signal 'nudge' delivered to 'cli-poll'"
        again = zart(redis_url, "send-event", "cli-poll", "nudge", "--event-id", "n1")
        assert "already delivered" in again.stdout
        asked = zart(redis_url, "query", "cli-poll", "progress", "--timeout", "10")
        assert asked.returncode == 0, asked.stderr
        assert json.loads(asked.stdout)["checks"] >= 0
        unknown = zart(redis_url, "query", "cli-poll", "nope", "1", '"two"')
        assert unknown.returncode == 1
        assert unknown.stderr.strip() == (
            "zart-es: error: execution 'cli-poll' has no query 'nope' (registered: 'progress')")
        zart(redis_url, "start", "expense-approval", "--input", '{"amount": 3}', "--id", "cli-u")
        answered = zart(redis_url, "update", "cli-u", "approve", "--payload", '"ann"',
                        "--update-id", "u1")
        assert answered.returncode == 0, answered.stderr
        assert json.loads(answered.stdout) == {"missing": 0}
        late = zart(redis_url, "update", "cli-u", "reject")
        assert late.returncode == 1
        assert late.stderr.startswith("zart-es: error: execution 'cli-u' has already ended")
        bad = zart(redis_url, "query", "cli-poll", "progress", "{oops")
        assert bad.returncode == 1
        assert "argument 1" in bad.stderr
        assert zart(redis_url, "cancel", "cli-poll").stdout.strip() == (
            "cancel requested for 'cli-poll'")
        zart(redis_url, "result", "cli-poll", "--wait", "--timeout", "20")
        rows = json.loads(zart(redis_url, "list", "--status", "cancelled").stdout)
        assert [r["execution_id"] for r in rows] == ["cli-poll"]
        assert "nothing to cancel" in zart(redis_url, "cancel", "cli-poll").stdout
    finally:
        stop_worker(worker)


def test_operator_commands_repair_pause_and_schedule(redis_url: str, tmp_path: Path) -> None:
    worker = spawn_worker(redis_url, "workers.examples", log=tmp_path / "w.log")
    try:
        zart(redis_url, "start", "provision", "--id", "cli-r", "--input",
             '{"config": "cli-repair", "fail_times": 6, "delay": "10ms"}')
        failed = zart(redis_url, "result", "cli-r", "--wait", "--timeout", "20")
        assert failed.returncode == 1  # all 6 attempts failed
        retried = zart(redis_url, "retry-step", "cli-r", "--reason", "cloud is back")
        assert retried.stdout.strip() == "execution 'cli-r' reopened: step 'provision' runs again"
        done = zart(redis_url, "result", "cli-r", "--wait", "--timeout", "20")
        assert json.loads(done.stdout)["config"] == "cli-repair"
        refused = zart(redis_url, "retry-step", "cli-r")
        assert refused.returncode == 1
        assert refused.stderr.startswith("zart-es: error: cannot repair execution 'cli-r': it "
                                         "ended completed")
        assert "run 1" in zart(redis_url, "restart", "cli-r").stdout

        assert "paused" in zart(redis_url, "pause", "--workflow", "durable-loop").stdout
        rules = json.loads(zart(redis_url, "pauses", "--json").stdout)
        assert [r["rule"] for r in rules] == ["workflow:durable-loop"]
        assert "resumed" in zart(redis_url, "resume", "--workflow", "durable-loop").stdout

        added = zart(redis_url, "schedule", "add", "cli-every", "transform-records",
                     "--every", "1s", "--input", "2")
        assert added.returncode == 0, added.stderr
        assert added.stdout.startswith("schedule 'cli-every' added; next occurrence ")
        again = zart(redis_url, "schedule", "add", "cli-every", "transform-records",
                     "--every", "1s")
        assert again.returncode == 1
        assert "exists already" in again.stderr
        bad = zart(redis_url, "schedule", "add", "cli-bad", "x", "--cron", "61 * * * *")
        assert bad.returncode == 1
        assert bad.stderr.startswith("zart-es: error: ")
        deadline = time.monotonic() + 15
        while True:  # a worker's scheduler starts the occurrences
            rows = json.loads(zart(redis_url, "schedule", "list", "--json").stdout)
            if rows[0]["state"] and rows[0]["state"]["started"] >= 1:
                break
            assert time.monotonic() < deadline
            time.sleep(0.3)
        assert "paused" in zart(redis_url, "schedule", "pause", "cli-every").stdout
        shown = json.loads(zart(redis_url, "schedule", "show", "cli-every").stdout)
        assert shown["paused"] is True
        counted = zart(redis_url, "schedule", "backfill", "cli-every", "--from",
                       "2026-11-01T00:00:00", "--to", "2026-11-01T00:10:00", "--dry-run")
        assert counted.stdout.strip() == (
            "600 occurrence(s) of 'cli-every' in the range; nothing started"), counted.stderr
        filled = zart(redis_url, "schedule", "backfill", "cli-every", "--from",
                      "2026-11-01T00:00:00", "--to", "2026-11-01T00:00:03", "--overlap",
                      "always")
        assert filled.stdout.strip() == ("backfill of 'cli-every' (always): 3 started, "
                                         "0 existed, 0 skipped, 0 cancelled, of 3")
        backwards = zart(redis_url, "schedule", "backfill", "cli-every", "--from", "1h",
                         "--to", "2h")
        assert backwards.returncode == 1
        assert "must be after its start" in backwards.stderr
        assert "removed" in zart(redis_url, "schedule", "remove", "cli-every").stdout
        stats = json.loads(zart(redis_url, "stats", "--json").stdout)
        assert stats["by_workflow"]["provision"]["completed"] == 1
    finally:
        stop_worker(worker)


def test_version_is_the_package_version(redis_url: str) -> None:
    shown = zart(redis_url, "--version")
    assert (shown.returncode, shown.stdout.strip()) == (0, f"zart-es {zart_es.__version__}")


def test_list_and_history_page_with_cursors(redis_url: str) -> None:
    ids = [f"cli-page-{i}" for i in range(5)]
    for eid in ids:  # no worker: they stay pending
        assert zart(redis_url, "start", "cli-paged", "--id", eid).returncode == 0
    first = zart(redis_url, "list", "--name", "cli-paged", "--limit", "2", "--json")
    assert len(json.loads(first.stdout)) == 2
    hint = first.stderr.strip()
    assert hint.startswith("more: zart-es "), first.stderr
    assert "--cursor" in hint
    listed = json.loads(first.stdout)
    while hint:  # run the printed command, as a user would
        page = subprocess.run(
            [sys.executable, "-m", "zart_es", *shlex.split(hint.removeprefix("more: zart-es "))],
            cwd=ROOT, capture_output=True, text=True, timeout=30, check=False)
        assert page.returncode == 0, page.stderr
        listed += json.loads(page.stdout)
        hint = page.stderr.strip()
    assert sorted(r["execution_id"] for r in listed) == sorted(ids)
    assert len({r["execution_id"] for r in listed}) == len(ids)
    everything = json.loads(zart(redis_url, "list", "--name", "cli-paged", "--limit", "2",
                                 "--all", "--json").stdout)
    assert [r["execution_id"] for r in everything] == [r["execution_id"] for r in listed]
    recent = json.loads(zart(redis_url, "list", "--name", "cli-paged", "--since", "10m",
                             "--json").stdout)
    assert len(recent) == len(ids)
    assert json.loads(zart(redis_url, "list", "--name", "cli-paged", "--until", "1970-01-02",
                           "--json").stdout) == []
    bad = zart(redis_url, "list", "--since", "yesterday-ish")
    assert bad.returncode == 1
    assert "--since must be ISO 8601" in bad.stderr
    zart(redis_url, "cancel", ids[0])
    whole = zart(redis_url, "history", ids[0], "--format", "jsonl").stdout.splitlines()
    assert len(whole) >= 2
    one = zart(redis_url, "history", ids[0], "--format", "jsonl", "--limit", "1")
    assert one.stdout.splitlines() == whole[:1]
    cursor = one.stderr.strip().rpartition("--cursor ")[2]
    rest = zart(redis_url, "history", ids[0], "--format", "jsonl", "--limit", "100",
                "--cursor", cursor)
    assert rest.stdout.splitlines() == whole[1:]
    assert rest.stderr == ""


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_know_the_subcommands(shell: str) -> None:
    script = subprocess.run([sys.executable, "-m", "zart_es", "completion", shell], cwd=ROOT,
                            capture_output=True, text=True, timeout=30, check=True).stdout
    for word in ("worker", "history", "list", "schedule", "--cursor", "completion"):
        assert word in script, (shell, word)


def test_bash_completion_completes_in_bash(tmp_path: Path) -> None:
    """The bash script, sourced in a real bash, completes subcommands, nested subcommands
    and options."""
    script = tmp_path / "zart-es.bash"
    script.write_text(subprocess.run(
        [sys.executable, "-m", "zart_es", "completion", "bash"], cwd=ROOT,
        capture_output=True, text=True, timeout=30, check=True).stdout)

    def complete(*words: str) -> list[str]:
        line = " ".join(words)
        probe = (f"source {shlex.quote(str(script))}; COMP_WORDS=({line}); "
                 f"COMP_CWORD={len(words) - 1}; COMP_LINE={shlex.quote(line)}; "
                 "COMP_POINT=${#COMP_LINE}; "
                 f"_shtab_zart_es zart-es {shlex.quote(words[-1])} {shlex.quote(words[-2])}; "
                 'printf "%s\\n" "${COMPREPLY[@]}"')
        done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True,
                              timeout=30, check=True)
        return done.stdout.split()

    assert complete("zart-es", "hist") == ["history"]
    assert complete("zart-es", "list", "--cur") == ["--cursor"]
    assert set(complete("zart-es", "schedule", "''")) >= {"add", "list", "pause", "resume"}
