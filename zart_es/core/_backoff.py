"""Backoff maths for ``ctx.step_with_retry``: pure, no clock, no randomness.

Jitter is drawn from a hash of (seed, attempt) rather than a random generator: the same
execution and step always get the same delays (tests can predict them), while different
executions failing together spread out instead of retrying in lockstep.
"""

from __future__ import annotations

import zlib
from typing import Literal

import msgspec

from zart_es.core._durations import Duration, to_ms
from zart_es.core._errors import ConfigError, NonRetryableError

BackoffKind = Literal["exponential", "linear", "fixed"]
_KINDS: tuple[str, ...] = ("exponential", "linear", "fixed")


class RetryPolicy(msgspec.Struct, frozen=True):
    """How often and how far apart a failing step is tried again.

    ``retries`` is the number of *re*-tries: a step runs at most ``retries + 1`` times.
    """

    retries: int
    backoff: str
    delay_ms: int
    max_delay_ms: int
    jitter: bool = False
    """Exponential delays are drawn from [delay/2, delay] (deterministically per seed)."""
    retry_on: tuple[type[BaseException], ...] | None = None
    """Only failures of these types are retried (None: every failure)."""
    no_retry: tuple[type[BaseException], ...] = ()
    """Failures of these types are not retried (checked before ``retry_on``)."""
    total_timeout_ms: int | None = None
    """One deadline across every attempt and backoff, counted from the first attempt's
    start (Zart's global timeout scope): no attempt starts, or runs on, past it."""

    @classmethod
    def build(
        cls,
        retries: int,
        backoff: str,
        delay: Duration,
        max_delay: Duration,
        jitter: bool = True,
        *,
        retry_on: tuple[type[BaseException], ...] | None = None,
        no_retry: tuple[type[BaseException], ...] = (),
        total_timeout: Duration | None = None,
    ) -> RetryPolicy:
        """Validate user arguments into a policy; a :class:`ConfigError` names the bad one."""
        for what, kinds in (("retry_on", retry_on or ()), ("no_retry", no_retry)):
            if not isinstance(kinds, tuple) or not all(
                    isinstance(k, type) and issubclass(k, BaseException) for k in kinds):
                raise ConfigError(f"{what} must be a tuple of exception types, got {kinds!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigError(f"retries must be a non-negative int, got {retries!r}")
        if backoff not in _KINDS:
            raise ConfigError(f"backoff must be one of {', '.join(_KINDS)}, got {backoff!r}")
        delay_ms, max_ms = to_ms(delay), to_ms(max_delay)
        if max_ms < delay_ms:
            raise ConfigError(f"max_delay ({max_delay!r}) is shorter than delay ({delay!r})")
        if not isinstance(jitter, bool):
            raise ConfigError(f"jitter must be True or False, got {jitter!r}")
        total_ms = None if total_timeout is None else to_ms(total_timeout)
        if total_ms is not None and total_ms <= 0:
            raise ConfigError(f"a total timeout must be longer than 0, got {total_timeout!r}")
        return cls(retries=retries, backoff=backoff, delay_ms=delay_ms, max_delay_ms=max_ms,
                   jitter=jitter, retry_on=retry_on, no_retry=no_retry,
                   total_timeout_ms=total_ms)

    def retries_after(self, exc: BaseException, attempt: int) -> bool:
        """Whether attempt ``attempt``, failed with ``exc``, is followed by another one.

        Not after the last retry, not for a :class:`NonRetryableError`, not for a type in
        ``no_retry``, and, when ``retry_on`` is given, only for a type in it."""
        if attempt > self.retries or isinstance(exc, (NonRetryableError, *self.no_retry)):
            return False
        return self.retry_on is None or isinstance(exc, self.retry_on)

    def delay_before(self, attempt: int, *, seed: str = "") -> int:
        """Milliseconds to wait before ``attempt`` (2 = the first retry), capped at max_delay.

        exponential: delay, 2*delay, 4*delay, ...; linear: delay, 2*delay, 3*delay, ...;
        fixed: delay every time. With ``jitter`` an exponential delay d becomes a value in
        [d/2, d] chosen by ``seed`` and ``attempt`` ("equal jitter"): never later than
        without jitter, and the same for the same seed.
        """
        if attempt < 2:
            raise ValueError(f"attempt {attempt} has no delay before it; retries start at 2")
        n = attempt - 1  # 1 for the first retry
        if self.backoff == "fixed":
            raw = self.delay_ms
        elif self.backoff == "linear":
            raw = self.delay_ms * n
        else:
            # cap the exponent first: 2**n for large n would be a huge int for nothing
            raw = self.delay_ms * (1 << min(n - 1, 62))
        capped = min(raw, self.max_delay_ms)
        if self.jitter and self.backoff == "exponential":
            return jittered(capped, seed, attempt)
        return capped


def jittered(delay_ms: int, seed: str, attempt: int) -> int:
    """``delay_ms`` minus up to half of it, the fraction taken from crc32(seed, attempt)."""
    fraction = zlib.crc32(f"{seed}\n{attempt}".encode()) / 2**32
    return delay_ms - int(delay_ms / 2 * fraction)
