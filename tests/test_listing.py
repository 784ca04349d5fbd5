"""Listing pages over a real Redis: cursors neither repeat nor skip rows, whatever the ties
in creation time, the partitions or the executions started between two pages."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from zart_es import Client
from zart_es.core import ConfigError

pytestmark = pytest.mark.redis


async def _start(client: Client, prefix: str, count: int) -> list[str]:
    # started concurrently: many share a creation millisecond (ties ordered by id)
    return list(await asyncio.gather(*(client.start("listed", execution_id=f"{prefix}-{i}")
                                       for i in range(count))))


async def _walk(client: Client, limit: int, *, interleave: bool = True,
                **filters: object) -> list[tuple[int, str]]:
    rows: list[tuple[int, str]] = []
    cursor = None
    while True:
        page = await client.list_page(limit=limit, cursor=cursor, **filters)  # type: ignore[arg-type]
        assert len(page.items) <= limit
        rows += [(row.created_ms, row.execution_id) for row in page.items]
        if page.next is None:
            return rows
        assert len(page.items) == limit  # only the last page is short
        cursor = page.next
        if interleave:  # newer ones: they must not shift a page
            await _start(client, f"late-{len(rows)}", 3)


async def test_pages_cover_every_execution_once_in_order(redis_url: str) -> None:
    async with Client(redis_url, partitions=16) as client:
        ids = await _start(client, "x", 300)
        rows = await _walk(client, 7, name="listed")
        ours = [row for row in rows if row[1].startswith("x-")]
        assert sorted(i for _, i in ours) == sorted(ids)
        assert rows == sorted(set(rows), reverse=True)  # newest first, none twice
        assert len({ms for ms, _ in ours}) < len(ours)  # ties were there to be ordered
        unfiltered = await _walk(client, 11)  # the path that reads only what a page needs
        assert [r for r in unfiltered if r[1].startswith("x-")] == ours


async def test_time_windows_and_bad_arguments(redis_url: str) -> None:
    async with Client(redis_url) as client:
        before = datetime.now(UTC) - timedelta(milliseconds=5)
        await _start(client, "w", 20)
        rows = await _walk(client, 6, interleave=False, started_after=before)
        assert len(rows) == 20
        middle = datetime.fromtimestamp(sorted(rows)[10][0] / 1000, UTC)
        older = await _walk(client, 6, interleave=False, started_after=before,
                            started_before=middle)
        newer = await _walk(client, 6, interleave=False, started_after=middle)
        assert sorted(older + newer) == sorted(rows)  # [after, before) tiles the range
        assert all(ms < sorted(rows)[10][0] for ms, _ in older)
        with pytest.raises(ConfigError, match="timezone-aware"):
            await client.list_page(started_after=datetime(2026, 1, 1))
        with pytest.raises(ConfigError, match="invalid cursor"):
            await client.list_page(cursor="not-a-cursor")
        history = await client.history_page(rows[0][1], limit=1)
        assert history.next is None  # a pending execution: one event
        assert len(history.items) == 1
        other = await client.history_page(rows[1][1], limit=1)
        assert other.items[0].seq == 0
        with pytest.raises(ConfigError, match="invalid cursor"):
            await client.list_page(cursor=_history_cursor(rows[1][1]))


def _history_cursor(execution_id: str) -> str:
    from zart_es.ops import encode_cursor

    return encode_cursor("history", execution_id, "0-1")
