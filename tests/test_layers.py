"""The layers as a contract: the import rules hold, private modules and names stay private,
and docs/architecture.md's module map is the one the code's imports give."""

from __future__ import annotations

import ast

import pytest
from importlinter.cli import lint_imports

from tests import architecture

pytestmark = pytest.mark.pure

TOP_LEVEL = {"__init__.py", "__main__.py", "testing.py", "py.typed", *architecture.LAYERS}


def test_the_import_contracts_of_pyproject_hold() -> None:
    assert lint_imports(config_filename=str(architecture.ROOT / "pyproject.toml")) == 0


def test_the_top_level_shows_the_layers_and_the_public_modules_only() -> None:
    entries = {p.name for p in architecture.LIBRARY.iterdir() if p.name != "__pycache__"}
    assert entries <= TOP_LEVEL
    assert set(architecture.LAYERS) <= entries


def _private_imports(me: str, source: str) -> list[str]:
    """Imports, in module ``me``, of another package's private module, or of another
    module's private name."""
    my_package = architecture.package_of(me)
    found = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.ImportFrom) and node.module
                and node.module.startswith("zart_es")):
            continue
        private_module = any(part.startswith("_") for part in node.module.split(".")[1:])
        if private_module and architecture.package_of(node.module) != my_package:
            found.append(f"{me} imports {node.module}")
        for alias in node.names:
            submodule = (architecture.LIBRARY.joinpath(*node.module.split(".")[1:])
                         / f"{alias.name}.py").exists()
            if alias.name.startswith("_") and not alias.name.startswith("__") and not submodule:
                found.append(f"{me} imports {alias.name} from {node.module}")
    return found


def test_no_module_imports_another_packages_private_module_or_a_private_name() -> None:
    found = [f for path in sorted(architecture.LIBRARY.rglob("*.py"))
             for f in _private_imports(architecture.module_name(path),
                                       path.read_text(encoding="utf-8"))]
    assert found == []


def test_the_private_import_check_would_catch_one() -> None:
    probe = ("from zart_es.ops._pauses import _resume_one\n"
             "from zart_es.store._keys import Keys\n"
             "from zart_es.engine._runner import Outcome\n")
    assert _private_imports("zart_es.engine._probe", probe) == [
        "zart_es.engine._probe imports zart_es.ops._pauses",
        "zart_es.engine._probe imports _resume_one from zart_es.ops._pauses",
        "zart_es.engine._probe imports zart_es.store._keys",
    ]


def test_the_architecture_documents_module_map_is_generated_from_the_code() -> None:
    assert architecture.current() == architecture.render(), (
        "docs/architecture.md's module map is stale: run `python -m tests.architecture --write`")


def test_every_package_says_what_it_is_for() -> None:
    missing = [m.name for m in architecture.modules() if not m.summary]
    assert missing == []
