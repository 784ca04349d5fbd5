"""The access log of the HTTP API: one structlog line per request, wrapped around the
whole ASGI app (unknown routes and errors included) by ``zart-es api`` and ``zart-es dev``.

Fields: ``method``, ``path``, ``status``, ``duration_ms`` (first byte of the request to
the end of the reply) and ``client``. The query string is left out: it is not needed to
read the log and may carry what a log should not.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger()
LOGGER = "zart_es.api.access"


def access_log(app: ASGIApp) -> ASGIApp:
    """``app`` logging a line per HTTP request once its reply is sent."""

    async def logged(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # if the app fails before it answers, the server answers 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, sending)
        finally:
            client: Any = scope.get("client")
            method: str = scope["method"]
            log.info("request", logger=LOGGER, method=method, path=scope["path"], status=status,
                     duration_ms=round((time.perf_counter() - started) * 1000, 3),
                     client=f"{client[0]}:{client[1]}" if client else None)

    return logged
