"""The rows of docs/from-zart.md that no other test module covers: each Zart construct's
zart-es spelling behaves as the porting guide says."""

from __future__ import annotations

import re

import pytest

from zart_es import Context, Registry, durable
from zart_es.core import RetryPolicy, StepCompleted
from zart_es.testing import WorkflowHarness

from .helpers import ROOT

pytestmark = pytest.mark.pure


@pytest.mark.parametrize(("zart", "backoff", "delays"), [
    ("fixed(3, 1s)", "fixed", [1000, 1000, 1000]),
    ("exponential(3, 1s)", "exponential", [1000, 2000, 4000]),
])
def test_zart_retry_strings_map_to_retries_and_backoff(
    zart: str, backoff: str, delays: list[int]
) -> None:
    # Zart counts retries after the first attempt, doubles without jitter, has no cap
    policy = RetryPolicy.build(3, backoff, "1s", "1h", jitter=False)
    assert [policy.delay_before(n) for n in (2, 3, 4)] == delays, zart
    assert policy.retries_after(RuntimeError(), 3)
    assert not policy.retries_after(RuntimeError(), 4)  # 1 + 3 attempts, as Zart's


async def test_templated_step_names_sleeps_and_loops_port_one_to_one() -> None:
    registry = Registry()

    @durable("regions", registry=registry)
    async def regions(ctx: Context, names: list[str]) -> list[str]:
        # #[zart_step("process-{region}")] -> an f-string name
        done = [await ctx.step(f"process-{region}", lambda r=region: r.upper())
                for region in names]
        # zart::sleep("cool-down", d) -> a named durable sleep
        await ctx.sleep("1s", name="cool-down")
        # zart::capture / zart::now -> a step / ctx.now()
        await ctx.now()
        return done

    harness = WorkflowHarness(registry)
    harness.start("regions", ["eu", "us"])
    await harness.run()
    assert "sleep:cool-down" in harness.timers
    harness.advance(1000)
    await harness.settle()
    assert harness.result() == ["EU", "US"]
    steps = [e.step for e in harness.events if isinstance(e, StepCompleted)]
    assert steps == ["process-eu", "process-us", "now-0"]


def test_every_row_of_the_porting_guide_names_a_test_that_exists() -> None:
    guide = (ROOT / "docs" / "from-zart.md").read_text()
    cited = re.findall(r"`(tests/[\w/]+\.py)(?:::(\w+))?`", guide)
    assert len(cited) >= 30
    for path, name in cited:
        source = (ROOT / path).read_text()
        assert not name or f"def {name}(" in source, f"{path}::{name}"
