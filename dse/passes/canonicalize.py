"""Canonicalize: fold constant scales into neighbouring weights and drop what inference does not need.

Rules, applied until none fires (each is exact):
- Identity (and Dropout, which imports as Identity) is removed.
- A Softmax that is a graph output is removed: argmax does not change.
- MaxPool followed by Relu becomes Relu then MaxPool (they commute), so the max-pool tree sees values >= 0.
- A zero Pad (an explicit ``F.pad``/``ZeroPad2d``, TF-style "same" padding) folds into the convolutions and
  poolings that read it: a Conv pads with zeros anyway; an AvgPool then counts the padding in its divisor
  (exact when it counted its own padding, or had none); a MaxPool pads with -inf, the same as zeros only when
  its input is >= 0 (it follows a ReLU) and every window still reads a real value. A Pad that does not fold
  stays, as wiring on the chip.
- Two ScaleShifts in a row merge; a ScaleShift commutes past a Reshape.
- A ScaleShift after a Conv/Linear (BatchNorm, a constant scale) folds into its weights.
- A ScaleShift before Conv/Linear consumers (input normalization) folds into their weights. A padded
  convolution pads with zero in the normalized space, so when the ScaleShift reads the network input (or a 1-D
  signal's (C, 1, L) view of it) the padding moves onto the host as a `Pad` with value ``-shift / scale`` (the
  raw value that normalizes to zero).
Whatever ScaleShift is left becomes a core-op in `reform`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from dse.hardware.spec import HardwareSpec
from dse.ir import ops as o
from dse.ir.graph import Graph, Node
from dse.ir.shapes import SHAPE_RULES, Shape, infer_shapes
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


def fold_into_consumer(
    consumer: o.Conv | o.Linear, scale: np.ndarray, shift: np.ndarray
) -> o.Conv | o.Linear:
    """consumer(x * scale + shift) as one op on x (ignoring padding, handled by the caller)."""
    w = np.asarray(consumer.weight, dtype=np.float64)
    if isinstance(consumer, o.Linear):
        return o.Linear((w * scale[None, :]).astype(np.float32), (_bias(consumer) + w @ shift).astype(np.float32))
    idx = _in_channel_index(consumer)
    new_w = w * scale[idx][:, :, None, None]
    new_b = _bias(consumer) + (w * shift[idx][:, :, None, None]).sum(axis=(1, 2, 3))
    return o.Conv(
        new_w.astype(np.float32), new_b.astype(np.float32), consumer.stride, consumer.padding,
        consumer.dilation, consumer.groups,
    )


def fold_into_producer(producer: o.Conv | o.Linear, scale: np.ndarray, shift: np.ndarray) -> o.Op:
    """ScaleShift(producer(x)) as one op."""
    w = np.asarray(producer.weight, dtype=np.float64)
    new_w = w * scale.reshape(-1, *([1] * (w.ndim - 1)))
    new_b = _bias(producer) * scale + shift
    if isinstance(producer, o.Linear):
        return o.Linear(new_w.astype(np.float32), new_b.astype(np.float32))
    return o.Conv(
        new_w.astype(np.float32), new_b.astype(np.float32), producer.stride, producer.padding,
        producer.dilation, producer.groups,
    )


class _Rewriter:
    """One rewrite step over a mutable copy of the graph's nodes."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.nodes = {n.name: n for n in graph}
        self.order = [n.name for n in graph]
        self.outputs = list(graph.outputs)
        self.shapes = infer_shapes(graph)

    def consumers(self, name: str) -> list[Node]:
        return [self.nodes[n] for n in self.order if name in self.nodes[n].inputs]

    def bypass(self, name: str) -> None:
        """Remove a single-input node; its readers read its input."""
        src = self.nodes[name].inputs[0]
        for n in self.order:
            node = self.nodes[n]
            if name in node.inputs:
                self.nodes[n] = Node(n, node.op, tuple(src if i == name else i for i in node.inputs), node.block)
        self.outputs = [src if x == name else x for x in self.outputs]
        self.order.remove(name)
        del self.nodes[name]

    def set_op(self, name: str, op: o.Op, inputs: tuple[str, ...] | None = None) -> None:
        node = self.nodes[name]
        self.nodes[name] = Node(name, op, node.inputs if inputs is None else inputs, node.block)

    def insert_before(self, before: str, name: str, op: o.Op, inputs: tuple[str, ...]) -> str:
        base, i = name, 1
        while name in self.nodes:
            name, i = f"{base}_{i}", i + 1
        self.nodes[name] = Node(name, op, inputs)
        self.order.insert(self.order.index(before), name)
        return name

    def result(self) -> Graph:
        return Graph(tuple(self.nodes[n] for n in self.order), tuple(self.outputs)).prune_dead()


def _step(g: Graph) -> Graph | None:
    r = _Rewriter(g)
    for node in g:
        op, name = node.op, node.name
        users = r.consumers(name)
        if isinstance(op, o.Identity):
            r.bypass(name)
            return r.result()
        if isinstance(op, o.Softmax) and name in g.outputs and not users:
            r.bypass(name)
            return r.result()
        if isinstance(op, o.MaxPool) and len(users) == 1 and isinstance(users[0].op, o.Relu):
            relu = users[0]
            # x -> MaxPool -> Relu  becomes  x -> Relu -> MaxPool (relu and max commute)
            r.set_op(name, o.Relu(), node.inputs)
            r.set_op(relu.name, op, (name,))
            return r.result()
        if isinstance(op, o.Pad) and _fold_pad(r, g, node, users):
            return r.result()
        if not isinstance(op, o.ScaleShift):
            continue
        src = node.inputs[0]
        in_shape = r.shapes[src]
        producer = g[src].op
        if len(users) == 1 and isinstance(users[0].op, o.ScaleShift):
            nxt = users[0].op
            scale = np.asarray(nxt.scale, np.float64) * np.asarray(op.scale, np.float64)
            shift = np.asarray(op.shift, np.float64) * np.asarray(nxt.scale, np.float64) + np.asarray(nxt.shift)
            r.set_op(users[0].name, o.ScaleShift(scale.astype(np.float32), shift.astype(np.float32)), node.inputs)
            r.bypass(name)
            return r.result()
        if len(users) == 1 and isinstance(users[0].op, o.Reshape):
            reshape = users[0]
            out_shape = r.shapes[reshape.name]
            full = np.broadcast_shapes(in_shape, np.shape(op.scale), np.shape(op.shift))
            if tuple(full) == tuple(in_shape):
                scale = np.broadcast_to(op.scale, in_shape).reshape(out_shape)
                shift = np.broadcast_to(op.shift, in_shape).reshape(out_shape)
                r.set_op(reshape.name, reshape.op, node.inputs)
                r.set_op(name, o.ScaleShift(scale.copy(), shift.copy()), (reshape.name,))
                # the ScaleShift now follows the Reshape: move it after it in the order
                r.order.remove(name)
                r.order.insert(r.order.index(reshape.name) + 1, name)
                for u in users_of(r, reshape.name, exclude=name):
                    r.set_op(u, r.nodes[u].op, tuple(name if i == reshape.name else i for i in r.nodes[u].inputs))
                r.outputs = [name if x == reshape.name else x for x in r.outputs]
                return r.result()
        out_shape = r.shapes[name]
        if tuple(out_shape) != tuple(in_shape):
            continue  # the constants broadcast the tensor to a bigger shape: leave it to reform
        vec = per_channel(op, tuple(in_shape))
        if vec is None:
            continue
        scale, shift = vec
        if (
            isinstance(producer, (o.Conv, o.Linear))
            and len(r.consumers(src)) == 1
            and src not in g.outputs
        ):
            r.set_op(src, fold_into_producer(producer, scale, shift))
            r.bypass(name)
            return r.result()
        if users and name not in g.outputs and all(isinstance(u.op, (o.Conv, o.Linear)) for u in users):
            from_input = g.host_input(src)
            padded_shift = [
                u for u in users if isinstance(u.op, o.Conv) and any(u.op.padding) and np.any(shift != 0)
            ]
            if padded_shift and not (from_input and np.all(scale != 0)):
                continue
            for u in users:
                new = fold_into_consumer(u.op, scale, shift)
                inputs = (src,)
                if u in padded_shift:
                    pad_value = tuple(float(v) for v in (-shift / scale))
                    pad = r.insert_before(u.name, f"{u.name}_pad", o.Pad(u.op.padding, pad_value), (src,))
                    new = o.Conv(new.weight, new.bias, new.stride, (0, 0, 0, 0), new.dilation, new.groups)
                    inputs = (pad,)
                r.set_op(u.name, new, inputs)
            r.order.remove(name)
            del r.nodes[name]
            return r.result()
    return None


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


def _nonneg(g: Graph, name: str) -> bool:
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


def _fold_pad(r: _Rewriter, g: Graph, node: Node, users: list[Node]) -> bool:
    """Fold zero Pad `node` into every reader, if each can take it with its value unchanged."""
    op = node.op
    assert isinstance(op, o.Pad)
    if any(op.value) or not users or node.name in g.outputs:
        return False
    src = node.inputs[0]
    shape, nonneg = r.shapes[src], _nonneg(g, src)
    folded = []
    for u in users:
        absorb = PAD_ABSORBERS.get(type(u.op))
        new = None if absorb is None or u.inputs != (node.name,) else absorb(u.op, op.padding, nonneg, shape)
        if new is None or SHAPE_RULES[type(new)](new, [shape]) != r.shapes[u.name]:  # (a ceil_mode window)
            return False
        folded.append(new)
    for u, new in zip(users, folded, strict=True):
        r.set_op(u.name, new)
    r.bypass(node.name)
    return True


def users_of(r: _Rewriter, name: str, exclude: str) -> list[str]:
    return [n for n in r.order if n != exclude and name in r.nodes[n].inputs]


@register("canonicalize")
def canonicalize(graph: Graph, hw: HardwareSpec | None = None) -> Graph:
    while (nxt := _step(graph)) is not None:
        graph = nxt
    return graph.prune_dead()
