"""Dependencies point one way: no import cycle between the package's modules (imports inside functions
included), and the product never imports the benchmarks or the test harness."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "split_perception"
LEAVES = ("split_perception.bench", "split_perception.harness")  # import the product; nothing in it imports them
# Entry points that assemble the product and the leaves into commands
ENTRY_POINTS = ("split_perception.cli", "split_perception.demo", "split_perception.fuzz")


def module_files(root: Path = PACKAGE) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package's __init__)."""
    mods = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        init = parts[-1] == "__init__"
        mods[".".join(parts[:-1] if init else parts)] = (path, init)
    return mods


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its file (top level, functions, branches)."""
    mods = module_files(root)
    top = root.name

    def known(name: str) -> str | None:  # the module itself, or the package a name is taken from
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, (path, init) in mods.items():
        package = name if init else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {known(a.name) for a in node.names if a.name.split(".")[0] == top}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[:len(package.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                if source.split(".")[0] != top:
                    continue
                for a in node.names:  # `from pkg import module` imports the module
                    targets.add(f"{source}.{a.name}" if f"{source}.{a.name}" in mods else known(source))
        graph[name] = targets - {None, name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def is_leaf(module: str) -> bool:
    return any(module == leaf or module.startswith(leaf + ".") for leaf in LEAVES)


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert "split_perception.bench.cli" in graph["split_perception.cli"]  # imported in a function
    assert "split_perception.config" in graph["split_perception.onboard.export_files"]  # `from ..config import`
    assert "split_perception.bench.pca_codec" in graph["split_perception.bench.rate_accuracy"]  # `from . import`


def test_cycle_detection_finds_a_cycle_through_a_function_level_import(tmp_path):
    pkg = tmp_path / "split_perception"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..a import g\n")
    (pkg / "c.py").write_text("import split_perception.a\n")
    assert cycles(import_graph(pkg)) == [["split_perception.a", "split_perception.sub.b"]]


def test_no_import_cycles():
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(
        " <-> ".join(c) + ": " + ", ".join(f"{a} -> {b}" for a in c for b in sorted(graph[a]) if b in c)
        for c in found)


def test_product_code_does_not_import_benchmarks_or_harness():
    graph = import_graph()
    bad = sorted(f"{a} -> {b}" for a, targets in graph.items() if not is_leaf(a) and a not in ENTRY_POINTS
                 for b in targets if is_leaf(b))
    assert not bad, "product modules importing bench/harness:\n" + "\n".join(bad)
