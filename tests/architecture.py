"""The module map of ``docs/architecture.md``, generated from the code's real imports.

``python -m tests.architecture --write`` rewrites the part of the document between the
``module-map`` markers; ``tests/test_layers.py`` fails while that part is stale.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = ROOT / "zart_es"
DOC = ROOT / "docs" / "architecture.md"
BEGIN = "<!-- module-map:begin -->"
END = "<!-- module-map:end -->"

LAYERS = ["cli", "api", "demo", "client", "engine", "audit", "ops", "archive", "store", "workflow",
          "core"]
"""Packages from the top layer down (the order of pyproject's import-linter contract)."""


@dataclass(frozen=True)
class Module:
    """One module of the library: its dotted name, first docstring line, imports."""

    name: str
    summary: str
    imports: frozenset[str]
    """Dotted names of the zart_es modules and packages it imports."""

    @property
    def package(self) -> str:
        parts = self.name.split(".")
        return parts[1] if len(parts) > 2 else ""


def module_name(path: Path) -> str:
    """``zart_es/core/_fold.py`` -> ``zart_es.core._fold`` (packages without __init__)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(tree: ast.Module) -> frozenset[str]:
    """The zart_es modules a module imports, wherever the import stands."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "zart_es" or node.module.startswith("zart_es."):
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names
                             if a.name.startswith("_") and not a.name.startswith("__"))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("zart_es"))
    return frozenset(found)


def summary(docstring: str) -> str:
    """The first sentence of a docstring's first paragraph, on one line."""
    paragraph = " ".join(docstring.strip().split("\n\n")[0].split())
    end = paragraph.find(". ")
    return paragraph if end < 0 else paragraph[:end + 1]


def modules() -> list[Module]:
    """Every module of the library, sorted by name."""
    found = []
    for path in sorted(LIBRARY.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found.append(Module(module_name(path), summary(ast.get_docstring(tree) or ""),
                            imported(tree)))
    return found


def package_of(dotted: str) -> str:
    """The layer package a dotted name belongs to ("" for the top-level modules)."""
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else ""


def package_edges() -> dict[str, list[str]]:
    """For each layer package, the other layer packages it imports (top layer first)."""
    edges: dict[str, set[str]] = {p: set() for p in LAYERS}
    for module in modules():
        if module.package not in edges:
            continue
        edges[module.package].update(
            package_of(i) for i in module.imports if package_of(i) not in ("", module.package))
    return {p: sorted(edges[p], key=LAYERS.index) for p in LAYERS}


def render() -> str:
    """The generated part of the document."""
    lines = [BEGIN, "",
             "Generated from the code by `python -m tests.architecture --write`. Which layer",
             "imports which:", "", "```"]
    lines += [f"{p:<9} -> {', '.join(d) or '(nothing of zart_es)'}"
              for p, d in package_edges().items()]
    lines += ["```", "", "| module | what it is for |", "| --- | --- |"]
    lines += [f"| `{m.name}` | {m.summary.replace('|', '/')} |" for m in modules()]
    lines += ["", END]
    return "\n".join(lines)


def current() -> str:
    """The generated part as the document has it now ("" if it has none)."""
    text = DOC.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        return ""
    return text[text.index(BEGIN):text.index(END) + len(END)]


def write() -> None:
    """Replace the generated part of the document with a fresh one."""
    text = DOC.read_text(encoding="utf-8")
    DOC.write_text(text.replace(current(), render()) if current() else text + render() + "\n",
                   encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write()
    else:
        print(render())
