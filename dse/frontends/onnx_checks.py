"""Validation of an ONNX model before any work: tensors finite, attributes and shapes within each op's
definition, graph outputs that are computed. Every refusal is a `ModelError` of one line naming the node (or
tensor) and the attribute.

`ATTRIBUTE_RULES` holds, per ONNX op type the importer handles, the checks of its attributes and input shapes
(an empty tuple: the op has no attribute or shape a value could make invalid beyond what its converter
already checks). The importer runs a node's rules before it converts or folds it, so a stride of -1 or a
kernel larger than its padded input never reaches numpy or torch. `tests/frontends/test_onnx_checks.py`
checks that every op of `SUPPORTED_OPS` has an entry.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto

from dse.errors import ModelError

Input = np.ndarray | tuple[int, ...] | None  # a constant's value, a data tensor's full shape (batch 1), absent


@dataclass(frozen=True)
class NodeFacts:
    """What a rule sees of a node: its attributes and, per input, a constant's value or a data tensor's shape
    (with a batch of 1)."""

    op: str
    name: str
    attrs: dict[str, object]
    opset: int
    inputs: Sequence[Input]

    def fail(self, what: str, detail: str) -> ModelError:
        return ModelError(f"node {self.name!r} ({self.op}): {what} {detail}")

    def value(self, i: int) -> np.ndarray | None:
        v = self.inputs[i] if i < len(self.inputs) else None
        return v if isinstance(v, np.ndarray) else None

    def shape(self, i: int) -> tuple[int, ...] | None:
        v = self.inputs[i] if i < len(self.inputs) else None
        return tuple(v.shape) if isinstance(v, np.ndarray) else v

    def ints(self, key: str) -> list[int] | None:
        v = self.attrs.get(key)
        return None if v is None else [int(x) for x in (v if isinstance(v, (list, tuple)) else [v])]


Rule = Callable[[NodeFacts], None]


def check_finite(value: np.ndarray, what: str) -> None:
    """Refuse a float tensor holding NaN or Inf; `what` names it ("initializer 'w'", "node 'c' (Constant)")."""
    if value.dtype.kind in "fc" and value.size and not np.isfinite(value).all():
        bad = int(value.size - np.count_nonzero(np.isfinite(value)))
        raise ModelError(f"{what} holds {bad} NaN or Inf value{'s' if bad > 1 else ''} (of {value.size})")


def check_outputs(graph: onnx.GraphProto, label: str) -> None:
    """The graph declares outputs, each computed by a node (not a graph input passed through)."""
    if not graph.output:
        raise ModelError(f"model {label} declares no outputs")
    inputs = {i.name for i in graph.input}
    produced = {t for n in graph.node for t in n.output}
    for out in graph.output:
        if out.name in inputs and out.name not in produced:
            raise ModelError(f"model {label}: output {out.name!r} is the graph's input {out.name!r} itself: "
                             "nothing is computed")
        if out.name not in produced and out.name not in {t.name for t in graph.initializer}:
            raise ModelError(f"model {label}: output {out.name!r} is computed by no node")


# ops whose inputs are all of one type (ONNX's type constraint T): a float16 (or an int64) initializer feeding a
# float32 Gemm is an invalid model (onnxruntime refuses it as a type mismatch)
ONE_TYPE_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Sum", "PRelu",
                          "Max", "Min", "Clip", "Concat"})
_FLOATS = frozenset({TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16})
# ops of a data input whose output is not of that input's type
_OUTPUT_TYPE = {**dict.fromkeys(("Shape", "Size", "ArgMax", "ArgMin", "NonZero"), TensorProto.INT64),
                **dict.fromkeys(("Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Not", "And", "Or",
                                 "Xor", "IsNaN", "IsInf"), TensorProto.BOOL)}
# ops whose every output is of the type of the first (for the others, only the first output's type is known)
_ALL_OUTPUTS_ALIKE = frozenset({"Split"})


def check_input_types(node: onnx.NodeProto, name: str, types: dict[str, int], constants: dict[str, tuple[int, str]],
                      label: str) -> None:
    """Refuse a constant (an initializer, or a Constant node's value) of another type than the float data it meets
    in an op of `ONE_TYPE_OPS`, then record the element types of the node's outputs. `types`: the element type of
    each tensor computed from the data input (the input's declared type, a Cast's `to`); `constants`: each
    constant's type and what it is ("initializer"; a Constant node's are added here)."""
    if node.op_type == "Constant" and node.output:
        value = next((a.t for a in node.attribute if a.name == "value"), None)
        if value is not None:
            constants[node.output[0]] = (value.data_type, "Constant")
    data = [types[t] for t in node.input if t in types]
    if not data:
        return
    if node.op_type in ONE_TYPE_OPS and data[0] in _FLOATS:
        for t in node.input:
            kind, what = constants.get(t, (None, ""))
            if kind is not None and kind != data[0]:
                have, want = TensorProto.DataType.Name(kind), TensorProto.DataType.Name(data[0])
                raise ModelError(f"model {label}: node {name!r} ({node.op_type}): {what} {t!r} is {have} but its "
                                 f"data input is {want}; ONNX's {node.op_type} takes inputs of one type (an invalid "
                                 f"model: store the {what} as {want})")
    if node.op_type == "Cast":
        out = next((a.i for a in node.attribute if a.name == "to"), TensorProto.UNDEFINED)
    elif node.op_type == "ConstantOfShape":  # its value's type (float32 by default), whatever the shape's
        value = next((a.t for a in node.attribute if a.name == "value"), None)
        out = value.data_type if value is not None else TensorProto.FLOAT
    else:
        out = _OUTPUT_TYPE.get(node.op_type, data[0])
    outputs = node.output if node.op_type in _ALL_OUTPUTS_ALIKE else node.output[:1]
    types.update(dict.fromkeys((t for t in outputs if t), out))


# --- rules -----------------------------------------------------------------------------------------------


def positive(*keys: str) -> Rule:
    def rule(f: NodeFacts) -> None:
        for key in keys:
            v = f.ints(key)
            if v is not None and (not v or min(v) <= 0):
                raise f.fail(f"attribute {key}", f"{v} must be positive")
    return rule


def finite(*keys: str) -> Rule:
    def rule(f: NodeFacts) -> None:
        for key in keys:
            if key in f.attrs and not math.isfinite(float(f.attrs[key])):  # type: ignore[arg-type]
                raise f.fail(f"attribute {key}", f"{f.attrs[key]} is not finite")
    return rule


def selu_gamma(f: NodeFacts) -> None:
    """SELU's scale > 0: a negative one would turn the function upside down, unbounded below (a max pooling
    after it relies on a floor, `reform.maxpool_above`), and no network means it."""
    gamma = float(f.attrs.get("gamma", 1.0))  # type: ignore[arg-type]
    if not gamma > 0:
        raise f.fail("attribute gamma", f"{gamma} must be > 0")


def celu_alpha(f: NodeFacts) -> None:
    """CELU's alpha > 0: the function divides by it (``max(0, x) + min(0, alpha * (exp(x / alpha) - 1))``)."""
    alpha = float(f.attrs.get("alpha", 1.0))  # type: ignore[arg-type]
    if not alpha > 0:
        raise f.fail("attribute alpha", f"{alpha} must be > 0")


def one_of(key: str, allowed: tuple[int, ...]) -> Rule:
    def rule(f: NodeFacts) -> None:
        v = f.ints(key)
        if v is not None and (len(v) != 1 or v[0] not in allowed):
            raise f.fail(f"attribute {key}", f"{v} must be one of {list(allowed)}")
    return rule


def word_of(key: str, allowed: tuple[str, ...]) -> Rule:
    """A string attribute among `allowed`."""
    def rule(f: NodeFacts) -> None:
        v = f.attrs.get(key)
        if v is not None and v not in allowed:
            raise f.fail(f"attribute {key}", f"{v!r} must be one of {list(allowed)}")
    return rule


def axis_in_range(default: int | None, *, end: int = 0) -> Rule:
    """`axis` within the rank of input 0, plus `end` (Flatten's axis may equal the rank); a required attribute
    where `default` is None."""
    def rule(f: NodeFacts) -> None:
        shape = f.shape(0)
        axis = f.ints("axis")
        if axis is None and default is None:
            raise f.fail("attribute axis", "is missing")
        if shape is not None and axis is not None and not -len(shape) <= axis[0] < len(shape) + end:
            raise f.fail("attribute axis", f"{axis[0]} is out of range for rank {len(shape)}")
    return rule


def _spatial(f: NodeFacts, n: int, in_shape: tuple[int, ...], kernel: list[int], pad_limit: Callable) -> None:
    """Pads, strides, dilations and the kernel of an n-D window op on `in_shape` (N, C, *spatial)."""
    for key in ("strides", "dilations"):
        v = f.ints(key)
        if v is not None and len(v) != n:
            raise f.fail(f"attribute {key}", f"{v} has {len(v)} entries for {n} spatial axes")
    dil = f.ints("dilations") or [1] * n
    extent = [(k - 1) * d + 1 for k, d in zip(kernel, dil, strict=True)]
    auto = str(f.attrs.get("auto_pad", "NOTSET"))
    if auto not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
        raise f.fail("attribute auto_pad", f"{auto!r} is not an ONNX auto_pad")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        return  # the pads are computed, and cover the kernel
    pads = f.ints("pads") if auto == "NOTSET" else None
    pads = pads or [0] * (2 * n)
    if len(pads) != 2 * n:
        raise f.fail("attribute pads", f"{pads} has {len(pads)} entries for {n} spatial axes")
    for a in range(n):
        lo, hi, size = pads[a], pads[a + n], in_shape[2 + a]
        limit, why = pad_limit(size, extent[a])
        if min(lo, hi) < 0 or max(lo, hi) > limit:
            raise f.fail("attribute pads", f"{pads} on axis {2 + a} must be within 0 and {limit} ({why})")
        if extent[a] > size + lo + hi:
            raise f.fail("attribute kernel_shape", f"{kernel} (dilated extent {extent[a]} on axis {2 + a}) is "
                         f"larger than the padded input ({size} + {lo} + {hi})")


def conv_geometry(f: NodeFacts) -> None:
    """Weight (O, C/group, *kernel) with O > 0, group dividing both channel counts, and the window within
    the padded input; a pad at most the input's size."""
    w, x = f.shape(1), f.shape(0)
    if w is None or x is None:
        return
    if any(d <= 0 for d in w):
        raise f.fail("weight", f"of shape {list(w)} has an empty axis (0 output channels or an empty kernel)")
    if len(x) != len(w):
        return  # not an n-D convolution of an n-D input: the converter says what it supports
    group = (f.ints("group") or [1])[0]
    if x[1] != w[1] * group or w[0] % group:
        raise f.fail("attribute group", f"{group} with weight {list(w)} does not fit input channels of "
                     f"{list(x)}")
    kernel = list(w[2:])
    declared = f.ints("kernel_shape")
    if declared is not None and declared != kernel:
        raise f.fail("attribute kernel_shape", f"{declared} disagrees with the weight {list(w)}")
    _spatial(f, len(kernel), x, kernel, lambda size, extent: (size, "at most the input's size"))


def conv_transpose_geometry(f: NodeFacts) -> None:
    """Weight (C, O/group, *kernel) with no empty axis, its C the input's channels and divisible by group;
    output_padding >= 0 and below the stride or the dilation (ONNX: else the extra outputs read nothing)."""
    w, x = f.shape(1), f.shape(0)
    if w is None or x is None:
        return
    if any(d <= 0 for d in w):
        raise f.fail("weight", f"of shape {list(w)} has an empty axis (0 output channels or an empty kernel)")
    group = (f.ints("group") or [1])[0]
    if len(x) == len(w) and (x[1] != w[0] or w[0] % group):
        raise f.fail("attribute group", f"{group} with weight {list(w)} does not fit input channels of {list(x)}")
    declared = f.ints("kernel_shape")
    if declared is not None and declared != list(w[2:]):
        raise f.fail("attribute kernel_shape", f"{declared} disagrees with the weight {list(w)}")
    spatial = len(w) - 2
    extra = f.ints("output_padding") or [0] * spatial
    stride, dilation = f.ints("strides") or [1] * spatial, f.ints("dilations") or [1] * spatial
    if len(extra) == len(stride) == len(dilation) and any(
            not 0 <= e < max(s, d) for e, s, d in zip(extra, stride, dilation, strict=True)):
        raise f.fail("attribute output_padding", f"{extra} must be >= 0 and less than the strides {stride} or "
                     f"the dilations {dilation}")


def resize_factors(f: NodeFacts) -> None:
    """Resize's scales finite and > 0 (input 1 before opset 11, 2 from it), no size 0 (an empty output; the batch
    entry of sizes computed from the input's shape is the importer's stand-in for the free batch)."""
    scales, sizes = (f.value(1), None) if f.opset < 11 else (f.value(2), f.value(3))
    if f.op == "Upsample" and f.opset < 9:  # an attribute before Upsample-9
        scales = np.asarray(f.attrs.get("scales", []), np.float64)
    if scales is not None and scales.size and not (np.isfinite(scales).all() and (scales > 0).all()):
        raise f.fail("scales", f"{scales.tolist()} must be finite and > 0")
    if sizes is not None and (sizes == 0).any():
        raise f.fail("sizes", f"{sizes.tolist()} hold 0: the output would be empty")


def pool_geometry(f: NodeFacts) -> None:
    """A positive kernel within the padded input; each pad less than the window (a window wholly in the
    padding has no value)."""
    x, kernel = f.shape(0), f.ints("kernel_shape")
    if kernel is None:
        raise f.fail("attribute kernel_shape", "is missing")
    if not kernel or min(kernel) <= 0:
        raise f.fail("attribute kernel_shape", f"{kernel} must be positive")
    if x is None or len(x) != len(kernel) + 2:
        return
    _spatial(f, len(kernel), x, kernel, lambda size, extent: (extent - 1, "less than the window"))


def broadcastable(f: NodeFacts) -> None:
    shapes = [f.shape(i) for i in range(len(f.inputs)) if f.shape(i) is not None]
    try:
        np.broadcast_shapes(*shapes)
    except ValueError:
        raise f.fail("inputs", f"of shapes {[list(s) for s in shapes]} do not broadcast") from None


def nonzero_divisor(f: NodeFacts) -> None:
    d = f.value(1)
    if d is not None and f.value(0) is None and not np.all(d != 0):
        raise f.fail("divisor", f"(input 1, a constant of shape {list(d.shape)}) holds 0: division by zero")


def clip_bounds(f: NodeFacts) -> None:
    if f.opset < 11:
        lo, hi = f.attrs.get("min"), f.attrs.get("max")
    else:
        lo, hi = f.value(1), f.value(2)
    for what, v in (("min", lo), ("max", hi)):
        if v is not None and np.isnan(np.asarray(v, dtype=np.float64)).any():
            raise f.fail(f"bound {what}", "is NaN")
    if lo is not None and hi is not None and np.any(np.asarray(lo, np.float64) > np.asarray(hi, np.float64)):
        raise f.fail("bounds", f"min {np.asarray(lo).tolist()} > max {np.asarray(hi).tolist()}")


def batchnorm_statistics(f: NodeFacts) -> None:
    eps = float(f.attrs.get("epsilon", 1e-5))  # type: ignore[arg-type]
    if not math.isfinite(eps) or eps < 0:
        raise f.fail("attribute epsilon", f"{eps} must be finite and >= 0")
    var = f.value(4)
    if var is not None and (np.any(var < 0) or np.any(var + eps <= 0)):
        bad = np.asarray(var).reshape(-1)
        raise f.fail("variance", f"(input 4) holds {bad[(bad < 0) | (bad + eps <= 0)][:3].tolist()}: a "
                     "variance must be >= 0 and variance + epsilon > 0")


def pad_amounts(f: NodeFacts) -> None:
    """Non-negative pads, each at most the largest axis of the input (a real network pads by a few)."""
    raw = f.attrs.get("pads") if f.opset < 11 else f.value(1)
    x = f.shape(0)
    if raw is None or x is None:
        return
    pads = [int(p) for p in np.asarray(raw).reshape(-1)]
    limit = max(x[1:], default=1)
    if any(p > limit for p in pads):
        raise f.fail("pads", f"{pads} exceed the input's largest axis ({limit})")


def pad_mode(f: NodeFacts) -> None:
    """Pad's modes: constant, reflect and edge, and wrap from opset 19."""
    modes = ("constant", "reflect", "edge", *(("wrap",) if f.opset >= 19 else ()))
    word_of("mode", modes)(f)


def valid_type(key: str) -> Rule:
    def rule(f: NodeFacts) -> None:
        v = f.ints(key)
        if v is not None and v[0] not in TensorProto.DataType.values():
            raise f.fail(f"attribute {key}", f"{v[0]} is not an ONNX data type")
    return rule


# ONNX op type -> its checks (every op of SUPPORTED_OPS has an entry; the coverage test says so)
ATTRIBUTE_RULES: dict[str, tuple[Rule, ...]] = {
    "Conv": (positive("strides", "dilations", "group"), conv_geometry),
    "ConvTranspose": (positive("strides", "dilations", "group"), conv_transpose_geometry),
    "Resize": (word_of("mode", ("nearest", "linear", "cubic")), resize_factors),
    "Upsample": (word_of("mode", ("nearest", "linear", "bilinear")), resize_factors),
    "DepthToSpace": (positive("blocksize"), word_of("mode", ("DCR", "CRD"))),
    "SpaceToDepth": (positive("blocksize"), word_of("mode", ("DCR", "CRD"))),
    "MaxPool": (positive("strides", "dilations"), pool_geometry, one_of("ceil_mode", (0, 1))),
    "AveragePool": (positive("strides", "dilations"), pool_geometry, one_of("ceil_mode", (0, 1)),
                    one_of("count_include_pad", (0, 1))),
    "GlobalAveragePool": (),
    "GlobalMaxPool": (),
    "Gemm": (finite("alpha", "beta"), one_of("transA", (0, 1)), one_of("transB", (0, 1))),
    "MatMul": (),  # the converter checks the contracted sizes
    "Add": (broadcastable,),
    "Sub": (broadcastable,),
    "Mul": (broadcastable,),
    "Div": (broadcastable, nonzero_divisor),
    "Sum": (broadcastable,),
    "PRelu": (broadcastable,),
    "LeakyRelu": (finite("alpha"),),
    "HardSigmoid": (finite("alpha", "beta"),),
    "Clip": (clip_bounds,),
    "Max": (broadcastable,),
    "Min": (broadcastable,),
    "BatchNormalization": (batchnorm_statistics,),
    "Pad": (pad_mode, pad_amounts),
    "Relu": (),
    "HardSwish": (),
    "Gelu": (word_of("approximate", ("none", "tanh")),),
    "Elu": (finite("alpha"),),
    "Selu": (finite("alpha", "gamma"), selu_gamma),
    "Celu": (finite("alpha"), celu_alpha),
    "Abs": (),
    "Neg": (),
    "Softplus": (),
    "Mish": (),
    "Erf": (),  # only inside GELU's expansion: the converter checks the form
    "Pow": (),  # only inside GELU's tanh form: the converter checks the form
    "Sigmoid": (),
    "Tanh": (),
    "Identity": (),
    "Dropout": (),
    "Cast": (valid_type("to"),),
    "Softmax": (axis_in_range(default=1),),
    "LogSoftmax": (axis_in_range(default=1),),
    "Flatten": (axis_in_range(default=1, end=1),),
    "Concat": (axis_in_range(default=None),),
    "Split": (axis_in_range(default=0),),
    "Transpose": (),  # perm: the converter checks it
    "Gather": (axis_in_range(default=0),),
    "Reshape": (one_of("allowzero", (0, 1)),),
    "Shape": (),
    "Squeeze": (),  # axes: checked by the converter against the rank
    "Unsqueeze": (),
    "Slice": (),  # starts/ends/axes/steps: checked by the converter
    "ReduceMean": (one_of("keepdims", (0, 1)),),
    "ReduceSum": (one_of("keepdims", (0, 1)),),
    "ReduceMax": (one_of("keepdims", (0, 1)),),
    "Constant": (),  # its value is checked finite like every tensor
    "ConstantOfShape": (),  # folded under the budget of `dse.frontends.onnx_fold`
}
