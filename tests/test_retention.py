"""Retention: how long an ended execution stays in Redis (parsing and declaration)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from zart_es.core import (
    DEFAULT_RETENTION_MS,
    InvalidDuration,
    deployment_retention,
    parse_retention,
)
from zart_es.workflow import Registry

pytestmark = pytest.mark.pure


def test_durations_and_none() -> None:
    assert parse_retention("30d") == 30 * 86_400_000
    assert parse_retention(timedelta(hours=1)) == 3_600_000
    assert parse_retention(0) == 0
    assert parse_retention("none") is None
    assert parse_retention(" None ") is None


def test_bad_retention_names_the_value() -> None:
    with pytest.raises(InvalidDuration, match=r"'forever'.*'none' to keep for ever"):
        parse_retention("forever")
    with pytest.raises(InvalidDuration, match="negative"):
        parse_retention(-1)


def test_deployment_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZART_RETENTION", raising=False)
    assert deployment_retention() == DEFAULT_RETENTION_MS == 7 * 86_400_000
    monkeypatch.setenv("ZART_RETENTION", "none")
    assert deployment_retention() is None
    monkeypatch.setenv("ZART_RETENTION", "2h")
    assert deployment_retention() == 7_200_000
    assert deployment_retention("1s") == 1000  # the option wins over the environment


def test_durable_declares_retention() -> None:
    registry = Registry()

    async def short(ctx: object) -> None: ...
    async def kept(ctx: object) -> None: ...
    async def plain(ctx: object) -> None: ...

    registry.register("short", short, retention="1d")  # type: ignore[arg-type]
    registry.register("kept", kept, retention="none")  # type: ignore[arg-type]
    registry.register("plain", plain)  # type: ignore[arg-type]
    assert registry.retentions() == {"short": 86_400_000, "kept": None}
    assert registry.get("plain").retention_ms == "default"
    with pytest.raises(InvalidDuration):
        registry.register("bad", plain, retention="soon")  # type: ignore[arg-type]
