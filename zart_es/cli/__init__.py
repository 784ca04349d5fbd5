"""The ``zart-es`` command line."""

from zart_es.cli._main import build_parser, main

__all__ = ["build_parser", "main"]
