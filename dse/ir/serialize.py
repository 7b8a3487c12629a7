"""Save and load a Graph as one `.npz` file: the structure as JSON, every array as an entry of its own.

No pickle: a compiled network from someone else loads without running their code.
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from dse.errors import ModelError
from dse.files import atomic_write, not_an_npz
from dse.ir import ops as o
from dse.ir.graph import Graph, Node

FORMAT = "dse-graph/2"
OP_TYPES: dict[str, type[o.Op]] = {cls.__name__: cls for cls in o.ALL_OPS}
"""The op type a file's node names (its class name); a new op type is readable once it is here."""
RENAMED: dict[str, dict[str, str]] = {  # per readable format, the old names of op types renamed since
    "dse-graph/1": {"Affine": "ScaleShift"},
    FORMAT: {},
}


def _encode(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(value, np.ndarray):
        key = f"a{len(arrays)}"
        arrays[key] = value
        return {"__array__": key}
    if isinstance(value, o.CoreQuant):
        return {"__quant__": {f.name: _encode(getattr(value, f.name), arrays) for f in dataclasses.fields(value)}}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, arrays) for v in value]}
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def _decode(value: Any, arrays: Any) -> Any:
    if isinstance(value, dict) and "__array__" in value:
        return arrays[value["__array__"]]
    if isinstance(value, dict) and "__quant__" in value:
        return o.CoreQuant(**{k: _decode(v, arrays) for k, v in value["__quant__"].items()})
    if isinstance(value, dict) and "__tuple__" in value:
        return tuple(_decode(v, arrays) for v in value["__tuple__"])
    return value


def graph_document(graph: Graph) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The graph as JSON-able nodes and outputs, its arrays apart (named in the nodes by key)."""
    arrays: dict[str, np.ndarray] = {}
    nodes = [
        {
            "name": n.name, "op": type(n.op).__name__, "inputs": list(n.inputs), "block": n.block,
            "fields": {f.name: _encode(getattr(n.op, f.name), arrays) for f in dataclasses.fields(n.op)},
        }
        for n in graph
    ]
    return {"nodes": nodes, "outputs": list(graph.outputs)}, arrays


def save_graph(graph: Graph, path: str | Path, meta: dict[str, Any] | None = None, *, compress: bool = True) -> None:
    """Write atomically: a crash leaves the old file or none, never half a file. `compress=False` for a file
    read back often and shared with no one (a cache entry): no time spent deflating and inflating it."""
    body, arrays = graph_document(graph)
    doc = {"format": FORMAT, **body, "meta": meta or {}}
    write = np.savez_compressed if compress else np.savez
    atomic_write(Path(path), lambda tmp: write(
        tmp, __graph__=np.frombuffer(json.dumps(doc).encode(), dtype=np.uint8), **arrays))


def load_graph(path: str | Path) -> tuple[Graph, dict[str, Any]]:
    """The graph and the metadata saved with it."""
    problem = not_an_npz(path)
    if problem:
        raise ModelError(f"{path}: not a dse graph file (a compile's compiled.npz): {problem}")
    try:
        with np.load(path, allow_pickle=False) as data:
            if "__graph__" not in data.files:
                raise ModelError(f"{path}: not a dse graph file (a compile's compiled.npz): an .npz archive "
                                 f"without its __graph__ entry (it holds {', '.join(data.files[:4]) or 'nothing'}"
                                 f"{', ...' if len(data.files) > 4 else ''})")
            doc = json.loads(bytes(data["__graph__"]).decode())
            if not isinstance(doc, dict) or doc.get("format") not in RENAMED:
                what = doc.get("format") if isinstance(doc, dict) else None
                raise ModelError(f"{path}: not a dse graph file (format {what!r})")
            arrays = {k: data[k] for k in data.files if k != "__graph__"}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:  # a truncated archive
        raise ModelError(f"{path}: cannot read a dse graph file ({exc})") from None
    nodes = []
    for n in doc["nodes"]:
        op_type = OP_TYPES.get(RENAMED[doc["format"]].get(n["op"], n["op"]))
        if op_type is None:
            raise ModelError(f"{path}: node {n['name']!r} has an unknown op type {n['op']!r}")
        op = op_type(**{k: _decode(v, arrays) for k, v in n["fields"].items()})
        nodes.append(Node(n["name"], op, tuple(n["inputs"]), n["block"]))
    return Graph(tuple(nodes), tuple(doc["outputs"])), doc["meta"]
