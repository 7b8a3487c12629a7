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

import numpy as np

from dse.errors import ConstraintError
from dse.hardware.spec import HardwareSpec
from dse.ir import ops as o
from dse.ir.graph import Graph, Node
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


@register("reencode")
def reencode(graph: Graph, hw: HardwareSpec, k: int = 1, readout_k: int = 1) -> Graph:
    """`k` copies of every value crossing a core boundary; `readout_k` copies of the values the host reads
    (the network's outputs: finer logits, at the cost of a few neurons; with `k` > 1, the larger of the two)."""
    if k < 1:
        raise ConstraintError(f"strategy.reencode_k must be >= 1 (got {k})")
    if readout_k < 1:
        raise ConstraintError(f"strategy.readout_k must be >= 1 (got {readout_k})")
    if k == 1 and readout_k == 1:
        return graph
    if hw.spiking and k > 1:
        raise ConstraintError("strategy.reencode_k > 1: a spiking chip counts spikes, re-encoding is for I/O bits")
    from dse.ir.shapes import infer_shapes

    shapes = infer_shapes(graph)
    read_out = {n.name for n in graph if isinstance(n.op, o.CoreOp) and not n.op.fixed and graph.read_by_host(n.name)}
    population: dict[str, int] = {}  # node -> copies its output carries
    nodes = []
    for node in graph:
        op, ins = node.op, node.inputs
        pop_in = population.get(ins[0], 1) if ins else 1
        if isinstance(op, o.CoreOp):
            if op.fixed:  # a max-pooling stage: depthwise, so just k times the channels
                new = o.CoreOp(np.concatenate([op.weight] * pop_in), np.concatenate([op.bias] * pop_in),
                               op.stride, op.padding, op.groups * pop_in, op.dense, None, None, True, pop_in)
                population[node.name] = pop_in
            else:
                if pop_in > 1:
                    op = _tile_inputs(op, pop_in, shapes[ins[0]][0])
                copies = max(k, readout_k) if node.name in read_out else k
                new = o.CoreOp(np.concatenate([op.weight] * copies), np.concatenate([op.bias] * copies), op.stride,
                               op.padding, op.groups, op.dense,
                               None if op.mask is None else np.concatenate([op.mask] * copies), None, False, copies)
                population[node.name] = copies
        elif isinstance(op, o.Reshape):
            new = o.Reshape((op.shape[0] * pop_in, *op.shape[1:]))
            if pop_in > 1 and len(shapes[ins[0]]) > 1 and len(op.shape) > 1:
                raise ConstraintError(f"re-encoding: reshape {node.name} of a population code keeps no channel axis")
            population[node.name] = pop_in
        elif isinstance(op, o.Input) and k > 1:  # the host sends the input as a population too
            new = o.Input(op.shape, op.scale, op.code_max, k)
            population[node.name] = k
        elif isinstance(op, o.Pad):
            new = op
            population[node.name] = pop_in
        elif isinstance(op, o.Readout):
            new = o.Readout(pop_in)
        elif isinstance(op, o.Gather):  # route every copy alike (copy-major in, copy-major out)
            per_copy = shapes[ins[0]][0]
            new = o.Gather(np.concatenate([i * per_copy + op.index for i in range(pop_in)]))
            population[node.name] = pop_in
        elif isinstance(op, (o.Slice, o.Concat)) and any(population.get(i, 1) > 1 for i in ins):
            raise ConstraintError(f"re-encoding: {type(op).__name__} {node.name} of a population code is not supported")
        else:
            new = op
        nodes.append(Node(node.name, new, ins, node.block))
    return graph.replace_nodes(nodes)
