"""Fit the crossbar: make every core-op's fan-in fit `hardware.crossbar.rows`.

`split` (split-and-merge, exact in float): the inputs of an oversized core-op are cut into groups that fit;
each group's core emits its partial sum as ``relu(s_g), relu(-s_g)``, and a merge core adds the partial sums
and applies the original activation: ``relu(sum_g (relu(s_g) - relu(-s_g)) + b) = relu(s + b)``. A merge
whose own fan-in is too big is split again (a tree). Costs cores and one layer.

`prune`: each group of output neurons that shares a crossbar keeps only the input channels that matter most
to it (largest summed |weight|) within the row budget; the rest are masked out. Costs no extra core; the
lost synapses are recovered as far as possible by tuning (layer-wise retraining).

Fan-out needs no graph change: the mapping spreads a core-op's columns over crossbars.
Every core of a split keeps the original core-op's name as its `block`, so they are tuned together.
"""

from __future__ import annotations

import numpy as np

from dse.errors import ConstraintError
from dse.hardware.spec import HardwareSpec
from dse.ir import ops as o
from dse.ir.graph import Graph, GraphBuilder, Node
from dse.ir.shapes import SHAPE_RULES, Shape
from dse.passes.reform import expand_groups
from dse.passes.registry import register

STRATEGIES = ("split", "prune")


def _dense(op: o.CoreOp) -> tuple[np.ndarray, np.ndarray]:
    """Weight and mask with groups expanded (groups == 1)."""
    if op.groups > 1:
        w, m = expand_groups(op.weight, op.groups)
        return w, m if op.mask is None else m & expand_groups(op.mask.astype(float), op.groups)[0].astype(bool)
    return op.weight, op.synapse_mask()


def channel_chunks(mask: np.ndarray, rows: int) -> list[tuple[int, int]]:
    """Contiguous input-channel ranges such that every neuron's fan-in inside a range is <= rows."""
    per_channel = mask.reshape(mask.shape[0], mask.shape[1], -1).sum(axis=2)  # (O, C)
    if per_channel.max(initial=0) > rows:
        raise ConstraintError(
            f"a kernel of {mask.shape[2]}x{mask.shape[3]} taps needs {int(per_channel.max())} rows on one input "
            f"channel, more than the crossbar's {rows} rows"
        )
    chunks, start = [], 0
    load = np.zeros(mask.shape[0], dtype=np.int64)
    for c in range(mask.shape[1]):
        if np.any(load + per_channel[:, c] > rows):
            chunks.append((start, c))
            start, load = c, np.zeros_like(load)
        load += per_channel[:, c]
    chunks.append((start, mask.shape[1]))
    return chunks


def shared_rows(weight: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outputs whose weight rows are equal up to sign share their partial sums.

    A signed pair [s; -s], or the hinge units relu(s - t_k) of an approximator, read the same linear form
    with different biases: computing s once per group and letting the merge apply sign and bias saves most of
    the partial-sum cores. Returns the distinct rows (their masks), and per output its row index and sign.
    """
    flat = weight.reshape(weight.shape[0], -1)
    live = mask.reshape(mask.shape[0], -1)
    first = np.argmax(flat != 0, axis=1)
    sign = np.sign(flat[np.arange(len(flat)), first])
    sign[sign == 0] = 1.0
    canon = np.concatenate([flat * sign[:, None], live], axis=1)  # same row and same synapses
    _, base, index = np.unique(canon, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(base)  # keep the distinct rows in order of first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    index = index.reshape(-1)
    relative = sign * sign[base[index]]  # each distinct row is kept as it first appears
    return weight[base[order]], mask[base[order]], np.stack([rank[index], relative], axis=1)


class _Fitter:
    def __init__(self, graph: Graph, hw: HardwareSpec, strategy: str) -> None:
        self.g, self.hw, self.strategy = graph, hw, strategy
        self.rows = hw.crossbar.rows
        self.b = GraphBuilder()
        self.shapes: dict[str, Shape] = {}

    def add(self, name: str, op: o.Op, inputs: tuple[str, ...], block: str, exact_name: bool = False) -> str:
        if exact_name:
            self.b._names.add(name)
            self.b.nodes.append(Node(name, op, inputs, block))
        else:
            name = self.b.add(name, op, *inputs, block=block)
        self.shapes[name] = SHAPE_RULES[type(op)](op, [self.shapes[i] for i in inputs])
        return name

    def run(self) -> Graph:
        for node in self.g:  # reserve every original name so new nodes never take one
            self.b._names.add(node.name)
        for node in self.g:
            op = node.op
            oversized = isinstance(op, o.CoreOp) and self.rows is not None and int(op.fan_in().max()) > self.rows
            if not oversized:
                self.b.nodes.append(node)
                self.shapes[node.name] = SHAPE_RULES[type(op)](op, [self.shapes[i] for i in node.inputs])
            elif self.strategy == "split":
                self.split(node.name, op, node.inputs[0], node.block_name)
            else:
                self.add(node.name, self.prune(node.name, op), node.inputs, node.block, exact_name=True)
        return self.b.build(self.g.outputs)

    # --- split-and-merge -----------------------------------------------------------------------------------
    def split(self, name: str, op: o.CoreOp, src: str, block: str) -> str:
        weight, mask = _dense(op)
        base_w, base_m, rows_of = shared_rows(weight, mask)
        n_base = base_w.shape[0]
        chunks = channel_chunks(base_m, self.rows)
        partials = []
        for a, b in chunks:
            part_in = self.add(f"{name}_in", o.Slice(a, b), (src,), block) if (a, b) != (0, weight.shape[1]) else src
            w = base_w[:, a:b]
            m = base_m[:, a:b]
            core = o.CoreOp(
                np.concatenate([w, -w]), np.zeros(2 * n_base, np.float32), op.stride, op.padding, 1, op.dense,
                None if m.all() else np.concatenate([m, m]),
            )
            partials.append(self.add(f"{name}_part", core, (part_in,), block))
        merged = self.add(f"{name}_partials", o.Concat(0), tuple(partials), block) if len(partials) > 1 else partials[0]
        # merge: output j reads (pos, neg) of its base row in every group: +1, -1 (times the row's sign)
        n_out, n_groups = op.out_channels, len(partials)
        w_merge = np.zeros((n_out, 2 * n_base * n_groups, 1, 1), np.float32)
        for j in range(n_out):
            r, sign = int(rows_of[j, 0]), float(rows_of[j, 1])
            for g in range(n_groups):
                w_merge[j, g * 2 * n_base + r] = sign
                w_merge[j, g * 2 * n_base + n_base + r] = -sign
        merge = o.CoreOp(w_merge, op.bias, (1, 1), (0, 0, 0, 0), 1, op.dense, w_merge != 0,
                         population=op.population)
        if int(merge.fan_in().max()) > self.rows:
            if int(merge.fan_in().max()) >= int(op.fan_in().max()):  # each level must shrink, or it never ends
                raise ConstraintError(
                    f"core-op {name}: merging its partial sums needs crossbars of at least 4 rows to converge, "
                    f"the chip has {self.rows}"
                )
            return self.split(name, merge, merged, block)
        return self.add(name, merge, (merged,), block, exact_name=True)

    # --- pruning -------------------------------------------------------------------------------------------
    def prune(self, name: str, op: o.CoreOp) -> o.CoreOp:
        weight, mask = _dense(op)
        out_c, in_c = weight.shape[:2]
        taps = mask.reshape(out_c, in_c, -1).sum(axis=2)  # rows each channel costs each neuron
        importance = (np.abs(weight) * mask).reshape(out_c, in_c, -1).sum(axis=2)
        per_xbar = self.hw.logical_cols or out_c
        new_mask = np.zeros_like(mask)
        for start in range(0, out_c, per_xbar):
            block = slice(start, min(start + per_xbar, out_c))
            cost = taps[block].max(axis=0)
            if cost.max(initial=0) > self.rows:
                raise ConstraintError(
                    f"core-op {name}: one input channel needs {int(cost.max())} rows, more than {self.rows}"
                )
            used = 0
            for c in np.argsort(-importance[block].sum(axis=0), kind="stable"):
                if cost[c] and used + cost[c] <= self.rows:
                    new_mask[block, c] = mask[block, c]
                    used += cost[c]
        return o.CoreOp(
            (weight * new_mask).astype(np.float32), op.bias, op.stride, op.padding, 1, op.dense, new_mask,
            fixed=op.fixed, population=op.population,
        )


@register("fit_crossbar")
def fit_crossbar(graph: Graph, hw: HardwareSpec, strategy: str = "split") -> Graph:
    if strategy not in STRATEGIES:
        raise ConstraintError(f"unknown strategy {strategy!r} (known: {', '.join(STRATEGIES)})")
    return _Fitter(graph, hw, strategy).run()
