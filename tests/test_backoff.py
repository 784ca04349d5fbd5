"""zart_es.core._backoff: the delay before each retry of ``ctx.step_with_retry``, pure maths."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zart_es.core import ConfigError, InvalidDuration, RetryPolicy

pytestmark = pytest.mark.pure


def delays(policy: RetryPolicy, count: int) -> list[int]:
    """Delays before attempts 2 .. count + 1 (the first ``count`` retries)."""
    return [policy.delay_before(attempt) for attempt in range(2, count + 2)]


# -- build ---------------------------------------------------------------------------------


def test_build_converts_durations_to_ms() -> None:
    policy = RetryPolicy.build(retries=10, backoff="exponential", delay="5s", max_delay="5m")
    assert policy == RetryPolicy(
        retries=10, backoff="exponential", delay_ms=5_000, max_delay_ms=300_000, jitter=True
    )


@pytest.mark.parametrize(
    ("delay", "max_delay", "delay_ms", "max_ms"),
    [
        (1, 60, 1_000, 60_000),
        (0.5, "1s", 500, 1_000),
        (timedelta(milliseconds=250), timedelta(seconds=2), 250, 2_000),
        ("0s", "0s", 0, 0),
        ("1m", "1m", 60_000, 60_000),
    ],
)
def test_build_accepts_every_duration_form(
    delay: Any, max_delay: Any, delay_ms: int, max_ms: int
) -> None:
    policy = RetryPolicy.build(retries=3, backoff="fixed", delay=delay, max_delay=max_delay)
    assert (policy.delay_ms, policy.max_delay_ms) == (delay_ms, max_ms)


def test_zero_retries_is_allowed() -> None:
    assert RetryPolicy.build(retries=0, backoff="fixed", delay="1s", max_delay="1s").retries == 0


@pytest.mark.parametrize("retries", [-1, -100, 1.0, 2.5, "3", None, True, False])
def test_bad_retries_is_a_config_error(retries: Any) -> None:
    with pytest.raises(ConfigError, match="retries") as info:
        RetryPolicy.build(retries=retries, backoff="fixed", delay="1s", max_delay="1s")
    assert repr(retries) in str(info.value)


@pytest.mark.parametrize("backoff", ["", "Exponential", "random", "jitter", None, 1])
def test_bad_backoff_is_a_config_error(backoff: Any) -> None:
    with pytest.raises(ConfigError, match="backoff") as info:
        RetryPolicy.build(retries=3, backoff=backoff, delay="1s", max_delay="1s")
    assert repr(backoff) in str(info.value)


@pytest.mark.parametrize(("delay", "max_delay"), [("5m", "5s"), ("2s", "1999ms"), (1, 0)])
def test_max_shorter_than_delay_is_a_config_error(delay: Any, max_delay: Any) -> None:
    with pytest.raises(ConfigError, match="max_delay"):
        RetryPolicy.build(retries=3, backoff="exponential", delay=delay, max_delay=max_delay)


@pytest.mark.parametrize(("delay", "max_delay"), [("5 parsecs", "1m"), ("1s", "-1s"), (True, 5)])
def test_bad_durations_are_invalid_duration(delay: Any, max_delay: Any) -> None:
    with pytest.raises(InvalidDuration):
        RetryPolicy.build(retries=3, backoff="linear", delay=delay, max_delay=max_delay)


# -- delay_before --------------------------------------------------------------------------


def test_exponential_sequence() -> None:
    policy = RetryPolicy.build(retries=10, backoff="exponential", delay="1s", max_delay="1m",
                               jitter=False)
    assert delays(policy, 9) == [
        1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000,
    ]


def test_exponential_from_the_design_example() -> None:
    # step_with_retry("provision", ..., retries=10, backoff="exponential", delay="5s",
    # max_delay="5m")
    policy = RetryPolicy.build(retries=10, backoff="exponential", delay="5s", max_delay="5m",
                               jitter=False)
    assert delays(policy, 10) == [
        5_000, 10_000, 20_000, 40_000, 80_000, 160_000,
        300_000, 300_000, 300_000, 300_000,
    ]


def test_linear_sequence() -> None:
    policy = RetryPolicy.build(retries=10, backoff="linear", delay="5s", max_delay="22s")
    assert delays(policy, 6) == [5_000, 10_000, 15_000, 20_000, 22_000, 22_000]


def test_fixed_sequence() -> None:
    policy = RetryPolicy.build(retries=10, backoff="fixed", delay="250ms", max_delay="1h")
    assert delays(policy, 5) == [250] * 5


def test_zero_delay_stays_zero() -> None:
    for kind in ("exponential", "linear", "fixed"):
        policy = RetryPolicy.build(retries=5, backoff=kind, delay=0, max_delay="1m")
        assert delays(policy, 5) == [0] * 5


@pytest.mark.parametrize("attempt", [1, 0, -1])
def test_no_delay_before_the_first_attempt(attempt: int) -> None:
    policy = RetryPolicy.build(retries=3, backoff="fixed", delay="1s", max_delay="1s")
    with pytest.raises(ValueError, match=str(attempt)):
        policy.delay_before(attempt)


@pytest.mark.parametrize("kind", ["exponential", "linear", "fixed"])
@pytest.mark.parametrize("attempt", [1_000, 10**6, 10**18, 2**100])
def test_huge_attempt_numbers_are_capped_cheaply(kind: str, attempt: int) -> None:
    policy = RetryPolicy.build(retries=10, backoff=kind, delay="1s", max_delay="10m",
                               jitter=False)
    expected = 1_000 if kind == "fixed" else 600_000
    assert policy.delay_before(attempt) == expected


def test_exponent_cap_keeps_the_sequence_monotone() -> None:
    # a max_delay larger than any capped exponent: the sequence still never shrinks
    policy = RetryPolicy(retries=100, backoff="exponential", delay_ms=1, max_delay_ms=2**80)
    sequence = [policy.delay_before(attempt) for attempt in range(55, 80)]
    assert all(a <= b for a, b in itertools.pairwise(sequence))
    assert sequence[0] == 2**53
    assert all(d <= policy.max_delay_ms for d in sequence)


# -- properties ----------------------------------------------------------------------------

kinds = st.sampled_from(["exponential", "linear", "fixed"])
delay_ms = st.integers(min_value=0, max_value=10**7)


@st.composite
def policies(draw: st.DrawFn, kind: st.SearchStrategy[str] = kinds) -> RetryPolicy:
    delay = draw(delay_ms)
    max_delay = delay + draw(st.integers(min_value=0, max_value=10**9))
    return RetryPolicy.build(
        retries=draw(st.integers(min_value=0, max_value=50)),
        backoff=draw(kind),
        delay=timedelta(milliseconds=delay),
        max_delay=timedelta(milliseconds=max_delay),
        jitter=False,  # the closed forms; jitter has its own properties below
    )


@settings(max_examples=200, deadline=None)
@given(policies(st.sampled_from(["exponential", "linear"])), st.integers(2, 200))
def test_growing_backoff_is_monotone(policy: RetryPolicy, count: int) -> None:
    sequence = delays(policy, count)
    assert all(a <= b for a, b in itertools.pairwise(sequence))


@settings(max_examples=200, deadline=None)
@given(policies(), st.integers(min_value=2, max_value=2**80))
def test_never_exceeds_max_delay(policy: RetryPolicy, attempt: int) -> None:
    delay = policy.delay_before(attempt)
    assert 0 <= delay <= policy.max_delay_ms
    assert isinstance(delay, int)


@settings(max_examples=200, deadline=None)
@given(policies())
def test_first_retry_waits_the_base_delay(policy: RetryPolicy) -> None:
    assert policy.delay_before(2) == policy.delay_ms


@settings(max_examples=200, deadline=None)
@given(policies(), st.integers(min_value=2, max_value=60))
def test_closed_forms(policy: RetryPolicy, attempt: int) -> None:
    n = attempt - 1
    raw = {
        "fixed": policy.delay_ms,
        "linear": policy.delay_ms * n,
        "exponential": policy.delay_ms * 2 ** (n - 1),
    }[policy.backoff]
    assert policy.delay_before(attempt) == min(raw, policy.max_delay_ms)


@settings(max_examples=200, deadline=None)
@given(policies(), st.integers(min_value=2, max_value=10**6))
def test_growing_backoff_reaches_max_eventually(policy: RetryPolicy, attempt: int) -> None:
    # far enough out, exponential and linear (with a non-zero delay) sit at the cap
    far = 10**12
    if policy.backoff != "fixed" and policy.delay_ms > 0:
        assert policy.delay_before(far + attempt) == policy.max_delay_ms
    else:
        assert policy.delay_before(far + attempt) == policy.delay_ms


# -- jitter --------------------------------------------------------------------------------


def test_jitter_is_on_by_default_and_deterministic_per_seed() -> None:
    policy = RetryPolicy.build(retries=10, backoff="exponential", delay="1s", max_delay="1m")
    assert policy.jitter
    first = [policy.delay_before(a, seed="exec-1:charge") for a in range(2, 10)]
    assert first == [policy.delay_before(a, seed="exec-1:charge") for a in range(2, 10)]
    other = [policy.delay_before(a, seed="exec-2:charge") for a in range(2, 10)]
    assert first != other  # two executions failing together do not retry in lockstep


@given(seed=st.text(max_size=40), attempt=st.integers(2, 80),
       delay_ms=st.integers(0, 10**9), cap_ms=st.integers(0, 10**10))
def test_jittered_delay_is_between_half_and_the_full_delay(
    seed: str, attempt: int, delay_ms: int, cap_ms: int
) -> None:
    policy = RetryPolicy(retries=100, backoff="exponential", delay_ms=delay_ms,
                         max_delay_ms=max(cap_ms, delay_ms), jitter=True)
    plain = RetryPolicy(retries=100, backoff="exponential", delay_ms=delay_ms,
                        max_delay_ms=max(cap_ms, delay_ms))
    full = plain.delay_before(attempt)
    assert full - full // 2 - 1 <= policy.delay_before(attempt, seed=seed) <= full


def test_jitter_leaves_linear_and_fixed_alone() -> None:
    for kind in ("linear", "fixed"):
        policy = RetryPolicy.build(retries=5, backoff=kind, delay="1s", max_delay="1m")
        assert policy.delay_before(3, seed="x") == policy.delay_before(3, seed="y")


def test_jitter_must_be_a_bool() -> None:
    with pytest.raises(ConfigError, match="jitter"):
        RetryPolicy.build(retries=1, backoff="fixed", delay="1s", max_delay="1s",
                          jitter="yes")  # type: ignore[arg-type]
