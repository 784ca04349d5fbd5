"""``on_failure`` as Zart runs it (issue 22, ``failure_mode="inline"``): in the same
execution, with the original input and the error; its value recovers the execution."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from zart_es import (
    Client,
    ConfigError,
    Context,
    ExecutionFailedError,
    FailureInfo,
    Registry,
    durable,
)
from zart_es.core import StepCompleted, StepFailed
from zart_es.testing import WorkflowHarness

from .helpers import read_log

pytestmark = pytest.mark.redis


def _workflows(registry: Registry, ran: list[str]) -> None:
    async def refund(ctx: Context, order: str, failure: FailureInfo) -> str:
        await ctx.step("refund", lambda: ran.append(f"refund {order}"))
        if order == "hopeless":
            raise RuntimeError(f"could not refund {order} after {failure.error_type}")
        return f"refunded {order} after {failure.error_type}: {failure.message}"

    @durable("charge-inline", registry=registry, on_failure=refund, failure_mode="inline")
    async def charge(ctx: Context, order: str) -> str:
        await ctx.step("reserve", lambda: ran.append(f"reserve {order}"))

        def pay() -> str:
            raise ConnectionError("card provider down")
        return str(await ctx.step("pay", pay))


async def test_the_inline_handler_recovers_the_execution_with_its_value(
    env: tuple[Client, Registry], redis: Redis
) -> None:
    client, registry = env
    ran: list[str] = []
    _workflows(registry, ran)
    await client.start("charge-inline", "o-1", execution_id="inline-1")
    assert await client.result("inline-1", timeout=10) == (
        "refunded o-1 after StepFailedError: step 'pay' failed after 1 attempt(s): "
        "ConnectionError: card provider down")
    log = await read_log(redis, "inline-1")
    assert [e.step for e in log if isinstance(e, StepCompleted)] == ["reserve", "refund"]
    assert [e.step for e in log if isinstance(e, StepFailed)] == ["pay"]
    assert ran == ["reserve o-1", "refund o-1"]
    assert "charge-inline.on-failure" not in registry  # no separate execution in this mode

    await client.start("charge-inline", "hopeless", execution_id="inline-2")
    with pytest.raises(ExecutionFailedError, match="could not refund hopeless"):
        await client.result("inline-2", timeout=10)


@pytest.mark.pure
async def test_the_harness_runs_it_the_same_way() -> None:
    registry = Registry()
    ran: list[str] = []
    _workflows(registry, ran)
    harness = WorkflowHarness(registry)
    harness.start("charge-inline", "o-9")
    await harness.settle()
    assert str(harness.result()).startswith("refunded o-9 after StepFailedError")


@pytest.mark.pure
def test_a_bad_inline_handler_is_refused() -> None:
    registry = Registry()

    async def two(ctx: Context, data: str) -> None: ...

    async def flow(ctx: Context) -> None: ...

    with pytest.raises(ConfigError, match="takes \\(ctx, data, failure\\)"):
        registry.register("w", flow, on_failure=two, failure_mode="inline")
    with pytest.raises(ConfigError, match="failure_mode must be one of execution, inline"):
        registry.register("w2", flow, on_failure=two, failure_mode="later")
