"""A step's total timeout: one deadline across all attempts and backoffs (issue 22), as
Zart's default ``timeout_scope = "global"``; beside the per-attempt ``timeout``."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from zart_es import Client, ConfigError, Context, Registry, durable
from zart_es.core import RetryPolicy, RetryScheduled, StepFailed

from .helpers import read_log

pytestmark = pytest.mark.redis


def _workflows(registry: Registry, attempts: list[float]) -> None:
    @durable("always-failing", registry=registry)
    async def always_failing(ctx: Context) -> str:
        def flaky() -> str:
            attempts.append(time.monotonic())
            raise ConnectionError("down")
        return str(await ctx.step_with_retry("call", flaky, retries=50, backoff="fixed",
                                             delay="150ms", jitter=False,
                                             total_timeout="700ms"))

    @durable("slow-attempts", registry=registry)
    async def slow_attempts(ctx: Context) -> str:
        async def slow() -> str:
            attempts.append(time.monotonic())
            await asyncio.sleep(5)
            return "never"
        return str(await ctx.step_with_retry("call", slow, retries=5, backoff="fixed",
                                             delay="100ms", timeout="2s",
                                             total_timeout="400ms"))


async def test_retries_stop_at_the_total_deadline(
    env: tuple[Client, Registry], redis: Redis
) -> None:
    client, registry = env
    attempts: list[float] = []
    _workflows(registry, attempts)
    await client.start("always-failing", execution_id="tt-1")
    status = await client.wait("tt-1", timeout=15)
    assert status.status == "failed"
    assert "did not finish within its total timeout of 700ms" in (status.error or "")
    assert 3 <= len(attempts) <= 6  # 700 ms of 150 ms backoffs, not 51 attempts
    assert attempts[-1] - attempts[0] < 0.7
    log = await read_log(redis, "tt-1")
    failed = [e for e in log if isinstance(e, StepFailed)]
    assert [(f.step, f.error_type) for f in failed] == [("call", "StepTimedOut")]
    retries = [e for e in log if isinstance(e, RetryScheduled)]
    last = retries[-1]
    assert last.at_ms + last.delay_ms - (retries[0].at_ms - retries[0].duration_us // 1000) < 700


async def test_an_attempt_is_cut_short_at_the_total_deadline(
    env: tuple[Client, Registry]
) -> None:
    client, registry = env
    attempts: list[float] = []
    _workflows(registry, attempts)
    began = time.monotonic()
    await client.start("slow-attempts", execution_id="tt-2")
    status = await client.wait("tt-2", timeout=15)
    assert status.status == "failed"
    assert "total timeout of 400ms (1 attempt(s))" in (status.error or "")
    assert len(attempts) == 1  # cut at 400 ms, not at its own 2 s; no retry after it
    assert time.monotonic() - began < 2


@pytest.mark.pure
def test_a_total_timeout_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="a total timeout must be longer than 0"):
        RetryPolicy.build(3, "fixed", "1s", "1s", total_timeout=0)
