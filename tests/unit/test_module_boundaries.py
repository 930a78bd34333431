"""Module boundaries across src/: no module imports or reaches into another module's underscore names, and
nothing but the driver registry imports the QEMU driver's entry-point module (the verbs share context.py).

Checked on the source with `ast`; the checker is also run on planted violations, so it is seen to catch them.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "virtsnap"


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def own_names(tree: ast.AST) -> set[str]:
    """Underscore names this module defines itself: functions, classes, assignments, attributes it sets."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.keyword) and node.arg:
            names.add(node.arg)  # a field set by name (dataclasses.replace, a constructor of this module's class)
    return {n for n in names if _private(n)}


def violations(source: str, module: str, theirs: set[str]) -> list[str]:
    """Every place where `module` imports an underscore name, or reads off an object an underscore attribute
    that it does not define itself and another virtsnap module does (`theirs`). A third-party library's own
    underscore attributes (lxml's _Element, pyVmomi's _moId) are that library's business, not checked here."""
    tree = ast.parse(source)
    mine = own_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            for alias in node.names:
                if _private(alias.name):
                    found.append(f"{module}:{node.lineno}: imports {alias.name} from {node.module or '.'}")
        elif isinstance(node, ast.Attribute) and _private(node.attr) and node.attr not in mine \
                and node.attr in theirs:
            found.append(f"{module}:{node.lineno}: reaches into .{node.attr}")
    return found


@functools.cache
def sources() -> list[tuple[str, str]]:
    return [(str(p.relative_to(SRC.parent)), p.read_text()) for p in sorted(SRC.rglob("*.py"))]


@functools.cache
def defined_anywhere() -> set[str]:
    return set().union(*(own_names(ast.parse(text)) for _, text in sources()))


def test_no_module_uses_another_modules_underscore_names() -> None:
    theirs = defined_anywhere()
    found = [v for module, text in sources() for v in violations(text, module, theirs)]
    assert found == []


def test_only_the_registry_imports_the_qemu_entry_points() -> None:
    """check.py, recovery.py and the verb modules work on context.py's Context, never on the driver."""
    importers = []
    for module, text in sources():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and (
                    (module.startswith("virtsnap/drivers/qemu/") and node.level == 1 and node.module == "driver")
                    or node.module == "virtsnap.drivers.qemu.driver"):
                importers.append(module)
    assert importers == []


@pytest.mark.parametrize(("planted", "expected"), [
    ("from .driver import _def_of\n", "imports _def_of from driver"),
    ("from . import driver\ndriver._active_nodes(None)\n", "reaches into ._active_nodes"),
    ("def f(drv):\n    return drv._tree('u')\n", "reaches into ._tree"),
])
def test_the_checker_catches_planted_violations(planted: str, expected: str) -> None:
    theirs = defined_anywhere() | {"_def_of", "_active_nodes", "_tree"}  # as driver.py once defined them
    assert [v.split(": ", 1)[1] for v in violations(planted, "x.py", theirs)] == [expected]


def test_the_checker_allows_a_modules_own_underscore_names() -> None:
    own = "class A:\n    def __init__(self):\n        self._x = 1\n\ndef f(a: A):\n    return a._x\n"
    assert violations(own, "x.py", {"_x"}) == []
