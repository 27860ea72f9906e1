"""The structure docs/architecture.md describes: a package per concept, imports
flowing one way, small modules, and the API rules that keep it so."""

from __future__ import annotations

import ast
import importlib
import inspect
import pathlib
import pkgutil
import re

import pytest

import kprune

ROOT = pathlib.Path(kprune.__file__).parent
#: What may sit in kprune/ itself beside the packages.
MAX_FLAT_MODULES = 12
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60
MAX_NAMED_PARAMETERS = 15


def _module_name(path: pathlib.Path) -> str:
    parts = ("kprune",) + path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, pathlib.Path]:
    return {_module_name(p): p for p in ROOT.rglob("*.py")}


def _imports() -> dict[str, set[str]]:
    """Every kprune module and the kprune modules it imports (lazy ones too)."""
    paths = _sources()
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
    """`kprune.dependency.tracer` -> `dependency`; the package itself is the
    public API."""
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


def test_no_import_cycles_between_modules():
    """Not even inside a package (a package's `__init__` re-exporting a module
    that imports the package back would be one)."""
    graph = {m: {d for d in deps if d != m} for m, deps in _imports().items()}
    for module, deps in graph.items():  # `from kprune.x import y` of a module
        graph[module] = {d for d in deps if d in graph}
    found = _cycle(graph)
    assert found is None, " -> ".join(found)


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
        ("handlers", "dependency"),
        ("dependency", "criteria"),
        ("surgery", "importance"),
        ("exporters", "importance"),
        ("exporters", "loops"),
        ("loops", "latency"),
        ("loops", "importance"),
        ("results", "planning"),
    ],
)
def test_lower_packages_do_not_import_higher_ones(low, high):
    graph = component_graph()
    assert high not in graph.get(low, set()), f"{low} imports {high}"


def test_kprune_itself_holds_a_few_modules_beside_its_packages():
    flat = sorted(p.name for p in ROOT.glob("*.py"))
    assert len(flat) <= MAX_FLAT_MODULES, flat
    packages = sorted(p.parent.name for p in ROOT.glob("*/__init__.py"))
    for name in packages:
        doc = ast.get_docstring(ast.parse((ROOT / name / "__init__.py").read_text()))
        assert doc and len(doc.splitlines()) >= 3, (
            f"{name}/__init__.py: say what it owns"
        )


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
    """At most 450 lines a module and about 60 a function (docstrings aside)."""
    too_long = []
    for path in ROOT.rglob("*.py"):
        source = path.read_text()
        name = path.relative_to(ROOT)
        if len(source.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{name}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if _body_length(node) > MAX_FUNCTION_LINES:
                    too_long.append(f"{name}:{node.name}: {_body_length(node)}")
    assert not too_long, too_long


def _public_callables():
    """`(qualified name, callable)` of every public function and class of
    every kprune module."""
    for info in pkgutil.walk_packages(kprune.__path__, "kprune."):
        if info.name == "kprune.__main__":
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if name.startswith("_") or getattr(value, "__module__", "") != info.name:
                continue
            if inspect.isfunction(value) or inspect.isclass(value):
                yield f"{info.name}.{name}", value


def _named_parameters(fn) -> list[str]:
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return []
    kinds = (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )
    return [p.name for p in parameters if p.kind in kinds and p.name != "self"]


def test_no_public_function_takes_more_than_15_named_parameters():
    crowded = []
    for name, value in _public_callables():
        targets = [value]
        if inspect.isclass(value):
            targets = [
                member
                for key, member in vars(value).items()
                if inspect.isfunction(member) and (key == "__init__" or key[0] != "_")
            ]
        for fn in targets:
            count = len(_named_parameters(fn))
            if count > MAX_NAMED_PARAMETERS:
                crowded.append(f"{name}.{fn.__name__}: {count}")
    assert not crowded, crowded


#: The settings of kprune's own fine-tuning; they live in `kprune.FineTune`.
TUNING = {"epochs", "learning_rate", "lr_schedule", "batch_size", "distill",
          "recalibrate", "fine_tune", "fine_tune_fn", "fine_tune_epochs",
          "final_epochs"}  # fmt: skip


#: Trainings of their own, not the fine-tuning of a pruned model: the
#: multipliers' learning phase.
OWN_TRAINING = {"kprune.importance.learning.learn_importance"}


def test_the_fine_tuning_settings_are_declared_in_one_place():
    """No public signature but `FineTune`'s declares more than one of them
    (`recalibrate(model, data, batches, batch_size)` has its own batch)."""
    found = []
    for name, value in _public_callables():
        fn = value.__init__ if inspect.isclass(value) else value
        methods = [fn]
        if inspect.isclass(value):
            methods += [m for k, m in vars(value).items() if inspect.isfunction(m)]
        for method in methods:
            shared = TUNING.intersection(_named_parameters(method))
            own = name in OWN_TRAINING or name == "kprune.loops.settings.FineTune"
            if len(shared) > 1 and not own:
                found.append(f"{name}.{method.__name__}: {sorted(shared)}")
    assert not found, found


def test_no_public_name_shadows_a_submodule():
    """`import kprune.x` and `kprune.x` are the same thing, in every package."""
    shadowed = []
    for info in pkgutil.walk_packages(kprune.__path__, "kprune."):
        if not info.ispkg:
            continue
        package = importlib.import_module(info.name)
        for sub in pkgutil.iter_modules(package.__path__):
            value = getattr(package, sub.name, None)
            if value is not None and not inspect.ismodule(value):
                shadowed.append(f"{info.name}.{sub.name}")
    for sub in pkgutil.iter_modules(kprune.__path__):
        value = getattr(kprune, sub.name, None)
        if value is not None and not inspect.ismodule(value):
            shadowed.append(f"kprune.{sub.name}")
    assert not shadowed, shadowed


def test_no_home_made_training_model():
    """Distillation is Keras' (`keras.distillation`); kprune defines no
    `keras.Model` subclass of its own."""
    found = []
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(b) for b in node.bases]
                if any(
                    b in ("keras.Model", "Model", "keras.models.Model") for b in bases
                ):
                    found.append(f"{path.relative_to(ROOT)}:{node.name}")
    assert not found, found


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


def test_no_private_keras_outside_the_internals_package():
    """Only `kprune.keras_graph` touches `keras.src` or Keras' private
    attributes (`_direction`, `_nodes_by_depth`, ...)."""
    found = []
    for path in ROOT.rglob("*.py"):
        if path.parent.name == "keras_graph":
            continue
        text = path.read_text()
        for pattern in (r"keras\.src", r"\._direction\b", r"\._compile_config\b",
                        r"\._nodes_by_depth\b", r"\._inbound_nodes\b"):  # fmt: skip
            if re.search(pattern, text):
                found.append(f"{path.relative_to(ROOT)}: {pattern}")
    assert not found, found
