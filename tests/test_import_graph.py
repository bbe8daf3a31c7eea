"""The host's modules import each other one way: no cycles, no imports hidden to dodge one.

The graph is read from the source (``ast``), so nothing is imported: every
``import swayhost.x`` / ``from swayhost[.x] import y`` anywhere in a module,
function bodies included, is an edge; ``if TYPE_CHECKING:`` blocks are not
(they never run). A package's ``__init__`` that Python runs on the way to a
submodule is not an edge either: only the module named.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import swayhost

PACKAGE = Path(swayhost.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _resolve(name: str) -> str | None:
    """The host module ``name`` is, or lies in (``swayhost.x.Y`` -> ``swayhost.x``)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, *, nested: bool = False) -> Iterator[tuple[ast.stmt, str, bool]]:
    """(statement, imported host module, whether inside a function) for each import."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            continue
        inner = nested or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _resolve(alias.name)
                if target is not None:
                    yield node, target, nested
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                target = _resolve(f"{node.module}.{alias.name}") or _resolve(node.module)
                if target is not None:
                    yield node, target, nested
        else:
            yield from _imports(node, nested=inner)


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for _, target, _ in _imports(ast.parse(path.read_text())):
            if target != name:
                graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_is_read() -> None:
    graph = _graph()
    assert "swayhost.translate" in graph["swayhost.supervisor"]
    assert "swayhost.launch" in graph["swayhost.build"]


def test_no_import_cycle_among_host_modules() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_deferred_host_import_says_why() -> None:
    """A host import inside a function is for cost (a heavy optional dependency), and says so."""
    unexplained = []
    for name, path in MODULES.items():
        lines = path.read_text().splitlines()
        for node, target, nested in _imports(ast.parse("\n".join(lines))):
            if not nested:
                continue
            span = lines[node.lineno - 1 : (node.end_lineno or node.lineno)]
            if not any("#" in line for line in span):
                unexplained.append(f"{name}:{node.lineno} imports {target}")
    assert unexplained == []
