"""Bias correction of rounded weights (`QCore.correct_bias`) over the calibration values each core reads."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from dse.ir import ops as o
from dse.ir.graph import Node
from dse.sim.float_exec import FLOAT_EXEC
from dse.tune.block import BlockProblem
from dse.tune.walk import TuneWalk

Tensor = torch.Tensor


def in_chunks(x: Tensor, images: int) -> Iterator[Tensor]:
    """`x` a few images (`images`) at a time."""
    return (x[lo : lo + images] for lo in range(0, len(x), images))


def core_inputs(walk: TuneWalk, block: list[Node]) -> Callable[[Node], Callable[[], Iterator[Tensor]] | None]:
    """For `correct_bias`: per core of a block, the calibration values it reads, `tuning.bias_correction_images`
    at a time: committed values, carried through the block's wiring; None behind another core of the block (a
    merge), whose input is not known before that core is final."""
    inside = {n.name: n for n in block}

    def source(name: str) -> str | None:
        """A committed value the node's value is wired from, or None when a core of the block is on the way."""
        node = inside.get(name)
        if node is None:
            return name
        if isinstance(node.op, o.CoreOp):
            return None
        found = [source(s) for s in node.inputs]
        return None if any(f is None for f in found) else found[0]

    def value(name: str, lo: int, hi: int) -> Tensor:
        node = inside.get(name)
        if node is None:
            return walk.acts[name][lo:hi]
        return FLOAT_EXEC[type(node.op)](node.op, [value(s, lo, hi) for s in node.inputs])

    def inputs(node: Node) -> Callable[[], Iterator[Tensor]] | None:
        src = source(node.inputs[0])
        if src is None:
            return None
        n, step = len(walk.acts[src]), walk.options.bias_correction_images
        return lambda: (value(node.inputs[0], lo, lo + step) for lo in range(0, n, step))

    return inputs


def correct_biases(walk: TuneWalk, problem: BlockProblem) -> None:
    """Bias correction of every core whose input is known (the cores that read the block's inputs)."""
    inputs = core_inputs(walk, problem.nodes)
    for n in problem.nodes:
        x = inputs(n) if n.name in problem.cores else None
        if x is not None:
            problem.cores[n.name].correct_bias(x())
    for c in problem.cores.values():
        c.target = None
