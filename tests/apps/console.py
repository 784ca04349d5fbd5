"""Workflows the console's browser tests drive (tests/test_console.py): one whose timeline
has a bit of everything, one that waits for a signal (to be cancelled), one whose charge
fails until ``$CONSOLE_FLAG_DIR/provider-up`` exists (to be repaired with retry-step)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

from zart_es import Context, SignalTimeout, durable, queue

_attempts: dict[str, int] = {}


async def _flaky_charge(order: str) -> str:
    _attempts[order] = _attempts.get(order, 0) + 1
    await asyncio.sleep(0.08)
    if _attempts[order] == 1:
        raise TimeoutError("payment provider slow")
    return f"charged {order}"


@durable("console-order")
async def order(ctx: Context, order_id: str) -> dict[str, str]:
    """Steps, a retried step with its backoff, a sleep, a signal wait and a child."""
    await ctx.step("reserve", lambda: asyncio.sleep(0.05, result="reserved"))
    charge = await ctx.step_with_retry("charge", lambda: _flaky_charge(order_id),
                                       retries=3, backoff="fixed", delay="300ms")
    await ctx.sleep("400ms")
    with contextlib.suppress(SignalTimeout):  # nobody approved in time: ship anyway
        await ctx.wait_for_signal("approval", timeout="300ms")
    invoice = await ctx.call("console-invoice", order_id)
    await ctx.step("ship", lambda: asyncio.sleep(0.03, result="shipped"))
    return {"charge": charge, "invoice": invoice}


@durable("console-invoice")
async def invoice(ctx: Context, order_id: str) -> str:
    """The child of ``console-order``."""
    return await ctx.step("render", lambda: asyncio.sleep(0.12, result=f"invoice-{order_id}"))


@durable("console-approval")
async def approval(ctx: Context, order_id: str) -> str:
    """Waits for signal ``go`` (no timeout): the execution to cancel from the console."""
    await ctx.step("prepare", lambda: order_id)
    return str(await ctx.wait_for_signal("go"))


def _charge_or_fail(order_id: str) -> str:
    if not (Path(os.environ["CONSOLE_FLAG_DIR"]) / "provider-up").exists():
        raise ConnectionError("payment provider down")
    return f"charged {order_id}"


@durable("console-checkout")
async def checkout(ctx: Context, order_id: str) -> str:
    """Fails at ``charge`` until the flag file exists: the execution to repair."""
    await ctx.step("reserve", lambda: order_id)
    charged = await ctx.step("charge", lambda: _charge_or_fail(order_id))
    await ctx.step("confirm", lambda: charged)
    return charged


queue("console-slots", concurrency=1)


@durable("console-queued", queue="console-slots")
async def queued(ctx: Context, n: int) -> str:
    """One slot: the first holds it while it waits for signal ``go``, the next waits."""
    return str(await ctx.wait_for_signal("go"))


@durable("console-desk", updates=["ask"])
async def desk(ctx: Context) -> None:
    """Answers ``ask`` updates; query ``asked`` lists the questions so far."""
    asked: list[str] = []
    ctx.on_query("asked", lambda: asked)
    while True:
        update = await ctx.wait_for_update("ask", type=str)
        asked.append(update.payload)
        await update.reply(f"answer to {update.payload}")
