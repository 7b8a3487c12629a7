"""Re-encode: carry each core-op's output by `k` neurons (a population code) when the I/O bits are few.

Copy i of a neuron fires ``clamp(y - i * Q * step, 0, Q * step)`` (Q the largest code): its threshold is
staggered by one full code range, so the k copies, summed, give y over k times the range at the same step
(``k * Q + 1`` levels instead of ``Q + 1``). The decoder is that sum, and it folds into every consumer: a
consumer reads each copy with the weight it had for the value, so its fan-in grows k times and
split-and-merge takes it from there. The stagger depends on the step tuning chooses, so here the copies are
laid out (weights tiled, `population` set) and tuning ties their biases to the step.

A max-pooling tree needs no decoder: each copy is a monotone function of the value, so the max of the
values is copy by copy the max of the copies; the tree just runs on k times the channels. The host sums the
copies of the outputs (`Readout.population`).

`readout_k` re-encodes only the values the host reads (the network's outputs). On a spiking chip a value is
a spike count of 0..T; the logits of a classifier carried by one pair of neurons each take 2T + 1 values, and
on resnet_mnist at T = 16 one test image in a hundred had two classes tied for the top. k copies give the
host k T + 1 levels per half for a few more neurons, and nothing else in the network changes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from dse.bounds import check_int
from dse.errors import ConstraintError
from dse.hardware.spec import HardwareSpec
from dse.ir import ops as o
from dse.ir.graph import Graph, Node
from dse.ir.shapes import infer_shapes
from dse.passes.reform import expand_groups
from dse.passes.registry import register


def _tile_inputs(op: o.CoreOp, k: int, per_copy: int) -> o.CoreOp:
    """A consumer reading k copies of its input (copy-major): the same weight on every copy."""
    weight, mask, groups = op.weight, op.mask, op.groups
    if groups > 1:
        weight, dense_mask = expand_groups(weight, groups)
        mask = dense_mask if mask is None else dense_mask & expand_groups(mask.astype(float), groups)[0].astype(bool)
        groups = 1
    if weight.shape[1] != per_copy:
        raise ConstraintError("re-encoding: a core reads a population code through a reshape it cannot follow")
    weight = np.concatenate([weight] * k, axis=1)
    mask = None if mask is None else np.concatenate([mask] * k, axis=1)
    return o.CoreOp(weight.astype(np.float32), op.bias, op.stride, op.padding, groups, op.dense, mask,
                    op.quant, op.fixed, op.population)


@dataclass
class _Populations:
    """What re-encoding knows while it walks the graph: the copies each node's output carries."""

    shapes: dict[str, tuple[int, ...]]
    k: int
    readout_k: int
    read_out: set[str]  # cores whose output the host reads
    copies: dict[str, int] = field(default_factory=dict)  # node -> copies its output carries (absent: 1)

    def of(self, name: str) -> int:
        return self.copies.get(name, 1)


def _core(p: _Populations, node: Node, pop_in: int) -> o.Op:
    op = node.op
    if op.fixed:  # a max-pooling stage: depthwise, so just k times the channels
        p.copies[node.name] = pop_in
        return o.CoreOp(np.concatenate([op.weight] * pop_in), np.concatenate([op.bias] * pop_in), op.stride,
                        op.padding, op.groups * pop_in, op.dense, None, None, True, pop_in)
    if pop_in > 1:
        op = _tile_inputs(op, pop_in, p.shapes[node.inputs[0]][0])
    copies = max(p.k, p.readout_k) if node.name in p.read_out else p.k
    p.copies[node.name] = copies
    return o.CoreOp(np.concatenate([op.weight] * copies), np.concatenate([op.bias] * copies), op.stride,
                    op.padding, op.groups, op.dense, None if op.mask is None else np.concatenate([op.mask] * copies),
                    None, False, copies)


def _reshape(p: _Populations, node: Node, pop_in: int) -> o.Op:
    """Any reshape: copy-major in, copy-major out, the same order. The copies are the slowest axis of the
    row-major layout (copy i is the i-th run of ``prod(shape)`` values, in and out), so the per-copy reshape
    with the copies stacked on axis 0 moves every copy's values as the original moves the value's: a flattening,
    a 1-D signal's (C, L) <-> (C, 1, L) image, and one that moves rows into the channels ((M, K) rows of a
    token-mixing layer viewed as an (M, 1, K) image) alike."""
    op = node.op
    if pop_in > 1 and not op.shape:
        raise ConstraintError(f"re-encoding: reshape {node.name} of a population code to a scalar")
    p.copies[node.name] = pop_in
    return o.Reshape((op.shape[0] * pop_in, *op.shape[1:]))


def _input(p: _Populations, node: Node, pop_in: int) -> o.Op:
    if p.k == 1:
        return node.op
    p.copies[node.name] = p.k  # the host sends the input as a population too
    op = node.op
    return o.Input(op.shape, op.scale, op.code_max, p.k)


def _gather(p: _Populations, node: Node, pop_in: int) -> o.Op:
    """Every copy routed alike (copy-major in, copy-major out)."""
    per_copy = p.shapes[node.inputs[0]][0]
    p.copies[node.name] = pop_in
    return o.Gather(np.concatenate([i * per_copy + node.op.index for i in range(pop_in)]))


def _same_copies(p: _Populations, node: Node, pop_in: int) -> o.Op:
    """An op that acts on every channel alike (a zero pad) carries its input's copies as they are."""
    p.copies[node.name] = pop_in
    return node.op


def _blocks_per_copy(p: _Populations, node: Node, pop_in: int) -> o.Op:
    """A DepthToSpace or SpaceToDepth routes every copy alike (copy-major in, copy-major out)."""
    p.copies[node.name] = pop_in
    return dataclasses.replace(node.op, copies=pop_in)


def _slice(p: _Populations, node: Node, pop_in: int) -> o.Op:
    """The slice's channels of every copy: a Gather (copy-major in, copy-major out)."""
    if pop_in == 1:
        return node.op
    per_copy = p.shapes[node.inputs[0]][0]
    p.copies[node.name] = pop_in
    picked = np.arange(node.op.start, node.op.stop)
    return o.Gather(np.concatenate([i * per_copy + picked for i in range(pop_in)]))


def _concat(p: _Populations, node: Node, pop_in: int) -> o.Op:
    """Copy i of the output is copy i of every input, concatenated (a U-Net's skip and its upsampled map)."""
    copies = {p.of(i) for i in node.inputs}
    if copies == {1}:
        return node.op
    if len(copies) > 1 or node.op.axis != 0:
        raise ConstraintError(f"re-encoding: Concat {node.name} joins a population code "
                              + ("with values of another code" if len(copies) > 1 else "along a spatial axis"))
    p.copies[node.name] = pop_in
    return dataclasses.replace(node.op, copies=pop_in)


# how each chip op carries a population code: (state, node, copies its first input carries) -> the new op
POPULATION_RULES: dict[type[o.Op], Callable[[_Populations, Node, int], o.Op]] = {
    o.CoreOp: _core,
    o.Input: _input,
    o.Readout: lambda p, node, pop_in: o.Readout(pop_in),  # the host sums the copies
    o.Reshape: _reshape,
    o.Gather: _gather,
    o.Pad: _same_copies,
    o.Slice: _slice,
    o.Concat: _concat,
    o.DepthToSpace: _blocks_per_copy,
    o.SpaceToDepth: _blocks_per_copy,
}


@register("reencode")
def reencode(graph: Graph, hw: HardwareSpec, k: int = 1, readout_k: int = 1) -> Graph:
    """`k` copies of every value crossing a core boundary; `readout_k` copies of the values the host reads
    (the network's outputs: finer logits, at the cost of a few neurons; with `k` > 1, the larger of the two)."""
    check_int("strategy.reencode_k", k, 1, error=ConstraintError)
    check_int("strategy.readout_k", readout_k, 1, error=ConstraintError)
    if k == 1 and readout_k == 1:
        return graph
    if hw.spiking and k > 1:
        raise ConstraintError("strategy.reencode_k > 1: a spiking chip counts spikes, re-encoding is for I/O bits")
    unquantized = [] if hw.spiking else [f"hardware.io.{f}" for f in ("input_bits", "output_bits")
                                         if getattr(hw.io, f) is None]
    if unquantized and k > 1:  # a thermometer code staggers copies by the code range: no range, no code
        raise ConstraintError(f"strategy.reencode_k > 1: {' and '.join(unquantized)} null (values not quantized), "
                              "re-encoding is for few I/O bits")
    if readout_k > 1 and not hw.spiking and hw.io.output_bits is None:  # each copy would carry the whole value
        raise ConstraintError("strategy.readout_k > 1: hardware.io.output_bits null (outputs not quantized), a "
                              "population readout is for few output bits")
    read_out = {n.name for n in graph if isinstance(n.op, o.CoreOp) and not n.op.fixed and graph.read_by_host(n.name)}
    p = _Populations(infer_shapes(graph), k, readout_k, read_out)
    nodes = []
    for node in graph:
        pop_in = p.of(node.inputs[0]) if node.inputs else 1
        nodes.append(Node(node.name, POPULATION_RULES[type(node.op)](p, node, pop_in), node.inputs, node.block))
    return graph.replace_nodes(nodes)
