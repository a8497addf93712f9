"""The layout's rules that a move could break: no import circle among the project's modules, counting imports
made only for type checking and inside functions (both still tie the modules together)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGES = ("gateway", "scripts", "examples")


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The project modules `path` imports, anywhere in it (a function-level import closes a circle too)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base
                                                                                                   else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for t in targets:
            if t.split(".")[0] not in PACKAGES and f"{package}.{t}" in known:
                t = f"{package}.{t}"  # a sibling imported by its bare name (a script's sys.path)
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def _graph() -> dict[str, set[str]]:
    paths = {_module(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    # a package's __init__ re-exporting its modules is not a circle with them
    return {name: {t for t in _imports(path, name, set(paths)) if not (path.name == "__init__.py"
                                                                        and t.startswith(name + "."))}
            for name, path in paths.items()}


def test_no_module_imports_itself_through_others():
    graph = _graph()
    assert "gateway.backends.errors" in graph["gateway.backends.http_pool"]  # the checker sees imports
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_checker_finds_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
