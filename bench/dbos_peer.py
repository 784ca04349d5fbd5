"""The peer figure: the same shapes on DBOS Transact, in the same run, on this machine.

* sequential: one workflow doing SEQ_STEPS trivial async steps in a loop, clocked inside
  the workflow (time before the first step to the end of the last).
* concurrent: EXECUTIONS workflows x STEPS_EACH steps, started one by one while the
  engine runs; steps/s = all steps / (first start call -> last workflow's last step).
  For zart-es the start calls are inside the clock too (``ours_concurrent_end_to_end``),
  as ``DBOS.start_workflow_async`` starts and runs a workflow at once.

zart-es runs on a private redis-server twice: ``appendfsync everysec`` (the default of
the other benchmarks) and ``appendfsync always`` (an fsync per write, like PostgreSQL's
default ``synchronous_commit = on``), with this process and its redis-server pinned to
separate cores. DBOS Transact runs with its defaults, its system database in a fresh
PostgreSQL database (DATABASE, created here and dropped after) on 127.0.0.1:5432 as user
``postgres`` (trust auth), every process placed by the scheduler.

Needs the optional ``bench`` dependencies (``pip install -e '.[bench]'``) and that
PostgreSQL; without either it says so in one line and exits 0.

    python bench/dbos_peer.py
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import uvloop
from common import median, place, placements, private_redis, rounded, unpin
from steps import EXECUTIONS, STEPS_EACH, ours_concurrent_end_to_end, ours_sequential

ROUNDS = 3  # DBOS needs ~30 s per round of the concurrent shape on 2 cores
SEQ_STEPS = 1000
DATABASE = "zart_bench_dbos"
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DBOS_URL = f"postgresql://postgres@127.0.0.1:5432/{DATABASE}"

Shapes = tuple[list[float], list[float]]  # (sequential steps/s, concurrent steps/s) rounds


def admin(sql: str) -> None:
    """Run one statement on the ``postgres`` database (autocommit: CREATE/DROP DATABASE)."""
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
        conn.execute(sql.encode())


def postgres_problem() -> str | None:
    """Why PostgreSQL cannot be used (None when it can)."""
    try:
        admin("SELECT 1")
    except Exception as exc:  # any failure means "skip", said in one line
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
    return None


def setup_dbos() -> tuple[Any, Callable[[int], Awaitable[float]], Callable[[], Awaitable[int]]]:
    """Register the workflows, point DBOS at the fresh database and launch it."""
    from dbos import DBOS, DBOSConfig

    @DBOS.step()
    async def one() -> int:
        return 1

    @DBOS.workflow()
    async def sequential(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            await one()
        return n / (time.perf_counter() - start)

    @DBOS.workflow()
    async def twenty() -> int:
        for _ in range(STEPS_EACH):
            await one()
        return STEPS_EACH

    config: DBOSConfig = {
        "name": "zart-bench",
        "system_database_url": DBOS_URL,
        "log_level": "WARNING",
    }
    DBOS(config=config)
    DBOS.launch()
    return DBOS, sequential, twenty


async def dbos_rounds() -> Shapes:
    dbos, sequential, twenty = setup_dbos()
    seq: list[float] = []
    con: list[float] = []
    try:
        for r in range(ROUNDS):
            handle = await dbos.start_workflow_async(sequential, SEQ_STEPS)
            seq.append(await handle.get_result())
            start = time.perf_counter()
            handles = [await dbos.start_workflow_async(twenty) for _ in range(EXECUTIONS)]
            await asyncio.gather(*(h.get_result() for h in handles))
            con.append(EXECUTIONS * STEPS_EACH / (time.perf_counter() - start))
            print(f"  [DBOS] round {r + 1}/{ROUNDS}: sequential {seq[-1]:,.0f} steps/s, "
                  f"concurrent {con[-1]:,.0f} steps/s", flush=True)
    finally:
        dbos.destroy()
    return seq, con


async def zart_rounds(appendfsync: str) -> Shapes:
    seq: list[float] = []
    con: list[float] = []
    with private_redis(appendfsync) as server:
        # zart-es on separate cores (see common.placements): the slower, steadier of the
        # two placements on a small machine; DBOS and PostgreSQL are left to the scheduler
        mine, theirs = placements().get("separate cores", (set(), set()))
        place(server, mine, theirs)
        await ours_sequential(server.url, 200)  # warm-up
        for r in range(ROUNDS):
            seq.append(await ours_sequential(server.url, SEQ_STEPS))
            con.append(await ours_concurrent_end_to_end(server.url))
            print(f"  [zart-es, appendfsync {appendfsync}] round {r + 1}/{ROUNDS}: sequential "
                  f"{seq[-1]:,.0f} steps/s, concurrent {con[-1]:,.0f} steps/s", flush=True)
        unpin(server)
    return seq, con


async def main() -> int:
    try:
        import dbos  # noqa: F401
        import psycopg  # noqa: F401
    except ImportError:
        print("dbos_peer: DBOS Transact is not installed (pip install -e '.[bench]'); skipped")
        return 0
    problem = postgres_problem()
    if problem is not None:
        print(f"dbos_peer: no usable PostgreSQL at 127.0.0.1:5432 ({problem}); skipped")
        return 0
    admin(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    admin(f"CREATE DATABASE {DATABASE}")
    print(f"fresh PostgreSQL database {DATABASE}; {ROUNDS} rounds; {SEQ_STEPS} sequential "
          f"steps; {EXECUTIONS} x {STEPS_EACH} concurrent", flush=True)
    try:
        zart = {mode: await zart_rounds(mode) for mode in ("everysec", "always")}
        dbos_seq, dbos_con = await dbos_rounds()
    finally:
        admin(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    print(f"DBOS Transact: sequential {median(dbos_seq):,.0f} steps/s {rounded(dbos_seq)}; "
          f"concurrent {median(dbos_con):,.0f} steps/s {rounded(dbos_con)}")
    for mode, (seq, con) in zart.items():
        print(f"zart-es (appendfsync {mode}) / DBOS: sequential {median(seq):,.0f} / "
              f"{median(dbos_seq):,.0f} = {median(seq) / median(dbos_seq):.1f}x "
              f"{rounded(seq)}; concurrent {median(con):,.0f} / {median(dbos_con):,.0f} = "
              f"{median(con) / median(dbos_con):.1f}x {rounded(con)}")
    return 0


if __name__ == "__main__":
    sys.exit(uvloop.run(main()))
