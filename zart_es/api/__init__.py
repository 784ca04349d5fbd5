"""The HTTP API (Litestar): one client call per route.
"""

from zart_es.api._access import access_log
from zart_es.api._app import create_app

__all__ = [
    "access_log",
    "create_app",
]
