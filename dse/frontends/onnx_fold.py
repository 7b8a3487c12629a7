"""Folding a constant node (all its inputs constants) at import, under a size and a time budget.

Any standard op folds, with the ONNX reference evaluator (pure Python and numpy), so a hostile file can ask
for a great deal of work from a few bytes: a ``ConstantOfShape`` of 6.4 GB in a 478-byte file, a constant-only
``Loop`` of 10**12 iterations. Three guards, each refusal one line naming the node:

- before evaluating, the output size of the ops whose size follows from their inputs' values
  (`PREDICTED_SIZE`: ConstantOfShape, Expand, Tile, Range) and a Loop's iteration count are checked against
  the budget;
- the evaluation runs under a wall-clock budget (`FOLD_SECONDS`, `dse.timelimit`; only on the main thread,
  where signals are delivered: elsewhere the static checks above still hold);
- every output is checked against the size budget and, when it is a float tensor, checked finite.

The size budget is `FOLD_MIN_BYTES` or `FOLD_GROWTH` times the largest tensor the file itself holds, whichever
is larger: a fold may transpose or dequantize the weights a file carries, not conjure data it does not.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import onnx.helper
from onnx import NodeProto, TensorProto

from dse.errors import ModelError
from dse.timelimit import time_limit

FOLD_MIN_BYTES = 2**26  # 64 MiB: any fold may make this much
FOLD_GROWTH = 4  # x the largest tensor of the file (a dequantized int8 weight is 4x its bytes)
FOLD_SECONDS = 10.0  # wall-clock seconds one node's evaluation may take
LOOP_MAX_STEPS = 10**6  # iterations x body nodes of a constant Loop


class _FoldTimeout(Exception):
    pass


def _shape_of(v: np.ndarray) -> list[int]:
    return [int(d) for d in np.asarray(v).reshape(-1)]


def _constant_of_shape(node: NodeProto, feeds: list[np.ndarray]) -> int:
    dims = _shape_of(feeds[0])
    if any(d < 0 for d in dims):
        raise ValueError(f"shape {dims} has a negative dimension")
    value = next((a.t for a in node.attribute if a.name == "value"), None)
    itemsize = 4 if value is None else np.dtype(onnx.helper.tensor_dtype_to_np_dtype(value.data_type)).itemsize
    return math.prod(dims) * itemsize


def _expand(node: NodeProto, feeds: list[np.ndarray]) -> int:
    dims = _shape_of(feeds[1])
    if any(d < 0 for d in dims):
        raise ValueError(f"shape {dims} has a negative dimension")
    return math.prod(np.broadcast_shapes(feeds[0].shape, tuple(dims))) * feeds[0].itemsize


def _tile(node: NodeProto, feeds: list[np.ndarray]) -> int:
    repeats = _shape_of(feeds[1])
    if any(r < 0 for r in repeats):
        raise ValueError(f"repeats {repeats} has a negative entry")
    return feeds[0].nbytes * math.prod(repeats)


def _range(node: NodeProto, feeds: list[np.ndarray]) -> int:
    start, limit, delta = (float(np.asarray(v).reshape(-1)[0]) for v in feeds[:3])
    if delta == 0 or not all(math.isfinite(v) for v in (start, limit, delta)):
        raise ValueError(f"start {start}, limit {limit}, delta {delta}")
    return max(0, math.ceil((limit - start) / delta)) * feeds[0].itemsize


# op type -> (the node, its input values) -> bytes of its output, from the values alone (before any work)
PREDICTED_SIZE: dict[str, Callable[[NodeProto, list[np.ndarray]], int]] = {
    "ConstantOfShape": _constant_of_shape,
    "Expand": _expand,
    "Tile": _tile,
    "Range": _range,
}


def fold_budget(largest_tensor_bytes: int) -> int:
    """The most bytes one folded output may hold, for a file whose largest tensor holds `largest_tensor_bytes`."""
    return max(FOLD_MIN_BYTES, FOLD_GROWTH * largest_tensor_bytes)


def _check_before(node: NodeProto, name: str, values: list[np.ndarray], budget: int) -> None:
    where = f"node {name!r} ({node.op_type})"
    predict = PREDICTED_SIZE.get(node.op_type)
    if predict is not None:
        try:
            size = predict(node, values)
        except (ValueError, IndexError, TypeError) as e:
            raise ModelError(f"{where}: its constant inputs are invalid: {e}") from e
        if size > budget:
            raise ModelError(f"{where}: folding it would make {size / 2**20:,.0f} MiB of constants, over the "
                             f"importer's budget of {budget / 2**20:,.0f} MiB")
    if node.op_type == "Loop" and values and values[0] is not None and np.asarray(values[0]).size:
        body = next((a.g for a in node.attribute if a.name == "body"), None)
        steps = int(np.asarray(values[0]).reshape(-1)[0]) * max(1, len(body.node) if body is not None else 1)
        if steps > LOOP_MAX_STEPS:
            raise ModelError(f"{where}: a constant loop of {int(np.asarray(values[0]).reshape(-1)[0]):,} "
                             f"iterations is over the importer's budget of {LOOP_MAX_STEPS:,} node evaluations")


def fold(node: NodeProto, name: str, feeds: dict[str, np.ndarray], opset: int, budget: int
         ) -> dict[str, np.ndarray]:
    """The outputs of `node` (inputs `feeds`, every one a constant), evaluated under the budgets; ModelError
    naming the node when one is exceeded or an output is not finite."""
    where = f"node {name!r} ({node.op_type})"
    _check_before(node, name, [feeds.get(t) for t in node.input if t], budget)
    graph = onnx.helper.make_graph(
        [node], "fold",
        [onnx.helper.make_tensor_value_info(t, onnx.helper.np_dtype_to_tensor_dtype(v.dtype), None)
         for t, v in feeds.items()],
        [onnx.helper.make_tensor_value_info(t, TensorProto.UNDEFINED, None) for t in node.output if t],
    )
    from onnx.reference import ReferenceEvaluator  # lazily: 0.5 s of imports, for a few models only

    try:
        # numpy's warnings quiet: an output that overflows (an Add of 3e38 to itself) is refused below, in one line
        with time_limit(FOLD_SECONDS, _FoldTimeout), np.errstate(all="ignore"):
            results = ReferenceEvaluator(graph, opsets={"": opset}).run(None, feeds)
    except _FoldTimeout:
        raise ModelError(f"{where}: folding its constant inputs took over {FOLD_SECONDS:g} s, the importer's "
                         "budget") from None
    out = {}
    for t, v in zip([t for t in node.output if t], results, strict=True):
        v = np.asarray(v)
        if v.nbytes > budget:
            raise ModelError(f"{where}: folding it made {v.nbytes / 2**20:,.0f} MiB of constants, over the "
                             f"importer's budget of {budget / 2**20:,.0f} MiB")
        if v.dtype.kind == "f" and not np.isfinite(v).all():
            raise ModelError(f"{where}: folding its constant inputs gives NaN or Inf in output {t!r}")
        out[t] = v
    return out
