"""`BlockProblem`: one block to tune (its nodes, cores and scales) with the one runner every phase uses, and
`Samples`: what a block is trained on (rows of its inputs, conv patches, or spike trains, with the targets)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import torch

from dse.ir import ops as o
from dse.ir.graph import Node
from dse.sim.float_exec import FLOAT_EXEC
from dse.tune.patches import PatchGeometry, patch_geometry, sample_patches
from dse.tune.qcore import QCore
from dse.tune.scales import wired_scales
from dse.tune.walk import TuneWalk, block_inputs

Tensor = torch.Tensor
V = TypeVar("V")  # what flows between the block's nodes: a tensor of values or codes, or (trains, counts)


@dataclass
class Samples:
    """What a block is trained on: the values of its inputs at sampled rows, and the teacher's output there."""

    # per input of the block: real values (N, C, H, W) or (N, F), rows (N, C * taps) of conv patches (a
    # `PatchRows`: gathered as first read), or spike trains (N, T, ...) as floats
    inputs: dict[str, Tensor]
    target: Tensor  # the teacher's output at the same rows (N, ...)
    taps: int = 1  # columns of a patch row per input channel (kernel height x width; 1: no patches)
    rows: bool = False  # the values are rows (N, F) for a matrix product, not feature maps
    owned: bool = False  # the inputs are the block's own copy (conv patches), which tuning may change in place

    def __len__(self) -> int:
        return self.target.shape[0]


def float_wire(op: o.Op, xs: list[Tensor]) -> Tensor:
    """A wiring node on values (or codes), as the float executor computes it."""
    return FLOAT_EXEC[type(op)](op, xs)


def patch_columns(x: Tensor, start: int, stop: int) -> Tensor:
    """Columns `start:stop` of patch rows (N, F)."""
    return x[:, start:stop]


@dataclass
class BlockProblem:
    """One block (a core-op of the exact graph, or the partial-sum and merge cores a split made of it): its nodes
    in order, its inputs from outside, the cores being trained, and the value of one code per channel of every
    value it reads or computes (known for its inputs; each node's follows from its cores' output steps)."""

    nodes: list[Node]
    ext: list[str]  # the values from outside the block it reads, in the order first read
    shapes: dict[str, tuple[int, ...]]  # every value's shape (batch first)
    scales: dict[str, Tensor]  # value of one code per channel: the inputs', then each node's (`propagate`)
    geometry: PatchGeometry | None  # the kernel geometry when the block is a function of one input patch
    cores: dict[str, QCore] = field(default_factory=dict)

    @classmethod
    def of(cls, walk: TuneWalk, block: list[Node]) -> BlockProblem:
        ext = block_inputs(block)
        return cls(block, ext, walk.shapes, {s: walk.scales[s] for s in ext}, patch_geometry(block, ext))

    @property
    def out_name(self) -> str:
        """The merge core (or the core itself) carries the block's name."""
        return self.nodes[-1].name

    @property
    def out_core(self) -> QCore:
        return self.cores[self.out_name]

    def new_core(self, walk: TuneWalk, node: Node, *, patch: bool = False, tie_above: int | None = None) -> QCore:
        """The node's core in training (see `QCore`), once its input steps are known."""
        hw = walk.hw
        core = self.cores[node.name] = QCore(node.op, self.in_scale(node), walk.out_max[node.name], hw.weight_max,
                                             hw.weights.scale == "per_column", patch=patch, tie_above=tie_above)
        return core

    def in_scale(self, node: Node) -> Tensor:
        return self.scales[node.inputs[0]]

    def propagate(self, node: Node) -> None:
        """The node's scales, from its core's output step or from its inputs' scales through wiring."""
        if isinstance(node.op, o.CoreOp):
            scale = float(self.cores[node.name].scale.detach())
            self.scales[node.name] = torch.full((node.op.out_channels,), scale)
        else:
            self.scales[node.name] = wired_scales(node.op, node.inputs, self.scales, self.shapes)

    def refresh_scales(self) -> None:
        """After the output steps moved: every core's input scales and every node's scales follow."""
        for n in self.nodes:
            if n.name in self.cores:
                self.cores[n.name].in_scale = self.in_scale(n)
            self.propagate(n)

    def run(self, inputs: dict[str, V], taps: int, *, core: Callable[[Node, V], V],
            wire: Callable[[o.Op, list[V]], V], columns: Callable[[V, int, int], V] = patch_columns,
            after: Callable[[Node], None] | None = None) -> dict[str, V]:
        """Run the block on `inputs` (the values of its inputs at a selection of rows): `core(node, x)` computes
        a core, `wire(op, xs)` a wiring node, `columns(x, a, b)` a channel slice of patch rows of `taps`
        columns per channel; `after(node)` is called after each node. Returns every node's value."""
        v = dict(inputs)
        for n in self.nodes:
            if isinstance(n.op, o.CoreOp):
                v[n.name] = core(n, v[n.inputs[0]])
            elif taps > 1 and isinstance(n.op, o.Slice) and n.inputs[0] == self.ext[0]:
                v[n.name] = columns(v[n.inputs[0]], n.op.start * taps, n.op.stop * taps)
            else:
                v[n.name] = wire(n.op, [v[s] for s in n.inputs])
            if after is not None:
                after(n)
        return v

    def step_rows(self, rows: bool, nominal: int, least: int, step_macs: int, factor: int = 1) -> int:
        """Rows per training step: `nominal`, fewer for a big block, so that a step's forward work stays within
        `step_macs` multiply-adds (a row costs `factor` times its cores' weights, times the positions of a
        feature map unless the values are `rows`), but at least `least`. An ImageNet-size block costs millions
        of multiply-adds per row."""
        per_row = factor * sum(c.weight.numel() * (1 if rows or c.op.dense else int(np.prod(self.shapes[name][1:])))
                               for name, c in self.cores.items())
        return int(min(max(step_macs // max(per_row, 1), least), nominal))


def value_samples(walk: TuneWalk, problem: BlockProblem, gen: torch.Generator) -> Samples:
    """The block's rows on the committed values, in random order: patches at random (image, position) pairs when
    the block is a function of one input patch (`tuning.max_rows` of them), else every calibration sample (in
    the order of the data set's fixed random permutation, dse/data/datasets.py)."""
    target = walk.teacher(problem.out_name)
    if problem.geometry is None:
        return Samples({s: walk.acts[s] for s in problem.ext}, target)
    x, target, taps = sample_patches(walk.acts[problem.ext[0]], target, problem.geometry, walk.options.max_rows, gen)
    return Samples({problem.ext[0]: x}, target, taps, rows=True, owned=not problem.geometry.dense)
