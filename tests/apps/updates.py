"""The update crash test's workflow, run in real worker subprocesses.

``ledger`` takes ``deposit`` updates, books each in a step (a ``booked <amount>``
effect) and replies with the balance. With ``$CRASH_DIR`` set, the worker SIGKILLs
itself the first time it is about to reply to the first update (the update taken and
booked, the reply not recorded).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from zart_es import Context, durable

from .crash import effect


def _die_once(point: str) -> None:
    folder = os.environ.get("CRASH_DIR")
    if not folder:
        return
    try:
        (Path(folder) / point).touch(exist_ok=False)
    except FileExistsError:
        return
    os.kill(os.getpid(), signal.SIGKILL)


@durable("ledger", updates=["deposit"])
async def ledger(ctx: Context) -> int:
    balance = 0
    for i in range(3):
        update = await ctx.wait_for_update("deposit", type=int)

        def book(amount: int = update.payload) -> int:
            effect("booked", amount)
            return amount

        balance += await ctx.step(f"book-{i}", book)
        if i == 0:
            await ctx.step("before-reply", lambda: _die_once("reply"))
        await update.reply(balance)
    return balance
