"""The code's shape, kept: modules of one concern and a size a reader can hold, and no import cycle.

A module over MAX_MODULE_LINES or a function over MAX_FUNCTION_LINES is a sign that concerns are mixed (the
app factory once grew to a 284-line closure); an import cycle between ccweb's modules is one between concerns
(config and policy once imported each other through a lazy import).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"ccweb": ROOT / "service" / "ccweb", "ccweb_helper": ROOT / "helper" / "ccweb_helper"}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 120


def modules() -> Iterator[tuple[str, Path]]:
    for package, directory in PACKAGES.items():
        for path in sorted(directory.rglob("*.py")):
            parts = path.relative_to(directory).with_suffix("").parts
            name = ".".join((package, *parts)).removesuffix(".__init__")
            yield name, path


MODULES = dict(modules())


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_size(name: str) -> None:
    lines = len(MODULES[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, f"{name} has {lines} lines: split it by concern"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_function_size(name: str) -> None:
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{name}: {', '.join(long)}"


def imports(name: str) -> set[str]:
    """The project modules ``name`` imports, anywhere in it (function-level imports count too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            candidates = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(c for c in candidates if c in MODULES and c != name)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (module → what it imports), as a path that ends where it starts."""
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> list[str] | None:
        if name in path:
            return [*path[path.index(name):], name]
        if name in done:
            return None
        for target in sorted(graph[name]):
            cycle = visit(target, [*path, name])
            if cycle:
                return cycle
        done.add(name)
        return None

    return next((cycle for name in sorted(graph) if (cycle := visit(name, []))), None)


def test_no_import_cycle() -> None:
    cycle = find_cycle({name: imports(name) for name in MODULES})
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_imports_and_cycles_are_seen() -> None:
    assert "ccweb.config" in imports("ccweb.policy")
    assert "ccweb.policy" not in imports("ccweb.config")
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
