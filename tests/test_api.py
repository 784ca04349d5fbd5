"""The HTTP API over real HTTP: ``zart-es api`` and a worker as subprocesses, real Redis."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis as redis_sync

from zart_es.store._embedded import RedisServer, free_port

from .helpers import ROOT, spawn_worker, stop_worker

pytestmark = pytest.mark.processes

TOKEN = "s3cret-token"


def _serve(url: str, port: int, *extra: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "zart_es", "api", "--redis-url", url, "--port", str(port),
         "--max-input-bytes", "4096", *extra],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("API did not come up")


@pytest.fixture(scope="module")
def api(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of an API without auth, with a worker serving the examples, on the session's
    Redis emptied first (tests of other modules may have left schedules in it)."""
    with redis_sync.Redis.from_url(redis_server.url) as r:
        r.flushall()
    port = free_port()
    proc = _serve(redis_server.url, port)
    worker = spawn_worker(redis_server.url, "workers.examples",
                          log=tmp_path_factory.mktemp("api") / "worker.log")
    yield f"http://127.0.0.1:{port}"
    stop_worker(worker)
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def secured(redis_server: RedisServer) -> Iterator[str]:
    """Base URL of an API that requires a bearer token."""
    port = free_port()
    proc = _serve(redis_server.url, port, "--token", TOKEN)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


def _wait_done(api: str, eid: str) -> dict[str, object]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        body = httpx.get(f"{api}/executions/{eid}").json()
        if body["status"] in ("completed", "failed", "cancelled", "timed_out"):
            return dict(body)
        time.sleep(0.05)
    raise TimeoutError(eid)


def _problem(reply: httpx.Response, status: int, code: str) -> dict[str, object]:
    """Assert ``reply`` is an RFC 9457 problem with this status and stable code."""
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    body = dict(reply.json())
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"urn:zart-es:problem:{code}"
    assert isinstance(body["title"], str)
    assert isinstance(body["detail"], str)
    assert body["title"]
    assert body["detail"]
    assert body["instance"] == reply.request.url.path
    return body


def test_start_is_idempotent_and_runs(api: str) -> None:
    body = {"name": "transform-records", "input": 3, "id": "api-1"}
    first = httpx.post(f"{api}/executions", json=body)
    assert (first.status_code, first.json()) == (201, {"id": "api-1", "created": True})
    again = httpx.post(f"{api}/executions", json=body)
    assert (again.status_code, again.json()) == (200, {"id": "api-1", "created": False})
    detail = _wait_done(api, "api-1")
    assert detail["status"] == "completed"
    assert detail["result"] == 3
    assert detail["steps_done"] == ["load", "transform-k0", "transform-k1", "transform-k2",
                                    "write"]


def test_start_reuse_policies(api: str) -> None:
    body = {"name": "transform-records", "input": 2, "id": "api-reuse"}
    assert httpx.post(f"{api}/executions", json=body).status_code == 201
    _wait_done(api, "api-reuse")
    refused = _problem(httpx.post(f"{api}/executions", json={**body, "if_ended": "reject"}),
                       409, "execution_exists")
    assert "if_ended='reject'" in str(refused["detail"])
    reset = httpx.post(f"{api}/executions", json={**body, "input": 3, "if_ended": "reset"})
    assert (reset.status_code, reset.json()["created"]) == (201, True)
    assert _wait_done(api, "api-reuse")["result"] == 3  # the new run, with the new input


def test_start_on_another_task_queue_waits_for_its_workers(api: str) -> None:
    body = {"name": "transform-records", "input": 1, "id": "api-tq", "task_queue": "nightly"}
    assert httpx.post(f"{api}/executions", json=body).status_code == 201
    time.sleep(0.5)  # the examples' worker serves default and gpu, not nightly
    detail = httpx.get(f"{api}/executions/api-tq").json()
    assert (detail["status"], detail["task_queue"], detail["task_queue_workers"]) == (
        "pending", "nightly", 0)
    _problem(httpx.post(f"{api}/executions", json={**body, "id": "api-tq2",
                                                   "task_queue": "Night Shift"}),
             422, "invalid_request")
    load = httpx.get(f"{api}/task-queues/nightly").json()  # what KEDA's metrics-api reads
    assert load == {"task_queue": "nightly", "waiting": 1, "pending": 0, "backlog": 1,
                    "workers": 0}
    every = {q["task_queue"]: q for q in httpx.get(f"{api}/task-queues").json()}
    assert every["nightly"] == load
    assert every["default"]["workers"] == 1
    _problem(httpx.get(f"{api}/task-queues/Night%20Shift"), 422, "invalid_request")


def test_history_json_and_jsonl(api: str) -> None:
    httpx.post(f"{api}/executions", json={"name": "transform-records", "input": 1, "id": "api-h"})
    _wait_done(api, "api-h")
    page = httpx.get(f"{api}/executions/api-h/history").json()
    assert page["next"] is None
    events = page["items"]
    assert events[0]["type"] == "ExecutionStarted"
    assert events[-1]["type"] == "ExecutionCompleted"
    export = httpx.get(f"{api}/executions/api-h/history", params={"format": "jsonl"})
    assert export.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in export.text.splitlines()]
    assert lines == events


def test_list_filters(api: str) -> None:
    httpx.post(f"{api}/executions", json={"name": "transform-records", "input": 1, "id": "api-l"})
    _wait_done(api, "api-l")
    rows = httpx.get(f"{api}/executions", params={"status": "completed",
                                                   "name": "transform-records"}).json()["items"]
    assert "api-l" in [r["execution_id"] for r in rows]
    assert all(r["status"] == "completed" for r in rows)
    _problem(httpx.get(f"{api}/executions", params={"status": "nope"}), 422,
             "invalid_request")


def test_list_pages_with_cursors_and_time_ranges(api: str) -> None:
    ids = [f"api-page-{i}" for i in range(7)]
    for eid in ids:  # a workflow no worker serves: they stay pending, listed
        httpx.post(f"{api}/executions", json={"name": "paged", "id": eid})
        time.sleep(0.003)  # distinct creation times for most of them (ties are ordered by id)
    seen: list[dict[str, object]] = []
    cursor = None
    for _ in range(3):
        params = {"name": "paged", "limit": 3, **({"cursor": cursor} if cursor else {})}
        page = httpx.get(f"{api}/executions", params=params).json()
        assert len(page["items"]) == (3 if len(seen) < 6 else 1)
        seen += page["items"]
        cursor = page["next"]
        httpx.post(f"{api}/executions", json={"name": "paged", "id": f"late-{len(seen)}"})
    assert cursor is None
    # newest first, none twice, none missed, though newer ones were started meanwhile
    assert [r["execution_id"] for r in seen] == sorted(
        ids, key=lambda i: (next(r["created_ms"] for r in seen if r["execution_id"] == i),
                            i), reverse=True)
    created = sorted({int(str(r["created_ms"])) for r in seen})
    low, high = created[1], created[-1]
    window = httpx.get(f"{api}/executions", params={
        "name": "paged", "started_after": _iso(low), "started_before": _iso(high)}).json()
    assert {r["execution_id"] for r in window["items"]} == {
        str(r["execution_id"]) for r in seen if low <= int(str(r["created_ms"])) < high}
    _problem(httpx.get(f"{api}/executions", params={"cursor": "bm9wZQ"}), 422,
             "invalid_request")
    naive = httpx.get(f"{api}/executions", params={"started_after": "2026-01-01T00:00:00"})
    _problem(naive, 422, "invalid_request")


def _iso(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def test_history_pages(api: str) -> None:
    httpx.post(f"{api}/executions", json={"name": "transform-records", "input": 3,
                                          "id": "api-hp"})
    _wait_done(api, "api-hp")
    export = httpx.get(f"{api}/executions/api-hp/history", params={"format": "jsonl"})
    everything = [json.loads(line) for line in export.text.splitlines()]
    paged: list[object] = []
    params: dict[str, object] = {"limit": 3}
    while True:
        page = httpx.get(f"{api}/executions/api-hp/history", params=params).json()
        assert len(page["items"]) <= 3
        paged += page["items"]
        if page["next"] is None:
            break
        params["cursor"] = page["next"]
    assert paged == everything
    assert len(everything) > 6  # three pages
    first = httpx.get(f"{api}/executions/api-hp/history", params={"limit": 1}).json()
    other = httpx.get(f"{api}/executions/api-h/history",
                      params={"cursor": first["next"]})  # a cursor of another execution
    _problem(other, 422, "invalid_request")


def test_events_and_cancel(api: str) -> None:
    httpx.post(f"{api}/executions", json={"name": "job-poller", "id": "api-c",
                                          "input": {"runs_for": 60, "every": 0.2}})
    time.sleep(0.5)
    asked = httpx.post(f"{api}/executions/api-c/queries/progress")
    assert asked.status_code == 200, asked.text
    assert asked.json()["result"]["checks"] >= 1
    unknown = _problem(httpx.post(f"{api}/executions/api-c/queries/nope", json={"args": [1]}),
                       404, "unknown_query")
    assert "registered: 'progress'" in str(unknown["detail"])
    _problem(httpx.post(f"{api}/executions/nobody/queries/progress"), 404, "not_found")
    _problem(httpx.post(f"{api}/executions/api-c/queries/progress", json={"timeout": 0}),
             422, "invalid_request")
    delivered = httpx.post(f"{api}/executions/api-c/signals/ping", json={"x": 1})
    assert (delivered.status_code, delivered.json()["delivered"]) == (202, True)
    cancelled = httpx.post(f"{api}/executions/api-c/cancel")
    assert cancelled.status_code == 202
    assert _wait_done(api, "api-c")["status"] == "cancelled"
    again = _problem(httpx.post(f"{api}/executions/api-c/cancel"), 409, "execution_ended")
    assert again["detail"] == "execution 'api-c' has already ended"
    late = httpx.post(f"{api}/executions/api-c/events/ping", json=1)
    assert (late.status_code, late.json()["code"]) == (409, "execution_ended")


def test_updates_over_http(api: str) -> None:
    httpx.post(f"{api}/executions", json={"name": "expense-approval", "id": "api-u",
                                          "input": {"amount": 9, "approvers": 2}})
    first = httpx.post(f"{api}/executions/api-u/updates/approve?by=ops",
                       json={"payload": "ann", "update_id": "a-1"}, timeout=40)
    assert first.status_code == 200, first.text
    assert first.json() == {"id": "api-u", "update": "approve", "result": {"missing": 1}}
    again = httpx.post(f"{api}/executions/api-u/updates/approve",
                       json={"payload": "ann", "update_id": "a-1"}, timeout=40)
    assert again.json()["result"] == {"missing": 1}  # the same answer, nothing new
    _problem(httpx.post(f"{api}/executions/api-u/updates/approve", json={"payload": "ann"},
                        timeout=40), 422, "update_failed")
    unknown = _problem(httpx.post(f"{api}/executions/api-u/updates/reject", timeout=40),
                       404, "unknown_update")
    assert "declared: 'approve'" in str(unknown["detail"])
    _problem(httpx.post(f"{api}/executions/api-u/updates/approve", json={"timeout": -1}),
             422, "invalid_request")
    _problem(httpx.post(f"{api}/executions/nobody/updates/approve"), 404, "not_found")
    assert httpx.post(f"{api}/executions/api-u/updates/approve", json={"payload": "bob"},
                      timeout=40).json()["result"] == {"missing": 0}
    assert _wait_done(api, "api-u")["status"] == "completed"
    _problem(httpx.post(f"{api}/executions/api-u/updates/approve", json={"payload": "cy"}),
             409, "execution_ended")


def test_wait_long_polls_until_the_end(api: str) -> None:
    httpx.post(f"{api}/executions", json={"name": "job-poller", "id": "api-w",
                                          "input": {"runs_for": 60, "every": 0.2}})
    started = time.monotonic()
    early = httpx.get(f"{api}/executions/api-w/wait", params={"timeout": 0.5}, timeout=10)
    assert time.monotonic() - started >= 0.5
    assert (early.status_code, early.json()["done"]) == (200, False)
    httpx.post(f"{api}/executions/api-w/cancel")
    done = httpx.get(f"{api}/executions/api-w/wait", params={"timeout": 20}, timeout=30).json()
    assert (done["done"], done["status"]) == (True, "cancelled")
    too_long = httpx.get(f"{api}/executions/api-w/wait", params={"timeout": 301})
    assert too_long.status_code == 422
    missing = httpx.get(f"{api}/executions/nope/wait", params={"timeout": 0})
    assert missing.status_code == 404


def test_stats_count_by_state_and_workflow(api: str) -> None:
    before = httpx.get(f"{api}/stats").json()
    httpx.post(f"{api}/executions", json={"name": "transform-records", "input": 1,
                                          "id": "api-s"})
    _wait_done(api, "api-s")
    after = httpx.get(f"{api}/stats").json()
    assert after["total"] == before["total"] + 1
    completed = after["by_workflow"]["transform-records"]["completed"]
    assert completed == before["by_workflow"].get("transform-records", {}).get("completed",
                                                                               0) + 1
    assert after["by_state"]["completed"] == before["by_state"]["completed"] + 1
    assert sum(after["by_state"].values()) == after["total"]


def test_admin_repairs_a_failed_execution(api: str) -> None:
    body = {"name": "provision", "id": "api-r",
            "input": {"config": "api-repair", "fail_times": 6, "delay": "10ms"}}
    httpx.post(f"{api}/executions", json=body)
    assert _wait_done(api, "api-r")["status"] == "failed"  # 1 try + 5 retries, all failed
    retried = httpx.post(f"{api}/admin/executions/api-r/retry-step", json={"reason": "up"})
    assert (retried.status_code, retried.json()) == (202, {"id": "api-r", "step": "provision"})
    assert _wait_done(api, "api-r")["status"] == "completed"
    again = httpx.post(f"{api}/admin/executions/api-r/retry-step", json={})
    assert (again.status_code, again.json()["code"]) == (409, "repair_refused")
    unknown = httpx.post(f"{api}/admin/executions/api-r/rerun", json={"steps": ["nope"]})
    assert (unknown.status_code, unknown.json()["code"]) == (422, "unknown_step")
    restarted = httpx.post(f"{api}/admin/executions/api-r/restart", json={})
    assert (restarted.status_code, restarted.json()["run"]) == (202, 1)
    assert _wait_done(api, "api-r")["status"] == "completed"
    types = [e["type"] for e in httpx.get(f"{api}/executions/api-r/history").json()["items"]]
    assert types.count("StepRetryRequested") == 1
    assert types.count("RunRestarted") == 1


def test_admin_pause_and_resume_a_workflow(api: str) -> None:
    added = httpx.post(f"{api}/admin/pauses", json={"workflow": "chunked-processing",
                                                    "reason": "load test"})
    assert added.json() == {"rule": "workflow:chunked-processing", "changed": True,
                            "resumed": 0}
    rules = httpx.get(f"{api}/admin/pauses").json()
    assert [(r["rule"], r["reason"]) for r in rules] == [("workflow:chunked-processing",
                                                          "load test")]
    time.sleep(0.5)  # workers refresh their copy of the rules every poll interval (<= 1 s)
    httpx.post(f"{api}/executions", json={"name": "chunked-processing", "id": "api-p",
                                          "input": {"total": 100, "chunk_size": 10}})
    deadline = time.monotonic() + 10
    while httpx.get(f"{api}/executions/api-p").json()["status"] != "paused":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    lifted = httpx.delete(f"{api}/admin/pauses/workflow/chunked-processing")
    assert lifted.json() == {"rule": "workflow:chunked-processing", "changed": True,
                             "resumed": 1}
    assert _wait_done(api, "api-p")["result"] == sum(range(100))
    bad = httpx.post(f"{api}/admin/pauses", json={"workflow": "a", "queue": "b"})
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_request")
    for body, rule in (({"step": "transform-*"}, "step:transform-*"),
                       ({"execution_id": "api-x"}, "execution:api-x")):
        assert httpx.post(f"{api}/admin/pauses", json=body).json()["rule"] == rule
    kinds = [(r["kind"], r["name"]) for r in httpx.get(f"{api}/admin/pauses").json()]
    assert kinds == [("execution", "api-x"), ("step", "transform-*")]
    assert httpx.delete(f"{api}/admin/pauses/step/transform-*").json()["changed"]
    assert httpx.delete(f"{api}/admin/pauses/execution/api-x").json()["changed"]


def test_admin_edge_cases(api: str) -> None:
    """Bodyless repairs, rule names with '/', fields named in type errors, deep JSON."""
    httpx.post(f"{api}/executions", json={"name": "durable-loop", "id": "api-e",
                                          "input": {"count": 2}})
    assert _wait_done(api, "api-e")["status"] == "completed"
    restarted = httpx.post(f"{api}/admin/executions/api-e/restart")  # no body at all
    assert (restarted.status_code, restarted.json()["run"]) == (202, 1)
    refused = httpx.post(f"{api}/admin/executions/api-e/retry-step")
    assert (refused.status_code, refused.json()["code"]) == (409, "repair_refused")
    added = httpx.post(f"{api}/admin/pauses", json={"workflow": "billing/invoices"})
    assert added.json()["changed"] is True
    lifted = httpx.delete(f"{api}/admin/pauses/workflow/billing/invoices")
    assert (lifted.status_code, lifted.json()["changed"]) == (200, True)
    assert httpx.get(f"{api}/admin/pauses").json() == []
    wrong = httpx.post(f"{api}/admin/pauses", json={"workflow": 5})
    assert wrong.status_code == 422
    assert "workflow" in wrong.json()["detail"]
    deep = "[" * 3000 + "]" * 3000
    for path in ("/executions", "/schedules", "/executions/api-e/signals/x"):
        reply = httpx.post(f"{api}{path}", content=deep,
                           headers={"content-type": "application/json"})
        assert (reply.status_code, reply.json()["code"]) == (422, "invalid_request"), path


def test_healthz_reports_a_redis_that_refuses_writes(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "full", appendfsync="everysec").start()
    port = free_port()
    proc = _serve(server.url, port)
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json()["status"] == "ok"
        with redis_sync.Redis.from_url(server.url) as r:
            r.config_set("maxmemory-policy", "noeviction")
            r.config_set("maxmemory", "1")
            health = httpx.get(f"http://127.0.0.1:{port}/healthz")
            r.config_set("maxmemory", "0")
        body = health.json()
        assert (health.status_code, body["status"], body["redis"]) == (
            503, "refusing_writes", True)
        assert body["error"].startswith("OutOfMemoryError: ")
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        server.stop()


def test_healthz_reports_a_partition_mismatch(redis_server: RedisServer) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "zart_es", "api", "--redis-url", redis_server.url,
         "--port", str(port), "--partitions", "8"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert (health.status_code, health.json()["status"]) == (503, "misconfigured")
        _problem(httpx.get(f"http://127.0.0.1:{port}/stats"), 503, "misconfigured")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_redis_unreachable_is_a_503_problem() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "zart_es", "api", "--redis-url",
         f"redis://127.0.0.1:{free_port()}/0", "--port", str(port)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                assert httpx.get(f"{base}/livez", timeout=1).status_code == 200
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        health = httpx.get(f"{base}/healthz")
        assert (health.status_code, health.json()["status"]) == (503, "unavailable")
        listing = _problem(httpx.get(f"{base}/executions"), 503, "redis_unavailable")
        assert "cannot reach Redis" in str(listing["detail"])
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_one_json_log_stream_with_an_access_log(redis_server: RedisServer) -> None:
    """uvicorn's stdlib records and the access log come out as structlog JSON lines."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "zart_es", "api", "--redis-url", redis_server.url,
         "--port", str(port)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                assert httpx.get(f"{base}/healthz", timeout=1).status_code == 200
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert httpx.get(f"{base}/executions/nope", params={"x": "secret"}).status_code == 404
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    lines = [json.loads(line) for line in err.splitlines()]  # every line is JSON
    assert all({"event", "level", "timestamp"} <= line.keys() for line in lines), err
    stdlib = [line for line in lines if line.get("logger") == "uvicorn.error"]
    assert any(line["event"].startswith("Uvicorn running on") for line in stdlib), err
    assert all("color_message" not in line for line in stdlib)
    access = [line for line in lines if line["event"] == "request"]
    missing = next(line for line in access if line["path"] == "/executions/nope")
    assert (missing["method"], missing["status"], missing["level"]) == ("GET", 404, "info")
    assert missing["logger"] == "zart_es.api.access"
    assert 0 < missing["duration_ms"] < 10_000
    assert "secret" not in err  # the query string is not logged


def test_schedules_routes(api: str) -> None:
    body = {"name": "api-sched", "workflow": "transform-records", "input": 1, "every": "1s"}
    created = httpx.post(f"{api}/schedules", json=body)
    assert created.status_code == 201
    assert (created.json()["every_ms"], created.json()["input"]) == (1000, 1)
    assert len(created.json()["next"]) == 3
    taken = httpx.post(f"{api}/schedules", json=body)
    assert (taken.status_code, taken.json()["code"]) == (409, "schedule_exists")
    bad = httpx.post(f"{api}/schedules", json={**body, "name": "x", "every": None,
                                               "cron": "not cron"})
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_request")
    deadline = time.monotonic() + 15
    while True:  # the worker's scheduler starts occurrences with derived ids
        rows = httpx.get(f"{api}/executions",
                         params={"name": "transform-records"}).json()["items"]
        ours = [r["execution_id"] for r in rows if r["execution_id"].startswith("api-sched-")]
        if ours:
            break
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert httpx.post(f"{api}/schedules/api-sched/pause").json()["paused"] is True
    shown = httpx.get(f"{api}/schedules/api-sched").json()
    assert shown["state"]["started"] >= 1
    assert [s["name"] for s in httpx.get(f"{api}/schedules").json()] == ["api-sched"]
    filled = httpx.post(f"{api}/schedules/api-sched/backfill", json={
        "start": "2026-11-01T00:00:00Z", "end": "2026-11-01T00:00:02Z", "overlap": "always"})
    assert filled.status_code == 200, filled.text
    assert filled.json()["started"] == ["api-sched-20261101T000000Z",
                                        "api-sched-20261101T000001Z"]
    backwards = httpx.post(f"{api}/schedules/api-sched/backfill", json={
        "start": "2026-11-02T00:00:00Z", "end": "2026-11-01T00:00:00Z"})
    assert (backwards.status_code, backwards.json()["code"]) == (422, "invalid_request")
    assert httpx.delete(f"{api}/schedules/api-sched").json() == {"name": "api-sched",
                                                                 "removed": True}
    assert httpx.get(f"{api}/schedules/api-sched").status_code == 404


def test_error_codes(api: str) -> None:
    _problem(httpx.get(f"{api}/executions/nope"), 404, "not_found")
    _problem(httpx.get(f"{api}/no/such/route"), 404, "not_found")
    _problem(httpx.put(f"{api}/executions"), 405, "method_not_allowed")
    assert httpx.post(f"{api}/executions/nope/cancel").status_code == 404
    assert httpx.post(f"{api}/executions/nope/signals/x", json=1).status_code == 404
    bad_body = _problem(httpx.post(f"{api}/executions", json={"input": 1}), 422,
                        "invalid_request")
    assert "name" in str(bad_body["detail"])
    bad_id = _problem(httpx.post(f"{api}/executions", json={"name": "w", "id": "has space"}),
                      422, "invalid_request")
    assert "invalid execution id" in str(bad_id["detail"])
    _problem(httpx.get(f"{api}/executions", params={"limit": 0}), 422, "invalid_request")
    _problem(httpx.post(f"{api}/executions", content=b"{oops",
                        headers={"content-type": "application/json"}), 400,
             "malformed_request")
    _problem(httpx.post(f"{api}/executions", json={"name": "w", "input": "x" * 5000}), 413,
             "payload_too_large")  # the input is over --max-input-bytes
    _problem(httpx.post(f"{api}/executions", json={"name": "w", "input": "x" * 200_000}),
             413, "payload_too_large")  # the body is over what the server reads at all


def test_health_openapi_metrics(api: str) -> None:
    health = httpx.get(f"{api}/healthz").json()
    assert health["status"] == "ok"
    schema = httpx.get(f"{api}/schema/openapi.json").json()
    assert "/executions/{execution_id}" in schema["paths"]
    httpx.post(f"{api}/executions", json={"name": "transform-records", "input": 1, "id": "api-m"})
    _wait_done(api, "api-m")
    text = httpx.get(f"{api}/metrics").text
    assert 'zart_executions{state="completed"}' in text
    completed = next(line for line in text.splitlines()
                     if line.startswith('zart_executions{state="completed"}'))
    assert float(completed.split()[-1]) >= 1
    assert "zart_work_pending" in text
    assert "zart_timers_overdue" in text


def test_bearer_auth(secured: str) -> None:
    assert httpx.get(f"{secured}/healthz").status_code == 200  # probes need no token
    denied = httpx.get(f"{secured}/executions")
    _problem(denied, 401, "unauthorized")
    assert denied.headers["www-authenticate"] == "Bearer"
    wrong = httpx.get(f"{secured}/executions", headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401
    ok = httpx.get(f"{secured}/executions", headers={"authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200
    lower = httpx.get(f"{secured}/executions", headers={"authorization": f"bearer {TOKEN}"})
    assert lower.status_code == 200  # the scheme is case-insensitive
    for other in (f"Basic {TOKEN}", TOKEN, f"Bearer {TOKEN}x", f"Bearer {TOKEN.upper()}"):
        refused = httpx.get(f"{secured}/executions", headers={"authorization": other})
        assert refused.status_code == 401, other


CONFORMANCE = ("not_a_server_error,status_code_conformance,content_type_conformance,"
               "response_schema_conformance,response_headers_conformance,"
               "negative_data_rejection,ignored_auth")


def test_fuzz_from_openapi_conforms(api: str, secured: str, tmp_path: Path) -> None:
    """schemathesis generates valid and invalid requests from the API's own schema: none
    may answer 5xx, and every reply's status, content type and body must be the ones the
    schema declares for that route (invalid data must be refused with a 4xx). The API runs
    with a token, as the schema's security says; ``api``'s worker runs what it starts.
    Half the generated execution ids and names are of executions (completed, running,
    failed) and a schedule that exist, so the routes' success replies are checked too,
    not only their 404s."""
    known = {"fz-done": {"name": "transform-records", "input": 1},
             "fz-running": {"name": "job-poller", "input": {"runs_for": 120, "every": 0.2}},
             "fz-failed": {"name": "provision", "input": {"config": "fz", "fail_times": 6,
                                                         "delay": "10ms"}}}
    for eid, body in known.items():
        httpx.post(f"{api}/executions", json={**body, "id": eid})
    _wait_done(api, "fz-done")
    _wait_done(api, "fz-failed")
    httpx.post(f"{api}/schedules", json={"name": "fz-sched", "workflow": "transform-records",
                                         "input": 1, "every": "1h"})
    (tmp_path / "schemathesis.toml").write_text(
        f"[dictionaries.executions]\nvalues = {json.dumps(list(known))}\n\n"
        '[dictionaries.names]\nvalues = ["fz-sched"]\n\n'  # a schedule, or a signal
        '[parameters]\n"path.execution_id" = { dictionary = "executions", '
        'probability = 0.5 }\n"path.name" = { dictionary = "names", probability = 0.5 }\n')
    result = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"{secured}/schema/openapi.json",
         "--header", f"Authorization: Bearer {TOKEN}", "--checks", CONFORMANCE,
         "--max-examples", "25", "--phases", "examples,fuzzing", "--mode", "all",
         "--seed", "14",
         # the long poll legitimately holds a request up to 300 s on an execution that
         # has not ended (its own test covers it); schemathesis gives up after 10 s
         "--exclude-path", "/executions/{execution_id}/wait", "--no-color"],
        cwd=tmp_path, capture_output=True, text=True, timeout=240, check=False,
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]


def test_worker_metrics_count_what_it_ran(tmp_path: Path) -> None:
    # a Redis of its own: the module's other worker must not take these executions
    with RedisServer(tmp_path / "redis") as redis_server:
        _scrape_after_a_run(redis_server, tmp_path)


def _scrape_after_a_run(redis_server: RedisServer, tmp_path: Path) -> None:
    port = free_port()
    worker = spawn_worker(redis_server.url, "workers.examples", log=tmp_path / "w.log",
                          extra=["--metrics-port", str(port)])
    try:
        subprocess.run([sys.executable, "-m", "zart_es", "start", "provision", "--redis-url",
                        redis_server.url, "--input", '{"config": "m1", "fail_times": 1, '
                        '"delay": "50ms"}', "--id", "metrics-1"], cwd=ROOT, check=True,
                       capture_output=True)
        subprocess.run([sys.executable, "-m", "zart_es", "result", "metrics-1", "--wait",
                        "--timeout", "20", "--redis-url", redis_server.url], cwd=ROOT,
                       check=True, capture_output=True)
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        stop_worker(worker)
    samples = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
               if line and not line.startswith("#")}
    assert samples['zart_worker_executions_total{outcome="completed",workflow="provision"}'] >= 1
    assert samples['zart_worker_retries_total{workflow="provision"}'] >= 1
    assert samples['zart_worker_step_seconds_count{outcome="completed",workflow="provision"}'] >= 1


def test_dev_runs_redis_worker_and_api_in_one_process(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "zart_es", "dev", "--app", "workers.examples", "--port",
         str(port), "--data-dir", str(tmp_path / "data")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**__import__("os").environ, "ZART_REDIS_URL": ""},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "dev server did not come up"
            time.sleep(0.2)
        httpx.post(f"{base}/executions", json={"name": "transform-records", "input": 2,
                                               "id": "dev-1"})
        assert _wait_done(base, "dev-1")["result"] == 2
        assert (tmp_path / "data" / "redis" / "appendonlydir").exists() or any(
            p.name.startswith("appendonly") for p in (tmp_path / "data" / "redis").iterdir())
    finally:
        proc.send_signal(__import__("signal").SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out.decode()[-2000:]
