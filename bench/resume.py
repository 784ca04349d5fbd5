"""Resume cost: does step N+1 cost more when N steps are already in the log?

One execution loops STEPS steps and takes a short durable sleep (``ctx.sleep("10ms")``)
before steps 1000, 2000, ... 9000; each sleep ends the run, and the timer's firing
resumes the execution, which replays the workflow from the top (recorded steps come
back from the worker's cached fold) and goes on. Every step function writes
``time.perf_counter()`` into a list in this process: stamp[i] = when step i ran.

Judged (target: last / first <= 1.5):

* per step, resume included: window k covers the 1,000 intervals up to step
  ``1000k + 999``; the first window (steps 0..999) holds the execution's start, the last
  (8999 -> 9999) holds the last sleep and the resume that replays 9,000 recorded steps.
  The 10 ms of sleep itself is subtracted from every window that holds a sleep.

Also printed (no target): the steady per-step time inside the first and the last window
(no sleep in either), and the gap across each sleep minus its 10 ms: the resume's own
cost, which grows with the history because the workflow is replayed from the top.

    python bench/resume.py
"""

from __future__ import annotations

import asyncio
import time

import uvloop
from common import ROUNDS, median, place, placements, private_redis, unpin

from zart_es import Client, Context, Registry, Worker, durable

STEPS, EVERY = 10_000, 1_000
SLEEP_S = 0.010
TARGET = 1.5

registry = Registry()
stamps: list[float] = []
begun: list[float] = []
done = asyncio.Event()


@durable("long-loop", registry=registry)
async def long_loop(ctx: Context) -> int:
    if not begun:
        begun.append(time.perf_counter())  # the first run's start (replays skip this)
    for i in range(STEPS):
        if i and i % EVERY == 0:
            await ctx.sleep("10ms")

        def work(i: int = i) -> int:
            stamps.append(time.perf_counter())
            return i

        await ctx.step(f"s-{i}", work)
    done.set()
    return STEPS


class Round:
    """Per-step figures of one run of the loop, in microseconds."""

    def __init__(self, start: float, marks: list[float]) -> None:
        if len(marks) != STEPS:
            raise RuntimeError(f"expected {STEPS} step stamps, got {len(marks)}: "
                               "a step ran twice or not at all")
        us = 1e6
        # window 0: execution start -> step 999; window 9: step 8999 -> step 9999
        self.first = (marks[EVERY - 1] - start) / EVERY * us
        self.last = (marks[STEPS - 1] - marks[STEPS - EVERY - 1] - SLEEP_S) / EVERY * us
        self.first_steady = (marks[EVERY - 1] - marks[0]) / (EVERY - 1) * us
        self.last_steady = (marks[STEPS - 1] - marks[STEPS - EVERY]) / (EVERY - 1) * us
        self.gaps = [(marks[k] - marks[k - 1] - SLEEP_S) * 1e3  # ms, across each sleep
                     for k in range(EVERY, STEPS, EVERY)]


async def one_round(url: str) -> Round:
    stamps.clear()
    begun.clear()
    done.clear()
    # poll_interval only caps the poller's sleep: it wakes for a timer set by this worker
    async with Client(url) as client, Worker(url, registry=registry, poll_interval=0.05):
        await client.start("long-loop")
        await done.wait()
    return Round(begun[0], list(stamps))


def summarize(label: str, rounds: list[Round]) -> None:
    first = median([r.first for r in rounds])
    last = median([r.last for r in rounds])
    ratio = median([r.last / r.first for r in rounds])
    verdict = "MET" if ratio <= TARGET else "NOT MET"
    print(f"== {label}\nper step, resume included: first 1,000 {first:.1f} us, last 1,000 "
          f"{last:.1f} us (medians); last/first {ratio:.2f} (median of rounds' ratios; "
          f"target <= {TARGET}: {verdict})")
    steady = median([r.last_steady / r.first_steady for r in rounds])
    print(f"per step, steady (no sleep in the window): first "
          f"{median([r.first_steady for r in rounds]):.1f} us, last "
          f"{median([r.last_steady for r in rounds]):.1f} us; last/first {steady:.2f}")
    gaps = [median([r.gaps[k] for r in rounds]) for k in range(len(rounds[0].gaps))]
    print("resume cost (gap across each sleep minus 10 ms) after 1,000 .. 9,000 steps, ms: "
          + ", ".join(f"{g:.1f}" for g in gaps), flush=True)


async def main() -> None:
    results: dict[str, list[Round]] = {}
    with private_redis() as server:
        print(f"private redis-server at {server.url} (appendfsync everysec); {ROUNDS} rounds "
              "per CPU placement", flush=True)
        try:
            for label, (mine, theirs) in placements().items():
                place(server, mine, theirs)
                rounds = results[label] = []
                for r in range(ROUNDS):
                    one = await one_round(server.url)
                    rounds.append(one)
                    print(f"  [{label}] round {r + 1}/{ROUNDS}: first 1,000 {one.first:.1f} "
                          f"us/step, last 1,000 {one.last:.1f} us/step (resume included); "
                          f"resume after 1,000 / 9,000 steps {one.gaps[0]:.1f} / "
                          f"{one.gaps[-1]:.1f} ms", flush=True)
        finally:
            unpin(server)
    for label, rounds in results.items():
        summarize(label, rounds)


if __name__ == "__main__":
    uvloop.run(main())
