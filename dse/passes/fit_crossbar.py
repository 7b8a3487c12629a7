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

from typing import Literal

import numpy as np

from dse.choices import choices
from dse.errors import ConstraintError
from dse.hardware.spec import HardwareSpec
from dse.ir import ops as o
from dse.ir.graph import Graph, GraphBuilder
from dse.passes.registry import register

Strategy = Literal["split", "prune"]  # how a fan-in too big for the crossbar is met: split-and-merge, or pruning
STRATEGIES: tuple[Strategy, ...] = choices(Strategy)


def channel_chunks(shape: tuple[int, ...], mask: np.ndarray | None, rows: int) -> list[tuple[int, int]]:
    """Contiguous ranges of the input channels of one group such that every neuron's fan-in inside a range is
    <= rows, for a weight of `shape` (O, C/groups, kh, kw) whose real synapses are `mask` (None: all); a
    grouped op's groups are cut alike (the same channels of every group)."""
    out_c, in_g, kh, kw = shape
    if mask is None:  # every channel costs every neuron kh*kw rows: equal chunks (no (O, C) table)
        if kh * kw > rows:
            raise ConstraintError(
                f"a kernel of {kh}x{kw} taps needs {kh * kw} rows on one input channel, more than the crossbar's "
                f"{rows} rows"
            )
        step = rows // (kh * kw)
        return [(a, min(a + step, in_g)) for a in range(0, in_g, step)]
    per_channel = mask.reshape(out_c, in_g, -1).sum(axis=2, dtype=np.int32)  # (O, C)
    if per_channel.max(initial=0) > rows:
        raise ConstraintError(
            f"a kernel of {kh}x{kw} taps needs {int(per_channel.max())} rows on one input channel, more than the "
            f"crossbar's {rows} rows"
        )
    chunks, start = [], 0
    load = np.zeros(out_c, dtype=np.int32)
    for c in range(in_g):
        if np.any(load + per_channel[:, c] > rows):
            chunks.append((start, c))
            start, load = c, np.zeros_like(load)
        load += per_channel[:, c]
    chunks.append((start, in_g))
    return chunks


def shared_rows(weight: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Outputs whose weight rows are equal up to sign share their partial sums.

    A signed pair [s; -s], or the hinge units relu(s - t_k) of an approximator, read the same linear form
    with different biases: computing s once per group and letting the merge apply sign and bias saves most of
    the partial-sum cores. Returns the distinct rows (their masks), in order of first appearance, and per
    output its row index and sign (relative to the kept row).
    """
    flat = weight.reshape(weight.shape[0], -1)
    live = None if mask is None else mask.reshape(mask.shape[0], -1)
    first = np.argmax(flat != 0, axis=1)
    sign = np.sign(flat[np.arange(len(flat)), first]).astype(np.float64)
    sign[sign == 0] = 1.0
    seen: dict[bytes, int] = {}  # a row's bytes (sign made positive, its synapses) -> its distinct index
    base, rows_of = [], np.zeros((len(flat), 2))
    for j in range(len(flat)):
        row = flat[j] if sign[j] > 0 else -flat[j]
        key = row.astype(np.float32).tobytes() + (b"" if live is None else np.packbits(live[j]).tobytes())
        if key not in seen:
            seen[key] = len(base)
            base.append(j)
        r = seen[key]
        rows_of[j] = (r, sign[j] * sign[base[r]])
    keep = np.asarray(base)
    return weight[keep], None if mask is None else mask[keep], rows_of


class _Fitter:
    def __init__(self, graph: Graph, hw: HardwareSpec, strategy: Strategy) -> None:
        self.g, self.hw, self.strategy = graph, hw, strategy
        self.rows = hw.crossbar.rows
        self.b = GraphBuilder()
        self.ops: dict[str, o.Op] = {}  # the new graph's ops and first inputs, to compose Gathers
        self.inputs: dict[str, str] = {}

    def add(self, name: str, op: o.Op, inputs: tuple[str, ...], block: str, exact_name: bool = False) -> str:
        name = (self.b.add_exact if exact_name else self.b.add)(name, op, *inputs, block=block)
        self.ops[name] = op
        self.inputs[name] = inputs[0] if inputs else ""
        return name

    def run(self) -> Graph:
        self.b.reserve(n.name for n in self.g)  # so that new nodes never take an original name
        for node in self.g:
            op = node.op
            oversized = isinstance(op, o.CoreOp) and self.rows is not None and int(op.fan_in().max()) > self.rows
            if not oversized:
                self.b.append(node)
            elif self.strategy == "split":
                self.split(node.name, op, node.inputs[0], node.block_name)
            else:
                self.add(node.name, self.prune(node.name, op), node.inputs, node.block, exact_name=True)
        return self.b.build(self.g.outputs).prune_dead()  # a Gather composed away is dead

    # --- split-and-merge -----------------------------------------------------------------------------------
    def gather(self, src: str, index: np.ndarray, block: str) -> str:
        """A Gather of `src` (composed with `src`'s own Gather, so chains of merges route in one step)."""
        prev = self.ops.get(src)
        if isinstance(prev, o.Gather):
            index, src = prev.index[index], self.inputs[src]
        if np.array_equal(index, np.arange(self.b.shape(src)[0])):
            return src
        return self.add(f"{block}_route", o.Gather(np.asarray(index, dtype=np.int64)), (src,), block)

    def split(self, name: str, op: o.CoreOp, src: str, block: str) -> str:
        """Cut the input channels of every group into chunks that fit; one partial-sum core-op per chunk
        (grouped like `op`) emits its sums as pairs; one merge neuron per output reads its 2 x chunks sums,
        routed next to each other by a Gather, as a grouped core-op."""
        groups, (out_c, in_g, kh, kw) = op.groups, op.weight.shape
        per_group = out_c // groups
        if groups == 1:
            base_w, base_m, rows_of = shared_rows(op.weight, op.mask)
        else:  # rows of different groups read different inputs: nothing to share
            base_w, base_m = op.weight, op.mask
            rows_of = np.stack([np.arange(out_c) % per_group, np.ones(out_c)], axis=1)
        n_base = base_w.shape[0] // groups  # distinct rows per group
        partials = []
        for a, b in channel_chunks(base_w.shape, base_m, self.rows):
            if (a, b) == (0, in_g):
                part_in = src
            elif groups == 1:
                part_in = self.add(f"{name}_in", o.Slice(a, b), (src,), block)
            else:
                part_in = self.gather(src, (np.arange(groups)[:, None] * in_g + np.arange(a, b)).reshape(-1), block)
            w = base_w[:, a:b].reshape(groups, n_base, b - a, kh, kw)
            w = np.concatenate([w, -w], axis=1).reshape(groups * 2 * n_base, b - a, kh, kw)
            m = None
            if base_m is not None and not base_m[:, a:b].all():
                m = base_m[:, a:b].reshape(groups, n_base, b - a, kh, kw)
                m = np.concatenate([m, m], axis=1).reshape(w.shape)
            core = o.CoreOp(w, np.zeros(len(w), np.float32), op.stride, op.padding, groups, op.dense, m)
            partials.append(self.add(f"{name}_part", core, (part_in,), block))
        merged = self.add(f"{name}_partials", o.Concat(0), tuple(partials), block) if len(partials) > 1 else partials[0]
        # output j (group k, distinct row r, sign) reads (pos, neg) of row r of group k in every partial
        width, n_parts = groups * 2 * n_base, len(partials)
        pos = (np.arange(n_parts)[None, :] * width + (np.arange(out_c) // per_group)[:, None] * 2 * n_base
               + rows_of[:, :1].astype(np.int64))
        index = np.stack([pos, pos + n_base], axis=2).reshape(-1)  # per output: pos, neg of each partial
        w_merge = (np.tile([1.0, -1.0], n_parts)[None, :] * rows_of[:, 1:]).astype(np.float32)
        merge = o.CoreOp(w_merge.reshape(out_c, 2 * n_parts, 1, 1), op.bias, (1, 1), (0, 0, 0, 0), out_c, op.dense,
                         population=op.population)
        routed = self.gather(merged, index, block)
        if 2 * n_parts > self.rows:
            if 2 * n_parts >= int(op.fan_in().max()):  # each level must shrink, or it never ends
                raise ConstraintError(
                    f"core-op {name}: merging its partial sums needs crossbars of at least 4 rows to converge, "
                    f"the chip has {self.rows}"
                )
            return self.split(name, merge, routed, block)
        return self.add(name, merge, (routed,), block, exact_name=True)

    # --- pruning -------------------------------------------------------------------------------------------
    def prune(self, name: str, op: o.CoreOp) -> o.CoreOp:
        """Each group's neurons choose their inputs among that group's channels: a grouped op stays grouped."""
        per_group = op.out_channels // op.groups
        mask = op.synapse_mask()
        new_mask = np.zeros_like(mask)
        for g in range(op.groups):
            rows = slice(g * per_group, (g + 1) * per_group)
            new_mask[rows] = self.keep_inputs(name, op.weight[rows], mask[rows])
        return o.CoreOp(
            (op.weight * new_mask).astype(np.float32), op.bias, op.stride, op.padding, op.groups, op.dense,
            new_mask, fixed=op.fixed, population=op.population,
        )

    def keep_inputs(self, name: str, weight: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The synapses kept: per block of neurons that share a crossbar, the most important input channels
        whose rows fit."""
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
        return new_mask


@register("fit_crossbar")
def fit_crossbar(graph: Graph, hw: HardwareSpec, strategy: Strategy = "split") -> Graph:
    if strategy not in STRATEGIES:
        raise ConstraintError(f"unknown strategy {strategy!r} (known: {', '.join(STRATEGIES)})")
    return _Fitter(graph, hw, strategy).run()
