"""Cross-layer equalization (Nagel et al., ICCV 2019, "Data-Free Quantization Through Weight Equalization and
Bias Correction"), on the float core-op graph, before fitting.

Every core-op's neuron is a ReLU, which is positively homogeneous: ``relu(x / s) = relu(x) / s`` for s > 0.
Dividing output channel i of a core A (its weight row and its bias) by s_i and multiplying by s_i every weight
that reads that channel leaves the network's function unchanged. Choosing ``s_i = sqrt(r1_i / r2_i)``, with
r1_i the largest |weight| of A's row i and r2_i the largest |weight| that reads channel i, gives both the range
``sqrt(r1_i r2_i)``: after batch norm is folded, rows of very different ranges share one weight scale per
crossbar, and most of them waste most of the codes; equalized, they share it better. Cores are equalized one
after the other in topological order, in sweeps until the scales stop moving.

Exactness on the chip's terms:
- a clipped ReLU (ReLU6, a clip) is, in core-op form, two ReLU outputs of one core, ``relu(s) - relu(s - hi)``,
  whose bound sits in the second one's bias: scaling the row and the bias scales the bound with it, so the
  clip stays exact. The chip's own output clipping (its ADC range) is not part of the float graph: tuning
  chooses each core's output step afterwards, on the equalized activations;
- a residual add or a merge is a core reading the terms it adds: every weight reading channel i is scaled,
  wherever it is, so the terms keep agreeing;
- the max-pooling trees (`fixed` cores: weights of exactly +-1 on one channel's values) commute with a
  per-channel scale: the scale passes through them to the cores behind them, which compensate it;
- rows that are equal up to sign (a signed pair ``[s; -s]``, the hinges of an approximator) get one common
  scale, so that fitting still shares their partial sums;
- a channel the host reads (a readout, a graph output), or one that a reshape mixes with another channel,
  keeps scale 1.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dse.hardware.spec import HardwareSpec
from dse.ir import ops as o
from dse.ir.graph import Graph, Node
from dse.ir.shapes import infer_shapes
from dse.ir.wiring import WIRING
from dse.passes.fit_crossbar import shared_rows
from dse.passes.registry import register

UNKNOWN = -1  # a channel that no core computes (the input): nothing to equalize
MIXED = -2  # a channel that a reshape made of several channels: not one scale


@dataclass
class _Core:
    """A core-op being equalized: its weights (float64 copies), and who reads its output channels."""

    node: Node
    weight: np.ndarray
    bias: np.ndarray
    first_id: int  # its channel i has the global id first_id + i
    rows_class: np.ndarray  # per output channel, its class of rows equal up to sign (one common scale)
    readers: list[tuple[str, np.ndarray, np.ndarray]] = dataclasses.field(default_factory=list)  # (core, c, i)
    pinned: np.ndarray | None = None  # channels that keep scale 1

    @property
    def op(self) -> o.CoreOp:
        return self.node.op


def _in_index(op: o.CoreOp) -> np.ndarray:
    """For each (output, local input) pair of the weight, the input channel it reads: (O, I/groups)."""
    out_c, in_g = op.weight.shape[:2]
    return (np.arange(out_c) // (out_c // op.groups))[:, None] * in_g + np.arange(in_g)[None, :]


def _col_max(op: o.CoreOp, weight: np.ndarray, n_in: int) -> np.ndarray:
    """Largest |weight| reading each input channel."""
    per = np.abs(weight).reshape(*weight.shape[:2], -1).max(axis=2)  # (O, I/groups)
    out = np.zeros(n_in)
    np.maximum.at(out, _in_index(op).reshape(-1), per.reshape(-1))
    return out


class _Equalizer:
    def __init__(self, graph: Graph) -> None:
        self.g = graph
        self.shapes = infer_shapes(graph)
        self.cores: dict[str, _Core] = {}
        self.owner: list[tuple[str, int]] = []  # global id -> (core, channel)
        self.tainted: set[int] = set()  # channels that keep scale 1
        ids: dict[str, np.ndarray] = {}
        for node in graph:
            ids[node.name] = CHANNEL_RULES[type(node.op)](self, node, [ids[s] for s in node.inputs])
        for out in graph.outputs:
            self.taint(ids[out])
        for i in self.tainted:
            if i >= 0:
                name, ch = self.owner[i]
                self.cores[name].pinned[ch] = True

    def taint(self, ids: np.ndarray) -> None:
        self.tainted.update(int(i) for i in ids.reshape(-1))

    def add_core(self, node: Node) -> np.ndarray:
        op = node.op
        first = len(self.owner)
        self.owner += [(node.name, i) for i in range(op.out_channels)]
        weight = op.weight.astype(np.float64) * (1.0 if op.mask is None else op.mask)
        # rows of a grouped op read different inputs: nothing shared, each keeps its own scale
        classes = shared_rows(weight, op.mask)[2][:, 0].astype(int) if op.groups == 1 else np.arange(len(weight))
        self.cores[node.name] = _Core(node, weight, op.bias.astype(np.float64), first, classes,
                                      pinned=np.zeros(op.out_channels, dtype=bool))
        return np.arange(first, first + op.out_channels)

    def add_reader(self, reader: str, in_ids: np.ndarray) -> None:
        """Record, for every core whose channels `reader` reads, which input channels read which."""
        known = np.flatnonzero(in_ids >= 0)
        by_core: dict[str, list[int]] = {}
        for c in known:
            by_core.setdefault(self.owner[in_ids[c]][0], []).append(int(c))
        for name, cs in by_core.items():
            c = np.asarray(cs)
            self.cores[name].readers.append((reader, c, in_ids[c] - self.cores[name].first_id))

    def equalize(self, core: _Core) -> float:
        """Equalize one core with its readers; returns the largest |log s| applied."""
        if core.op.fixed or not core.readers:
            return 0.0
        r1 = np.abs(core.weight).reshape(core.weight.shape[0], -1).max(axis=1)
        r2 = np.zeros(len(r1))
        for reader, c, i in core.readers:
            b = self.cores[reader]
            np.maximum.at(r2, i, _col_max(b.op, b.weight, self.shapes[b.node.inputs[0]][0])[c])
        n_class = int(core.rows_class.max()) + 1
        r1c, r2c = np.zeros(n_class), np.zeros(n_class)
        np.maximum.at(r1c, core.rows_class, r1)
        np.maximum.at(r2c, core.rows_class, r2)
        pinned = np.zeros(n_class, dtype=bool)
        np.logical_or.at(pinned, core.rows_class, core.pinned)
        ok = ~pinned & (r1c > 0) & (r2c > 0)
        s = np.ones(n_class)
        s[ok] = np.sqrt(r1c[ok] / r2c[ok])
        s = s[core.rows_class]
        core.weight /= s.reshape(-1, 1, 1, 1)
        core.bias /= s
        for reader, c, i in core.readers:
            b = self.cores[reader]
            factor = np.ones(self.shapes[b.node.inputs[0]][0])
            factor[c] = s[i]
            b.weight *= factor[_in_index(b.op)][:, :, None, None]
        return float(np.abs(np.log(s)).max(initial=0.0))

    def run(self, sweeps: int, tolerance: float) -> Graph:
        for _ in range(sweeps):
            moved = max((self.equalize(c) for c in self.cores.values()), default=0.0)
            if moved < tolerance:
                break
        return self.g.replace_nodes(
            Node(n.name, dataclasses.replace(n.op, weight=self.cores[n.name].weight.astype(np.float32),
                                             bias=self.cores[n.name].bias.astype(np.float32))
                 if n.name in self.cores else n.op, n.inputs, n.block)
            for n in self.g
        )


# --- the channel ids of each node's output (one id per channel), by op type ------------------------------


def _input(eq: _Equalizer, node: Node, ins: list[np.ndarray]) -> np.ndarray:
    return np.full(eq.shapes[node.name][0], UNKNOWN)


def _readout(eq: _Equalizer, node: Node, ins: list[np.ndarray]) -> np.ndarray:
    eq.taint(ins[0])  # the host reads these channels
    return np.full(eq.shapes[node.name][0], UNKNOWN)


def _core(eq: _Equalizer, node: Node, ins: list[np.ndarray]) -> np.ndarray:
    op = node.op
    if op.fixed:  # +-1 on one channel's values: the scale passes through
        per_group = op.out_channels // op.groups
        group_ids = ins[0].reshape(op.groups, -1)
        uniform = np.all(group_ids == group_ids[:, :1], axis=1)
        eq.taint(group_ids[~uniform])
        return np.repeat(np.where(uniform, group_ids[:, 0], MIXED), per_group)
    ids = eq.add_core(node)
    eq.add_reader(node.name, ins[0])
    return ids


def route(eq: _Equalizer, node: Node, ins: list[np.ndarray]) -> np.ndarray:
    """A wiring op routes channel ids (`dse.ir.wiring`); a channel it mixes with others, or fills with constants
    that do not scale with it, is MIXED, and the channels it mixed keep scale 1."""
    op, routing = node.op, WIRING[type(node.op)]
    values, mixed = routing.channels(op, ins, [eq.shapes[s] for s in node.inputs], eq.shapes[node.name])
    out = np.where(mixed | (not routing.homogeneous(op)), MIXED, values)
    if np.any(out == MIXED):
        eq.taint(np.concatenate(ins))
    return out


CHANNEL_RULES: dict[type[o.Op], Callable[[_Equalizer, Node, list[np.ndarray]], np.ndarray]] = {
    o.Input: _input,
    o.Readout: _readout,
    o.CoreOp: _core,
    **dict.fromkeys((o.Reshape, o.Slice, o.Gather, o.Concat, o.Pad, o.DepthToSpace, o.SpaceToDepth),
                     route),
}


@register("equalize", exact=True)
def equalize(graph: Graph, hw: HardwareSpec | None = None, *, sweeps: int = 20, tolerance: float = 1e-3) -> Graph:
    """Cross-layer equalization of a float core-op graph (before fitting: whole layers, no partial sums)."""
    return _Equalizer(graph).run(sweeps, tolerance)
