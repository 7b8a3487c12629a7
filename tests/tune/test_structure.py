"""The tuner stays made of small parts (issue 15): short functions, no import cycle between its modules, and no
private name used across modules (an import of ``_name``, or ``obj._name`` on anything but ``self``/``cls``)."""

from __future__ import annotations

import ast
from pathlib import Path

import dse

DSE = Path(dse.__file__).resolve().parent
TUNE = DSE / "tune"
MAX_FUNCTION_LINES = 60


def _modules(folder: Path) -> dict[str, ast.Module]:
    """Module name (dse.x.y) -> its syntax tree, for every file under `folder`."""
    out = {}
    for path in sorted(folder.rglob("*.py")):
        parts = path.relative_to(DSE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = ast.parse(path.read_text(), filename=str(path))
    return out


def _imports(tree: ast.Module) -> list[tuple[str, list[str]]]:
    """(module, names imported from it) of every import in `tree`."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out.extend((a.name, []) for a in node.names)
    return out


def function_lengths(folder: Path) -> dict[str, int]:
    """Lines of every function and method (nested ones too) under `folder`, by ``path:line name``."""
    out = {}
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out[f"{path.relative_to(DSE.parent)}:{node.lineno} {node.name}"] = node.end_lineno - node.lineno + 1
    return out


def test_every_function_of_the_tuner_fits_a_screen() -> None:
    lengths = function_lengths(TUNE)
    assert lengths, "no function found"
    too_long = {k: v for k, v in lengths.items() if v > MAX_FUNCTION_LINES}
    assert not too_long, too_long


def test_the_tuner_modules_import_each_other_without_a_cycle() -> None:
    modules = _modules(TUNE)
    edges = {name: {m for m, _ in _imports(tree) if m in modules and m != "dse.tune"}
             for name, tree in modules.items()}
    assert edges["dse.tune.multiphase"], "the driver imports no tuner module: the scan is broken"
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"import cycle: {' -> '.join((*path, name))}"
        if name in done:
            return
        for dep in edges[name]:
            visit(dep, (*path, name))
        done.add(name)

    for name in modules:
        visit(name, ())


def test_no_private_name_crosses_a_tuner_module() -> None:
    """The tuner imports no private name, nobody imports one of the tuner's, and the tuner reads no private
    attribute of another object."""
    found = []
    for name, tree in _modules(DSE).items():
        for module, names in _imports(tree):
            if name.startswith("dse.tune") or module.startswith("dse.tune"):
                found += [f"{name}: from {module} import {n}" for n in names if n.startswith("_")]
        if not name.startswith("dse.tune"):
            continue
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
                    # torch's multi-tensor ops, the API torch.optim itself steps with (dse/tune/adam.py)
                    and not (isinstance(node.value, ast.Name) and node.value.id == "torch"
                             and node.attr.startswith("_foreach_"))):
                found.append(f"{name}:{node.lineno} .{node.attr}")
    assert not found, found
