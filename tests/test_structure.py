"""The package's shape: layers whose imports point only down, no import cycle, no file over 450 lines, no function
over 80, few lazy imports.

The layer map (drawn in the README's "How it fits together") is written once, here: :data:`LAYERS`, lowest first.
A module belongs to the layer of the longest prefix that names it; ``__main__`` modules are entry points (apps).
Every import counts (top level, inside functions, under ``TYPE_CHECKING``), and importing ``a.b.c`` also runs the
``__init__`` of ``a`` and ``a.b``: those packages are dependencies too (except the importer's own packages, which
Python has already run)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("dff_gs", "cuda_ext")

LAYERS = (
    ("core", ("dff_gs", "dff_gs.core")),
    ("kernels", ("cuda_ext",)),
    ("render, data", ("dff_gs.render", "dff_gs.data", "dff_gs.io", "dff_gs.eval", "dff_gs.teachers")),
    ("methods", ("dff_gs.train", "dff_gs.nerf", "dff_gs.lift", "dff_gs.backbone")),
    ("engine", ("dff_gs.engine",)),
    ("query", ("dff_gs.query",)),
    ("apps", ("dff_gs.edit", "dff_gs.view", "dff_gs.bench", "dff_gs.cli", "dff_gs.launch", "dff_gs.process")),
)
"""The layers, lowest first: a module may import its own layer's modules (without a cycle) and those below."""

MAX_LAZY_IMPORTS = 56
"""Imports of the project's own modules inside functions, at most (a third of the 168 before the layers): each one
says why on its line (``# lazy: ...``)."""


def modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for f in (ROOT / package).rglob("*.py"):
            parts = f.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def layer_of(name: str) -> int:
    if name.rpartition(".")[2] == "__main__":
        return len(LAYERS) - 1
    best, level = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (name == p or name.startswith(p + ".")) and len(p) > best:
                best, level = len(p), i
    assert level is not None, f"{name} is in no layer: add it to LAYERS"
    return level


def imports(tree: ast.AST, in_function: bool = False):
    """``(node, in_function)`` for every import statement, at any depth (``TYPE_CHECKING`` blocks included)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, in_function
        yield from imports(node, in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)))


def imported_names(node, name: str, is_package: bool, mods: dict) -> list[str]:
    """The project's modules an import statement of module ``name`` names (relative imports resolved)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    if node.level:
        root = name if is_package else name.rpartition(".")[0]
        for _ in range(node.level - 1):
            root = root.rpartition(".")[0]
        base = f"{root}.{base}" if base else root
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]


def owner(name: str, mods: dict):
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """Module -> the project's modules (and packages whose ``__init__`` runs) it imports."""
    mods = modules()
    graph = {}
    for name, f in mods.items():
        is_package = f.name == "__init__.py"
        own = {name.rsplit(".", k)[0] for k in range(name.count(".") + 1)}  # itself and the packages above it
        deps = set()
        for node, _ in imports(ast.parse(f.read_text())):
            for target in imported_names(node, name, is_package, mods):
                if target.split(".")[0] not in PACKAGES:
                    continue
                parts = target.split(".")
                deps |= {owner(".".join(parts[:k]), mods) for k in range(1, len(parts) + 1)}
        graph[name] = deps - own - {None}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} ({LAYERS[layer_of(a)][0]}) -> {b} ({LAYERS[layer_of(b)][0]})"
                  for a, deps in graph.items() for b in deps if layer_of(b) > layer_of(a))


def lazy_imports() -> list[tuple[str, int, str]]:
    """``(module, line, source line)`` of each import of the project's own modules inside a function, in dff_gs."""
    mods = modules()
    out = []
    for name, f in mods.items():
        if not name.startswith("dff_gs"):
            continue
        source = f.read_text()
        lines = source.splitlines()
        for node, in_function in imports(ast.parse(source)):
            names = imported_names(node, name, f.name == "__init__.py", mods)
            if in_function and any(n.split(".")[0] in PACKAGES for n in names):
                out.append((name, node.lineno, lines[node.end_lineno - 1]))
    return out


def test_no_import_cycles():
    graph = import_graph()
    assert len(graph) > 100
    assert "dff_gs.engine.pipeline" in graph["dff_gs.cli.train"]  # the checker sees function-level imports
    assert "dff_gs.query" in graph["dff_gs.edit.nerf"]  # ... and the packages whose __init__ an import runs
    assert cycles(graph) == []


def test_imports_point_only_down():
    graph = import_graph()
    assert {layer_of(m) for m in graph} == set(range(len(LAYERS)))
    assert not any(d.startswith("dff_gs") for d in set().union(*(graph[m] for m in graph if m.startswith("cuda_ext"))))
    assert upward_imports(graph) == []


def test_lazy_imports_are_few_and_say_why():
    lazy = lazy_imports()
    assert len(lazy) <= MAX_LAZY_IMPORTS, f"{len(lazy)} imports inside functions"
    assert [f"{m}:{n}" for m, n, line in lazy if "# lazy:" not in line] == []


def test_the_checker_finds_a_cycle_and_an_upward_import():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert upward_imports({"dff_gs.core.errors": {"dff_gs.cli"}}) == ["dff_gs.core.errors (core) -> dff_gs.cli (apps)"]
    assert layer_of("dff_gs.render.__main__") == len(LAYERS) - 1


def test_files_and_functions_stay_small():
    big_files, long_functions = [], []
    for name, f in modules().items():
        source = f.read_text()
        if source.count("\n") > 450:
            big_files.append(f"{name}: {source.count(chr(10))} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 80:
                long_functions.append(f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert big_files == [] and long_functions == []
