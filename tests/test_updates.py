"""Updates: a durable request into a running execution and its recorded answer (issue 21).

``ctx.wait_for_update`` takes the next update of a declared name; ``reply`` / ``fail``
record the answer, which ``Client.update`` reads back from the log. A retry with the same
``update_id`` delivers nothing new and gets the same answer; the answer survives a
``kill -9`` of the worker between delivery and reply.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from redis.asyncio import Redis

from zart_es import (
    Client,
    ConfigError,
    Context,
    ExecutionEnded,
    ExecutionNotFound,
    Registry,
    UnknownUpdate,
    Update,
    UpdateFailed,
    UpdateTimeout,
    Worker,
    durable,
)
from zart_es.core import SignalReceived, UpdateReplied

from .helpers import count_effects, read_log, spawn_worker, stop_worker

pytestmark = pytest.mark.redis


def _workflows(registry: Registry, applied: list[int]) -> None:
    @durable("account", registry=registry, updates=["deposit", "limit"])
    async def account(ctx: Context) -> int:
        balance = 0
        limit = 100
        while True:
            update: Update = await ctx.wait_for_update("deposit", type=int)
            if update.payload < 0:
                await update.fail(ValueError("a deposit must not be negative"))
                continue
            if update.payload == 0:
                return balance  # ends without answering the last one

            def apply(amount: int = update.payload) -> int:
                applied.append(amount)
                return amount

            balance += await ctx.step(f"apply-{update.update_id}", apply)
            if balance > limit:
                await update.fail("over the limit")
            else:
                await update.reply({"balance": balance})

    @durable("undeclared-wait", registry=registry)
    async def undeclared(ctx: Context) -> None:
        await ctx.wait_for_update("anything")


async def test_an_update_is_answered_once_and_retries_get_the_same_answer(
    env: tuple[Client, Registry], redis: Redis
) -> None:
    client, registry = env
    applied: list[int] = []
    _workflows(registry, applied)
    await client.start("account", execution_id="acct")
    assert await client.update("acct", "deposit", 30) == {"balance": 30}
    assert await client.update("acct", "deposit", 12, update_id="d-2") == {"balance": 42}
    assert await client.update("acct", "deposit", 12, update_id="d-2") == {"balance": 42}
    assert applied == [30, 12]  # the retry ran nothing
    log = await read_log(redis, "acct")
    assert sum(isinstance(e, SignalReceived) for e in log) == 2
    assert [(e.name, e.update_id) for e in log if isinstance(e, UpdateReplied)][1] == (
        "deposit", "d-2")

    with pytest.raises(UpdateFailed, match="ValueError: a deposit must not be negative"):
        await client.update("acct", "deposit", -5)
    with pytest.raises(UpdateFailed, match="UpdateRejected: over the limit"):
        await client.update("acct", "deposit", 500)
    with pytest.raises(UnknownUpdate, match=r"workflow 'account' has no update 'withdraw' "
                                            r"\(declared: 'deposit', 'limit'\)"):
        await client.update("acct", "withdraw", 5, update_id="w-1")
    with pytest.raises(UnknownUpdate):  # the rejection is recorded: a retry gets it too
        await client.update("acct", "withdraw", 5, update_id="w-1")
    assert (await client.status("acct")).status == "waiting"

    with pytest.raises(UpdateFailed, match="ended without answering"):
        await client.update("acct", "deposit", 0)
    assert await client.result("acct", timeout=5) == 542
    with pytest.raises(ExecutionEnded):
        await client.update("acct", "deposit", 1)
    assert await client.update("acct", "deposit", 12, update_id="d-2") == {"balance": 42}


async def test_bad_updates_get_typed_errors(redis_url: str, registry: Registry) -> None:
    applied: list[int] = []
    _workflows(registry, applied)
    async with Client(redis_url) as client:
        with pytest.raises(ExecutionNotFound):
            await client.update("nobody", "deposit", 1)
        await client.start("account", execution_id="later")
        with pytest.raises(UpdateTimeout, match="update_id='u-1' waits for the same answer"):
            await client.update("later", "deposit", 7, update_id="u-1", timeout=0.3)
        for timeout in (0, -1, float("inf"), 4000):
            with pytest.raises(ConfigError, match="an update timeout must be in"):
                await client.update("later", "deposit", 1, timeout=timeout)
        with pytest.raises(ConfigError, match="are the engine's"):
            await client.send_signal("later", "zart.update:deposit", 1)
        async with Worker(redis_url, registry=registry, lease_timeout=1, poll_interval=0.05):
            # delivered while no worker ran: the same id now gets its answer
            assert await client.update("later", "deposit", 7, update_id="u-1") == {
                "balance": 7}
        assert applied == [7]


async def test_waiting_for_an_undeclared_update_fails_the_execution_clearly(
    env: tuple[Client, Registry],
) -> None:
    client, registry = env
    _workflows(registry, [])
    await client.start("undeclared-wait", execution_id="undeclared")
    status = await client.wait("undeclared", timeout=10)
    assert status.status == "failed"
    assert status.error == ("ConfigError: workflow 'undeclared-wait' waits for update "
                            "'anything' but declares only none: add it to "
                            "@durable(updates=[...])")


@pytest.mark.processes
async def test_the_answer_survives_a_kill9_between_delivery_and_reply(
    redis_url: str, redis: Redis, effects: Path, tmp_path: Path
) -> None:
    env = {"CRASH_DIR": str(tmp_path)}
    log = tmp_path / "w.log"
    async with Client(redis_url) as client:
        await client.start("ledger", execution_id="led")
        first = spawn_worker(redis_url, "tests.apps.updates", env=env, log=log)
        try:
            asked = asyncio.create_task(client.update("led", "deposit", 25, timeout=60))
            await asyncio.to_thread(first.wait, 30)  # it kills itself before replying
            assert first.returncode == -9
            assert not asked.done()
            second = spawn_worker(redis_url, "tests.apps.updates", env=env, log=log)
            try:
                assert await asyncio.wait_for(asked, 30) == 25
                assert await client.update("led", "deposit", 5, timeout=30) == 30
            finally:
                stop_worker(second)
        finally:
            stop_worker(first)
    assert count_effects(effects, "booked") == {"25": 1, "5": 1}
    replies = [e for e in await read_log(redis, "led") if isinstance(e, UpdateReplied)]
    assert [r.name for r in replies] == ["deposit", "deposit"]
