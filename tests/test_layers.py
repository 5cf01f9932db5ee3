"""The package's layers, as docs/how-it-works.md maps them: every module imports
only from its own layer or a lower one (the write side never imports the read
side, nothing needs the layer above it), and no module is over 400 lines nor a
class over 250."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gql_observer"
#: Lowest first. The top level holds the public entry points (and the app).
LAYERS = ("core", "observe", "changes", "fanout", "graphql", "transport", "")


def _layer(module: str) -> str:
    """``gql_observer.graphql.watch`` -> ``graphql``; the top level -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else ""


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every ``gql_observer`` module ``path`` imports, at any depth (function-level
    imports count: they are dependencies too)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("gql_observer"):
                out.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("gql_observer")]
    return out


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    wrong = []
    for name, path in _modules().items():
        here = LAYERS.index(_layer(name)) if name != "gql_observer" else len(LAYERS) - 1
        for line, imported in _imports(path):
            if LAYERS.index(_layer(imported)) > here:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {imported}")
    assert not wrong, "\n".join(wrong)


def test_every_module_belongs_to_a_layer_of_the_map() -> None:
    subpackages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert subpackages - {"management"} == set(LAYERS) - {""}


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.name)
def test_modules_and_classes_stay_small(path: Path) -> None:
    source = path.read_text()
    assert len(source.splitlines()) <= 400, f"{path.name} has over 400 lines"
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            assert length <= 250, f"{path.name}: class {node.name} has {length} lines"
