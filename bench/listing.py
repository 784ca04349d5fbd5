"""Listing pages: the cost of a page by cursor at any depth, against reading as deep as a
page lies without one (what ``list(limit=depth + page)`` had to do).

EXECUTIONS executions are started (no worker: they stay pending, listed), then every page
of PAGE rows is read by following ``next`` cursors, newest to oldest; the median time of a
page near the start, the middle and the end is printed beside the time of one
``list(limit=depth + PAGE)`` at the same depth.

    python bench/listing.py [--executions 20000] [--page 100]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from common import median, private_redis

from zart_es import Client


async def main(executions: int, page: int) -> None:
    with private_redis() as server:
        async with Client(server.url) as client:
            for start in range(0, executions, 500):
                await asyncio.gather(*(client.start("paged", execution_id=f"p-{i}")
                                       for i in range(start, min(start + 500, executions))))
            timings: list[float] = []
            cursor: str | None = None
            seen = 0
            while True:
                began = time.perf_counter()
                listed = await client.list_page(limit=page, cursor=cursor)
                timings.append(time.perf_counter() - began)
                seen += len(listed.items)
                cursor = listed.next
                if cursor is None:
                    break
            assert seen == executions, (seen, executions)
            print(f"{executions} executions, pages of {page}: {len(timings)} pages, "
                  f"{sum(timings):.2f} s to read them all by cursor")
            print(f"{'depth':>8} {'by cursor (ms)':>15} {'list(limit=depth+page) (ms)':>28}")
            for at in (0, len(timings) // 2, len(timings) - 1):
                window = timings[max(0, at - 2):at + 3]
                began = time.perf_counter()
                await client.list(limit=at * page + page)
                deep = time.perf_counter() - began
                print(f"{at * page:>8} {median(window) * 1000:>15.1f} {deep * 1000:>28.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=20_000)
    parser.add_argument("--page", type=int, default=100)
    options = parser.parse_args()
    asyncio.run(main(options.executions, options.page))
