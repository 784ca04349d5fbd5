"""What every ``zart-es`` command shares: the client from the connection options, JSON
arguments, output as a table on a terminal or JSON otherwise, times, the operator."""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import importlib
import json
import math
import os
import sys
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import msgspec

from zart_es.client import Client
from zart_es.core import ConfigError, ZartError, to_ms

Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]
"""A subcommand: parsed arguments in, exit status out."""


class AddCommand(Protocol):
    """Adds a subcommand (with the connection options every command takes)."""

    def __call__(self, name: str, help_text: str, *aliases: str) -> argparse.ArgumentParser:
        ...


def client_for(args: argparse.Namespace) -> Client:
    """A client of the deployment the command's ``--redis-url``/``--partitions`` name."""
    return Client(args.redis_url, partitions=args.partitions,
                  archive_url=getattr(args, "archive_url", None))


def json_arg(text: str, option: str) -> Any:
    """The JSON value of a command-line option, or a one-line ZartError naming it."""
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except json.JSONDecodeError as exc:
        raise ZartError(f"{option} is not valid JSON: {exc}") from None
    except ValueError as exc:  # NaN / Infinity, or a number too large for a float
        raise ZartError(f"{option} is not valid JSON: {exc}") from None
    except RecursionError:
        raise ZartError(f"{option} is nested too deeply") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text} does not fit a 64-bit float")
    return value


def print_json(value: Any) -> None:
    """One line of JSON on stdout."""
    print(msgspec.json.encode(value, enc_hook=str).decode())


def _tables(args: argparse.Namespace) -> bool:
    return not args.json and sys.stdout.isatty()


def show(args: argparse.Namespace, value: Any, columns: Sequence[str],
          rows: Iterable[Sequence[str]], *, title: str | None = None) -> None:
    """Print ``value`` as JSON, or, on a terminal without ``--json``, ``rows`` as a table
    (no header when ``columns`` is empty). ``rows`` is only consumed for the table."""
    if not _tables(args):
        print_json(value)
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    bare: dict[str, Any] = {} if columns else {"show_header": False, "box": None}
    table = Table(*columns, title=title, **bare)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # user data: never rich markup
    Console().print(table)


def when(ms: int) -> str:
    """A time in ms since the epoch, as UTC text to the millisecond."""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def operator() -> str:
    """Who runs the command (recorded with repairs, pauses and schedule changes)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in a bare container
        return ""


def import_apps(modules: list[str]) -> None:
    """Import the ``--app`` modules (their ``@durable`` functions register), from the
    current directory too; a one-line ZartError for one that does not import."""
    sys.path.insert(0, os.getcwd())
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ZartError(f"cannot import --app {module!r}: {exc}") from None


def moment_arg(text: str | None, option: str) -> datetime | None:
    """``--since``/``--until``: ISO 8601 (UTC without an offset) or a duration ago."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        try:
            return datetime.now(UTC) - timedelta(milliseconds=to_ms(text))
        except ConfigError:
            raise ConfigError(f"{option} must be ISO 8601 (2026-01-31T12:00:00+01:00) or a "
                              f"duration ago (30m, 2h, 7d), got {text!r}") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@contextmanager
def progress_bar(what: str, quiet: bool) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr in a terminal (nothing when piped or with --json)."""
    if quiet or not sys.stderr.isatty():
        yield lambda done, total: None
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(what, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
