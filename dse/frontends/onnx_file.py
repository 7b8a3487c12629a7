"""Reading an ONNX file safely: the model, its external tensor data, the checker.

External tensor data is read only from files inside the model's folder; a location that is absolute, contains
``..`` or resolves (through symlinks) outside that folder is refused before anything is opened, and a declared
``offset``/``length`` (or the tensor's own size) is checked against the file's size before a byte is read, so a
file that claims 2**40 bytes costs nothing.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import onnx
import onnx.checker
import onnx.helper
import onnx.inliner
from onnx import ModelProto, NodeProto, TensorProto

from dse.errors import ModelError
from dse.files import begins_as_json, not_an_npz

_SUB_BYTE_TYPES = frozenset({"INT4", "UINT4", "FLOAT4E2M1", "INT2", "UINT2"})


def one_line(text: object) -> str:
    return " ".join(str(text).split())



def iter_tensors(model: ModelProto) -> Iterator[TensorProto]:
    """Every TensorProto of the model: initializers, Constant values, subgraphs, functions."""

    def from_graph(graph: onnx.GraphProto) -> Iterator[TensorProto]:
        yield from graph.initializer
        for sparse in graph.sparse_initializer:
            yield sparse.values
            yield sparse.indices
        for node in graph.node:
            yield from from_nodes([node])

    def from_nodes(nodes: Iterable[NodeProto]) -> Iterator[TensorProto]:
        for node in nodes:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t
                yield from attr.tensors
                if attr.HasField("sparse_tensor"):
                    yield attr.sparse_tensor.values
                    yield attr.sparse_tensor.indices
                if attr.HasField("g"):
                    yield from from_graph(attr.g)
                for g in attr.graphs:
                    yield from from_graph(g)

    yield from from_graph(model.graph)
    for fn in model.functions:
        yield from from_nodes(fn.node)


def _external_file(location: str, base_dir: Path, label: str, tensor: str) -> Path:
    """The file an external-data `location` names, refused unless it lies inside `base_dir`."""
    if not location or "\0" in location:
        raise ModelError(f"model {label}: tensor {tensor!r} has external data without a valid location")
    refuse = f"model {label}: tensor {tensor!r} refers to external data {location!r} outside the model's folder"
    parts = re.split(r"[\\/]", location)
    if os.path.isabs(location) or location.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", location) \
            or ".." in parts:
        raise ModelError(refuse)
    try:
        base = base_dir.resolve()
        path = (base / location).resolve()  # follows symlinks, so a link pointing outside is caught too
    except (OSError, RuntimeError) as e:  # a symlink loop, for one
        raise ModelError(f"model {label}: external data location {location!r} does not resolve: {e}") from e
    if not path.is_relative_to(base):
        raise ModelError(refuse)
    if not path.is_file():
        raise ModelError(f"model {label}: external data file {location!r} of tensor {tensor!r} not found")
    return path


def _expected_bytes(tensor: TensorProto) -> int | None:
    if tensor.data_type in (TensorProto.STRING, TensorProto.UNDEFINED):
        return None
    try:
        itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
    except Exception:  # a type numpy cannot hold: let to_array complain later
        return None
    if TensorProto.DataType.Name(tensor.data_type) in _SUB_BYTE_TYPES:
        return None  # packed several to a byte; to_array checks their size
    return math.prod(tensor.dims) * itemsize


def _external_span(tensor: TensorProto, path: Path, label: str) -> tuple[int, int]:
    """The (offset, length) of `tensor`'s bytes in `path`, checked against the file's size and the tensor's
    own size before anything is read."""
    if any(d < 0 for d in tensor.dims):
        raise ModelError(f"model {label}: tensor {tensor.name!r} has negative dimensions {list(tensor.dims)}")
    info = {e.key: e.value for e in tensor.external_data}
    try:
        offset = int(info.get("offset", 0))
        declared = int(info["length"]) if "length" in info else None
    except ValueError as e:
        raise ModelError(f"model {label}: tensor {tensor.name!r} has a malformed external data entry") from e
    if offset < 0 or (declared is not None and declared < 0):
        raise ModelError(f"model {label}: tensor {tensor.name!r} has a negative external data offset/length")
    expected = _expected_bytes(tensor)
    if declared is not None and expected is not None and declared != expected:
        raise ModelError(f"model {label}: tensor {tensor.name!r} declares external data length {declared} but "
                         f"its shape {list(tensor.dims)} holds {expected} bytes")
    size = path.stat().st_size
    length = declared if declared is not None else expected if expected is not None else size - offset
    if offset + length > size:
        raise ModelError(f"model {label}: external data of tensor {tensor.name!r} (offset {offset}, length "
                         f"{length}) runs past the end of {path.name} ({size} bytes): truncated or mis-declared")
    return offset, length


def _load_external_data(model: ModelProto, base_dir: Path | None, label: str) -> int:
    """Read external tensor data into the tensors, after checking where it lives and that the file holds
    the bytes declared; return how many."""
    loaded = 0
    for tensor in iter_tensors(model):
        if tensor.data_location != TensorProto.EXTERNAL:
            continue
        if base_dir is None:
            raise ModelError(f"model {label}: tensor {tensor.name!r} has external data; load the model from its "
                             "file so the data can be found")
        info = {e.key: e.value for e in tensor.external_data}
        path = _external_file(info.get("location", ""), base_dir, label, tensor.name)
        try:
            offset, length = _external_span(tensor, path, label)
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read(length)
        except OSError as e:
            raise ModelError(f"model {label}: cannot read external data of tensor {tensor.name!r}: {e}") from e
        if len(data) != length:
            raise ModelError(f"model {label}: external data of tensor {tensor.name!r} is truncated")
        tensor.raw_data = data
        del tensor.external_data[:]
        tensor.data_location = TensorProto.DEFAULT
        loaded += 1
    return loaded


def read_model(path_or_model: str | os.PathLike | ModelProto) -> tuple[ModelProto, str, bool]:
    """The model, checked (external data from the model's folder only, the ONNX checker, local functions
    inlined), the label its errors name it by, and whether any tensor's data came from outside the file."""
    if not isinstance(path_or_model, ModelProto | str | os.PathLike):
        raise ModelError(f"expected a model path or an onnx.ModelProto, got {type(path_or_model).__name__}")
    path: Path | None = None
    if isinstance(path_or_model, ModelProto):
        model, base_dir, label = ModelProto(), None, "<in-memory model>"
        model.CopyFrom(path_or_model)  # external data is written into the tensors: leave the caller's alone
    else:
        path = Path(path_or_model)
        label = str(path)
        if not path.exists():
            raise ModelError(f"model file not found: {path}")
        if not path.is_file():
            raise ModelError(f"model path is not a file: {path}")
        if path.stat().st_size == 0:  # parses as an empty ModelProto, which the checker calls a bad ir_version
            raise ModelError(f"{path} is empty (0 bytes): not an ONNX model")
        if not_an_npz(path) is None:  # protobuf's words for it: "Wire format was corrupt"
            raise ModelError(f"{path} is a zip archive (an .npz, such as a compile's compiled.npz), not an ONNX "
                             "model")
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as e:  # protobuf raises DecodeError, RuntimeWarning or others depending on the damage
            if begins_as_json(path):  # a .json is parsed as ONNX's JSON form: the error listed every field of it
                raise ModelError(f"{path} is JSON text (such as a compile's report.json), not an ONNX model"
                                 ) from None
            raise ModelError(f"{path} is not a readable ONNX model ({type(e).__name__}: {one_line(e)})") from e
        base_dir = path.parent
    if not model.HasField("graph"):  # bytes that parse as a protobuf message, but hold no model
        raise ModelError(f"{label} holds no ONNX model (no graph{'' if model.ir_version else ', no ir_version'})")
    external = _load_external_data(model, base_dir, label)
    try:
        # From the file when it is the whole model: checking a ModelProto serializes it first, a copy of the
        # weights and a third of the import time of a VGG-16.
        onnx.checker.check_model(str(path) if path is not None and not external else model)
    except Exception as e:
        raise ModelError(f"{label} fails the ONNX checker: {one_line(e)}") from e
    if model.functions:
        # Exporters may wrap modules in local functions; inlining exposes the standard ops inside.
        model = onnx.inliner.inline_local_functions(model)
    return model, label, external > 0
