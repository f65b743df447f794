"""The shape of the source tree: every module says what it owns, none grows past what a reader
can hold (docs/development.md, "House style"), and the package ships its type information."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "gear"
SOURCES = sorted(PACKAGE.rglob("*.py"))

MAX_MODULE_LINES = 800
MAX_CLASS_LINES = 500


def _id(path: Path) -> str:
    return str(path.relative_to(PACKAGE.parent))


@pytest.mark.parametrize("path", SOURCES, ids=_id)
def test_module_has_a_docstring_and_a_readable_size(path: Path) -> None:
    source = path.read_text()
    tree = ast.parse(source)
    assert ast.get_docstring(tree), f"{_id(path)} has no module docstring"
    lines = source.count("\n")
    assert lines <= MAX_MODULE_LINES, f"{_id(path)} has {lines} lines"
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            size = (node.end_lineno or node.lineno) - node.lineno + 1
            assert size <= MAX_CLASS_LINES, f"{_id(path)}: class {node.name} has {size} lines"


def test_the_package_is_typed() -> None:
    assert (PACKAGE / "py.typed").is_file()
