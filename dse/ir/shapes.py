"""Shape inference: a table keyed by op type, per-sample shapes (batch left out)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

import numpy as np

from dse.ir import ops as o

Shape = tuple[int, ...]


def _pool_out(size: int, k: int, s: int, p0: int, p1: int, ceil_mode: bool, dilation: int = 1) -> int:
    span = size + p0 + p1 - dilation * (k - 1) - 1
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + p0:  # the last window must start inside the input or left pad
        out -= 1
    return out


def _spatial(shape: Shape, kernel, stride, padding, ceil_mode=False, dilation=(1, 1)) -> tuple[int, int]:
    _, h, w = shape
    return (
        _pool_out(h, kernel[0], stride[0], padding[0], padding[2], ceil_mode, dilation[0]),
        _pool_out(w, kernel[1], stride[1], padding[1], padding[3], ceil_mode, dilation[1]),
    )


def _conv(op: o.Conv, ins: list[Shape]) -> Shape:
    return (op.weight.shape[0], *_spatial(ins[0], op.weight.shape[2:], op.stride, op.padding, False, op.dilation))


def _core(op: o.CoreOp, ins: list[Shape]) -> Shape:
    if op.dense:
        return (op.out_channels,)
    return (op.out_channels, *_spatial(ins[0], op.kernel, op.stride, op.padding))


def _pool(op: o.MaxPool | o.AvgPool, ins: list[Shape]) -> Shape:
    return (ins[0][0], *_spatial(ins[0], op.kernel, op.stride, op.padding, op.ceil_mode, op.dilation))


def _concat(op: o.Concat, ins: list[Shape]) -> Shape:
    out = list(ins[0])
    out[op.axis] = sum(s[op.axis] for s in ins)
    return tuple(out)


def _same(op: o.Op, ins: list[Shape]) -> Shape:
    return ins[0]


def _scale_shift(op: o.ScaleShift, ins: list[Shape]) -> Shape:
    return tuple(np.broadcast_shapes(ins[0], op.scale.shape, op.shift.shape))


def _input(op: o.Input, ins: list[Shape]) -> Shape:
    if op.population == 1:
        return tuple(op.shape)
    return (op.shape[0] * op.population, *op.shape[1:])  # copies of the channels, copy-major


def _pad(op: o.Pad, ins: list[Shape]) -> Shape:
    top, left, bottom, right = op.padding
    c, h, w = ins[0]
    return (c, h + top + bottom, w + left + right)


def _readout(op: o.Readout, ins: list[Shape]) -> Shape:
    return (ins[0][0] // 2 // op.population, *ins[0][1:])


SHAPE_RULES: dict[type[o.Op], Callable[[o.Op, list[Shape]], Shape]] = {
    o.Input: _input,
    o.Readout: _readout,
    o.CoreOp: _core,
    o.Reshape: lambda op, ins: tuple(op.shape),
    o.Slice: lambda op, ins: (op.stop - op.start, *ins[0][1:]),
    o.Gather: lambda op, ins: (len(op.index), *ins[0][1:]),
    o.Concat: _concat,
    o.Pad: _pad,
    o.DepthToSpace: lambda op, ins: (ins[0][0] // (op.block[0] * op.block[1]), *op.size),
    o.SpaceToDepth: lambda op, ins: (ins[0][0] * op.block[0] * op.block[1], ins[0][1] // op.block[0],
                                     ins[0][2] // op.block[1]),
    o.Conv: _conv,
    o.Linear: lambda op, ins: (op.weight.shape[0],),
    o.ScaleShift: _scale_shift,
    o.Add: _same,
    o.Relu: _same,
    o.PRelu: _same,
    o.Clip: _same,
    o.Sigmoid: _same,
    o.Tanh: _same,
    o.HardSwish: _same,
    o.Silu: _same,
    o.Gelu: _same,
    o.Elu: _same,
    o.Softplus: _same,
    o.Mish: _same,
    o.Softmax: _same,
    o.MaxPool: _pool,
    o.AvgPool: _pool,
    o.GlobalAvgPool: lambda op, ins: (ins[0][0], 1, 1),
    o.Identity: _same,
}


class _NodeLike(Protocol):  # dse.ir.graph.Node; named structurally so that graph.py may import this module
    name: str
    op: o.Op
    inputs: tuple[str, ...]


def infer_shapes(graph: Iterable[_NodeLike]) -> dict[str, Shape]:
    """The shape (batch left out) of every node of `graph` (a Graph, or its nodes in topological order)."""
    shapes: dict[str, Shape] = {}
    for node in graph:
        shapes[node.name] = SHAPE_RULES[type(node.op)](node.op, [shapes[i] for i in node.inputs])
    return shapes
