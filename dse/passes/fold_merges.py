"""Fold merges into residual adds: on a spiking chip, a split whose merge only feeds a residual add loses a layer.

A split convolution (fit_crossbar) ends in a merge core; when the convolution's value is signed (it feeds a
residual add), the merge emits the pair ``relu(s), relu(-s)`` and the add core reads it as ``w * (pos - neg)``.
That difference is linear in the merge's own inputs (``s = sum_k m_k * partial_k + b``), so the add can read
the partial sums itself, with weights ``w * m_k`` and bias ``+ w * b``: the same function in float, one core
layer and one merge core fewer.

On a spiking chip it is more than a saving. Each spiking layer whose current changes sign within the window
fires on the running maximum of its integrated current (a spike cannot be taken back), and a merge pair does
so on both halves: on resnet_mnist 19 to 37 % of the merge pairs feeding an add fired on both halves, the
largest error of any layer. Without the merge, that error is gone; the add neuron sees the partial sums
directly. The fused block (partial-sum cores and the add) is tuned as one unit against the add's activation.

Only a merge that nothing else reads, whose pair enters the add with opposite weights (``w``, ``-w``), and
whose partial sums are read by nothing outside their block is folded; the add's fan-in must still fit the
crossbar. Other chips keep the graph: there the merge costs a quantized layer only, and whole feature maps
would have to be tuned where the split block trains on patches.
"""

from __future__ import annotations

import numpy as np

from dse.hardware.spec import HardwareSpec
from dse.ir import ops as o
from dse.ir.graph import Graph, Node
from dse.ir.shapes import infer_shapes
from dse.passes.registry import register


def _pointwise_grouped(op: o.Op) -> bool:
    """A core-op where each neuron reads a few routed inputs of its own position: a residual add, a merge."""
    return (isinstance(op, o.CoreOp) and not op.fixed and op.population == 1 and op.mask is None
            and op.groups == op.out_channels and op.kernel == (1, 1) and op.stride == (1, 1)
            and not any(op.padding))


def _sources(graph: Graph, node: str) -> list[str]:
    """The nodes a Concat joins (or the node itself)."""
    op = graph[node].op
    return list(graph[node].inputs) if isinstance(op, o.Concat) and op.axis == 0 else [node]


def _slots(graph: Graph, gather: Node, shapes: dict) -> list[tuple[str, int]]:
    """(source node, channel) of every channel a Gather (of a Concat) routes."""
    srcs = _sources(graph, gather.inputs[0])
    owner = [(s, c) for s in srcs for c in range(shapes[s][0])]
    return [owner[i] for i in gather.op.index]


def _signed_merge(graph: Graph, name: str, readers: set[str]) -> bool:
    """Whether core `name` is a merge pair ``[s; -s]`` behind a Gather that only the nodes in `readers` read."""
    node = graph[name]
    op = node.op
    if not _pointwise_grouped(op) or op.out_channels % 2 or name in graph.outputs:
        return False
    route = graph[node.inputs[0]]
    if not isinstance(route.op, o.Gather) or route.block_name != node.block_name:
        return False
    half = op.out_channels // 2
    w = op.weight.reshape(op.out_channels, -1)
    if not (np.array_equal(w[half:], -w[:half]) and np.array_equal(op.bias[half:], -op.bias[:half])):
        return False
    return all(c.name in readers for c in graph.consumers(name))


def _fold_one(graph: Graph, add: Node, rows: int | None) -> Graph | None:
    """`graph` with the signed merges that `add` reads folded into it, or None when there are none."""
    shapes = infer_shapes(graph)
    route = graph[add.inputs[0]]
    if not isinstance(route.op, o.Gather) or len(graph.consumers(route.name)) != 1:
        return None
    joined = route.inputs[0]
    readers = {joined, route.name}
    if joined != route.name and len(graph.consumers(joined)) != 1:
        return None
    # a split's merge carries the block's name; its partial sums and routing carry the block
    merges = [s for s in dict.fromkeys(_sources(graph, joined))
              if graph[s].block == s and isinstance(graph[s].op, o.CoreOp) and _signed_merge(graph, s, readers)]
    if not merges:
        return None
    op = add.op
    in_g = op.weight.shape[1]
    slots = _slots(graph, route, shapes)
    w = op.weight.reshape(op.out_channels, in_g).astype(np.float64)
    bias = op.bias.astype(np.float64).copy()
    rows_of: list[list[tuple[tuple[str, int], float]]] = []
    for j in range(op.out_channels):
        mine = slots[j * in_g : (j + 1) * in_g]
        row: list[tuple[tuple[str, int], float]] = []
        for k, (src, c) in enumerate(mine):
            if src not in merges:
                row.append(((src, c), w[j, k]))
                continue
            m = graph[src].op
            half = m.out_channels // 2
            base, sign = (c, 1.0) if c < half else (c - half, -1.0)
            # value of the pair = pos - neg = s: this slot contributes w * sign * relu(+-s); only the sum of
            # both halves (opposite weights) is linear in s
            partner = (src, base + half if sign > 0 else base)
            k2 = next((i for i, s in enumerate(mine) if s == partner), None)
            if k2 is None or not np.isclose(w[j, k2], -w[j, k]):
                return None
            if sign < 0:
                continue  # folded with its positive half
            m_in = _slots(graph, graph[graph[src].inputs[0]], shapes)
            m_in_g = m.weight.shape[1]
            for k3 in range(m_in_g):
                row.append((m_in[base * m_in_g + k3], w[j, k] * float(m.weight.reshape(m.out_channels, -1)[base, k3])))
            bias[j] += w[j, k] * float(m.bias[base])
        rows_of.append(row)
    width = {len(r) for r in rows_of}
    if len(width) != 1 or (rows is not None and width.pop() > rows):
        return None  # groups of different sizes are no grouped core-op; too many rows is no legal one
    # the new add: a Concat of every source it reads, a Gather routing each neuron's inputs next to each other
    srcs = list(dict.fromkeys(s for r in rows_of for (s, _), _w in r))
    offset = dict(zip(srcs, np.cumsum([0] + [shapes[s][0] for s in srcs[:-1]]), strict=True))
    index = np.array([offset[s] + c for r in rows_of for (s, c), _w in r], dtype=np.int64)
    weight = np.array([[wk for _s, wk in r] for r in rows_of], dtype=np.float32)
    block = add.block_name
    moved = {n.name for m in merges for n in graph if n.block_name == graph[m].block_name} - set(merges)
    moved -= {graph[m].inputs[0] for m in merges}  # the merges' routes go with them
    for m in merges:  # what the merges read is now read only by the add
        for n in graph:
            if n.name in moved and any(c.name not in moved and c.name not in merges
                                       and c.name != graph[m].inputs[0] for c in graph.consumers(n.name)):
                return None
    dropped = set(merges) | {graph[m].inputs[0] for m in merges} | {route.name, joined}
    dropped |= {n for n in moved if isinstance(graph[n].op, o.Concat)
                and all(c.name in dropped for c in graph.consumers(n))}
    moved -= dropped
    names = {n.name for n in graph}
    cat_name = f"{add.name}_in" if f"{add.name}_in" not in names - dropped else f"{add.name}_in_folded"
    route_name = f"{add.name}_route" if f"{add.name}_route" not in names - dropped else f"{add.name}_route_folded"
    new_add = o.CoreOp(weight.reshape(op.out_channels, -1, 1, 1), bias.astype(np.float32), (1, 1), (0, 0, 0, 0),
                       op.out_channels, op.dense, None, population=op.population)
    tail = [Node(n.name, n.op, n.inputs, block) for n in graph if n.name in moved]
    inp = srcs[0]
    if len(srcs) > 1:
        tail.append(Node(cat_name, o.Concat(0), tuple(srcs), block))
        inp = cat_name
    tail.append(Node(route_name, o.Gather(index), (inp,), block))
    tail.append(Node(add.name, new_add, (route_name,), add.block))
    nodes = []
    for n in graph:
        if n.name == add.name:
            nodes += tail
        elif n.name not in moved and n.name not in dropped:
            nodes.append(n)
    return graph.replace_nodes(nodes)


@register("fold_merges")
def fold_merges(graph: Graph, hw: HardwareSpec) -> Graph:
    if not hw.spiking:
        return graph
    rows = hw.crossbar.rows
    while True:
        for node in graph:
            if _pointwise_grouped(node.op) and node.block_name == node.name:
                folded = _fold_one(graph, node, rows)
                if folded is not None:
                    graph = folded
                    break
        else:
            return graph
