"""structlog, configured once: JSON lines in production, a console renderer on a TTY.

Loggers are bound with ``execution_id``, ``workflow``, ``step`` and ``attempt`` via
contextvars and keyword binding; replayed steps log nothing.

One stream: unless the application configured the standard library's logging itself,
its records (uvicorn's, redis-py's, asyncio's) go through the same processors and the
same renderer to the same stderr, so a process writes one kind of line.

:class:`Complaints` logs a record a loop cannot use once, not once per tick.
"""

from __future__ import annotations

import logging
import os
import sys
from collections import OrderedDict
from typing import Any

import structlog

_HANDLER_NAME = "zart-es"


def configure_logging(*, json: bool | None = None, level: str | None = None) -> None:
    """Configure structlog for this process (JSON unless stderr is a terminal), and route
    the standard library's records through it when no other handler takes them."""
    level_name = (level or os.environ.get("ZART_LOG_LEVEL") or "INFO").upper()
    numeric = logging.getLevelName(level_name)
    if not isinstance(numeric, int):
        numeric = logging.INFO
    use_json = json if json is not None else not sys.stderr.isatty()
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    _route_stdlib(numeric, shared, renderer)


def _route_stdlib(level: int, shared: list[structlog.typing.Processor],
                  renderer: structlog.typing.Processor) -> None:
    """A root handler rendering stdlib records like structlog's own (the logger's name
    as ``logger``, ``extra=`` fields kept); replaced on reconfiguration, never added
    beside a handler the application installed."""
    root = logging.getLogger()
    ours = [h for h in root.handlers if h.get_name() == _HANDLER_NAME]
    if len(ours) != len(root.handlers):
        return  # the application logs its own way: leave it be
    for handler in ours:
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name,
                           structlog.stdlib.ExtraAdder(), _drop_color_message],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, renderer],
    ))
    root.addHandler(handler)
    root.setLevel(level)


def _drop_color_message(_logger: object, _name: str,
                        event: structlog.typing.EventDict) -> structlog.typing.EventDict:
    """uvicorn's ``extra`` copy of its message with terminal colour codes: noise here."""
    event.pop("color_message", None)
    return event


class Complaints:
    """Logs each record a loop cannot use once, not on every tick it is met again.

    A record is named by ``what`` (its key and field, say); a complaint is logged again
    only when its error changes. Remembers at most ``limit`` records (the oldest are
    forgotten first), so hostile data cannot grow a worker's memory.
    """

    def __init__(self, log: Any, limit: int = 10_000) -> None:
        self._log = log
        self._limit = limit
        self._said: OrderedDict[str, str] = OrderedDict()

    def once(self, message: str, what: str, error: BaseException | str, **detail: Any) -> None:
        """Log ``message`` at error level about record ``what``, unless already said."""
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        if self._said.get(what) == text:
            self._said.move_to_end(what)
            return
        self._said[what] = text
        if len(self._said) > self._limit:
            self._said.popitem(last=False)
        self._log.error(message, record=what, error=text, **detail)

    def forget(self, what: str) -> None:
        """``what`` is usable again: a new fault of it will be logged."""
        self._said.pop(what, None)
