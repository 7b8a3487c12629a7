"""Canonicalize: fold constant scales into neighbouring weights and drop what inference does not need.

The rules are small functions ``(builder, node) -> bool``: each looks at one node and, when its condition holds,
rewrites the graph in place (`GraphBuilder`'s edits) and returns True. `RULES` lists them by the op type of the
node they start from, in the order they are tried. `canonicalize` walks the nodes in order, applies the first
rule that fires, drops what no output reads, and walks again until no rule fires (each rule is exact):
- `drop_identity`: Identity (and Dropout, which imports as Identity) is removed.
- `drop_output_softmax`: a Softmax (or LogSoftmax) that is a graph output is removed: argmax does not change.
- `relu_before_max_pool`: MaxPool followed by Relu becomes Relu then MaxPool (they commute), so the max-pool
  tree sees values >= 0.
- `max_pool_below_wiring`: a MaxPool of channels routed from several nodes (a Concat of branches, as between
  Inception modules; a channel shuffle's slices) moves below that wiring, each source pooled once: the max is
  per channel, so the value is the same, and each max-pool tree then pools one core's codes, of one step.
- `fold_zero_pad`: a zero Pad (an explicit ``F.pad``/``ZeroPad2d``, TF-style "same" padding) folds into the
  convolutions and poolings that read it: a Conv pads with zeros anyway; an AvgPool then counts the padding in
  its divisor (exact when it counted its own padding, or had none); a MaxPool pads with -inf, the same as
  zeros only when its input is >= 0 (it follows a ReLU) and every window still reads a real value. A Pad that
  does not fold stays, as wiring on the chip.
- `pointwise_above_routing`: an element-wise op reading a DepthToSpace (an upsampling, a transposed
  convolution's interleave), a SpaceToDepth or a Gather moves above it, so that it meets the Conv before the
  routing (a per-channel ScaleShift or PRelu above a DepthToSpace with its constants repeated per phase).
- `fold_gather_into_linears`: a Gather of features read only by Linears (a Transpose before a Flatten) folds
  into their weights (their columns in the Gather's order).
- `drop_unit_scale_shift`: a ScaleShift that scales by 1 and shifts by 0 is removed (a Mul by 1 an exporter
  wrote; two ScaleShifts that cancel, as GELU's expansion imports: 2 * GELU, then times 1/2).
- `merge_scale_shifts`: two ScaleShifts in a row merge.
- `scale_shift_past_reshape`: a ScaleShift commutes past a Reshape.
- `fold_scale_shift_into_producer`: a ScaleShift after a Conv/Linear (BatchNorm, a constant scale) folds into
  its weights, also through a Reshape where it is per channel only of the producer's output (the bias of
  ``nn.Linear`` on a tensor's last axis).
- `fold_scale_shift_into_consumers`: a ScaleShift before Conv/Linear consumers (input normalization) folds into their
  weights. A padded
  convolution pads with zero in the normalized space, so when the ScaleShift reads the network input (or a 1-D
  signal's (C, 1, L) view of it) the padding moves onto the host as a `Pad` with value ``-shift / scale`` (the
  raw value that normalizes to zero).
Whatever ScaleShift is left becomes a core-op in `reform`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from dse.hardware.spec import HardwareSpec
from dse.ir import ops as o
from dse.ir.graph import Graph, GraphBuilder, Node
from dse.ir.shapes import SHAPE_RULES, Shape
from dse.passes.registry import register


def per_channel(op: o.ScaleShift, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray] | None:
    """The ScaleShift's (scale, shift) as vectors over axis 0 of `shape`, or None if they vary along other axes."""
    scale = np.broadcast_to(op.scale, shape).reshape(shape[0], -1)
    shift = np.broadcast_to(op.shift, shape).reshape(shape[0], -1)
    if np.all(scale == scale[:, :1]) and np.all(shift == shift[:, :1]):
        return scale[:, 0].astype(np.float64), shift[:, 0].astype(np.float64)
    return None


def _in_channel_index(conv: o.Conv) -> np.ndarray:
    """For each (o, i) of the weight, the input channel it reads: (O, I/g)."""
    out_c, in_g = conv.weight.shape[:2]
    per_group = out_c // conv.groups
    group = np.arange(out_c) // per_group
    return group[:, None] * in_g + np.arange(in_g)[None, :]


def _bias(op: o.Conv | o.Linear) -> np.ndarray:
    return np.zeros(op.weight.shape[0]) if op.bias is None else np.asarray(op.bias, dtype=np.float64)


def _float32(a: np.ndarray) -> np.ndarray:
    """A fold's float64 values as float32, those past its range Inf without numpy's warning: the original's own
    float32 arithmetic overflows there too (an Add of 3e38 to a bias near it), and `prepare` refuses non-finite
    outputs in one line (NonFiniteError)."""
    with np.errstate(over="ignore"):
        return a.astype(np.float32)


def fold_into_consumer(
    consumer: o.Conv | o.Linear, scale: np.ndarray, shift: np.ndarray
) -> o.Conv | o.Linear:
    """consumer(x * scale + shift) as one op on x (ignoring padding, handled by the caller)."""
    w = np.asarray(consumer.weight, dtype=np.float64)
    if isinstance(consumer, o.Linear):
        return o.Linear(_float32(w * scale[None, :]), _float32(_bias(consumer) + w @ shift))
    idx = _in_channel_index(consumer)
    new_w = w * scale[idx][:, :, None, None]
    new_b = _bias(consumer) + (w * shift[idx][:, :, None, None]).sum(axis=(1, 2, 3))
    return dataclasses.replace(consumer, weight=_float32(new_w), bias=_float32(new_b))


def fold_into_producer(producer: o.Conv | o.Linear, scale: np.ndarray, shift: np.ndarray) -> o.Op:
    """ScaleShift(producer(x)) as one op."""
    w = np.asarray(producer.weight, dtype=np.float64)
    new_w = w * scale.reshape(-1, *([1] * (w.ndim - 1)))
    new_b = _bias(producer) * scale + shift
    if isinstance(producer, o.Linear):
        return o.Linear(_float32(new_w), _float32(new_b))
    return dataclasses.replace(producer, weight=_float32(new_w), bias=_float32(new_b))


# --- the rules: each reads the graph at one node and, if it applies, rewrites it and says so -------------------
Rule = Callable[[GraphBuilder, Node], bool]


def drop_identity(b: GraphBuilder, node: Node) -> bool:
    """Identity (and Dropout, which imports as Identity) is removed."""
    b.bypass(node.name)
    return True


def drop_output_softmax(b: GraphBuilder, node: Node) -> bool:
    """A Softmax (or LogSoftmax) that only the host reads (a graph output) is removed: argmax does not change."""
    if node.name not in b.outputs or b.readers(node.name):
        return False
    b.bypass(node.name)
    return True


def relu_before_max_pool(b: GraphBuilder, node: Node) -> bool:
    """x -> MaxPool -> Relu becomes x -> Relu -> MaxPool (relu and max commute): the max-pool tree sees values
    >= 0. Each node keeps its name."""
    users = b.readers(node.name)
    if len(users) != 1 or not isinstance(users[0].op, o.Relu):
        return False
    b.replace(node.name, o.Relu(), node.inputs)
    b.replace(users[0].name, node.op, (node.name,))
    return True


_CHANNEL_WIRING = (o.Concat, o.Slice, o.Gather)  # ops that only route channels (a Concat on the channel axis)


def _routes_channels(op: o.Op) -> bool:
    return isinstance(op, _CHANNEL_WIRING) and (not isinstance(op, o.Concat) or op.axis == 0)


def _channel_sources(b: GraphBuilder, name: str) -> set[str]:
    """The nodes whose channels node `name` routes (through `_CHANNEL_WIRING`); {name} for any other op."""
    node = b[name]
    if not _routes_channels(node.op):
        return {name}
    return set().union(*(_channel_sources(b, i) for i in node.inputs))


def _same_op(a: o.Op, c: o.Op) -> bool:
    return type(a) is type(c) and all(getattr(a, f.name) == getattr(c, f.name) for f in dataclasses.fields(a))


def max_pool_below_wiring(b: GraphBuilder, node: Node) -> bool:
    """A MaxPool of channels routed from several nodes becomes the same routing of each input pooled: a max pool
    is per channel, so it commutes with a Concat on the channel axis, a Slice and a Gather. The max-pool tree
    (`reform.pool_tree`) passes codes through with +-1 weights, so its input must be of one code step: one
    core's output, not a mix of cores'. An input pooled already by an equal MaxPool before this node is
    pooled once (a shuffle slices one concatenation many times)."""
    wiring = b[node.inputs[0]]
    if not _routes_channels(wiring.op) or len(_channel_sources(b, wiring.name)) < 2:
        return False
    order = {name: k for k, name in enumerate(b.names())}
    pooled = []
    for src in wiring.inputs:
        same = [r.name for r in b.readers(src)
                if isinstance(r.op, o.MaxPool) and _same_op(r.op, node.op) and order[r.name] < order[node.name]]
        pooled.append(same[0] if same else b.insert_before(node.name, f"{src}_pool", node.op, src))
    b.replace(node.name, wiring.op, tuple(pooled))
    return True


# element-wise ops without constants: they commute with any routing of values
_POINTWISE = (o.Relu, o.Clip, o.Sigmoid, o.Tanh, o.HardSwish, o.Silu, o.Gelu, o.Elu, o.Softplus, o.Mish)


def _gathered_back(wiring: o.Gather, out: np.ndarray, in_channels: int) -> np.ndarray | None:
    index, back = np.asarray(wiring.index), np.zeros(in_channels)  # (a channel it drops: any value)
    back[index] = out
    return back if np.array_equal(back[index], out) else None


def _blocks_back(wiring: o.SpaceToDepth, out: np.ndarray, in_channels: int) -> np.ndarray | None:
    blocks = out.reshape(-1, in_channels)  # one row per phase block: each holds every input channel
    return blocks[0] if np.all(blocks == blocks[:1]) else None


# routing -> the per-channel vector of its input that it routes to per-channel vector `out` (of `in_channels`
# input channels), or None when none does (a Gather's copies of one channel, or a SpaceToDepth's phase blocks of
# it, would need different values)
_ROUTED_BACK: dict[type[o.Op], Callable[[Any, np.ndarray, int], np.ndarray | None]] = {
    # every phase block holds the same channels
    o.DepthToSpace: lambda wiring, out, in_channels: np.tile(out, wiring.block[0] * wiring.block[1]),
    o.SpaceToDepth: _blocks_back,
    o.Gather: _gathered_back,
}


def _above_routing(op: o.Op, wiring: o.Op, in_shape: Shape, shape: Shape) -> o.Op | None:
    """Element-wise `op` on the routing's output (per-sample `shape`) as the op on its input, or None when its
    constants vary within a channel or cannot be routed back."""
    if isinstance(op, _POINTWISE):
        return op
    if isinstance(op, o.ScaleShift):
        vec = per_channel(op, shape) if tuple(_scale_shift_shape(op, shape)) == tuple(shape) else None
    elif isinstance(op, o.PRelu):
        slope = np.broadcast_to(op.slope, shape).reshape(shape[0], -1)
        vec = (slope[:, 0],) if np.all(slope == slope[:, :1]) else None
    else:
        return None
    back = None if vec is None else [_ROUTED_BACK[type(wiring)](wiring, v, in_shape[0]) for v in vec]
    if back is None or any(v is None for v in back):
        return None
    per = [v.reshape(-1, *[1] * (len(in_shape) - 1)).astype(np.float32) for v in back]
    return o.ScaleShift(*per) if isinstance(op, o.ScaleShift) else o.PRelu(per[0])


def _scale_shift_shape(op: o.ScaleShift, shape: Shape) -> Shape:
    return np.broadcast_shapes(shape, np.shape(op.scale), np.shape(op.shift))


def fold_gather_into_linears(b: GraphBuilder, node: Node) -> bool:
    """A Gather of a vector's features read only by Linears (a Transpose before a Flatten: the features in
    another order) folds into their weights: feature i of the Gather is feature ``index[i]`` of its input, so
    the weight's column i moves to column ``index[i]`` (columns of features it reads twice add)."""
    users = b.readers(node.name)
    if not users or node.name in b.outputs or not all(isinstance(u.op, o.Linear) for u in users):
        return False
    index, features = np.asarray(node.op.index), b.shape(node.inputs[0])[0]
    for u in users:
        weight = np.zeros((u.op.weight.shape[0], features), np.float64)
        np.add.at(weight.T, index, np.asarray(u.op.weight, np.float64).T)
        b.replace(u.name, o.Linear(weight.astype(np.float32), u.op.bias), node.inputs)
    b.remove(node.name)
    return True


def pointwise_above_routing(b: GraphBuilder, node: Node) -> bool:
    """An element-wise op that is the only reader of a DepthToSpace, SpaceToDepth or Gather moves above it
    (routing values then applying f is applying f then routing), each node keeping its name; a per-channel
    ScaleShift or PRelu with its constants routed back (`_ROUTED_BACK`). The op then meets the Conv before the
    routing: a transposed convolution's BatchNorm folds into its phase Conv, and its ReLU makes one core with it
    (else reform would send the Conv's value out as a signed pair, and the ReLU take a core of its own)."""
    users = b.readers(node.name)
    if len(users) != 1 or node.name in b.outputs:
        return False
    user = users[0]
    moved = _above_routing(user.op, node.op, b.shape(node.inputs[0]), b.shape(node.name))
    if moved is None:
        return False
    b.replace(node.name, moved, node.inputs)
    b.replace(user.name, node.op, (node.name,))
    return True


def fold_zero_pad(b: GraphBuilder, node: Node) -> bool:
    """A zero Pad folds into every reader, if each can take it with its value unchanged (`PAD_ABSORBERS`)."""
    op, users = node.op, b.readers(node.name)
    assert isinstance(op, o.Pad)
    if any(op.value) or not users or node.name in b.outputs:
        return False
    src = node.inputs[0]
    shape, nonneg = b.shape(src), _nonneg(b, src)
    folded = []
    for u in users:
        absorb = PAD_ABSORBERS.get(type(u.op))
        new = None if absorb is None or u.inputs != (node.name,) else absorb(u.op, op.padding, nonneg, shape)
        if new is None or SHAPE_RULES[type(new)](new, [shape]) != b.shape(u.name):  # (a ceil_mode window)
            return False
        folded.append(new)
    for u, new in zip(users, folded, strict=True):
        b.replace(u.name, new)
    b.bypass(node.name)
    return True


def is_unit_scale_shift(op: o.Op, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> bool:
    """A ScaleShift by 1 with shift 0 that keeps its input's shape: it changes nothing."""
    return (isinstance(op, o.ScaleShift) and not np.any(op.scale != 1) and not np.any(op.shift != 0)
            and tuple(in_shape) == tuple(out_shape))


def drop_unit_scale_shift(b: GraphBuilder, node: Node) -> bool:
    """A ScaleShift by 1 with shift 0, which keeps its input's shape, is removed."""
    if not is_unit_scale_shift(node.op, b.shape(node.inputs[0]), b.shape(node.name)):
        return False
    b.bypass(node.name)
    return True


def merge_scale_shifts(b: GraphBuilder, node: Node) -> bool:
    """Two ScaleShifts in a row become one (in the second's place)."""
    users = b.readers(node.name)
    if len(users) != 1 or not isinstance(users[0].op, o.ScaleShift):
        return False
    op, nxt = node.op, users[0].op
    scale = np.asarray(nxt.scale, np.float64) * np.asarray(op.scale, np.float64)
    shift = np.asarray(op.shift, np.float64) * np.asarray(nxt.scale, np.float64) + np.asarray(nxt.shift)
    b.replace(users[0].name, o.ScaleShift(_float32(scale), _float32(shift)), node.inputs)
    b.bypass(node.name)
    return True


def scale_shift_past_reshape(b: GraphBuilder, node: Node) -> bool:
    """A ScaleShift read only by a Reshape moves after it (its constants reshaped), towards the Conv/Linear it
    may fold into."""
    users, op = b.readers(node.name), node.op
    if len(users) != 1 or not isinstance(users[0].op, o.Reshape):
        return False
    reshape, in_shape = users[0], b.shape(node.inputs[0])
    if tuple(np.broadcast_shapes(in_shape, np.shape(op.scale), np.shape(op.shift))) != tuple(in_shape):
        return False  # the constants broadcast the tensor to a bigger shape
    out_shape = b.shape(reshape.name)
    scale = np.broadcast_to(op.scale, in_shape).reshape(out_shape)
    shift = np.broadcast_to(op.shift, in_shape).reshape(out_shape)
    b.replace(reshape.name, reshape.op, node.inputs)
    b.replace(node.name, o.ScaleShift(scale.copy(), shift.copy()), (reshape.name,))
    b.move_after(node.name, reshape.name)
    b.redirect(reshape.name, node.name, keep=node.name)
    return True


def _channel_affine(b: GraphBuilder, node: Node,
                    shape: Shape | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """The ScaleShift's (scale, shift) per channel, if it scales each channel by one constant and keeps the shape;
    with `shape`, per channel of that shape (a Reshape's input it reads through), its constants reshaped to it."""
    in_shape = b.shape(node.inputs[0])
    if tuple(b.shape(node.name)) != tuple(in_shape):
        return None  # the constants broadcast the tensor to a bigger shape: left to reform
    if shape is None:
        return per_channel(node.op, tuple(in_shape))
    op = node.op
    scale, shift = (np.broadcast_to(c, in_shape).reshape(shape) for c in (op.scale, op.shift))
    return per_channel(o.ScaleShift(scale, shift), tuple(shape))


def fold_scale_shift_into_producer(b: GraphBuilder, node: Node) -> bool:
    """A ScaleShift after a Conv/Linear that nothing else reads (BatchNorm, a constant scale) folds into its
    weights; one that varies within a channel, through a Reshape between them that nothing else reads, when it is
    per channel of the producer's output (the bias of ``nn.Linear`` on a tensor's last axis: a MatMul, which
    imports as a grouped Conv with every output its own channel and a Reshape, then an Add)."""
    src, vec = node.inputs[0], _channel_affine(b, node)
    if vec is None and isinstance(b[src].op, o.Reshape) and len(b.readers(src)) == 1 and src not in b.outputs:
        src = b[src].inputs[0]
        vec = _channel_affine(b, node, b.shape(src))
    producer = b[src].op
    if not isinstance(producer, (o.Conv, o.Linear)) or len(b.readers(src)) != 1 or src in b.outputs:
        return False
    if vec is None:
        return False
    b.replace(src, fold_into_producer(producer, *vec))
    b.bypass(node.name)
    return True


def fold_scale_shift_into_consumers(b: GraphBuilder, node: Node) -> bool:
    """A ScaleShift read only by Conv/Linear ops (input normalization) folds into their weights. A padded
    convolution pads with zero in the normalized space, so when the ScaleShift reads the network input the padding
    moves onto the host as a `Pad` with value ``-shift / scale`` (the raw value that normalizes to zero)."""
    users, src = b.readers(node.name), node.inputs[0]
    if not users or node.name in b.outputs or not all(isinstance(u.op, (o.Conv, o.Linear)) for u in users):
        return False
    vec = _channel_affine(b, node)
    if vec is None:
        return False
    scale, shift = vec
    padded_shift = {u.name for u in users if isinstance(u.op, o.Conv) and any(u.op.padding) and np.any(shift != 0)}
    if padded_shift and not (b.host_input(src) and np.all(scale != 0)):
        return False
    for u in users:
        new, inputs = fold_into_consumer(u.op, scale, shift), (src,)
        if u.name in padded_shift:
            pad_value = tuple(float(v) for v in (-shift / scale))
            inputs = (b.insert_before(u.name, f"{u.name}_pad", o.Pad(u.op.padding, pad_value), src),)
            new = dataclasses.replace(new, padding=(0, 0, 0, 0))
        b.replace(u.name, new, inputs)
    b.remove(node.name)
    return True


# op type -> its rules, tried in this order at each node
RULES: dict[type[o.Op], tuple[Rule, ...]] = {
    o.Identity: (drop_identity,),
    o.Softmax: (drop_output_softmax,),
    o.MaxPool: (relu_before_max_pool, max_pool_below_wiring),
    o.Pad: (fold_zero_pad,),
    o.DepthToSpace: (pointwise_above_routing,),
    o.SpaceToDepth: (pointwise_above_routing,),
    o.Gather: (fold_gather_into_linears, pointwise_above_routing),
    o.ScaleShift: (drop_unit_scale_shift, merge_scale_shifts, scale_shift_past_reshape, fold_scale_shift_into_producer,
                   fold_scale_shift_into_consumers),
}


def _rewrite_once(b: GraphBuilder) -> bool:
    """Apply the first rule that fires at the first node where one does (nodes in order); whether one did."""
    for name in b.names():
        node = b[name]
        if any(rule(b, node) for rule in RULES.get(type(node.op), ())):
            return True
    return False


def _add_pads(a: o.Pads, b: o.Pads) -> o.Pads:
    return tuple(int(x) + int(y) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


def _every_window_reads_data(op: o.MaxPool, in_shape: Shape) -> bool:
    """Whether each window of `op` on an input of `in_shape` covers at least one input element (not only pads)."""
    out = SHAPE_RULES[o.MaxPool](op, [in_shape])
    for axis in (0, 1):
        size, k, s, d, begin = in_shape[axis + 1], op.kernel[axis], op.stride[axis], op.dilation[axis], \
            op.padding[axis]
        taps = np.arange(out[axis + 1])[:, None] * s - begin + d * np.arange(k)[None, :]
        if not np.all(((taps >= 0) & (taps < size)).any(axis=1)):
            return False
    return True


def _nonneg(g: GraphBuilder, name: str) -> bool:
    """Whether node `name`'s value is >= 0 by construction (a ReLU, a Clip at 0 or above, and wiring of those)."""
    op = g[name].op
    if isinstance(op, (o.Relu, o.Sigmoid)):
        return True
    if isinstance(op, o.Clip):
        return op.lo is not None and op.lo >= 0
    if isinstance(op, (o.MaxPool, o.Pad, o.Reshape, o.Slice)):
        return (not isinstance(op, o.Pad) or not any(op.value)) and _nonneg(g, g[name].inputs[0])
    return False


def _conv_absorbs(op: o.Conv, pads: o.Pads, nonneg: bool, shape: Shape) -> o.Op | None:
    return dataclasses.replace(op, padding=_add_pads(op.padding, pads))


def _avg_pool_absorbs(op: o.AvgPool, pads: o.Pads, nonneg: bool, shape: Shape) -> o.Op | None:
    if any(op.padding) and not op.count_include_pad:  # its own pads are left out of the divisor, the zeros not
        return None
    return dataclasses.replace(op, padding=_add_pads(op.padding, pads), count_include_pad=True)


def _max_pool_absorbs(op: o.MaxPool, pads: o.Pads, nonneg: bool, shape: Shape) -> o.Op | None:
    new = dataclasses.replace(op, padding=_add_pads(op.padding, pads))
    return new if nonneg and _every_window_reads_data(new, shape) else None


# consumer op type -> (consumer, zero pads of its input, whether that input is >= 0, its unpadded shape) -> the
# consumer reading the unpadded input, or None when that would change its value
PAD_ABSORBERS: dict[type[o.Op], Callable[..., o.Op | None]] = {
    o.Conv: _conv_absorbs,
    o.AvgPool: _avg_pool_absorbs,
    o.MaxPool: _max_pool_absorbs,
}


@register("canonicalize", exact=True)
def canonicalize(graph: Graph, hw: HardwareSpec | None = None) -> Graph:
    """Apply `RULES` until none fires; what no output reads is dropped after each rewrite."""
    b = GraphBuilder.from_graph(graph)
    while _rewrite_once(b):
        b.prune_dead()
    b.prune_dead()
    return b.build()
