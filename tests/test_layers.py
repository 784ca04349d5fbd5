"""The layers as a contract: the import rules hold, private modules and names stay private,
and docs/architecture.md's module map is the one the code's imports give."""

from __future__ import annotations

import ast
import importlib
import re

import pytest
from importlinter.cli import lint_imports

from tests import architecture
from tests.helpers import ROOT

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


def test_every_docstring_reference_names_something_that_exists() -> None:
    """``:class:`~zart_es.x.Y``` and its kin resolve: a renamed module or a moved class
    leaves no docstring pointing nowhere."""
    missing = []
    for path in sorted(ROOT.joinpath("zart_es").rglob("*.py")):
        for match in REFERENCE.finditer(path.read_text()):
            if not _resolves(match.group(1)):
                missing.append(f"{path.relative_to(ROOT)}: {match.group(1)}")
    assert missing == []


REFERENCE = re.compile(r":(?:class|func|meth|mod|data|attr):`~?(zart_es[\w.]*)`")


def _resolves(target: str) -> bool:
    parts = target.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for name in parts[cut:]:
                found = getattr(found, name)
        except AttributeError:
            return False
        return True
    return False
