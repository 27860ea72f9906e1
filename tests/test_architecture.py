"""The module structure that docs/architecture.md describes: imports flow one way."""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

import kprune

ROOT = pathlib.Path(kprune.__file__).parent


def _module_name(path: pathlib.Path) -> str:
    parts = ("kprune",) + path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Every kprune module and the kprune modules it imports (lazy ones too)."""
    paths = {_module_name(p): p for p in ROOT.rglob("*.py")}
    found = {}
    for name, path in paths.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "kprune"
            ):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    deps.add(full if full in paths else node.module)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("kprune"))
        found[name] = deps - {name}
    return found


def component(module: str) -> str:
    """`kprune.graph.tracer` -> `graph`; the package itself is the public API."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "(api)"


def component_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, deps in _imports().items():
        graph.setdefault(component(module), set()).update(
            component(d) for d in deps if component(d) != component(module)
        )
    return graph


def _cycle(graph) -> list[str] | None:
    """One import cycle, or None (depth-first search with colours)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep) :] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycles_between_components():
    assert _cycle(component_graph()) is None, " -> ".join(_cycle(component_graph()))


def test_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_only_the_cli_imports_the_public_api():
    users = {c for c, deps in component_graph().items() if "(api)" in deps}
    assert users <= {"cli", "__main__"}, users


@pytest.mark.parametrize(
    "low, high",
    [
        ("keras_graph", "handlers"),
        ("handlers", "graph"),
        ("graph", "layers"),
        ("litert", "export"),
        ("graph", "rebuild"),
        ("masks", "callbacks"),
    ],
)
def test_lower_layers_do_not_import_higher_ones(low, high):
    graph = component_graph()
    assert high not in graph.get(low, set()), f"{low} imports {high}"


def _body_length(node) -> int:
    """Lines of a function, its docstring left out."""
    length = node.end_lineno - node.lineno + 1
    first = node.body[0] if node.body else None
    if isinstance(first, ast.Expr) and isinstance(
        getattr(first, "value", None), ast.Constant
    ):
        length -= first.end_lineno - first.lineno + 1
    return length


def test_modules_and_functions_stay_small():
    """About 400 lines a module and 60 a function (docstrings aside)."""
    too_long = []
    for path in ROOT.rglob("*.py"):
        source = path.read_text()
        if len(source.splitlines()) > 420:
            too_long.append(f"{path.name}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if _body_length(node) > 60:
                    too_long.append(f"{path.name}:{node.name}: {_body_length(node)}")
    assert not too_long, too_long


def documented_levels() -> dict[str, int]:
    """Component -> level, from the table in docs/architecture.md."""
    text = (ROOT.parent / "docs" / "architecture.md").read_text()
    levels = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].isdigit():
            for name in re.findall(r"`([\w.]+)`", cells[1]):
                levels["(api)" if name == "kprune" else name] = int(cells[0])
    return levels


def test_every_import_goes_down_the_documented_levels():
    levels = documented_levels()
    graph = component_graph()
    missing = set(graph) - set(levels) - {"__main__"}
    assert not missing, f"add these to docs/architecture.md: {sorted(missing)}"
    upward = [
        f"{a} (level {levels[a]}) imports {b} (level {levels[b]})"
        for a, deps in graph.items()
        if a in levels
        for b in deps
        if levels[b] >= levels[a]
    ]
    assert not upward, upward


def test_no_bare_print_in_library_code():
    """Messages go through kprune.messages (`say`, `Steps`), which honour
    `verbose=`; a stray print cannot be silenced."""
    printing = []
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "print"
            ):
                printing.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not printing, printing
