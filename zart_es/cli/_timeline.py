"""``zart-es history ID --timeline``: an execution's waterfall drawn in the terminal.

The same :class:`~zart_es.ops.Timeline` the console draws (``GET /executions/{id}/timeline``):
one line per durable call, to scale, attempts green (completed), yellow (failed and
retried) or red (failed), backoffs and sleeps as their timers, waits, children. JSON with
``--json`` or when piped, like every command.
"""

from __future__ import annotations

import argparse
import math
import sys

from rich.console import Console
from rich.table import Table
from rich.text import Text

from zart_es.cli._common import client_for, print_json, when
from zart_es.ops import Row, Span, Timeline, build_timeline
from zart_es.store import redis_now_ms

_DRAW: dict[str, tuple[str, str]] = {
    # kind (or attempt outcome) -> (character, style)
    "run": ("━", "grey50"),
    "queued": ("╌", "yellow"),
    "paused": ("▒", "grey70"),
    "completed": ("█", "green"),
    "retry": ("█", "yellow"),
    "failed": ("█", "red"),
    "backoff": ("░", "yellow"),
    "sleep": ("─", "blue"),
    "wait": ("┄", "magenta"),
    "child": ("▓", "cyan"),
}
NAME_WIDTH = 28
TOOK_WIDTH = 18
OUTCOME_WIDTH = 24


async def timeline(args: argparse.Namespace) -> int:
    """Fetch the log and Redis' clock, fold the timeline, print it."""
    async with client_for(args) as client:
        events = [e async for e in client.history(args.id)]
        now_ms = await redis_now_ms(client.redis)
    drawn = build_timeline(events, now_ms)
    if args.json or not sys.stdout.isatty():
        print_json(drawn)
    else:
        render(drawn, Console())
    return 0


def render(drawn: Timeline, console: Console) -> None:
    """Print ``drawn`` as a waterfall as wide as ``console``."""
    total = max(drawn.end_ms - drawn.start_ms, 1)
    name_width = min(NAME_WIDTH, max((len(row.name) for row in drawn.rows), default=4))
    width = max(20, console.width - name_width - TOOK_WIDTH - OUTCOME_WIDTH - 6)
    table = Table(title=Text(f"{drawn.execution_id} · {drawn.workflow} · {drawn.status} · "
                             f"{duration_text(total)} from {when(drawn.start_ms)} UTC"),
                  title_justify="left", box=None, pad_edge=False)
    table.add_column("call", no_wrap=True, width=name_width, overflow="ellipsis")
    table.add_column(_axis(width, total), no_wrap=True, width=width)
    table.add_column("took", no_wrap=True, justify="right", width=TOOK_WIDTH,
                     overflow="ellipsis")
    table.add_column("outcome", no_wrap=True, width=OUTCOME_WIDTH, overflow="ellipsis")
    for row in drawn.rows:
        table.add_row(Text(row.name), bar(row, drawn, width), Text(took(row, drawn.end_ms)),
                      Text(outcome(row, drawn.end_ms)))
    console.print(table)
    for mark in drawn.marks:
        console.print(Text(f"  +{duration_text(mark.at_ms - drawn.start_ms):>8}  "
                           f"#{mark.seq:<4} {mark.label}", style="grey62"))


def bar(row: Row, drawn: Timeline, width: int) -> Text:
    """The row's spans on ``width`` cells from the timeline's start to its end; every span
    takes at least one cell (a 1 ms step stays visible beside an hour's sleep)."""
    cells: list[tuple[str, str]] = [(" ", "")] * width
    total = max(drawn.end_ms - drawn.start_ms, 1)
    for span in row.spans:
        end = span.end_ms if span.end_ms is not None else drawn.end_ms
        first = min(width - 1, math.floor((span.start_ms - drawn.start_ms) * width / total))
        last = min(width, max(first + 1, math.ceil((end - drawn.start_ms) * width / total)))
        char, style = _DRAW.get(span.outcome if span.kind == "attempt" else span.kind,
                                ("█", "white"))
        if span.kind == "attempt" and span.outcome == "":
            char, style = _DRAW["completed"]
        for cell in range(max(first, 0), last):
            cells[cell] = (char, style + (" bold" if span.end_ms is None else ""))
    text = Text()
    for char, style in cells:
        text.append(char, style=style or None)
    return text


def took(row: Row, end_ms: int) -> str:
    """How long the row's call took: a step's attempts (their measured durations summed),
    anything else from its first start to its last end."""
    if row.kind == "step":
        attempts = [s for s in row.spans if s.kind == "attempt"]
        known = [s.took_us for s in attempts if s.took_us >= 0]
        spent = duration_text(sum(known) / 1000) if known else "?"
        return spent if len(attempts) == 1 else f"{len(attempts)} attempts, {spent}"
    if not row.spans:
        return ""
    last = max(_end(s, end_ms) for s in row.spans)
    text = duration_text(last - min(s.start_ms for s in row.spans))
    return text + ("…" if any(s.end_ms is None for s in row.spans) else "")


def outcome(row: Row, end_ms: int) -> str:
    """The row's last outcome: what its call came to (or ``open`` while it goes on)."""
    spans = [s for s in row.spans if s.kind == "run"] if row.kind == "execution" else row.spans
    last: Span | None = spans[-1] if spans else None
    if last is None:
        return ""
    if last.end_ms is None:
        if last.due_ms > end_ms:
            return f"open, due in {duration_text(last.due_ms - end_ms)}"
        return "open"
    detail = f" {last.detail}" if last.detail and last.kind in ("attempt", "child") else ""
    return f"{last.outcome}{detail}"


def duration_text(ms: float) -> str:
    """A duration for people: ``0.4ms``, ``120ms``, ``2.5s``, ``3m05s``, ``2h10m``."""
    if ms < 10:
        return f"{ms:.1f}ms"
    if ms < 1000:
        return f"{ms:.0f}ms"
    if ms < 60_000:
        return f"{ms / 1000:.3g}s"
    minutes, seconds = divmod(int(ms // 1000), 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def _axis(width: int, total: int) -> str:
    right = duration_text(total)
    return "0" + " " * max(1, width - 1 - len(right)) + right


def _end(span: Span, end_ms: int) -> int:
    return span.end_ms if span.end_ms is not None else end_ms
