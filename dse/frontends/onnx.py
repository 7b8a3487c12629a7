"""ONNX -> IR importer.

`load_onnx` turns an ONNX model into a `Graph` of network ops (`dse.ir.ops`), one IR node per ONNX op on
the data path, no fusion (canonicalization is a later pass). Everything that does not depend on the data
input is evaluated here (initializers, Constant nodes, the little shape subgraphs exporters emit) and ends up
as numpy weights inside the ops.

The batch axis is kept free: ONNX tensors are batched, IR shapes are per sample. Exporters often bake a batch
of 1 into the model (input shape, Reshape targets such as ``[1, -1]``); the importer maps those to
per-sample shapes, so the graph runs on any batch size. ``Shape`` of a data tensor yields a constant whose
batch entry is a sentinel, so ``x.view(x.size(0), -1)`` folds to a Reshape with a free batch as well.

A 1-D signal (N, C, L) is computed on as the image (N, C, 1, L): 1-D convolutions, pooling, pads, BatchNorm
and element-wise ops act on that image (kernel (1, k)), and a Reshape views it as (C, L) again where an op
needs that shape; the model's input keeps its (C, L) shape. A zero Pad becomes an IR `Pad`, which
canonicalize folds into the convolution or pooling that reads it. HardSigmoid is exact (a ScaleShift and a
Clip(0, 1)); HardSwish, also when written as ``x * HardSigmoid(x)``, is an IR op the chip approximates. See
docs/importer.md for every accepted form and what is refused.

Before any work, the file is read safely (`dse.frontends.onnx_file`: external data only from the model's
folder, declared sizes checked against the file), every tensor is checked finite and every node's attributes
against its op's definition (`dse.frontends.onnx_checks`), and constant sub-graphs fold under a size and time
budget (`dse.frontends.onnx_fold`). Each refusal is one line naming the node and the attribute.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import onnx
import onnx.checker
import onnx.helper
import onnx.inliner
import onnx.numpy_helper
from onnx import AttributeProto, ModelProto, NodeProto, TensorProto

from dse.errors import DseError, ModelError, UnsupportedOpError
from dse.frontends.onnx_checks import ATTRIBUTE_RULES, NodeFacts, check_finite, check_input_types, check_outputs
from dse.frontends.onnx_file import one_line, read_model
from dse.frontends.onnx_fold import fold, fold_budget
from dse.ir import ops as o
from dse.ir.graph import Graph, GraphBuilder, GraphError
from dse.ir.shapes import SHAPE_RULES, Shape

__all__ = ["OP_FORMS", "SUPPORTED_OPS", "load_onnx"]

log = logging.getLogger(__name__)

MIN_OPSET = 7  # older opsets changed the semantics of too many ops (BatchNormalization, Dropout, ...)

# Stands for the (free) batch size inside folded shape constants; no real dimension is ever this value.
_BATCH = np.int64(-(2**62) + 12345)

# Ops that only move or select integers: a shape constant carrying the batch sentinel may pass through them.
_BATCH_SAFE = frozenset({"Concat", "Gather", "Identity", "Reshape", "Slice", "Squeeze", "Unsqueeze", "Cast"})

# Never folded: their value is not a function of their inputs.
_RANDOM = frozenset({"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial",
                     "Bernoulli"})

_FLOAT_TYPES = frozenset({TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16})
# Float types a Cast on the data path may target: the IR computes in float32, so a cast to one of these changes
# no value. A cast to FLOAT16 or BFLOAT16 rounds, which the IR cannot express.
_EXACT_CAST_TYPES = frozenset({TensorProto.FLOAT, TensorProto.DOUBLE})
# the Reduce ops the importer maps (`_Importer._reduce`) -> the opset from which their `axes` are an input
_REDUCE_AXES_INPUT = {"ReduceMean": 18, "ReduceSum": 13, "ReduceMax": 18}

# Ops that only ever make constants; they are folded. (Shape subgraphs also fold Gather, Slice, Squeeze and
# Unsqueeze, which have data-path conversions as well.)
_FOLD_OPS = ("Constant", "ConstantOfShape")


def _hard_swish_gate(attrs: dict[str, object]) -> o.Op | None:
    alpha, beta = float(attrs.get("alpha", 0.2)), float(attrs.get("beta", 0.5))
    return o.HardSwish() if math.isclose(alpha, 1 / 6, rel_tol=1e-6) and math.isclose(beta, 0.5) else None


SELU_ALPHA, SELU_GAMMA = 1.67326319217681884765625, 1.05070102214813232421875  # ONNX's Selu defaults

# the ops of a gate of ``x * gate(x)``, outermost first, the innermost reading x -> (the outermost's attributes)
# -> the element-wise op the product is, or None
_GATED: dict[tuple[str, ...], Callable[[dict[str, object]], o.Op | None]] = {
    ("HardSigmoid",): _hard_swish_gate,  # x * HardSigmoid(x) with alpha 1/6, beta 1/2: HardSwish
    ("Sigmoid",): lambda attrs: o.Silu(),  # x * Sigmoid(x): SiLU (Swish)
    ("Tanh", "Softplus"): lambda attrs: o.Mish(),  # x * Tanh(Softplus(x)): Mish, as exporters write it before 18
}

# Element-wise ops: on a (C, L) signal they run on its (C, 1, L) image, next to the 1-D convolution they follow.
_ELEMENTWISE = (o.Relu, o.Clip, o.Sigmoid, o.Tanh, o.HardSwish, o.Silu, o.Gelu, o.Elu, o.Softplus, o.Mish,
                o.Identity)


# GELU as exporters expand it below opset 20 (torch's TorchScript exporter, tf2onnx, dynamo at 18):
# ``x * (1 + erf(x / sqrt(2)))``, times 1/2 before or after, and the tanh form
# ``x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))`` with x^3 as ``x * (x * x)`` or ``Pow(x, 3)``. Erf,
# Pow and the product of x with itself have no core-op form of their own; in these products they are `Gelu`
# (`_Importer._erf`, `_pow`, `_gelu_step`).
_ERF_FORM = "Erf is supported only inside GELU, x * (1 + erf(x / sqrt(2))) / 2"
_TANH_FORM = ("a power of a data tensor is supported only inside GELU's tanh form, "
              "x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3))) / 2")
_FORMS = {"none": ("erf(x / sqrt(2))", _ERF_FORM), "tanh": ("x^3 or tanh(...)", _TANH_FORM)}
_CUBIC = 0.044715  # the tanh form's coefficient of x^3


class _GeluPart(NamedTuple):
    """A value of GELU's expansion of data tensor `x` that has no IR node: `factor` times the `stage`'s value,
    "square" x^2, "cube" x^3, "poly" x + 0.044715 x^3, "act" erf(x / sqrt(2)) or tanh(sqrt(2/pi) * poly),
    "gate" 1 + act; `form` is the Gelu's `approximate` ("none": erf, "tanh"), `origin` the op that began it."""

    stage: str
    x: str
    factor: float
    form: str
    origin: str


def _number(c: object) -> float | None:
    """The value of a constant (an array or an attribute) that holds one number, else None."""
    return None if c is None or np.asarray(c).size != 1 else float(np.asarray(c).reshape(-1)[0])


def _near(value: float | None, target: float) -> bool:
    """`value` is `target` to 1e-4 (exporters and hand-written code write sqrt(2) as 1.4142 or 1.41421356...; the
    difference is far below what the MLP approximator's fit of GELU changes)."""
    return value is not None and math.isclose(value, target, rel_tol=1e-4)


def _sanitize(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z_.]+", "_", name).strip("_.") or "t"


# --- conversion ------------------------------------------------------------------------------------------


# Resize's coordinate_transformation_mode -> the input coordinate of output index i (scale = out / in per axis)
_RESIZE_COORDINATES: dict[str, Callable[[np.ndarray, float, int, int], np.ndarray]] = {
    "half_pixel": lambda i, scale, n_in, n_out: (i + 0.5) / scale - 0.5,
    "pytorch_half_pixel": lambda i, scale, n_in, n_out: (i + 0.5) / scale - 0.5 if n_out > 1 else 0 * i,
    "asymmetric": lambda i, scale, n_in, n_out: i / scale,
    "tf_half_pixel_for_nn": lambda i, scale, n_in, n_out: (i + 0.5) / scale,
    "align_corners": lambda i, scale, n_in, n_out: i * (n_in - 1) / (n_out - 1) if n_out > 1 else 0 * i,
}
# Resize's nearest_mode -> the input index a coordinate rounds to
_NEAREST: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "round_prefer_floor": lambda x: np.ceil(x - 0.5),
    "round_prefer_ceil": lambda x: np.floor(x + 0.5),
    "floor": np.floor,
    "ceil": np.ceil,
}


# Pad modes whose new values copy the input's (numpy.pad names each rule as ONNX does): `_Importer._pad_copies`
_PAD_COPIES = ("reflect", "edge", "wrap")
_MAX_RESIZED = 2**31  # values per sample a Resize may make: far past any image, short of numpy's failures


def _nearest_source(n_in: int, n_out: int, scale: float, mode: str, nearest: str) -> np.ndarray:
    """The input index each of the `n_out` outputs of a nearest-neighbour Resize of one axis copies."""
    x = _RESIZE_COORDINATES[mode](np.arange(n_out, dtype=np.float64), scale, n_in, n_out)
    return np.clip(_NEAREST[nearest](x), 0, n_in - 1).astype(np.int64)


def _linear_matrix(n_in: int, n_out: int, scale: float, mode: str) -> np.ndarray:
    """The (n_out, n_in) weights of a linear Resize of one axis: output i interpolates between the two inputs
    around its coordinate x (ONNX's formula of `mode`), clamped to [0, n_in - 1] first (the border: what
    onnxruntime does, and the reference's edge-padded neighbours give the same)."""
    x = np.clip(_RESIZE_COORDINATES[mode](np.arange(n_out, dtype=np.float64), scale, n_in, n_out), 0, n_in - 1)
    low = np.floor(x).astype(np.int64)
    frac, high = x - low, np.minimum(low + 1, n_in - 1)
    a = np.zeros((n_out, n_in))
    np.add.at(a, (np.arange(n_out), low), 1 - frac)
    np.add.at(a, (np.arange(n_out), high), frac)
    return a


def _phase_taps(k: int, s: int, d: int, pad: int) -> list[dict[int, int]]:
    """A transposed convolution of one axis (kernel k, stride s, dilation d, pad `pad` at the start) by output
    phase r (the outputs s q + r): {tap u: e}, output q of the phase reading input q + e through tap u.
    Output t = s i + d u - pad takes input i through tap u, so t's phase takes the taps with
    ``(r + pad - d u) % s == 0``, each at offset ``e = (r + pad - d u) / s``."""
    return [{u: (r + pad - d * u) // s for u in range(k) if (r + pad - d * u) % s == 0} for r in range(s)]


def _phase_kernels(w: np.ndarray, taps: tuple[list[dict[int, int]], list[dict[int, int]]], groups: int,
                   lo: tuple[int, int], span: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """ConvTranspose weight `w` (C, O/g, kh, kw) as a Conv's weight and mask (g * P * O/g, C/g, span): output
    channel (group, phase, o), phase (rh, rw) row-major, holds tap (uh, uw) at (e_h - lo_h, e_w - lo_w)."""
    c, per_out, _, _ = w.shape
    per_in, phases = c // groups, len(taps[0]) * len(taps[1])
    weight = np.zeros((groups, phases, per_out, per_in, *span), np.float32)
    mask = np.zeros(weight.shape, bool)
    for p, (th, tw) in enumerate((th, tw) for th in taps[0] for tw in taps[1]):
        for uh, eh in th.items():
            for uw, ew in tw.items():
                block = w[:, :, uh, uw].reshape(groups, per_in, per_out)
                weight[:, p, :, :, eh - lo[0], ew - lo[1]] = block.transpose(0, 2, 1)
                mask[:, p, :, :, eh - lo[0], ew - lo[1]] = True
    return weight.reshape(-1, per_in, *span), mask.reshape(-1, per_in, *span)



def _swap_blocks(rows: int, cols: int) -> np.ndarray:
    """The Gather index that reorders channels ``r * cols + c`` (`rows` blocks of `cols`) to ``c * rows + r``:
    between phase-major channels (DCR, the IR's `DepthToSpace` and `SpaceToDepth`) and channel-major ones (CRD,
    PixelShuffle and PixelUnshuffle)."""
    return np.arange(rows * cols).reshape(rows, cols).T.reshape(-1)


def _attrs(node: NodeProto) -> dict[str, object]:
    out: dict[str, object] = {}
    for a in node.attribute:
        value = onnx.helper.get_attribute_value(a)
        if a.type == AttributeProto.STRING:
            value = value.decode("utf-8", "replace")
        out[a.name] = value
    return out


def _lift_1d(attrs: dict[str, object]) -> dict[str, object]:
    """The attributes of a 1-D Conv or pooling as those of the 2-D op on a (C, 1, L) image."""
    out = {**attrs, **{k: [1, *attrs[k]] for k in ("kernel_shape", "strides", "dilations") if k in attrs}}
    if "pads" in attrs:
        begin, end = attrs["pads"]
        out["pads"] = [0, begin, 0, end]
    return out


def _on_image(c: np.ndarray) -> np.ndarray:
    """A constant broadcast against a (C, L) signal, as one broadcast against its (C, 1, L) image: a (C, L),
    (C, 1) or (L,) constant gets a unit H axis; a scalar stays."""
    c = np.asarray(c)
    return c.reshape((1,) * (2 - c.ndim) + c.shape)[:, None, :] if c.ndim else c


def _f32(a: np.ndarray) -> np.ndarray:
    # Always a fresh, writable array: initializers are read-only views of the protobuf's bytes, which torch
    # warns about, and a pass editing weights in place must not reach back into the model. A value past float32
    # (a BatchNormalization's scale of 3e38 / sqrt(1e-5)) is Inf without numpy's warning, as the original's own
    # float32 arithmetic: `prepare` refuses non-finite outputs in one line.
    with np.errstate(over="ignore"):
        return np.array(a, dtype=np.float32, order="C", copy=True)


class _Importer:
    def __init__(self, model: ModelProto, label: str, batch: int | None) -> None:
        self.model, self.label, self.graph_proto = model, label, model.graph
        opsets = {op.domain or "ai.onnx": op.version for op in model.opset_import}
        if "ai.onnx" not in opsets:
            raise ModelError(f"model {label} imports no default-domain (ai.onnx) opset")
        self.opset = opsets["ai.onnx"]
        if self.opset < MIN_OPSET:
            raise ModelError(f"model {label} uses opset {self.opset}; at least {MIN_OPSET} is needed")
        newest = onnx.defs.onnx_opset_version()
        if self.opset > newest:  # the checker passes it; its ops' meaning is not one this onnx (or dse) knows
            raise ModelError(f"model {label} uses opset {self.opset}; the installed onnx {onnx.__version__} knows "
                             f"opsets up to {newest}: export it at opset {newest} or below")
        self.b = GraphBuilder()
        self.values: dict[str, str] = {}  # ONNX tensor name -> IR node name (data path)
        self.consts: dict[str, np.ndarray] = {}  # ONNX tensor name -> value (everything else)
        self.shapes: dict[str, Shape] = {}  # IR node name -> per-sample shape
        self.batch = batch
        self.used: set[str] = set()
        self.made: dict[str, tuple[o.Op, tuple[str, ...]]] = {}  # IR node name -> (op, inputs)
        self.producer: dict[str, NodeProto] = {}  # ONNX tensor name -> the node that computes it
        self.gelu_parts: dict[str, _GeluPart] = {}  # ONNX tensor name -> a value of GELU's expansion
        self.permuted: dict[str, tuple[str, list[int]]] = {}  # a Transpose's result -> (its node, its perm)
        self.largest_const = 0  # bytes of the largest tensor the file holds (the constant folder's budget)

    # --- helpers --------------------------------------------------------------------------------------
    def emit(self, base: str, op: o.Op, *inputs: str) -> str:
        shape = tuple(int(d) for d in SHAPE_RULES[type(op)](op, [self.shapes[i] for i in inputs]))
        if any(d <= 0 for d in shape):  # an empty tensor: no channel, or a window larger than its input
            raise ModelError(f"node {base!r} ({type(op).__name__}): its output would have shape {list(shape)}, "
                             "with an empty axis")
        name = self.b.add(_sanitize(base), op, *inputs)
        self.shapes[name] = shape
        self.made[name] = (op, inputs)
        return name

    def reshape(self, base: str, x: str, shape: Shape) -> str:
        """`x` reshaped to per-sample `shape`: a Reshape of a Reshape reads the first one's input, and a
        reshape back to that input's shape is that input itself (no node)."""
        op, inputs = self.made[x]
        if isinstance(op, o.Reshape):
            x = inputs[0]
        if self.shapes[x] == tuple(shape):
            return x
        return self.emit(base, o.Reshape(shape=tuple(shape)), x)

    # A 1-D signal (C, L) is computed on as the (C, 1, L) image (an IR Conv, pooling or Pad is 2-D, and a chip
    # computes on (F,) or (C, H, W) values): `image` gives that image, and `signal` the (C, L) view of a result,
    # a Reshape that the next op reads through. Element-wise ops of a signal run on its image too.
    def is_signal(self, x: str) -> bool:
        return len(self.shapes[x]) == 2

    def image(self, x: str) -> str:
        if len(self.shapes[x]) == 3:  # already the image
            return x
        c, length = self.shapes[x]
        return self.reshape(f"{x}_2d", x, (c, 1, length))

    def signal(self, base: str, img: str) -> str:
        c, _, length = self.shapes[img]
        return self.emit(f"{base}_1d", o.Reshape(shape=(c, length)), img)

    def bind_on_image(self, node: NodeProto, op: o.Op, x: str) -> None:
        """Emit `op` on the image of (C, L) signal `x`; the node's output is the (C, L') view of the result."""
        self.bind(node, self.signal(node.output[0], self.emit(node.output[0], op, self.image(x))))

    def bind_result(self, node: NodeProto, op: o.Op, x: str) -> None:
        """Emit `op` on `x` for the node's output; on a (C, L) signal, on its image (so 1-D ops meet no Reshape)."""
        self.bind_built(node, x, lambda v: self.emit(node.output[0], op, v))

    def bind_built(self, node: NodeProto, x: str, build: Callable[[str], str]) -> None:
        """The node's output as `build` makes it from `x` (a few ops in a row); from the image of a (C, L) signal,
        whose result is then viewed as (C, L') again."""
        if self.is_signal(x):
            self.bind(node, self.signal(node.output[0], build(self.image(x))))
        else:
            self.bind(node, build(x))

    def is_data(self, tensor: str) -> bool:
        return tensor in self.values

    def data(self, node: NodeProto, name: str, i: int) -> str:
        tensor = node.input[i] if i < len(node.input) else ""
        if tensor not in self.values:
            raise UnsupportedOpError(node.op_type, name, f"input {i} must be the data tensor, not a constant")
        return self.values[tensor]

    def const(self, node: NodeProto, name: str, i: int, what: str, *, optional: bool = False) -> np.ndarray | None:
        tensor = node.input[i] if i < len(node.input) else ""
        if not tensor:
            if optional:
                return None
            raise ModelError(f"node {name!r} ({node.op_type}) lacks its {what} input")
        if tensor not in self.consts:
            raise UnsupportedOpError(node.op_type, name, f"{what} (input {i}) must be a constant")
        return self.consts[tensor]

    def only_first_output(self, node: NodeProto, name: str) -> None:
        # The extra outputs (BatchNorm's running statistics, Dropout's mask, MaxPool's argmax indices) are
        # training state or integer/boolean tensors; the IR has one float value per op.
        for extra in node.output[1:]:
            if extra and extra in self.used:
                raise UnsupportedOpError(node.op_type, name, f"output {extra!r} is used: only the op's first "
                                         "output is supported (the others are training state, masks or indices)")

    def bind(self, node: NodeProto, ir_name: str) -> None:
        self.values[node.output[0]] = ir_name

    def unary(self, node: NodeProto, name: str, op: o.Op) -> None:
        x = self.data(node, name, 0)
        if isinstance(op, _ELEMENTWISE):
            self.bind_result(node, op, x)
        else:
            self.bind(node, self.emit(node.output[0], op, x))

    def bind_reshape(self, node: NodeProto, x: str, shape: Shape) -> None:
        self.bind(node, self.reshape(node.output[0], x, shape))

    # --- top level ------------------------------------------------------------------------------------
    def run(self) -> Graph:
        g = self.graph_proto
        check_outputs(g, self.label)
        self._read_initializers()
        sparse = {s.values.name for s in g.sparse_initializer}
        data_inputs = [i for i in g.input if i.name not in self.consts and i.name not in sparse]
        if len(data_inputs) != 1:
            names = ", ".join(repr(i.name) for i in data_inputs) or "none"
            raise ModelError(f"model {self.label} must have exactly one data input, found {len(data_inputs)}: "
                             f"{names}")
        self._add_input(data_inputs[0])
        # the element type of every tensor computed from the data input, and of every initializer
        types = {data_inputs[0].name: data_inputs[0].type.tensor_type.elem_type}
        constant_types = {t.name: (t.data_type, "initializer") for t in g.initializer}

        live = self._live_nodes()
        self.producer = {t: node for node in g.node for t in node.output if t}
        for idx, node in enumerate(g.node):
            if idx not in live:
                continue
            name = node.name or f"{node.op_type}#{idx}"
            if any(t in sparse for t in node.input):
                raise ModelError(f"model {self.label}: node {name!r} reads a sparse initializer (not supported)")
            check_input_types(node, name, types, constant_types, self.label)
            try:
                self._convert(node, name)
            except DseError:
                raise
            except Exception as e:  # numpy/onnx failure on malformed attributes or shapes
                raise ModelError(f"model {self.label}: cannot convert node {name!r} ({node.op_type}): "
                                 f"{type(e).__name__}: {one_line(e)}") from e

        outputs = []
        for out in g.output:
            if out.name in self.gelu_parts:
                part = self.gelu_parts[out.name]
                what, form = _FORMS[part.form]
                raise UnsupportedOpError(part.origin, out.name, f"the graph's output is a part of {what}: {form}")
            if out.name in self.permuted:
                name, perm = self.permuted[out.name]
                raise UnsupportedOpError("Transpose", name, f"perm {perm}: the graph's output is a Transpose (only "
                                         "a Flatten or Reshape to a vector may read one)")
            if out.name not in self.values:
                raise ModelError(f"model {self.label}: output {out.name!r} does not depend on the data input")
            outputs.append(self.values[out.name])
        try:
            graph = self.b.build(outputs).prune_dead()
        except GraphError as e:  # a bug here, but say which model triggered it
            raise ModelError(f"model {self.label}: import produced a malformed graph: {e}") from e
        log.debug("imported %s: %d nodes, opset %d, %s", self.label, len(graph), self.opset, graph.op_counts())
        return graph

    def _read_initializers(self) -> None:
        for t in self.graph_proto.initializer:
            try:
                value = onnx.numpy_helper.to_array(t)
            except Exception as e:  # wrong byte count for its shape, an exotic type
                raise ModelError(f"model {self.label}: initializer {t.name!r} is unreadable: {one_line(e)}") from e
            if value.dtype.kind == "c":  # its cast to float32 dropped the imaginary part, with numpy's warning
                raise ModelError(f"model {self.label}: initializer {t.name!r} is "
                                 f"{TensorProto.DataType.Name(t.data_type)}: the IR computes with real numbers")
            check_finite(value, f"model {self.label}: initializer {t.name!r}")
            self.consts[t.name] = value
            self.largest_const = max(self.largest_const, value.nbytes)
            # The array holds its own copy of the bytes and the proto is ours (read from the file, or a copy
            # of the caller's): drop the proto's copy, so a large model is not held twice.
            t.ClearField("raw_data")

    def _add_input(self, vi: onnx.ValueInfoProto) -> None:
        tt = vi.type.tensor_type if vi.type.HasField("tensor_type") else None
        if tt is None:
            raise ModelError(f"model {self.label}: input {vi.name!r} is not a tensor")
        if tt.elem_type not in _FLOAT_TYPES:
            raise ModelError(f"model {self.label}: input {vi.name!r} has element type "
                             f"{TensorProto.DataType.Name(tt.elem_type)}, expected a float type "
                             "(FLOAT, DOUBLE, FLOAT16 or BFLOAT16)")
        if not tt.HasField("shape") or len(tt.shape.dim) == 0:
            raise ModelError(f"model {self.label}: input {vi.name!r} declares no shape with a batch axis")
        dims = list(tt.shape.dim)
        per = []
        for axis, d in enumerate(dims[1:], start=1):
            if not d.HasField("dim_value") or d.dim_value <= 0:
                sym = d.dim_param or "unknown"
                raise ModelError(f"model {self.label}: input {vi.name!r} has a symbolic or unknown dimension "
                                 f"{sym!r} at axis {axis}; only the batch axis may be free")
            per.append(int(d.dim_value))
        if self.batch is None and dims[0].HasField("dim_value") and dims[0].dim_value > 0:
            self.batch = int(dims[0].dim_value)
        self.values[vi.name] = self.emit(vi.name, o.Input(shape=tuple(per)))

    def _live_nodes(self) -> set[int]:
        """Indices of the nodes the graph outputs depend on; the rest is ignored (never rejected)."""
        needed = {out.name for out in self.graph_proto.output}
        live: set[int] = set()
        nodes = list(self.graph_proto.node)
        for idx in range(len(nodes) - 1, -1, -1):
            node = nodes[idx]
            if any(t in needed for t in node.output):
                live.add(idx)
                needed.update(t for t in node.input if t)
        self.used = needed
        return live

    def _convert(self, node: NodeProto, name: str) -> None:
        op = node.op_type
        if node.domain not in ("", "ai.onnx"):
            raise UnsupportedOpError(op, name, f"domain {node.domain!r} is not supported")
        self._check(node, name)
        if op == "Constant":
            self._constant(node, name)
            return
        inputs = [t for t in node.input if t]
        if op not in _RANDOM and inputs and all(t in self.consts for t in inputs):
            self._fold(node, name)
            return
        parts = [t for t in node.input if t in self.gelu_parts]
        if parts:
            self._gelu_step(node, name, parts[0])
            return
        converter = _CONVERTERS.get(op)
        if converter is None:
            raise UnsupportedOpError(op, name, _NO_CORE_FORM.get(op, "no conversion to the IR"))
        permuted = [t for t in node.input if t in self.permuted]
        for t in permuted:
            self.check_permuted(node, t, converted=False)
        converter(self, node, name)
        for t in permuted:
            self.check_permuted(node, t, converted=True)

    def _check(self, node: NodeProto, name: str) -> None:
        """The node's attributes and input shapes against its op's definition (`ATTRIBUTE_RULES`)."""
        rules = ATTRIBUTE_RULES.get(node.op_type, ())
        if not rules:
            return
        inputs = [self.consts[t] if t in self.consts else (1, *self.shapes[self.values[t]]) if t in self.values
                  else None for t in node.input]
        facts = NodeFacts(node.op_type, name, _attrs(node), self.opset, inputs)
        for rule in rules:
            rule(facts)

    # --- constants ------------------------------------------------------------------------------------
    def _constant(self, node: NodeProto, name: str) -> None:
        attrs = _attrs(node)
        if "value" in attrs:
            value = onnx.numpy_helper.to_array(attrs["value"])
        elif "value_float" in attrs:
            value = np.array(attrs["value_float"], dtype=np.float32)
        elif "value_floats" in attrs:
            value = np.array(attrs["value_floats"], dtype=np.float32)
        elif "value_int" in attrs:
            value = np.array(attrs["value_int"], dtype=np.int64)
        elif "value_ints" in attrs:
            value = np.array(attrs["value_ints"], dtype=np.int64)
        else:
            raise UnsupportedOpError("Constant", name, f"attribute {', '.join(attrs) or '(none)'} not supported")
        check_finite(value, f"node {name!r} (Constant)")
        self.consts[node.output[0]] = value
        self.largest_const = max(self.largest_const, value.nbytes)

    def _fold(self, node: NodeProto, name: str) -> None:
        """Evaluate a node whose inputs are all constants (`dse.frontends.onnx_fold`, under its budgets)."""
        feeds = {t: self.consts[t] for t in node.input if t}
        carries_batch = any(v.dtype == np.int64 and bool(np.any(v == _BATCH)) for v in feeds.values())
        if carries_batch:
            to = _attrs(node).get("to")
            if node.op_type not in _BATCH_SAFE or (node.op_type == "Cast" and to != TensorProto.INT64):
                raise UnsupportedOpError(node.op_type, name,
                                         "computes with the batch size, which the importer keeps free")
        self.consts.update(fold(node, name, feeds, self.opset, fold_budget(self.largest_const)))

    def _shape(self, node: NodeProto, name: str) -> None:
        x = self.data(node, name, 0)
        full = np.array([_BATCH, *self.shapes[x]], dtype=np.int64)
        attrs = _attrs(node)
        start, end = int(attrs.get("start", 0)), attrs.get("end")
        self.consts[node.output[0]] = full[start : None if end is None else int(end)]

    # --- network ops ----------------------------------------------------------------------------------
    def _spatial_pads(self, node: NodeProto, name: str, attrs: dict, in_hw: Shape, kernel: tuple[int, int],
                      stride: tuple[int, int], dilation: tuple[int, int]) -> o.Pads:
        auto = attrs.get("auto_pad", "NOTSET")
        if auto == "NOTSET":
            pads = tuple(int(p) for p in attrs.get("pads", (0, 0, 0, 0)))
            if len(pads) != 4 or min(pads) < 0:
                raise UnsupportedOpError(node.op_type, name, f"pads {list(pads)} not supported")
            return pads  # ONNX order (h_begin, w_begin, h_end, w_end) is the IR's (top, left, bottom, right)
        if auto == "VALID":
            return (0, 0, 0, 0)
        if auto not in ("SAME_UPPER", "SAME_LOWER"):
            raise UnsupportedOpError(node.op_type, name, f"auto_pad {auto!r} not supported")
        begin, end = [], []
        for size, k, s, d in zip(in_hw, kernel, stride, dilation, strict=True):
            out = -(-size // s)
            total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
            small, big = total // 2, total - total // 2
            begin.append(small if auto == "SAME_UPPER" else big)
            end.append(big if auto == "SAME_UPPER" else small)
        return (begin[0], begin[1], end[0], end[1])

    def _pair(self, node: NodeProto, name: str, attrs: dict, key: str, default: int = 1) -> tuple[int, int]:
        value = tuple(int(v) for v in attrs.get(key, (default, default)))
        if len(value) != 2:
            raise UnsupportedOpError(node.op_type, name, f"{key} {list(value)}: only 2-D is supported")
        return value  # type: ignore[return-value]

    def _conv(self, node: NodeProto, name: str) -> None:
        x = self.data(node, name, 0)
        w = _f32(self.const(node, name, 1, "weight"))
        b = self.const(node, name, 2, "bias", optional=True)
        attrs = _attrs(node)
        one_d = w.ndim == 3 and len(self.shapes[x]) == 2
        if one_d:  # a 1-D convolution of a (C, L) signal is the 2-D one of the (C, 1, L) image, kernel (1, k)
            w, attrs, x = w[:, :, None, :], _lift_1d(attrs), self.image(x)
        per = self.shapes[x]
        if w.ndim != 4 or len(per) != 3:
            raise UnsupportedOpError("Conv", name, f"only 1-D and 2-D convolutions are supported (weight "
                                     f"{w.shape}, input {per})")
        kernel = (int(w.shape[2]), int(w.shape[3]))
        if "kernel_shape" in attrs and tuple(attrs["kernel_shape"]) != kernel:
            raise ModelError(f"node {name!r}: kernel_shape {attrs['kernel_shape']} disagrees with the weight")
        groups = int(attrs.get("group", 1))
        if per[0] != w.shape[1] * groups or w.shape[0] % groups:
            raise ModelError(f"node {name!r}: weight {w.shape} with group {groups} does not fit input {per}")
        stride = self._pair(node, name, attrs, "strides")
        dilation = self._pair(node, name, attrs, "dilations")
        pads = self._spatial_pads(node, name, attrs, per[1:], kernel, stride, dilation)
        bias = None if b is None else _f32(b).reshape(-1)
        if bias is not None and bias.shape != (w.shape[0],):
            raise ModelError(f"node {name!r}: bias {b.shape} does not match {w.shape[0]} output channels")
        op = o.Conv(weight=w, bias=bias, stride=stride, padding=pads, dilation=dilation, groups=groups)
        if one_d:
            self.bind_on_image(node, op, x)
        else:
            self.bind(node, self.emit(node.output[0], op, x))

    def _conv_transpose(self, node: NodeProto, name: str) -> None:
        """A transposed convolution of stride s is s_h * s_w sub-pixel convolutions of its input, one per output
        phase (the outputs ``(s_h q + r_h, s_w q' + r_w)``), each with the taps of the kernel that reach that
        phase: one Conv whose output channels are the phases' blocks, each block masked to its own taps (the
        chip maps only those: every weight once, no row reading an inserted zero), and a DepthToSpace that
        interleaves the blocks and crops to the output. (A convolution over the zero-inserted input would read
        s_h s_w times the rows, most of them zeros.) A grouped one's blocks are put in phase order by a Gather.
        A 1-D one (a (C, L) signal) is the 2-D one of the (C, 1, L) image, kernel (1, k)."""
        x = self.data(node, name, 0)
        w = _f32(self.const(node, name, 1, "weight"))
        b = self.const(node, name, 2, "bias", optional=True)
        attrs, per = _attrs(node), self.shapes[x]
        one_d = w.ndim == 3 and len(per) == 2
        if one_d:
            w, x = w[:, :, None, :], self.image(x)
            attrs = {**_lift_1d(attrs), **{k: [v0, *attrs[k]] for k, v0 in (("output_padding", 0),
                                                                             ("output_shape", 1)) if k in attrs}}
            per = self.shapes[x]
        if w.ndim != 4 or len(per) != 3:
            raise UnsupportedOpError("ConvTranspose", name, f"only 1-D and 2-D are supported (weight {w.shape}, "
                                     f"input {per})")
        groups = int(attrs.get("group", 1))
        if per[0] != w.shape[0] or per[0] % groups:
            raise ModelError(f"node {name!r}: weight {w.shape} with group {groups} does not fit input {per}")
        out_c = w.shape[1] * groups
        bias = np.zeros(out_c, np.float32) if b is None else _f32(b).reshape(-1)
        if bias.shape != (out_c,):
            raise ModelError(f"node {name!r}: bias {b.shape} does not match {out_c} output channels")
        stride, dilation = self._pair(node, name, attrs, "strides"), self._pair(node, name, attrs, "dilations")
        pads, size = self._transpose_pads(node, name, attrs, per[1:], (w.shape[2], w.shape[3]), stride, dilation)
        y = self.emit(f"{node.output[0]}_phases", self._phase_conv(name, w, bias, groups, stride, dilation, pads,
                                                                   per[1:], size), x)
        phases = stride[0] * stride[1]
        if not (phases == 1 and self.shapes[y][1:] == size):  # stride 1: a convolution with the kernel flipped
            if groups > 1:  # (group, phase, o) -> (phase, group, o)
                order = np.arange(out_c * phases).reshape(groups, phases, -1).transpose(1, 0, 2).reshape(-1)
                y = self.emit(f"{node.output[0]}_order", o.Gather(order), y)
            y = self.emit(node.output[0], o.DepthToSpace(stride, size), y)
        self.bind(node, self.signal(node.output[0], y) if one_d else y)

    @staticmethod
    def _phase_conv(name: str, w: np.ndarray, bias: np.ndarray, groups: int, stride: tuple[int, int],
                    dilation: tuple[int, int], pads: o.Pads, in_hw: Shape, size: tuple[int, int]) -> o.Conv:
        """The Conv of ConvTranspose `w`'s phases (`_phase_kernels`): stride 1, padded so that its output q of
        phase r is output ``s q + r`` of the transposed convolution, for every q the `size` needs."""
        kernel = (int(w.shape[2]), int(w.shape[3]))
        taps = tuple(_phase_taps(k, st, d, p) for k, st, d, p in zip(kernel, stride, dilation, pads[:2], strict=True))
        if any(not t for axis in taps for t in axis):
            raise UnsupportedOpError("ConvTranspose", name, f"kernel {list(kernel)} with strides {list(stride)} and "
                                     f"dilations {list(dilation)}: some outputs read no input (only the bias)")
        offsets = [[e for t in axis for e in t.values()] for axis in taps]
        lo, hi = tuple(min(e) for e in offsets), tuple(max(e) for e in offsets)
        if max(lo) > 0:
            raise UnsupportedOpError("ConvTranspose", name, f"pads {list(pads)} crop more than a stride from the "
                                     "start of the output")
        span = (hi[0] - lo[0] + 1, hi[1] - lo[1] + 1)
        weight, mask = _phase_kernels(w, taps, groups, lo, span)
        rows = [-(-n // st) for n, st in zip(size, stride, strict=True)]  # each phase's outputs (the last cropped)
        ends = [max(0, r - 1 + k - n + low) for r, k, n, low in zip(rows, span, in_hw, lo, strict=True)]
        phases = stride[0] * stride[1]
        return o.Conv(weight=weight, bias=np.tile(bias.reshape(groups, 1, -1), (1, phases, 1)).reshape(-1),
                      padding=(-lo[0], -lo[1], ends[0], ends[1]), groups=groups, mask=None if mask.all() else mask)

    def _transpose_pads(self, node: NodeProto, name: str, attrs: dict, in_hw: Shape, kernel: tuple[int, int],
                        stride: tuple[int, int], dilation: tuple[int, int]) -> tuple[o.Pads, tuple[int, int]]:
        """A ConvTranspose's pads (top, left, bottom, right) and output size: its `pads`, or those that give
        `output_shape` (or, with auto_pad SAME_*, input times stride) as ONNX defines them."""
        extra = self._pair(node, name, attrs, "output_padding", 0)
        full = [st * (n - 1) + e + (k - 1) * d + 1
                for n, k, st, d, e in zip(in_hw, kernel, stride, dilation, extra, strict=True)]
        auto = attrs.get("auto_pad", "NOTSET")
        if auto not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
            raise UnsupportedOpError("ConvTranspose", name, f"auto_pad {auto!r} not supported")
        if "output_shape" in attrs or auto.startswith("SAME"):
            target = [int(v) for v in attrs["output_shape"]][-2:] if "output_shape" in attrs else \
                [n * st for n, st in zip(in_hw, stride, strict=True)]
            total = [f - t for f, t in zip(full, target, strict=True)]  # < 0: outputs past the last tap (the bias)
            small = [t // 2 for t in total]
            begin = small if auto == "SAME_UPPER" else [t - h for t, h in zip(total, small, strict=True)]
            end = [t - h for t, h in zip(total, begin, strict=True)]
        else:
            pads = [0] * 4 if auto == "VALID" else [int(p) for p in attrs.get("pads", (0, 0, 0, 0))]
            if len(pads) != 4 or min(pads) < 0:
                raise UnsupportedOpError("ConvTranspose", name, f"pads {pads} not supported")
            begin, end = pads[:2], pads[2:]
        size = tuple(f - a - z for f, a, z in zip(full, begin, end, strict=True))
        if min(size) <= 0:
            raise ModelError(f"node {name!r} (ConvTranspose): pads {begin + end} leave no output")
        return (begin[0], begin[1], end[0], end[1]), size  # type: ignore[return-value]

    def _resize(self, node: NodeProto, name: str) -> None:
        """Nearest-neighbour upsampling by integer factors (U-Nets, FPN and YOLO necks, ``F.interpolate(
        scale_factor=2)``): each output pixel is a copy of one input pixel, so it is wiring: a Gather that copies
        every channel f_h f_w times and a DepthToSpace that puts the copies on the finer grid. A Conv that reads
        it reads its crossbar rows from the routed copies, as from any other wiring: no core, no extra crossbar.
        Linear (bilinear) upsampling by integer factors is a fixed linear map (`_resize_linear`). Cubic,
        non-integer factors and nearest coordinate transformations that do not repeat each pixel f times are
        refused."""
        x, attrs = self.data(node, name, 0), _attrs(node)
        mode = attrs.get("mode", "nearest")
        if mode not in ("nearest", "linear"):
            raise UnsupportedOpError(node.op_type, name, f"mode {mode!r}: only nearest-neighbour and linear (bilinear) "
                                     "upsampling by integer factors is supported")
        per = self.shapes[x]
        if len(per) != 3:
            raise UnsupportedOpError(node.op_type, name, f"input of per-sample shape {per}: only an image (C, H, W)")
        out, scales = self._resize_target(node, name, attrs, per)
        # Resize before opset 11, and Upsample (its forerunner, opsets 7 to 9): x_original = x_resized / scale,
        # nearest rounding down
        legacy = self.opset < 11
        coords = attrs.get("coordinate_transformation_mode", "asymmetric" if legacy else "half_pixel")
        if mode == "linear":
            self._resize_linear(node, name, attrs, x, out, scales, coords)
            return
        nearest = attrs.get("nearest_mode", "floor" if legacy else "round_prefer_floor")
        if coords not in _RESIZE_COORDINATES or nearest not in _NEAREST:
            raise UnsupportedOpError(node.op_type, name, f"coordinate_transformation_mode {coords!r}, nearest_mode "
                                     f"{nearest!r} not supported")
        factors = tuple(n // m for n, m in zip(out[1:], per[1:], strict=True))
        for n, m, f, sc in zip(out[1:], per[1:], factors, scales, strict=True):
            if n != f * m or not np.array_equal(_nearest_source(m, n, sc, coords, nearest), np.arange(n) // f):
                raise UnsupportedOpError(node.op_type, name, f"from {list(per[1:])} to {list(out[1:])} with "
                                         f"{coords}/{nearest}: not each pixel repeated an integer number of times")
        if factors == (1, 1):
            self.unary(node, name, o.Identity())
            return
        copies = o.Gather(np.tile(np.arange(per[0]), factors[0] * factors[1]))
        y = self.emit(f"{node.output[0]}_copies", copies, x)
        self.bind(node, self.emit(node.output[0], o.DepthToSpace(factors, out[1:]), y))

    def _resize_linear(self, node: NodeProto, name: str, attrs: dict, x: str, out: Shape, scales: list[float],
                       coords: str) -> None:
        """Linear (bilinear) upsampling by integer factors (``nn.Upsample(mode="bilinear")``, either
        `align_corners`): per channel the fixed linear map ``A_h X A_w^T``, A an axis's interpolation weights
        (`_linear_matrix`: ONNX's coordinate formulas, the border clamped). Its border rows and, with
        `align_corners`, every row weigh their neighbours differently, so it is no convolution; each axis is
        one grouped 1x1 Conv (a group per channel, each of its neurons masked to the one or two inputs it
        weighs) over that axis moved onto the channels (`SpaceToDepth`, a `Gather` into channel-major order;
        after it the `Gather` back and a `DepthToSpace`: wiring). An axis of factor 1 is left alone."""
        if int(attrs.get("antialias", 0)):
            raise UnsupportedOpError(node.op_type, name, "antialias=1 (linear upsampling is supported without it)")
        if coords not in _RESIZE_COORDINATES or coords == "tf_half_pixel_for_nn":  # that one is for nearest
            raise UnsupportedOpError(node.op_type, name, f"coordinate_transformation_mode {coords!r} not supported "
                                     "for linear upsampling")
        per = self.shapes[x]
        for n, m in zip(out[1:], per[1:], strict=True):
            if n < m or n % m:
                raise UnsupportedOpError(node.op_type, name, f"linear from {list(per[1:])} to {list(out[1:])}: only "
                                         "upsampling by integer factors is supported")
        stages = [(axis, _linear_matrix(per[1 + axis], out[1 + axis], scales[axis], coords)) for axis in (1, 0)]
        stages = [(axis, a) for axis, a in stages if not np.array_equal(a, np.eye(*a.shape))]  # along W, then H
        if not stages:
            self.unary(node, name, o.Identity())
            return
        y = x
        for k, (axis, a) in enumerate(stages):
            last = k == len(stages) - 1
            y = self._resample_axis(node.output[0] if last else f"{node.output[0]}_{'hw'[axis]}", y, a, axis)
        self.bind(node, y)

    def _resample_axis(self, base: str, x: str, a: np.ndarray, axis: int) -> str:
        """``y[c, ..., i, ...] = sum_j a[i, j] x[c, ..., j, ...]`` along spatial `axis` (0: H, 1: W) of image `x`:
        the axis moved onto the channels (position-major), a Gather into channel-major order, a 1x1 Conv of
        one group per channel (its weight `a`, masked to a's non-zeros), a Gather back and a DepthToSpace."""
        c, n_in, n_out = self.shapes[x][0], a.shape[1], a.shape[0]
        block = (n_in, 1) if axis == 0 else (1, n_in)
        y = self.emit(f"{base}_depth", o.SpaceToDepth(block), x)
        y = self.emit(f"{base}_by_channel", o.Gather(_swap_blocks(n_in, c)), y)
        weight = np.tile(a.astype(np.float32), (c, 1)).reshape(c * n_out, n_in, 1, 1)
        mask = weight != 0
        y = self.emit(f"{base}_weights", o.Conv(weight=weight, bias=None, groups=c,
                                                mask=None if mask.all() else mask), y)
        y = self.emit(f"{base}_by_position", o.Gather(_swap_blocks(c, n_out)), y)
        _, h, w = self.shapes[x]
        size = (n_out, w) if axis == 0 else (h, n_out)
        return self.emit(base, o.DepthToSpace((n_out, 1) if axis == 0 else (1, n_out), size), y)

    def _resize_target(self, node: NodeProto, name: str, attrs: dict, per: Shape) -> tuple[Shape, list[float]]:
        """Resize's per-sample output shape, and the scale its coordinates use on each spatial axis (the given one,
        else output over input), from its `scales` or `sizes` (an empty one is none) over its `axes`; the batch
        and channel axes must keep their size."""
        if node.op_type == "Upsample" and self.opset < 9:  # an attribute until Upsample-9 made it an input
            given = (np.asarray(attrs.get("scales", []), np.float32), None)
        else:
            given = (self.const(node, name, 1, "scales"), None) if self.opset < 11 else (
                self.const(node, name, 2, "scales", optional=True), self.const(node, name, 3, "sizes", optional=True))
        scales, sizes = (None if v is None or np.asarray(v).size == 0 else np.asarray(v).reshape(-1) for v in given)
        if (scales is None) == (sizes is None):
            raise ModelError(f"node {name!r} ({node.op_type}): needs exactly one of scales and sizes")
        if sizes is not None and attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch":
            raise UnsupportedOpError(node.op_type, name,
                                     f"keep_aspect_ratio_policy {attrs['keep_aspect_ratio_policy']!r}")
        values, rank = scales if sizes is None else sizes, len(per) + 1
        axes = [int(a) + (rank if int(a) < 0 else 0) for a in attrs.get("axes", range(rank))]
        if len(axes) != len(values) or len(set(axes)) != len(axes) or not all(0 <= a < rank for a in axes):
            raise ModelError(f"node {name!r} ({node.op_type}): {len(values)} scales or sizes for axes {axes} of "
                             f"rank {rank}")
        by_axis = dict(zip(axes, values, strict=True))
        if 0 in by_axis and not (by_axis[0] == 1 if sizes is None else int(by_axis[0]) in (_BATCH, self.batch)):
            raise UnsupportedOpError(node.op_type, name, "resizes the batch axis")
        out = tuple(int(by_axis[a]) if sizes is not None and a in by_axis else
                    int(math.floor(d * float(by_axis.get(a, 1.0)))) for a, d in enumerate(per, start=1))
        if out[0] != per[0]:
            raise UnsupportedOpError(node.op_type, name, "resizes the channel axis")
        if math.prod(out) > _MAX_RESIZED:  # a hostile scale (1e30) would make numpy index arrays past memory
            raise ModelError(f"node {name!r} ({node.op_type}): output of per-sample shape {list(out)} holds over 2**31 "
                             "values")
        if scales is None:
            return out, [n / m for n, m in zip(out[1:], per[1:], strict=True)]
        return out, [float(by_axis.get(a, 1.0)) for a in range(2, rank)]

    def _block_input(self, node: NodeProto, name: str) -> tuple[str, int, bool]:
        """DepthToSpace's or SpaceToDepth's input (ONNX's checker holds it to an image), its blocksize, and whether
        its channels are channel-major (mode CRD) rather than phase-major (DCR, the default)."""
        attrs = _attrs(node)
        x, blocksize = self.data(node, name, 0), attrs.get("blocksize")
        if blocksize is None:
            raise ModelError(f"node {name!r} ({node.op_type}): attribute blocksize is required")
        return x, int(blocksize), attrs.get("mode", "DCR") == "CRD"  # type: ignore[call-overload]

    def _depth_to_space(self, node: NodeProto, name: str) -> None:
        """Channel blocks onto a grid `blocksize` times finer (sub-pixel convolution; ``nn.PixelShuffle``, which
        both torch exporters write as mode CRD): wiring (`to_space`)."""
        x, b, crd = self._block_input(node, name)
        if self.shapes[x][0] % (b * b):
            raise ModelError(f"node {name!r} (DepthToSpace): {self.shapes[x][0]} channels are not a multiple of "
                             f"blocksize**2 = {b * b}")
        self.bind(node, self.to_space(node.output[0], x, (b, b), crd=crd))

    def _space_to_depth(self, node: NodeProto, name: str) -> None:
        """Each ``blocksize x blocksize`` cell of the grid into channel blocks (a space-to-depth stem): wiring
        (`to_depth`)."""
        x, b, crd = self._block_input(node, name)
        _, h, w = self.shapes[x]
        if h % b or w % b:
            raise ModelError(f"node {name!r} (SpaceToDepth): input {h}x{w} is not a multiple of blocksize {b}")
        self.bind(node, self.to_depth(node.output[0], x, (b, b), crd=crd))

    def to_space(self, base: str, x: str, block: tuple[int, int], *, crd: bool) -> str:
        """The IR's `DepthToSpace` of image `x` (phase-major channels, DCR), after a Gather of channel-major (CRD)
        channels into that order."""
        (c, h, w), (bh, bw) = self.shapes[x], block
        if crd:
            x = self.emit(f"{base}_dcr", o.Gather(_swap_blocks(c // (bh * bw), bh * bw)), x)
        return self.emit(base, o.DepthToSpace(block, (h * bh, w * bw)), x)

    def to_depth(self, base: str, x: str, block: tuple[int, int], *, crd: bool) -> str:
        """The IR's `SpaceToDepth` of image `x` (phase-major channels, DCR), then a Gather into channel-major order
        (CRD: ``nn.PixelUnshuffle``)."""
        y = self.emit(f"{base}_dcr" if crd else base, o.SpaceToDepth(block), x)
        if not crd:
            return y
        return self.emit(base, o.Gather(_swap_blocks(block[0] * block[1], self.shapes[x][0])), y)

    def _vector_input(self, node: NodeProto, name: str, x: str, features: int) -> None:
        if self.shapes[x] != (features,):
            raise UnsupportedOpError(node.op_type, name, f"input of per-sample shape {self.shapes[x]} must be a "
                                     f"vector of {features} features")

    def _gemm(self, node: NodeProto, name: str) -> None:
        attrs = _attrs(node)
        if int(attrs.get("transA", 0)):
            raise UnsupportedOpError("Gemm", name, "transA=1 would put the batch on the feature axis")
        x = self.data(node, name, 0)
        B = self.const(node, name, 1, "B")
        if B.ndim != 2:
            raise ModelError(f"node {name!r}: Gemm B must be 2-D, got {B.shape}")
        alpha = float(attrs.get("alpha", 1.0))
        # alpha = 1 (what exporters write) needs no arithmetic: no float64 copy of a 100-M-weight layer
        w = np.asarray(B) if alpha == 1.0 else alpha * np.asarray(B, dtype=np.float64)
        weight = w if int(attrs.get("transB", 0)) else w.T  # IR weight is (out, in)
        self._vector_input(node, name, x, weight.shape[1])
        c = self.const(node, name, 2, "C", optional=True)
        bias = None
        if c is not None:
            c = np.asarray(c, dtype=np.float64)
            if c.ndim > 2 or (c.ndim == 2 and c.shape[0] != 1):
                raise UnsupportedOpError("Gemm", name, f"C of shape {c.shape} varies along the batch axis")
            bias = float(attrs.get("beta", 1.0)) * np.broadcast_to(c.reshape(-1), (weight.shape[0],))
        op = o.Linear(weight=_f32(weight), bias=None if bias is None else _f32(bias))
        self.bind(node, self.emit(node.output[0], op, x))

    def _matmul(self, node: NodeProto, name: str) -> None:
        """``x @ w`` by a constant. A vector's features (N, K) by a (K, J) matrix is a Linear, by a (K,) vector a
        Linear of one output whose axis is then dropped. A tensor (N, ..., M, K) has its last axis contracted
        with every (K, J) matrix of `w` (numpy's broadcasting over the leading axes): each of its rows of K
        values is one channel of a (rows, 1, K) image, and a grouped Conv with a (1, K) kernel gives every row
        its own J outputs (the matrix that broadcasting pairs it with). A constant on the left is
        `_matmul_left`."""
        if len(node.input) > 1 and not self.is_data(node.input[0]) and self.is_data(node.input[1]):
            self._matmul_left(node, name)
            return
        x = self.data(node, name, 0)
        w = np.asarray(self.const(node, name, 1, "right operand"))
        per, base = self.shapes[x], node.output[0]
        if w.ndim == 0:
            raise ModelError(f"node {name!r}: MatMul by a scalar")
        if not per:
            raise UnsupportedOpError("MatMul", name, "the data is 1-D: its only axis is the batch, which MatMul "
                                     "would contract")
        if len(per) == 1:
            if w.ndim > 2:
                raise UnsupportedOpError("MatMul", name, f"constant of shape {w.shape}: the result would not keep "
                                         "the batch on axis 0")
            self._vector_input(node, name, x, w.shape[0])
            if w.ndim == 2:
                self.bind(node, self.emit(base, o.Linear(weight=_f32(w.T), bias=None), x))
                return
            dot = self.emit(f"{base}_dot", o.Linear(weight=_f32(w.reshape(1, -1)), bias=None), x)
            self.bind(node, self.emit(base, o.Reshape(shape=()), dot))
            return
        if len(per) > 3:
            raise UnsupportedOpError("MatMul", name, f"data of per-sample shape {per}: only a vector (F,), rows "
                                     "(M, K) or an image (C, H, W) is supported")
        *lead, m, k = per
        mats = w.reshape(-1, 1) if w.ndim == 1 else w
        if mats.shape[-2] != k:
            raise ModelError(f"node {name!r}: MatMul of per-sample shape {per} by {w.shape}: sizes do not fit")
        mats, out_lead = _stacked_matrices(name, w, mats, lead, f"per-sample shape {per} by {w.shape}")
        image = (math.prod(lead) * m, 1, k)
        rows = x if per == image else self.emit(f"{base}_rows", o.Reshape(shape=image), x)
        rows = self._broadcast_rows(base, rows, lead, m, out_lead)
        j, count = mats.shape[-1], math.prod(out_lead)
        per_row = np.broadcast_to(mats, (*out_lead, k, j)).reshape(count, k, j).transpose(0, 2, 1)  # (rows, J, K)
        weight = np.broadcast_to(per_row[:, None], (count, m, j, k)).reshape(count * m * j, 1, 1, k)
        dot = self.emit(f"{base}_dot", o.Conv(weight=_f32(weight), bias=None, groups=count * m), rows)
        shape = (*out_lead, m) if w.ndim == 1 else (*out_lead, m, j)
        self.bind(node, self.emit(base, o.Reshape(shape=shape), dot))

    def _broadcast_rows(self, base: str, rows: str, lead: list[int], m: int, out_lead: tuple[int, ...]) -> str:
        """`rows`, the M rows of each of the data's matrices as channels, with the rows of the matrix each output
        matrix reads in order: a leading axis of size 1 repeats against the constant's (numpy's broadcasting)."""
        source = np.broadcast_to(np.arange(math.prod(lead)).reshape(lead), out_lead).reshape(-1)
        picked = [int(p) * m + i for p in source for i in range(m)]
        if picked == list(range(self.shapes[rows][0])):
            return rows
        return self._pick_channels(f"{base}_rows", rows, picked)

    def _matmul_left(self, node: NodeProto, name: str) -> None:
        """``w @ x``: a constant w of shape (..., J, M) (or (M,)) on the left of data x of per-sample shape
        (..., M, K). Each (M, K) matrix of x is a signal of M channels and K positions, and w's (J, M) matrix a
        1x1 convolution of it (the same Linear over the channels at every position: a token-mixing layer),
        grouped over x's leading axes (numpy's broadcasting pairs each with its matrix). A vector (K,) would
        put the batch in the contraction, and is refused."""
        w = np.asarray(self.const(node, name, 0, "left operand"))
        x = self.data(node, name, 1)
        per, base = self.shapes[x], node.output[0]
        if w.ndim == 0:
            raise ModelError(f"node {name!r}: MatMul by a scalar")
        if len(per) < 2:
            raise UnsupportedOpError("MatMul", name, f"constant of shape {w.shape} on the left of data of per-sample "
                                     f"shape {per}: the product would contract the batch axis")
        if len(per) > 3:
            raise UnsupportedOpError("MatMul", name, f"data of per-sample shape {per}: only rows (M, K) or an "
                                     "image (C, H, W) is supported")
        *lead, m, k = per
        mats = w.reshape(1, -1) if w.ndim == 1 else w  # (..., J, M)
        if mats.shape[-1] != m:
            raise ModelError(f"node {name!r}: MatMul of {w.shape} by per-sample shape {per}: sizes do not fit")
        mats, out_lead = _stacked_matrices(name, w, mats, lead, f"{w.shape} by per-sample shape {per}")
        image = (math.prod(lead) * m, 1, k)
        rows = x if per == image else self.reshape(f"{base}_rows", x, image)
        rows = self._broadcast_rows(base, rows, lead, m, out_lead)
        j, count = mats.shape[-2], math.prod(out_lead)
        weight = np.broadcast_to(mats, (*out_lead, j, m)).reshape(count * j, m, 1, 1)
        dot = self.emit(f"{base}_dot", o.Conv(weight=_f32(weight), bias=None, groups=count), rows)
        shape = (*out_lead, k) if w.ndim == 1 else (*out_lead, j, k)
        self.bind(node, self.reshape(base, dot, shape))

    def _per_sample_const(self, node: NodeProto, name: str, c: np.ndarray, x: str) -> np.ndarray:
        """A constant broadcast against a batched tensor, as one broadcast against the per-sample shape."""
        per = self.shapes[x]
        c = np.asarray(c, dtype=np.float64)
        if c.ndim > len(per) + 1:
            raise UnsupportedOpError(node.op_type, name, f"constant of shape {c.shape} adds axes before the batch")
        if c.ndim == len(per) + 1:
            if c.shape[0] != 1:
                raise UnsupportedOpError(node.op_type, name, f"constant of shape {c.shape} varies along the batch")
            c = c[0]
        try:
            out = np.broadcast_shapes(per, c.shape)
        except ValueError as e:
            raise ModelError(f"node {name!r}: constant {c.shape} does not broadcast against {per}") from e
        if out != per and not len(out) == len(per) == 1:  # only a vector (1,) may grow (to (F,)): the passes
            # fold a ScaleShift into its neighbours channel by channel, which a grown image or signal breaks
            raise UnsupportedOpError(node.op_type, name, f"constant of shape {c.shape} would broadcast the data's "
                                     f"per-sample shape {per} to {out}")
        return c

    def _arith(self, node: NodeProto, name: str) -> None:
        op = node.op_type
        a, b = node.input[0], node.input[1]
        if self.is_data(a) and self.is_data(b):
            xa, xb = self.values[a], self.values[b]
            if op == "Mul":
                self._mul_tensors(node, name)
                return
            if op == "Div":
                raise UnsupportedOpError(op, name, "the quotient of two tensors is not supported")
            one_d = self.is_signal(xa) and self.is_signal(xb)
            if one_d:  # a 1-D residual: add the images
                xa, xb = self.image(xa), self.image(xb)
            if self.shapes[xa] != self.shapes[xb]:
                raise UnsupportedOpError(op, name, f"shapes {self.shapes[xa]} and {self.shapes[xb]} differ "
                                         "(broadcasting between tensors is not supported)")
            if op == "Sub":  # a - b = a + (-1) * b
                neg = np.array(-1.0, dtype=np.float32)
                xb = self.emit(f"{node.output[0]}_neg", o.ScaleShift(scale=neg, shift=np.zeros_like(neg)), xb)
            y = self.emit(node.output[0], o.Add(), xa, xb)
            self.bind(node, self.signal(node.output[0], y) if one_d else y)
            return
        data_left = self.is_data(a)
        x = self.values[a] if data_left else self.values[b]
        c = self._per_sample_const(node, name, self.consts[b] if data_left else self.consts[a], x)
        one, zero = np.ones_like(c), np.zeros_like(c)
        if op == "Add":
            scale, shift = one, c
        elif op == "Mul":
            scale, shift = c, zero
        elif op == "Sub":
            scale, shift = (one, -c) if data_left else (-one, c)
        else:
            if not data_left:
                raise UnsupportedOpError("Div", name, "a constant divided by a tensor is not affine")
            with np.errstate(divide="ignore"):
                scale, shift = 1.0 / c, zero
        scale, shift = np.broadcast_arrays(scale, shift)  # same shape: simpler for the passes that fold them
        if self.is_signal(x):
            self.bind_on_image(node, o.ScaleShift(scale=_f32(_on_image(scale)), shift=_f32(_on_image(shift))), x)
            return
        self.bind(node, self.emit(node.output[0], o.ScaleShift(scale=_f32(scale), shift=_f32(shift)), x))

    def _prelu(self, node: NodeProto, name: str) -> None:
        """PRelu (a constant slope) and LeakyRelu (the scalar `alpha`): ``x if x >= 0 else slope * x``."""
        x = self.data(node, name, 0)
        if node.op_type == "LeakyRelu":
            slope = np.array(float(_attrs(node).get("alpha", 0.01)), dtype=np.float64)
        else:
            slope = self._per_sample_const(node, name, self.const(node, name, 1, "slope"), x)
        if self.is_signal(x):
            self.bind_on_image(node, o.PRelu(slope=_f32(_on_image(slope))), x)
            return
        self.bind(node, self.emit(node.output[0], o.PRelu(slope=_f32(slope)), x))

    def _mul_tensors(self, node: NodeProto, name: str) -> None:
        """``x * g(x)`` with `g` a gate of the same x (`_GATED`: how exporters write HardSwish before opset 14,
        SiLU/Swish, and Mish before opset 18) is that one element-wise op; ``x * x`` begins GELU's tanh form
        (`_gelu_step`); any other product of two data tensors is refused."""
        if node.input[0] == node.input[1]:
            self.gelu_parts[node.output[0]] = _GeluPart("square", node.input[0], 1.0, "tanh", "Mul")
            return
        for x, gate in (node.input[:2], node.input[1::-1]):
            for chain, make in _GATED.items():
                outer = self._gate_chain(gate, chain, x)
                op = None if outer is None else make(_attrs(outer))
                if op is not None:
                    self.bind_result(node, op, self.values[x])
                    return
        raise UnsupportedOpError("Mul", name, "a product of two data tensors (squeeze-and-excitation gating, "
                                 "attention): a crossbar computes weighted sums of its inputs, not products of two "
                                 "activations")

    def _gate_chain(self, tensor: str, chain: tuple[str, ...], x: str) -> NodeProto | None:
        """The node computing `tensor` when it is the ops of `chain` (outermost first) applied to `x`, else None."""
        nodes = []
        for op_type in chain:
            g = self.producer.get(tensor)
            if g is None or g.op_type != op_type or not g.input:
                return None
            nodes.append(g)
            tensor = g.input[0]
        return nodes[0] if tensor == x else None

    def _erf(self, node: NodeProto, name: str) -> None:
        """``erf(x / sqrt(2))`` (a Div by sqrt(2) or a Mul by its inverse) starts GELU's expansion; it stays a
        part without an IR node until `_gelu_step` meets the product that makes it GELU. Erf of anything else
        is refused."""
        scaled = self._scaled(node.input[0])
        if scaled is None or not _near(scaled[1], 1 / math.sqrt(2)):
            raise UnsupportedOpError("Erf", name, f"its input is not x / sqrt(2): {_ERF_FORM}")
        self.gelu_parts[node.output[0]] = _GeluPart("act", scaled[0], 1.0, "none", "Erf")

    def _pow(self, node: NodeProto, name: str) -> None:
        """``Pow(x, 3)`` (``Pow(x, 2)``) of a data tensor x begins GELU's tanh form, as the dynamo exporter writes
        it; any other power is refused."""
        x, exponent = node.input[0], _number(self.consts.get(node.input[1]))
        if not self.is_data(x) or exponent not in (2.0, 3.0):
            raise UnsupportedOpError("Pow", name, f"not a square or cube of the data: {_TANH_FORM}")
        stage = "cube" if exponent == 3.0 else "square"
        self.gelu_parts[node.output[0]] = _GeluPart(stage, x, 1.0, "tanh", "Pow")

    def _gelu_step(self, node: NodeProto, name: str, part: str) -> None:
        """A node reading a part of GELU's expansion (`gelu_parts`, `_GeluPart` names the stages): the next stage
        where the node computes it, a multiple of a part where the node multiplies or divides it by a constant,
        and the gate times ``c * x``: that multiple of ``2 * Gelu(x)`` (1/2 in all, as exporters write it: Gelu
        itself); anything else is refused."""
        p = self.gelu_parts[part]
        nxt = self._gelu_next(node, part, p)
        if isinstance(nxt, _GeluPart):
            self.gelu_parts[node.output[0]] = nxt
            return
        if nxt is not None:  # the gate times nxt * x
            self.bind_result(node, o.Gelu(p.form), self.values[p.x])
            if 2 * p.factor * nxt != 1.0:
                scale = np.array(2 * p.factor * nxt, np.float32)
                self.bind_result(node, o.ScaleShift(scale=scale, shift=np.zeros_like(scale)),
                                 self.values[node.output[0]])
            return
        what, form = _FORMS[p.form]
        raise UnsupportedOpError(node.op_type, name, f"reads {part!r}, a part of {what}: {form}")

    def _gelu_next(self, node: NodeProto, part: str, p: _GeluPart) -> _GeluPart | float | None:
        """What `node` makes of part `p`: the next part, the constant c of a final ``gate * c * x``, or None
        (not GELU's expansion)."""
        op = node.op_type
        if op == "Tanh":
            if p.stage == "poly" and _near(p.factor, math.sqrt(2 / math.pi)):
                return p._replace(stage="act", factor=1.0)
            return None
        other = [t for t in node.input if t != part]
        if len(node.input) != 2 or len(other) != 1:
            return None
        c = _number(self.consts.get(other[0]))
        if c and p.stage != "act" and (op == "Mul" or (op == "Div" and node.input[0] == part)):
            return p._replace(factor=p.factor * c if op == "Mul" else p.factor / c)
        if op == "Add" and p.stage == "act" and _near(c, 1.0):
            return p._replace(stage="gate")
        if other[0] != p.x:  # the rest read x itself, or the gate's c * x
            scaled = self._scaled(other[0])
            return scaled[1] if op == "Mul" and p.stage == "gate" and scaled and scaled[0] == p.x else None
        if op == "Mul" and p.stage == "square":
            return p._replace(stage="cube")
        if op == "Add" and p.stage == "cube" and _near(p.factor, _CUBIC):
            return p._replace(stage="poly", factor=1.0)
        return 1.0 if op == "Mul" and p.stage == "gate" else None

    def _scaled(self, h: str) -> tuple[str, float] | None:
        """(x, c) where tensor `h` is a Mul or Div of data tensor x by a constant number c (not 0): ``h = c * x``;
        else None."""
        src = self.producer.get(h)
        if src is None or src.op_type not in ("Mul", "Div") or len(src.input) != 2:
            return None
        x, c = src.input
        if src.op_type == "Mul" and x in self.consts:
            x, c = c, x
        value = _number(self.consts.get(c))
        if not self.is_data(x) or not value:
            return None
        return x, value if src.op_type == "Mul" else 1 / value

    def _hard_sigmoid(self, node: NodeProto, name: str) -> None:
        """``max(0, min(1, alpha * x + beta))``: piecewise linear, so exact as a ScaleShift and a Clip(0, 1) (two ReLU
        outputs on a chip), not approximated."""
        attrs = _attrs(node)
        alpha, beta = float(attrs.get("alpha", 0.2)), float(attrs.get("beta", 0.5))
        x = self.data(node, name, 0)
        one_d = self.is_signal(x)
        lin = o.ScaleShift(scale=np.array(alpha, np.float32), shift=np.array(beta, np.float32))
        y = self.emit(node.output[0], o.Clip(lo=0.0, hi=1.0),
                      self.emit(f"{node.output[0]}_lin", lin, self.image(x) if one_d else x))
        self.bind(node, self.signal(node.output[0], y) if one_d else y)

    def _sum(self, node: NodeProto, name: str) -> None:
        xs = [self.data(node, name, i) for i in range(len(node.input))]
        if len({self.shapes[x] for x in xs}) != 1:
            raise UnsupportedOpError("Sum", name, "inputs of different shapes (broadcasting is not supported)")
        self.bind_joined(node, o.Add() if len(xs) > 1 else o.Identity(), xs)

    def bind_joined(self, node: NodeProto, op: o.Op, xs: list[str], image_op: o.Op | None = None) -> None:
        """Emit `op` reading `xs` for the node's output; when they are all (C, L) signals, `image_op` (by default
        `op`) on their images, viewed back."""
        if all(self.is_signal(x) for x in xs):
            y = self.emit(node.output[0], image_op or op, *(self.image(x) for x in xs))
            self.bind(node, self.signal(node.output[0], y))
        else:
            self.bind(node, self.emit(node.output[0], op, *xs))

    def _clip(self, node: NodeProto, name: str) -> None:
        def bound(v: object) -> float | None:
            if v is None:
                return None
            value = _number(v)
            if value is None:
                raise UnsupportedOpError("Clip", name, "bounds must be scalars")
            # Old opsets default to +-FLT_MAX for a missing bound: that is no bound.
            return None if not math.isfinite(value) or abs(value) >= 3.4e38 else value

        if self.opset < 11:
            attrs = _attrs(node)
            lo, hi = bound(attrs.get("min")), bound(attrs.get("max"))
        else:
            lo = bound(self.const(node, name, 1, "min", optional=True))
            hi = bound(self.const(node, name, 2, "max", optional=True))
        self.unary(node, name, o.Clip(lo=lo, hi=hi))

    def _max_min(self, node: NodeProto, name: str) -> None:
        """Max (Min) of the data and constant numbers: a Clip from below at the largest (from above at the
        smallest) of them (``torch.clamp(x, min=0)``, ``x.clamp(max=6)`` as the dynamo exporter writes them).
        The max or min of two data tensors, or by a constant of several values, is refused."""
        data = [t for t in node.input if t and self.is_data(t)]
        what = "max" if node.op_type == "Max" else "min"
        if len(data) != 1:
            raise UnsupportedOpError(node.op_type, name, f"the {what} of {len(data)} data tensors: only the {what} of "
                                     "the data and constant numbers (a clamp) is supported")
        x = self.values[data[0]]
        bounds = [_number(self._per_sample_const(node, name, self.consts[t], x)) for t in node.input
                  if t and t not in data]
        if any(b is None for b in bounds):
            raise UnsupportedOpError(node.op_type, name, f"the {what} by a constant of several values: only by "
                                     "one number (a clamp) is supported")
        if not bounds:
            self.bind_result(node, o.Identity(), x)
            return
        lo, hi = (max(bounds), None) if what == "max" else (None, min(bounds))
        self.bind_result(node, o.Clip(lo=lo, hi=hi), x)

    def _pool(self, node: NodeProto, name: str) -> None:
        x = self.data(node, name, 0)
        attrs = _attrs(node)
        if "kernel_shape" not in attrs:
            raise ModelError(f"node {name!r}: {node.op_type} lacks kernel_shape")
        one_d = len(attrs["kernel_shape"]) == 1 and len(self.shapes[x]) == 2
        if one_d:  # 1-D pooling of a (C, L) signal is 2-D pooling of the (C, 1, L) image
            attrs, x = _lift_1d(attrs), self.image(x)
        per = self.shapes[x]
        kernel = self._pair(node, name, attrs, "kernel_shape")
        if len(per) != 3:
            raise UnsupportedOpError(node.op_type, name, f"input {per} is not an image (C, H, W)")
        stride = self._pair(node, name, attrs, "strides")
        dilation = self._pair(node, name, attrs, "dilations")
        pads = self._spatial_pads(node, name, attrs, per[1:], kernel, stride, dilation)
        ceil_mode = bool(int(attrs.get("ceil_mode", 0)))
        self.only_first_output(node, name)
        if node.op_type == "MaxPool":
            op: o.Op = o.MaxPool(kernel=kernel, stride=stride, padding=pads, ceil_mode=ceil_mode, dilation=dilation)
        else:  # without pads or overhang the divisor is the window whatever count_include_pad says: one form
            # (torch's dynamo exporter writes 1 for an adaptive pooling, its TorchScript exporter 0)
            counted = bool(int(attrs.get("count_include_pad", 0))) and (any(pads) or ceil_mode)
            op = o.AvgPool(kernel=kernel, stride=stride, padding=pads, ceil_mode=ceil_mode, dilation=dilation,
                           count_include_pad=counted)
        if one_d:
            self.bind_on_image(node, op, x)
        else:
            self.bind(node, self.emit(node.output[0], op, x))

    def _global_avg_pool(self, node: NodeProto, name: str) -> None:
        x = self.data(node, name, 0)
        per = self.shapes[x]
        if len(per) == 2:  # a (C, L) signal: the mean over L, as the (C, 1) signal
            self.bind_on_image(node, o.GlobalAvgPool(), x)
            return
        if len(per) != 3:
            raise UnsupportedOpError("GlobalAveragePool", name, f"input {per} is not (C, L) or (C, H, W)")
        self.unary(node, name, o.GlobalAvgPool())

    def _global_max_pool(self, node: NodeProto, name: str) -> None:
        """The max over the whole map: a MaxPool whose window is the map ((1, L) on a (C, L) signal's image), the
        same max tree as any max pooling."""
        x = self.data(node, name, 0)
        per = self.shapes[x]
        if len(per) not in (2, 3):
            raise UnsupportedOpError("GlobalMaxPool", name, f"input {per} is not (C, L) or (C, H, W)")
        window = tuple(per[1:]) if len(per) == 3 else (1, per[1])
        self.bind_result(node, o.MaxPool(kernel=window, stride=(1, 1)), x)

    def _batchnorm(self, node: NodeProto, name: str) -> None:
        attrs = _attrs(node)
        if int(attrs.get("training_mode", 0)):
            raise UnsupportedOpError("BatchNormalization", name, "training_mode=1")
        if int(attrs.get("spatial", 1)) != 1:
            raise UnsupportedOpError("BatchNormalization", name, "spatial=0")
        self.only_first_output(node, name)
        x = self.data(node, name, 0)
        gamma, beta, mean, var = (np.asarray(self.const(node, name, i, what), dtype=np.float64).reshape(-1)
                                  for i, what in enumerate(("scale", "B", "mean", "var"), start=1))
        per = self.shapes[x]
        channels = per[0] if per else 0
        if not per or any(v.shape != (channels,) for v in (gamma, beta, mean, var)):
            raise ModelError(f"node {name!r}: BatchNormalization parameters do not match input {per}")
        scale = gamma / np.sqrt(var + float(attrs.get("epsilon", 1e-5)))
        shift = beta - mean * scale
        if len(per) == 2:  # a (C, L) signal: on its (C, 1, L) image, like the convolution before it
            op = o.ScaleShift(scale=_f32(scale.reshape(-1, 1, 1)), shift=_f32(shift.reshape(-1, 1, 1)))
            self.bind_on_image(node, op, x)
            return
        shape = (channels,) + (1,) * (len(per) - 1)  # (C, 1, 1) for images, (C,) for vectors
        op = o.ScaleShift(scale=_f32(scale.reshape(shape)), shift=_f32(shift.reshape(shape)))
        self.bind(node, self.emit(node.output[0], op, x))

    def _pad(self, node: NodeProto, name: str) -> None:
        """A zero constant pad of the spatial axes: an IR Pad, which canonicalize folds into the convolution or
        pooling that reads it. Other modes, values, crops and pads of the batch or channel axis are refused."""
        x = self.data(node, name, 0)
        per, attrs = self.shapes[x], _attrs(node)
        rank = len(per) + 1
        mode = attrs.get("mode", "constant")
        if mode not in ("constant", *_PAD_COPIES):
            raise UnsupportedOpError("Pad", name, f"mode {mode!r}: only constant zero padding and the modes "
                                     f"{', '.join(_PAD_COPIES)} are supported")
        if self.opset < 11:
            raw, value, axes = attrs.get("pads"), float(attrs.get("value", 0.0)), None
            if raw is None:
                raise ModelError(f"node {name!r}: Pad lacks its pads")
        else:
            raw = self.const(node, name, 1, "pads")
            v = self.const(node, name, 2, "constant_value", optional=True)
            value = 0.0 if v is None or np.asarray(v).size == 0 else float(np.asarray(v).reshape(-1)[0])
            axes = self._axes(node, name, 18, rank, index=3)
        axes = list(range(rank)) if axes is None else axes
        pads = [int(p) for p in np.asarray(raw).reshape(-1)]
        if len(pads) != 2 * len(axes):
            raise ModelError(f"node {name!r}: Pad has {len(pads)} pads for {len(axes)} axes")
        begin = dict.fromkeys(range(rank), 0) | dict(zip(axes, pads[: len(axes)], strict=True))
        end = dict.fromkeys(range(rank), 0) | dict(zip(axes, pads[len(axes) :], strict=True))
        if any(begin[a] or end[a] for a in (0, 1)):
            raise UnsupportedOpError("Pad", name, f"pads {pads} pad the batch or channel axis: only the spatial "
                                     "axes can be padded")
        if min(pads) < 0:
            raise UnsupportedOpError("Pad", name, f"negative pads {pads} (a crop) are not supported")
        if not any(pads):
            self.unary(node, name, o.Identity())
            return
        if mode != "constant":
            self._pad_copies(node, name, x, mode, [(begin[a], end[a]) for a in range(2, rank)])
            return
        if value != 0.0:
            raise UnsupportedOpError("Pad", name, f"constant value {value}: only zero padding is supported (it "
                                     "folds into the next convolution or pooling)")
        if len(per) == 2:  # a (C, L) signal: pad L of its (C, 1, L) image
            self.bind_on_image(node, o.Pad(padding=(0, begin[2], 0, end[2])), x)
        elif len(per) == 3:
            self.bind(node, self.emit(node.output[0], o.Pad(padding=(begin[2], begin[3], end[2], end[3])), x))
        else:
            raise UnsupportedOpError("Pad", name, f"data of per-sample shape {per}: only a signal (C, L) or an "
                                     "image (C, H, W) is padded")

    def _abs(self, node: NodeProto, name: str) -> None:
        """``|x| = relu(x) + relu(-x)``: two ReLUs of the same value, added (exact; as a Sub of tensors is an Add
        of a negated branch)."""
        base = node.output[0]

        def relus(v: str) -> str:
            neg = self.emit(f"{base}_neg", o.ScaleShift(scale=np.float32(-1.0), shift=np.float32(0.0)), v)
            return self.emit(base, o.Add(), self.emit(f"{base}_pos_relu", o.Relu(), v),
                             self.emit(f"{base}_neg_relu", o.Relu(), neg))

        self.bind_built(node, self.data(node, name, 0), relus)

    def _celu(self, node: NodeProto, name: str) -> None:
        """``celu(x) = alpha * elu(x / alpha)``: a scale by 1 / alpha (it folds into the op before) and an `Elu`
        whose gamma is alpha."""
        alpha, base = float(_attrs(node).get("alpha", 1.0)), node.output[0]
        scale = o.ScaleShift(scale=np.float32(1.0 / alpha), shift=np.float32(0.0))
        self.bind_built(node, self.data(node, name, 0),
                        lambda v: self.emit(base, o.Elu(1.0, alpha), self.emit(f"{base}_scaled", scale, v)))

    def _pad_copies(self, node: NodeProto, name: str, x: str, mode: str, pads: list[tuple[int, int]]) -> None:
        """A pad whose new values are copies of the input's (reflect, edge, wrap): wiring, a Gather of the flattened
        sample that routes each input value to every place it takes (no core: the next convolution reads the
        copies as it reads any value). The copied places are numpy.pad of the values' own indices."""
        per = self.shapes[x]
        if mode != "edge" and any(max(p) >= size for p, size in zip(pads, per[1:], strict=True)):
            # numpy reflects (wraps) such a pad again and again, runtimes differ or refuse: no one meaning
            raise UnsupportedOpError("Pad", name, f"mode {mode!r} pads {[list(p) for p in pads]} as wide as the "
                                     f"padded axes {list(per[1:])} or wider: only pads narrower than their axis")
        index = np.pad(np.arange(math.prod(per)).reshape(per), [(0, 0), *pads], mode=mode)
        flat = self.reshape(f"{node.output[0]}_flat", x, (math.prod(per),))
        copies = self.emit(f"{node.output[0]}_copies", o.Gather(index.reshape(-1).astype(np.int64)), flat)
        self.bind_reshape(node, copies, index.shape)

    def _flatten(self, node: NodeProto, name: str) -> None:
        x = self.data(node, name, 0)
        per = self.shapes[x]
        raw = int(_attrs(node).get("axis", 1))
        axis = raw + len(per) + 1 if raw < 0 else raw
        # Flatten keeps the batch apart only when everything between the batch and `axis` is of size 1.
        if axis < 1:
            raise UnsupportedOpError("Flatten", name, f"axis {raw} would merge the batch axis into the features")
        if math.prod(per[: axis - 1]) != 1:
            raise UnsupportedOpError("Flatten", name, f"axis {raw} would merge per-sample axes of sizes "
                                     f"{list(per[: axis - 1])} into the batch")
        self.bind_reshape(node, x, (math.prod(per),))

    def _reshape(self, node: NodeProto, name: str) -> None:
        x = self.data(node, name, 0)
        target = self.const(node, name, 1, "shape")
        if target.ndim != 1 or not np.issubdtype(target.dtype, np.integer):
            raise ModelError(f"node {name!r}: Reshape shape must be a 1-D integer tensor")
        allowzero = int(_attrs(node).get("allowzero", 0))
        self.bind_reshape(node, x, self._reshape_target(node, name, x, target, allowzero))

    def _reshape_target(self, node: NodeProto, name: str, x: str, target: np.ndarray,
                        allowzero: int) -> tuple[int, ...]:
        """The per-sample shape of ONNX Reshape `target`, whose axis 0 must stand for the batch."""
        per = self.shapes[x]
        full = [int(_BATCH), *per]
        dims = [int(v) for v in target]
        shown = [("N" if v == _BATCH else v) for v in dims]
        if not dims:
            raise UnsupportedOpError("Reshape", name, "reshape to a scalar drops the batch axis")
        if not allowzero:  # 0 copies the input's dimension at the same index
            for i, v in enumerate(dims):
                if v == 0:
                    if i >= len(full):
                        raise ModelError(f"node {name!r}: Reshape 0 at axis {i} has no input dimension to copy")
                    dims[i] = full[i]
        first, rest = dims[0], dims[1:]
        if first == -1:
            if -1 in rest:
                raise UnsupportedOpError("Reshape", name, f"target {shown} has two free axes")
        elif first != _BATCH and (self.batch is None or first != self.batch):
            raise UnsupportedOpError("Reshape", name, f"target {shown} does not keep the batch on axis 0")
        if any(v == _BATCH or v < -1 for v in rest) or rest.count(-1) > 1:
            raise UnsupportedOpError("Reshape", name, f"target {shown} not supported")
        numel = math.prod(per)
        if -1 in rest:
            known = math.prod(v for v in rest if v != -1)
            if known == 0 or numel % known:
                raise ModelError(f"node {name!r}: cannot reshape per-sample {per} to {shown}")
            rest[rest.index(-1)] = numel // known
        if math.prod(rest) != numel:
            raise UnsupportedOpError("Reshape", name, f"target {shown} moves elements across the batch "
                                     f"(per-sample shape {per})")
        return tuple(rest)

    def _dropout(self, node: NodeProto, name: str) -> None:
        self.only_first_output(node, name)
        if self.opset >= 12:
            training = self.const(node, name, 2, "training_mode", optional=True)
            if training is not None and bool(np.asarray(training).reshape(-1)[0]):
                raise UnsupportedOpError("Dropout", name, "training_mode is true")
        self.unary(node, name, o.Identity())

    def _cast(self, node: NodeProto, name: str) -> None:
        to = int(_attrs(node).get("to", 0))
        if to not in _EXACT_CAST_TYPES:
            narrow = TensorProto.DataType.Name(to).startswith(("FLOAT", "BFLOAT"))
            detail = "rounds to a narrower float type" if narrow else "leaves the float types"
            raise UnsupportedOpError("Cast", name, f"cast of the data to {TensorProto.DataType.Name(to)} {detail}; "
                                     "the IR computes in float32")
        self.unary(node, name, o.Identity())  # the IR computes in one float type

    def _softmax(self, node: NodeProto, name: str) -> None:
        """Softmax, and LogSoftmax (its logarithm: a classifier's output, as `F.log_softmax` writes it)."""
        x = self.data(node, name, 0)
        per = self.shapes[x]
        rank = len(per) + 1
        log = node.op_type == "LogSoftmax"
        axis = int(_attrs(node).get("axis", 1 if self.opset < 13 else -1))
        axis = axis + rank if axis < 0 else axis
        if not 1 <= axis < rank:
            raise UnsupportedOpError(node.op_type, name, f"axis {axis} is the batch axis or out of range")
        if self.opset >= 13 or axis == rank - 1:
            self.unary(node, name, o.Softmax(axis=axis - 1, log=log))
            return
        # Before opset 13, Softmax normalizes over all axes from `axis` on, as one flattened axis.
        flat = (math.prod(per[: axis - 1]), math.prod(per[axis - 1 :]))
        pre = self.emit(f"{node.output[0]}_flat", o.Reshape(shape=flat), x)
        soft = self.emit(f"{node.output[0]}_softmax", o.Softmax(axis=1, log=log), pre)
        self.bind(node, self.emit(node.output[0], o.Reshape(shape=per), soft))

    def _concat(self, node: NodeProto, name: str) -> None:
        if not all(self.is_data(t) for t in node.input if t):
            raise UnsupportedOpError("Concat", name, "concatenating a tensor with a constant is not supported")
        xs = [self.values[t] for t in node.input if t]
        per = self.shapes[xs[0]]
        axis = int(_attrs(node)["axis"])
        axis = axis + len(per) + 1 if axis < 0 else axis
        if axis == 0:
            raise UnsupportedOpError("Concat", name, "concatenation along the batch axis")
        for x in xs:
            s = self.shapes[x]
            if len(s) != len(per) or any(a != b for i, (a, b) in enumerate(zip(s, per, strict=True))
                                         if i != axis - 1):
                raise ModelError(f"node {name!r}: Concat inputs {per} and {s} do not fit on axis {axis}")
        # signals (C, L) join on their images' C or L axis
        self.bind_joined(node, o.Concat(axis=axis - 1), xs, o.Concat(axis=2 * (axis - 1)))

    # --- data-path forms of the shape ops (mostly met folded, on constants) -------------------------------
    def _axes(self, node: NodeProto, name: str, since_input: int, rank: int, *,
              optional: bool = True, index: int = 1) -> list[int] | None:
        """The `axes` of a node, an attribute before opset `since_input` and input `index` from it, each made
        non-negative against `rank` (the batched rank); None when absent or empty (both mean "every axis" to
        Squeeze and the Reduce ops)."""
        if self.opset < since_input:
            raw = _attrs(node).get("axes")
        else:
            raw = self.const(node, name, index, "axes", optional=optional)
        if raw is None or np.asarray(raw).size == 0:
            return None
        axes = [int(a) for a in np.asarray(raw).reshape(-1)]
        if any(not -rank <= a < rank for a in axes):
            raise ModelError(f"node {name!r} ({node.op_type}): axes {axes} out of range for rank {rank}")
        out = [a + rank if a < 0 else a for a in axes]
        if len(set(out)) != len(out):
            raise ModelError(f"node {name!r} ({node.op_type}): repeated axes {axes}")
        return out

    def _squeeze(self, node: NodeProto, name: str) -> None:
        x = self.data(node, name, 0)
        per = self.shapes[x]
        axes = self._axes(node, name, 13, len(per) + 1)
        if axes is None:  # "every axis of size 1": whether the batch is one of them depends on the batch size
            raise UnsupportedOpError("Squeeze", name, "without axes it would squeeze a batch of 1; give the axes")
        if 0 in axes:
            raise UnsupportedOpError("Squeeze", name, "squeezes the batch axis")
        if any(per[a - 1] != 1 for a in axes):
            raise ModelError(f"node {name!r}: Squeeze axes {axes} are not all of size 1 in {per}")
        self.bind_reshape(node, x, tuple(d for i, d in enumerate(per, start=1) if i not in axes))

    def _unsqueeze(self, node: NodeProto, name: str) -> None:
        x = self.data(node, name, 0)
        per = self.shapes[x]
        raw = _attrs(node).get("axes") if self.opset < 13 else self.const(node, name, 1, "axes")
        n_axes = 0 if raw is None else int(np.asarray(raw).size)
        axes = self._axes(node, name, 13, len(per) + 1 + n_axes, optional=False)  # against the output's rank
        if axes is None:
            raise ModelError(f"node {name!r}: Unsqueeze lacks its axes")
        if 0 in axes:
            raise UnsupportedOpError("Unsqueeze", name, "inserts an axis before the batch axis")
        rest = iter(per)
        out = tuple(1 if i in axes else next(rest) for i in range(1, len(per) + 1 + len(axes)))
        self.bind_reshape(node, x, out)

    def _slice(self, node: NodeProto, name: str) -> None:
        x = self.data(node, name, 0)
        per = self.shapes[x]
        full = (None, *per)  # the batch size is free
        if self.opset < 10:
            attrs = _attrs(node)
            starts, ends = attrs.get("starts"), attrs.get("ends")
            axes_raw, steps_raw = attrs.get("axes"), None
            if starts is None or ends is None:
                raise ModelError(f"node {name!r}: Slice lacks starts or ends")
        else:
            starts = self.const(node, name, 1, "starts")
            ends = self.const(node, name, 2, "ends")
            axes_raw = self.const(node, name, 3, "axes", optional=True)
            steps_raw = self.const(node, name, 4, "steps", optional=True)
        starts = [int(v) for v in np.asarray(starts).reshape(-1)]
        ends = [int(v) for v in np.asarray(ends).reshape(-1)]
        rank = len(full)
        axes = list(range(len(starts))) if axes_raw is None else [int(a) for a in np.asarray(axes_raw).reshape(-1)]
        steps = [1] * len(starts) if steps_raw is None else [int(v) for v in np.asarray(steps_raw).reshape(-1)]
        if not len(starts) == len(ends) == len(axes) == len(steps) or any(not -rank <= a < rank for a in axes):
            raise ModelError(f"node {name!r}: Slice starts/ends/axes/steps do not fit rank {rank}")
        if 0 in steps:
            raise ModelError(f"node {name!r}: Slice step 0")
        cut: tuple[int, int] | None = None
        for a, start, end, step in zip(axes, starts, ends, steps, strict=True):
            a = a + rank if a < 0 else a
            if a == 0:
                # Only `x[0:]` keeps every sample whatever the batch size.
                if step != 1 or start not in (0, -(2**63)) or end < 2**31 - 1:
                    raise UnsupportedOpError("Slice", name, "slices the batch axis")
                continue
            size = full[a]
            assert size is not None
            if step > 0:
                lo, hi = (min(max(v + size if v < 0 else v, 0), size) for v in (start, end))
            else:
                lo, hi = (min(max(v + size if v < 0 else v, -1), size - 1) for v in (start, end))
            if step == 1 and (lo, hi) == (0, size):
                continue  # the whole axis: nothing to do
            if a != 1 or step != 1:
                raise UnsupportedOpError("Slice", name, f"axis {a} step {step}: the IR slices only a contiguous "
                                         "range of the channel (feature) axis")
            if hi <= lo:
                raise UnsupportedOpError("Slice", name, "the slice is empty")
            cut = (lo, hi)
        self.unary(node, name, o.Slice(*cut) if cut is not None else o.Identity())

    def _split(self, node: NodeProto, name: str) -> None:
        """Split along the channel (feature) axis, as torch writes ``x.chunk(k, 1)`` and ``x.split(sizes, 1)``
        (CSP and C2f blocks, ShuffleNetV2's channel split): each output is a channel Slice of x. The sizes are
        the `split` input (opset 13 on) or attribute (before), else equal parts: ``num_outputs`` of them (opset
        18 on; the last one smaller where the axis does not divide) or one per output."""
        x = self.data(node, name, 0)
        attrs = _attrs(node)
        self.channel_axis(node, name, x, "splits", "slices only a contiguous range of")
        size, parts = self.shapes[x][0], len(node.output)
        raw = self.const(node, name, 1, "split", optional=True) if self.opset >= 13 else attrs.get("split")
        if raw is not None:
            sizes = [int(v) for v in np.asarray(raw).reshape(-1)]
        else:
            each = -(-size // parts)  # ONNX: ceil, the last part takes what is left
            sizes = [min(each, size - k * each) for k in range(parts)]
        if len(sizes) != parts or sum(sizes) != size or min(sizes) <= 0:
            raise ModelError(f"node {name!r} (Split): parts {sizes} do not split the {size} channels into "
                             f"{parts} outputs")
        lo = 0
        for out, n in zip(node.output, sizes, strict=True):
            if out:
                op = o.Identity() if n == size else o.Slice(lo, lo + n)
                self.values[out] = self.emit(out, op, x)
            lo += n

    def _transpose(self, node: NodeProto, name: str) -> None:
        """A channel shuffle (ShuffleNet: ``x.view(n, g, c // g, h, w).transpose(1, 2)``, then a view back): x is a
        Reshape that splits the channel axis of y into (a, b), and the permutation swaps those two axes; the
        result is y's channels in the order ``b``-major (`_pick_channels`), viewed as (b, a, ...). A pixel shuffle
        or unshuffle written as a Reshape/Transpose/Reshape chain (`_BLOCK_TRANSPOSES`) is a DepthToSpace or
        SpaceToDepth and a Gather, viewed as the Transpose's shape. The identity permutation is nothing. A
        Transpose of the graph's input (channels-last data, NHWC -> NCHW) is the order in which the host sends
        the values (`_permute`), and so is one that only a Flatten or Reshape to a vector reads
        (``x.permute(0, 2, 3, 1).flatten(1)`` before a Linear): the Linear's features in another order, which
        canonicalize folds into its weights. Any other is refused, naming its perm (a chip's channels keep their
        axis)."""
        x = self.data(node, name, 0)
        per = self.shapes[x]
        rank = len(per) + 1
        perm = [int(p) for p in _attrs(node).get("perm", range(rank - 1, -1, -1))]
        if sorted(perm) != list(range(rank)):
            raise ModelError(f"node {name!r} (Transpose): perm {perm} is not a permutation of the {rank} axes")
        if perm == list(range(rank)):
            self.bind(node, x)
            return
        if perm[0] != 0:
            raise UnsupportedOpError("Transpose", name, "moves the batch axis")
        op, inputs = self.made[x]
        if rank >= 3 and perm == [0, 2, 1, *range(3, rank)] and isinstance(op, o.Reshape):
            y, (a, b) = inputs[0], per[:2]
            if self.shapes[y] == (a * b, *per[2:]):
                shuffled = self._pick_channels(node.output[0], y, [i * b + j for j in range(b) for i in range(a)])
                self.bind(node, self.reshape(node.output[0], shuffled, (b, a, *per[2:])))
                return
        if tuple(perm) in _BLOCK_TRANSPOSES and isinstance(op, o.Reshape):
            y = self.block_view(f"{node.output[0]}_block", inputs[0], per, **_BLOCK_TRANSPOSES[tuple(perm)])
            if y is not None:
                self.bind(node, self.reshape(node.output[0], y, tuple(per[p - 1] for p in perm[1:])))
                return
        if self.graph_input(x):  # channels-last data: the host sends its values in the permuted order
            self.bind(node, self._permute(node.output[0], x, perm))
            return
        # read only by a Flatten or Reshape to a vector (checked in `_convert`): a permutation of its features
        self.permuted[node.output[0]] = (name, perm)
        self.bind(node, self._permute(node.output[0], x, perm))

    def block_view(self, base: str, y: str, split: Shape, *, to_space: bool, crd: bool) -> str | None:
        """A Reshape/Transpose/Reshape chain that is DepthToSpace or SpaceToDepth (`_BLOCK_TRANSPOSES`: its
        Reshape splits image `y` into `split`, in ``(C, H, bh, W, bw)`` order after the Transpose for `to_space`,
        before it for space to depth), or None when the split does not match."""
        c, h, w = self.shapes[y]
        if to_space:
            channels = split[0] if crd else split[2]
            bh, bw = split[1:3] if crd else split[:2]
            matches = split[3:] == (h, w)
        else:
            channels, bh, bw = split[0], split[2], split[4]
            matches = (split[1] * bh, split[3] * bw) == (h, w)
        if not matches or c != channels * (bh * bw if to_space else 1):
            return None
        block = (bh, bw)
        return self.to_space(base, y, block, crd=crd) if to_space else self.to_depth(base, y, block, crd=crd)

    def graph_input(self, x: str) -> bool:
        return isinstance(self.made[x][0], o.Input)

    def _permute(self, base: str, x: str, perm: list[int]) -> str:
        """`x` with its per-sample axes permuted (`perm` of the batched axes, batch first): its values as a vector,
        a Gather of them in the new order, viewed in the new shape. Wiring that only a vector reader (a Linear,
        into whose weights canonicalize folds the Gather) or the host (the input) may meet: the chip's channels
        keep their axis, and a permutation moving values across channels would mix channels of different
        scales."""
        per = self.shapes[x]
        order = np.arange(math.prod(per)).reshape(per).transpose([p - 1 for p in perm[1:]]).reshape(-1)
        flat = self.reshape(f"{base}_flat", x, (math.prod(per),))
        return self.reshape(base, self.emit(f"{base}_perm", o.Gather(order), flat),
                            tuple(per[p - 1] for p in perm[1:]))

    def check_permuted(self, node: NodeProto, tensor: str, *, converted: bool) -> None:
        """A node reading the result of a Transpose (`permuted`) other than a channel shuffle or of the input:
        only a Flatten or Reshape of it to a vector (the features of a Linear, in the Transpose's order) is
        supported; `converted`: the node is converted, and its result must be that vector."""
        name, perm = self.permuted[tensor]
        vector = node.op_type in ("Flatten", "Reshape") and (
            not converted or len(self.shapes[self.values[node.output[0]]]) == 1)
        if not vector:
            raise UnsupportedOpError("Transpose", name, f"perm {perm}: only a channel shuffle, a pixel (un)shuffle, a "
                                     "Transpose of the "
                                     "graph's input (channels-last data) or one that a Flatten or Reshape to a "
                                     "vector reads (a Linear's features in another order) is supported"
                                     + ("; to mix along the rows of (M, K) data (an MLP-Mixer's token mixing), "
                                        "multiply by a constant on the left (W @ x) instead" if perm == [0, 2, 1]
                                        else ""))

    def channel_axis(self, node: NodeProto, name: str, x: str, does: str, the_ir: str) -> None:
        """Refuse a node whose `axis` attribute (default 0) is not the channel (feature) axis of data `x`: the
        batch axis ("<op> <does> the batch axis"), or another ("the IR <the_ir> the channel (feature) axis")."""
        rank = len(self.shapes[x]) + 1
        axis = int(_attrs(node).get("axis", 0))
        if not -rank <= axis < rank:
            raise ModelError(f"node {name!r}: {node.op_type} axis {axis} out of range for rank {rank}")
        axis = axis + rank if axis < 0 else axis
        if axis == 0:
            raise UnsupportedOpError(node.op_type, name, f"{does} the batch axis")
        if axis != 1:
            raise UnsupportedOpError(node.op_type, name, f"axis {axis}: the IR {the_ir} the channel (feature) axis")

    def _pick_channels(self, base: str, x: str, index: list[int]) -> str:
        """Channels `index` (non-negative) of axis 1 of `x`, in that order: each run of consecutive indices is
        one Slice, and the runs are concatenated on the channel axis."""
        size = self.shapes[x][0]
        runs: list[list[int]] = []
        for i in index:
            if runs and i == runs[-1][1]:
                runs[-1][1] += 1
            else:
                runs.append([i, i + 1])
        parts = [x if (lo, hi) == (0, size) else self.emit(f"{base}_take{k}", o.Slice(lo, hi), x)
                 for k, (lo, hi) in enumerate(runs)]
        return parts[0] if len(parts) == 1 else self.emit(f"{base}_cat", o.Concat(axis=0), *parts)

    def _gather(self, node: NodeProto, name: str) -> None:
        x = self.data(node, name, 0)
        indices = np.asarray(self.const(node, name, 1, "indices"))
        per = self.shapes[x]
        self.channel_axis(node, name, x, "gathers along", "selects only along")
        size = per[0]
        flat = [int(i) for i in indices.reshape(-1)]
        if not flat or any(not -size <= i < size for i in flat):
            raise ModelError(f"node {name!r}: Gather indices {indices.tolist()} out of range for size {size}")
        flat = [i + size if i < 0 else i for i in flat]
        base = node.output[0]
        y = self._pick_channels(base, x, flat)
        shape = (*indices.shape, *per[1:])
        if self.shapes[y] != shape:
            y = self.emit(base, o.Reshape(shape=shape), y)
        elif y == x:
            y = self.emit(base, o.Identity(), x)
        self.values[node.output[0]] = y

    def _chain(self, base: str, x: str, steps: list[tuple[str, o.Op]]) -> str:
        """Emit `steps` one after the other from `x`; the last is named `base` (the ONNX value it realizes),
        the others `base` plus their suffix."""
        for i, (suffix, op) in enumerate(steps):
            x = self.emit(base if i == len(steps) - 1 else f"{base}_{suffix}", op, x)
        return x

    def _reduce(self, node: NodeProto, name: str) -> None:
        """The mean (ReduceMean), sum (ReduceSum) or max (ReduceMax) over per-sample axes, as ops the compiler
        maps to core-ops. The mean: a Linear of weights 1/F over a vector's features; over an image's channels a
        1x1 Conv of weights 1/C, over its rows, columns or both an AvgPool with an (H, 1) or (1, W) window or a
        GlobalAvgPool. The sum: that mean times the number of values it adds (a ScaleShift, which canonicalize
        folds into a neighbour). The max (global max pooling, ``x.amax((2, 3))``, ``torch.max(x, dim=2)`` over a
        signal's length, dynamo's ``AdaptiveMaxPool2d(1)``): a MaxPool with the same window as the mean's pool.
        A (C, L) signal is the (C, 1, L) image."""
        kind = node.op_type
        x = self.data(node, name, 0)
        per = self.shapes[x]
        attrs = _attrs(node)
        since = _REDUCE_AXES_INPUT[kind]
        axes = self._axes(node, name, since, len(per) + 1)
        if axes is None and self.opset >= since and int(attrs.get("noop_with_empty_axes", 0)):
            self.unary(node, name, o.Identity())
            return
        if axes is None or 0 in axes:
            shown = "all axes" if axes is None else f"axes {axes}"
            raise UnsupportedOpError(kind, name, f"over {shown}: it reduces over the batch axis, which the IR "
                                     "keeps free")
        if not 1 <= len(per) <= 3:
            raise UnsupportedOpError(kind, name, f"of per-sample shape {per}: only a vector (F,), a signal (C, L) "
                                     "or an image (C, H, W) is supported")
        keep = bool(int(attrs.get("keepdims", 1)))
        out = tuple(1 if a in axes else d for a, d in enumerate(per, start=1) if keep or a not in axes)
        if kind == "ReduceMax" and 1 in axes:
            raise UnsupportedOpError(kind, name, "a max over the features or channels: only a max over the spatial "
                                     "axes (global max pooling) has a core-op form")
        steps: list[tuple[str, o.Op]] = []
        if len(per) == 1:
            steps.append(("mean", o.Linear(weight=np.full((1, per[0]), 1.0 / per[0], np.float32), bias=None)))
            reduced: Shape = (1,)
        else:
            image = per if len(per) == 3 else (per[0], 1, per[1])
            if len(per) == 2:
                steps.append(("2d", o.Reshape(shape=image)))
            image_axes = {a - 1 for a in axes} if len(per) == 3 else {2 * (a - 1) for a in axes}  # C=0, H=1, W=2
            c, h, w = image
            window = (h if 1 in image_axes else 1, w if 2 in image_axes else 1)
            if kind == "ReduceMax":
                steps.append(("pool", o.MaxPool(kernel=window, stride=(1, 1))))
            elif {1, 2} <= image_axes:
                steps.append(("pool", o.GlobalAvgPool()))
            elif image_axes & {1, 2}:
                steps.append(("pool", o.AvgPool(kernel=window, stride=(1, 1))))
            if 0 in image_axes:
                steps.append(("mean", o.Conv(weight=np.full((1, c, 1, 1), 1.0 / c, np.float32), bias=None)))
            reduced = tuple(1 if i in image_axes else d for i, d in enumerate(image))
        if kind == "ReduceSum":
            count = math.prod(per[a - 1] for a in axes)
            steps.append(("sum", o.ScaleShift(scale=np.array(count, np.float32), shift=np.array(0.0, np.float32))))
        if reduced != out:
            steps.append(("flat", o.Reshape(shape=out)))
        self.bind(node, self._chain(node.output[0], x, steps))

# the perm of a Transpose of a Reshape of an image that moves values between channels and positions (a
# Reshape/Transpose/Reshape chain, as ONNX's DepthToSpace and SpaceToDepth define them and torch exports
# PixelUnshuffle) -> what it is (`_Importer.block_view`)
_BLOCK_TRANSPOSES: dict[tuple[int, ...], dict[str, bool]] = {
    (0, 1, 4, 2, 5, 3): {"to_space": True, "crd": True},  # (C, bh, bw, H, W) -> (C, H, bh, W, bw)
    (0, 3, 4, 1, 5, 2): {"to_space": True, "crd": False},  # (bh, bw, C, H, W) -> (C, H, bh, W, bw)
    (0, 1, 3, 5, 2, 4): {"to_space": False, "crd": True},  # (C, H', bh, W', bw) -> (C, bh, bw, H', W')
    (0, 3, 5, 1, 2, 4): {"to_space": False, "crd": False},  # (C, H', bh, W', bw) -> (bh, bw, C, H', W')
}

_CONVERTERS: dict[str, Callable[[_Importer, NodeProto, str], None]] = {
    "Conv": _Importer._conv,
    "ConvTranspose": _Importer._conv_transpose,
    "Resize": _Importer._resize,
    "Upsample": _Importer._resize,
    "DepthToSpace": _Importer._depth_to_space,
    "SpaceToDepth": _Importer._space_to_depth,
    "Gemm": _Importer._gemm,
    "MatMul": _Importer._matmul,
    "Add": _Importer._arith,
    "Sub": _Importer._arith,
    "Mul": _Importer._arith,
    "Div": _Importer._arith,
    "Sum": _Importer._sum,
    "Relu": lambda self, node, name: self.unary(node, name, o.Relu()),
    "HardSigmoid": _Importer._hard_sigmoid,
    "LeakyRelu": _Importer._prelu,
    "PRelu": _Importer._prelu,
    "HardSwish": lambda self, node, name: self.unary(node, name, o.HardSwish()),
    "Gelu": lambda self, node, name: self.unary(node, name, o.Gelu(str(_attrs(node).get("approximate", "none")))),
    "Elu": lambda self, node, name: self.unary(node, name, o.Elu(float(_attrs(node).get("alpha", 1.0)))),
    "Celu": _Importer._celu,
    "Neg": lambda self, node, name: self.unary(node, name, o.ScaleShift(scale=np.float32(-1.0), shift=np.float32(0.0))),
    "Abs": _Importer._abs,
    "Selu": lambda self, node, name: self.unary(node, name, o.Elu(
        float(_attrs(node).get("alpha", SELU_ALPHA)), float(_attrs(node).get("gamma", SELU_GAMMA)))),
    "Softplus": lambda self, node, name: self.unary(node, name, o.Softplus()),
    "Mish": lambda self, node, name: self.unary(node, name, o.Mish()),
    "Erf": _Importer._erf,
    "Pow": _Importer._pow,
    "Pad": _Importer._pad,
    "Sigmoid": lambda self, node, name: self.unary(node, name, o.Sigmoid()),
    "Tanh": lambda self, node, name: self.unary(node, name, o.Tanh()),
    "Clip": _Importer._clip,
    "Max": _Importer._max_min,
    "Min": _Importer._max_min,
    "MaxPool": _Importer._pool,
    "AveragePool": _Importer._pool,
    "GlobalAveragePool": _Importer._global_avg_pool,
    "GlobalMaxPool": _Importer._global_max_pool,
    "BatchNormalization": _Importer._batchnorm,
    "Flatten": _Importer._flatten,
    "Reshape": _Importer._reshape,
    "Dropout": _Importer._dropout,
    "Identity": lambda self, node, name: self.unary(node, name, o.Identity()),
    "Cast": _Importer._cast,
    "Softmax": _Importer._softmax,
    "LogSoftmax": _Importer._softmax,
    "Concat": _Importer._concat,
    "Shape": _Importer._shape,
    "Squeeze": _Importer._squeeze,
    "Unsqueeze": _Importer._unsqueeze,
    "Slice": _Importer._slice,
    "Split": _Importer._split,
    "Transpose": _Importer._transpose,
    "Gather": _Importer._gather,
    "ReduceMean": _Importer._reduce,
    "ReduceSum": _Importer._reduce,
    "ReduceMax": _Importer._reduce,
}

def _stacked_matrices(name: str, w: np.ndarray, mats: np.ndarray, lead: list[int], product: str
                      ) -> tuple[np.ndarray, tuple[int, ...]]:
    """A MatMul's constant `mats` (..., rows, cols) against data whose per-sample leading axes are `lead`: the
    constant without an axis of size 1 that faces the batch, and the output's leading axes (numpy broadcasting).
    `product` names the two operands in the messages."""
    stack = mats.shape[:-2]
    if len(stack) > len(lead) + 1:
        raise UnsupportedOpError("MatMul", name, f"constant of shape {w.shape} adds axes before the batch")
    if len(stack) == len(lead) + 1:  # its first axis faces the batch
        if stack[0] != 1:
            raise UnsupportedOpError("MatMul", name, f"constant of shape {w.shape} varies along the batch")
        mats, stack = mats[0], stack[1:]
    try:
        return mats, tuple(int(d) for d in np.broadcast_shapes(tuple(lead), stack))
    except ValueError as e:
        raise ModelError(f"node {name!r}: MatMul of {product} does not broadcast") from e


def _why(ops: str, reason: str) -> dict[str, str]:
    return dict.fromkeys(ops.split(), reason)


# Why an op users bring is refused, where "no conversion to the IR" would not tell them what to do (on the data
# path only: any op whose inputs are all constants folds)
_NO_CORE_FORM: dict[str, str] = {
    **_why("InstanceNormalization LayerNormalization GroupNormalization MeanVarianceNormalization LpNormalization "
           "RMSNormalization LRN",
           "it normalizes each sample by statistics of its own values (a division by a number computed from the "
           "data), and a crossbar applies fixed weights: use BatchNorm (fixed statistics, folded into the weights)"),
    **_why("LSTM GRU RNN",
           "a recurrent layer (a state carried from step to step, gates that multiply data) has no core-op form: "
           "the chip runs a feed-forward graph of weighted sums; a 1-D convolution over the sequence maps"),
    **_why("Attention MultiHeadAttention Einsum",
           "a product of two data tensors (attention): a crossbar computes weighted sums of its inputs with fixed "
           "weights"),
    **_why("Log Exp Sqrt Reciprocal Sin Cos Tan Asin Acos Atan Sinh Cosh Asinh Acosh Atanh Softsign "
           "ThresholdedRelu Shrink",
           "an element-wise function the approximator does not fit (it fits Sigmoid, Tanh, GELU, SiLU, HardSwish, "
           "ELU, SELU, CELU, Softplus and Mish; ReLU, Clip, LeakyRelu, PRelu and Abs are exact)"),
    **_why("Greater Less Equal GreaterOrEqual LessOrEqual Where Not And Or Xor IsNaN IsInf",
           "a comparison or selection of data (a mask, Hardshrink) has no core-op form"),
    **_why("Sign Round Floor Ceil",
           "a step function of the data (quantization inside the graph) has no core-op form: export the float "
           "network, dse quantizes for the chip itself"),
    **_why("QuantizeLinear DequantizeLinear DynamicQuantizeLinear QLinearConv QLinearMatMul ConvInteger "
           "MatMulInteger",
           "a quantized (QDQ or integer-op) model: export the float network, dse quantizes for the chip itself"),
    **_why("ArgMax ArgMin TopK NonMaxSuppression NonZero",
           "post-processing of the outputs: export the network up to its logits (dse's accuracy is the arg max "
           "of the output)"),
    **_why("Loop If Scan", "control flow: the chip runs one fixed graph"),
}


SUPPORTED_OPS: tuple[str, ...] = tuple(sorted(set(_CONVERTERS) | set(_FOLD_OPS)))
"""ONNX op types the importer handles: those in `_CONVERTERS` on the data path, plus ops that only compute
constants. Any other standard op is accepted too when all its inputs are constants (it is folded)."""

OP_FORMS: dict[str, str] = {
    "Erf": "only inside GELU",
    "Pow": "only inside GELU's tanh form",
    "ConvTranspose": "1-D and 2-D",
    "Resize": "nearest-neighbour or linear upsampling, integer factors",
    "Transpose": "a channel shuffle, a pixel (un)shuffle, of the input, or flattened into a Linear",
}
"""Ops of `SUPPORTED_OPS` that import only in one form, as `--help` names them."""


def load_onnx(path_or_model: str | os.PathLike | ModelProto, *, batch: int | None = None) -> Graph:
    """Import an ONNX model as an IR `Graph` of network ops.

    `path_or_model` is a file path (external tensor data is read from the model's folder only) or an in-memory
    `ModelProto`. The model must have exactly one data input whose axis 0 is the batch; every other input
    dimension must be static. `batch` is the batch size the model was exported with, as it may appear in
    shape constants (a Reshape to ``[1, -1]`` for a batch of 1); by default the input's declared batch
    dimension when it is a number. The returned graph runs on any batch size.

    Raises `ModelError` (missing, unreadable, invalid or unsafe file; malformed model) and
    `UnsupportedOpError` (an op or attribute value the IR cannot express), each with a one-line message.
    """
    return import_onnx(path_or_model, batch=batch)[0]


def import_onnx(path_or_model: str | os.PathLike | ModelProto, *, batch: int | None = None) -> tuple[Graph, bool]:
    """`load_onnx`'s graph, and whether the model held all its tensor data itself (none read from other files):
    what `dse.frontends.onnx_cache` may keep."""
    if batch is not None and batch <= 0:
        raise ModelError(f"batch must be a positive int, got {batch}")
    model, label, external = read_model(path_or_model)
    return _Importer(model, label, batch).run(), not external
