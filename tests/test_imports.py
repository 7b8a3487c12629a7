"""The package's import structure: no import cycle between dse's modules, and a small public surface in
`dse/__init__.py` that resolves and costs nothing until used.

The graph counts every import statement of a module: top level, inside functions (deferred imports) and under
TYPE_CHECKING, since each is a dependency of the design even where Python would tolerate the loop.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import dse

ROOT = Path(dse.__file__).resolve().parent


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the dse modules it imports (``from pkg import sub`` counts as an import of pkg.sub)."""
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from .x import y
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            deps |= {_owner(t, files) for t in targets if t == "dse" or t.startswith("dse.")}
        graph[name] = deps - {name, None}
    return graph


def _owner(target: str, files: dict[str, Path]) -> str | None:
    """The module a dotted import target lives in (a.b.c -> a.b when c is a name defined in a.b)."""
    while target and target not in files:
        target = target.rpartition(".")[0]
    return target or None


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_every_kind_of_import(tmp_path: Path) -> None:
    pkg = tmp_path / "dse"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from dse.sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..c import VALUE\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import dse.a\n")
    graph = import_graph(pkg)
    assert graph["dse.a"] == {"dse.sub.b"} and graph["dse.sub.b"] == {"dse.c"} and graph["dse.c"] == {"dse.a"}
    assert cycles(graph) == [["dse.a", "dse.c", "dse.sub.b"]]


def test_no_import_cycle_in_dse() -> None:
    graph = import_graph()
    assert "dse.config" in graph["dse.compile.__main__"] and "dse.config" in graph["dse.explore.runner"]
    assert cycles(graph) == []


def test_config_sits_below_the_entry_points() -> None:
    """dse.config imports no entry point (dse.cli, dse.sweep, dse.compile's command line) and nothing of the
    sweep (dse.explore): they import it."""
    graph = import_graph()
    config = [m for m in graph if m == "dse.config" or m.startswith("dse.config.")]
    above = ("dse.cli", "dse.sweep", "dse.compile", "dse.explore")
    for m in config:
        assert not [d for d in graph[m] if d.startswith(above)], m


def test_every_public_name_resolves() -> None:
    for name in dse.__all__:
        assert getattr(dse, name) is not None, name
    assert callable(dse.compile) and callable(dse.prepare) and callable(dse.run_study)
    assert dse.HardwareSpec().name == "custom"


def test_import_dse_is_cheap() -> None:
    """`import dse` loads none of the heavy dependencies: each public name is imported when first read."""
    heavy = ("torch", "optuna", "hydra", "ray", "pandas")
    code = f"import sys, dse; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_compile_command_loads_no_heavy_module_before_it_needs_one() -> None:
    """The modules a compile starts with (its command line, the config, the importer, the passes, the report)
    load none of the heavy dependencies that only some runs use: each is imported where it is used (0.1 to
    3 CPU s each at start-up otherwise)."""
    heavy = ("onnxruntime", "pandas", "matplotlib", "optuna", "ray", "scipy", "sklearn", "onnx.reference", "rich",
             "pymetis", "torch._dynamo", "PIL", "nir")
    code = ("import sys, dse.compile, dse.compile.__main__, dse.config, dse.frontends.onnx, dse.passes, "
            f"dse.data.loading; print(sorted(m for m in {heavy} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
