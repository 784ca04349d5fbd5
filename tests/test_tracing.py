"""OpenTelemetry traces: one trace per execution, from the client's span through every
run on every worker (a kill -9 in between), step attempts with their outcome, timers and
waits as span events, a child execution in its parent's trace."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.helpers import ROOT, spawn_worker, stop_worker, wait_for
from zart_es import Client
from zart_es.ops import traceparent

pytestmark = pytest.mark.processes


def _spans(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


async def test_one_trace_per_execution_across_a_worker_kill(
        redis_url: str, tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()  # the client's own, not the process-wide one
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("the-client")
    spans_file, crash_dir = tmp_path / "spans.jsonl", tmp_path / "crash"
    crash_dir.mkdir()
    env = {"ZART_TRACE_FILE": str(spans_file), "CRASH_POINTS": "2:before",
           "CRASH_DIR": str(crash_dir), "ZART_DEMO_EFFECTS": str(tmp_path / "effects")}
    first = spawn_worker(redis_url, "tests.apps.traced", env=env)
    second = None
    try:
        async with Client(redis_url) as client:
            with tracer.start_as_current_span("POST /orders") as request:
                order = await client.start("traced-order", 4)
            assert first.wait(timeout=30) == -9  # it killed itself before item-2
            second = spawn_worker(redis_url, "tests.apps.traced", env=env)
            assert await client.result(order, timeout=30) == 6 + 6
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                stop_worker(proc)
    (client_span,) = exporter.get_finished_spans()
    trace_id = f"{request.get_span_context().trace_id:032x}"
    spans = _spans(spans_file)
    assert {s["trace_id"] for s in spans} == {trace_id}  # one trace, both processes
    assert {s["pid"] for s in spans} == {first.pid, second.pid if second else 0}
    runs = [s for s in spans if s["name"] == "run traced-order"]
    client_id = f"{client_span.get_span_context().span_id:016x}"
    assert len(runs) >= 3
    assert {r["parent_id"] for r in runs} == {client_id}
    attempts = {(s["attributes"]["zart.step"], s["attributes"]["zart.attempt"]):
                s["attributes"]["zart.outcome"] for s in spans if s["name"].startswith("step ")}
    assert attempts[("reserve", 1)] == "retry"
    assert attempts[("reserve", 2)] == "completed"
    assert {("item-0", 1), ("item-1", 1), ("item-2", 1), ("item-3", 1)} <= set(attempts)
    waits = [e for r in runs for e in r["events"]]
    assert any(e["name"] == "timer" and e["attributes"]["zart.timer"] == "sleep:settle"
               for e in waits)
    assert any(e["name"] == "child" for e in waits)  # the run that called traced-invoice
    assert {r["attributes"]["zart.outcome"] for r in runs} >= {"waiting", "ended"}
    (child_run, *_) = [s for s in spans if s["name"] == "run traced-invoice"]
    assert child_run["parent_id"] in {r["span_id"] for r in runs}  # the run that called it


async def test_runs_of_an_execution_started_outside_a_span_share_a_trace(
        redis_url: str, tmp_path: Path) -> None:
    spans_file = tmp_path / "spans.jsonl"
    worker = spawn_worker(redis_url, "tests.apps.traced",
                          env={"ZART_TRACE_FILE": str(spans_file)})
    try:
        async with Client(redis_url) as client:
            assert traceparent() == ""  # no span here
            order = await client.start("traced-order", 1)
            assert await client.result(order, timeout=30) == 0
            await wait_for(lambda: _has_child_run(spans_file))
    finally:
        stop_worker(worker)
    spans = _spans(spans_file)
    assert len({s["trace_id"] for s in spans}) == 1
    assert len([s for s in spans if s["name"] == "run traced-order"]) >= 2


async def _has_child_run(path: Path) -> bool:
    return await asyncio.to_thread(_contains, path, "run traced-invoice")


def _contains(path: Path, text: str) -> bool:
    return path.exists() and text in path.read_text()


def test_tracing_costs_nothing_without_the_extra() -> None:
    """Without opentelemetry the library imports and runs (a subprocess that hides it)."""
    code = ("import sys; sys.modules['opentelemetry'] = None\n"
            "from zart_es.ops import _tracing as t\n"
            "assert t.trace is None and t.traceparent() == ''\n"
            "with t.run_span('e', 'w', 1, '') as span: assert span is None\n"
            "t.step_attempt('e', 's', 1, 0.0, 'completed')\n"
            "import zart_es; print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=False)
    assert out.stdout.strip() == "ok", out.stderr


CLIENT_WITH_A_SAMPLER = """
import asyncio, sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from zart_es import Client

trace.set_tracer_provider(TracerProvider(sampler=TraceIdRatioBased(0.0)))

async def main() -> None:
    async with Client(sys.argv[1]) as client:
        await client.start("traced-invoice", 1, execution_id="unsampled")

asyncio.run(main())
"""


async def test_the_application_s_sampler_decides_once_for_every_run(
        redis_url: str, tmp_path: Path) -> None:
    """Started outside any span by a process whose sampler drops everything, no run of
    the execution is recorded by the workers (ParentBased honours the recorded decision);
    one started where no provider is configured is recorded."""
    spans_file = tmp_path / "spans.jsonl"
    worker = spawn_worker(redis_url, "tests.apps.traced",
                          env={"ZART_TRACE_FILE": str(spans_file)})
    try:
        started = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-c", CLIENT_WITH_A_SAMPLER, redis_url],
            cwd=ROOT, capture_output=True, text=True, timeout=30, check=False)
        assert started.returncode == 0, started.stderr
        async with Client(redis_url) as client:
            assert await client.result("unsampled", timeout=30) == 1
            sampled = await client.start("traced-invoice", 2)
            assert await client.result(sampled, timeout=30) == 2
            (first, *_) = [e async for e in client.history("unsampled")]
            assert int(first.traceparent.rsplit("-", 1)[1], 16) & 1 == 0  # not sampled
        await wait_for(lambda: _has(spans_file, sampled))
    finally:
        stop_worker(worker)
    runs = {s["attributes"]["zart.execution_id"] for s in _spans(spans_file)
            if s["name"].startswith("run ")}
    assert runs == {sampled}


async def _has(path: Path, execution_id: str) -> bool:
    return await asyncio.to_thread(_contains, path, execution_id)
