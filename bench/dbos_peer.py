"""The same shapes on DBOS Transact (PostgreSQL on 127.0.0.1:5432) as the peer figure.

zart-es and DBOS run in the same process run, one after the other, each against its own
store on this machine: sequential steps of one workflow, and 500 workflows x 20 steps.
Needs the optional ``bench`` dependencies (``pip install -e '.[bench]'``) and a
PostgreSQL that accepts ``postgres`` without a password; otherwise it says so and exits 0.

    python bench/dbos_peer.py
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from typing import Any

import uvloop
from common import ROUNDS, median, private_redis
from steps import EXECUTIONS, SEQ_STEPS, STEPS_EACH, ours_concurrent, ours_sequential

DATABASE = "zart_bench_dbos"
PG_URL = f"postgresql://postgres@127.0.0.1:5432/{DATABASE}"


def postgres_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def setup_dbos() -> Any:
    from dbos import DBOS, DBOSConfig

    @DBOS.step()
    async def tiny() -> int:
        return 1

    @DBOS.workflow()
    async def sequential(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            await tiny()
        return n / (time.perf_counter() - start)

    @DBOS.workflow()
    async def twenty() -> int:
        for _ in range(STEPS_EACH):
            await tiny()
        return STEPS_EACH

    config: DBOSConfig = {"name": "zart-bench", "system_database_url": PG_URL,
                          "log_level": "WARNING"}
    DBOS(config=config)
    DBOS.reset_system_database()
    DBOS.launch()
    return DBOS, sequential, twenty


async def dbos_rounds() -> tuple[list[float], list[float]]:
    dbos, sequential, twenty = setup_dbos()
    seq: list[float] = []
    con: list[float] = []
    try:
        for r in range(ROUNDS):
            print(f"DBOS round {r + 1}/{ROUNDS}", flush=True)
            handle = await dbos.start_workflow_async(sequential, SEQ_STEPS)
            seq.append(await handle.get_result())
            start = time.perf_counter()
            handles = [await dbos.start_workflow_async(twenty) for _ in range(EXECUTIONS)]
            await asyncio.gather(*(h.get_result() for h in handles))
            con.append(EXECUTIONS * STEPS_EACH / (time.perf_counter() - start))
    finally:
        dbos.destroy()
    return seq, con


async def zart_rounds(appendfsync: str) -> tuple[list[float], list[float]]:
    seq: list[float] = []
    con: list[float] = []
    with private_redis(appendfsync) as server:
        for r in range(ROUNDS):
            print(f"zart-es (appendfsync {appendfsync}) round {r + 1}/{ROUNDS}", flush=True)
            seq.append(await ours_sequential(server.url))
            con.append(await ours_concurrent(server.url))
    return seq, con


async def main() -> int:
    try:
        import dbos  # noqa: F401
    except ImportError:
        print("DBOS is not installed (pip install -e '.[bench]'): peer benchmark skipped")
        return 0
    if not postgres_reachable():
        print("no PostgreSQL on 127.0.0.1:5432: peer benchmark skipped")
        return 0
    # "always" fsyncs every write, as PostgreSQL's default synchronous commit does
    zart = {mode: await zart_rounds(mode) for mode in ("always", "everysec")}
    dbos_seq, dbos_con = await dbos_rounds()
    for mode, (zart_seq, zart_con) in zart.items():
        print(f"sequential steps/s: zart-es (appendfsync {mode}) {median(zart_seq):,.0f}, "
              f"DBOS {median(dbos_seq):,.0f}, ratio {median(zart_seq) / median(dbos_seq):.2f}")
        print(f"{EXECUTIONS} x {STEPS_EACH} steps/s: zart-es (appendfsync {mode}) "
              f"{median(zart_con):,.0f}, DBOS {median(dbos_con):,.0f}, "
              f"ratio {median(zart_con) / median(dbos_con):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(uvloop.run(main()))
