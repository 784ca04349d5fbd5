"""A worker app with an OpenTelemetry tracer provider, for tests/test_tracing.py.

Every finished span is appended as a JSON line to ``$ZART_TRACE_FILE`` at once (the
SDK's SimpleSpanProcessor), so spans of a worker that is then killed are kept. The
``traced-order`` workflow retries a step, sleeps, calls a child and, with
``$CRASH_POINTS`` (see crash.py), kills its own worker mid-loop.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from zart_es import Context, durable

from .crash import maybe_crash


class JsonLinesExporter(SpanExporter):
    """Appends each span (ids in hex, attributes, events, its process) to a file."""

    def __init__(self, path: str) -> None:
        self._path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with open(self._path, "a") as out:
            for span in spans:
                context = span.get_span_context()
                assert context is not None
                out.write(json.dumps({
                    "name": span.name,
                    "trace_id": f"{context.trace_id:032x}",
                    "span_id": f"{context.span_id:016x}",
                    "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
                    "attributes": dict(span.attributes or {}),
                    "events": [{"name": e.name, "attributes": dict(e.attributes or {})}
                               for e in span.events],
                    "status": span.status.status_code.name,
                    "pid": os.getpid(),
                }) + "\n")
        return SpanExportResult.SUCCESS


provider = TracerProvider(resource=Resource.create({"service.name": "traced-worker"}))
provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(os.environ["ZART_TRACE_FILE"])))
trace.set_tracer_provider(provider)

_attempts: dict[str, int] = {}


@durable("traced-order")
async def traced_order(ctx: Context, items: int) -> int:
    def flaky() -> str:
        _attempts[ctx.execution_id] = _attempts.get(ctx.execution_id, 0) + 1
        if _attempts[ctx.execution_id] == 1:
            raise RuntimeError("first attempt fails")
        return "reserved"

    await ctx.step_with_retry("reserve", flaky, retries=2, delay="50ms", jitter=False)
    await ctx.sleep("100ms", name="settle")
    total = 0
    for i in range(items):
        def work(i: int = i) -> int:
            maybe_crash(i, "before")
            return i
        total += await ctx.step(f"item-{i}", work)
    return total + int(await ctx.call("traced-invoice", total))


@durable("traced-invoice")
async def traced_invoice(ctx: Context, total: int) -> int:
    return int(await ctx.step("bill", lambda: total))
