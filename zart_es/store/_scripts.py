"""The Lua scripts of ``zart_es/store/scripts/``."""

from __future__ import annotations

from importlib import resources


def load_script(name: str) -> str:
    """Text of ``zart_es/store/scripts/<name>.lua``."""
    return resources.files("zart_es.store").joinpath("scripts", f"{name}.lua").read_text()
