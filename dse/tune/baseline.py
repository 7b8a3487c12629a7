"""`tuning.mode=none`, the naive baseline: round to nearest with max-abs weight steps and each core's output step
from its largest output, no training (bias correction when `tuning.bias_correction`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from dse.ir import ops as o
from dse.ir.graph import Node
from dse.sim.float_exec import core_output
from dse.tune.bias_correction import core_inputs, in_chunks
from dse.tune.block import BlockProblem
from dse.tune.walk import TuneWalk

Tensor = torch.Tensor


def round_block(walk: TuneWalk, problem: BlockProblem) -> None:
    """The baseline, level by level: a core's weights are rounded as soon as its input steps are known, its
    integer accumulator (which does not depend on its own step) gives its largest output, hence its step.
    A split costs one pass over the calibration data per level of cores (partial sums, then the merge), and
    the last level's accumulators give the block's output without another pass."""
    block, cores = problem.nodes, problem.cores
    level = _levels(block)
    ops: dict[str, o.Op] = {n.name: n.op for n in block}
    for n in block:
        if level[n.name] == 0:
            problem.propagate(n)
    last = max(level.values())
    read_after = walk.read_after(block)
    accs: dict[str, Tensor] = {}
    reuse = False
    inputs = core_inputs(walk, block)
    for lvl in range(1, last + 1):
        now = [n for n in block if isinstance(n.op, o.CoreOp) and level[n.name] == lvl]
        peaks = {n.name: _round_core(walk, problem, n, inputs, ops) for n in now}
        # the last level keeps its accumulators when they are all the block hands on (and no copy's bias
        # depends on the step, as a population's does)
        reuse = lvl == last and read_after <= set(peaks) and all(cores[n].k == 1 for n in peaks)
        upstream = {m.name for n in now for m in _ancestors(block, n)}
        needed = [n for n in block if n.name in upstream]
        kept, tops = walk.run_block(needed, ops, read_after if reuse else set(), peaks=peaks)
        accs.update(kept)
        for n in now:
            cores[n.name].set_step(max(tops[n.name], 0.0))
            ops[n.name] = cores[n.name].quantized(n.name)
        for n in block:
            if level[n.name] == lvl:
                problem.propagate(n)
    if reuse:
        for n in block:
            walk.new_ops[n.name] = ops[n.name]
        for name, acc in accs.items():
            walk.acts[name] = core_output(ops[name], acc)
    else:
        walk.commit_block(block, ops)


def _round_core(walk: TuneWalk, problem: BlockProblem, node: Node,
                inputs: Callable[[Node], Callable[[], Iterator[Tensor]] | None],
                ops: dict[str, o.Op]) -> Callable[[Tensor], Tensor]:
    """Round the node's core (its biases corrected where its input is known), with a provisional step: the
    accumulator does not depend on it. Returns its largest output as a function of its accumulator."""
    core = problem.new_core(walk, node, tie_above=0)
    x = inputs(node) if walk.options.bias_correction else None
    core.round_weights(keep_target=x is not None)
    if x is not None:
        core.correct_bias(x())
    core.set_step(1.0)
    ops[node.name] = core.quantized(node.name)
    base = core.op.out_channels  # one copy of a population code
    ws = core.ws[:base].reshape(-1, *([1] * (len(walk.shapes[node.name]) - 1)))
    return lambda acc: (acc[:, :base] * ws).max()


def round_block_spiking(walk: TuneWalk, problem: BlockProblem) -> None:
    """The baseline on a spiking chip, node by node: each node's input spike counts are committed first."""
    options = walk.options
    for n in problem.nodes:
        if isinstance(n.op, o.CoreOp):
            core = problem.new_core(walk, n, tie_above=0)
            x = walk.acts[n.inputs[0]]
            with torch.no_grad():  # the baseline: the step from the float output's max, weights rounded
                top = float(torch.relu(core.pre(x)).max())
                core.round_weights(keep_target=options.bias_correction)
                if options.bias_correction:
                    core.correct_bias(in_chunks(x, options.bias_correction_images))
                core.set_step(top)
            walk.commit(n, core.quantized(n.name))
        else:
            walk.commit(n, n.op)
        problem.propagate(n)


def _levels(block: list[Node]) -> dict[str, int]:
    """Cores on the longest path inside the block up to each node (0: wiring on the block's inputs)."""
    level: dict[str, int] = {}
    for n in block:
        up = max((level[s] for s in n.inputs if s in level), default=0)
        level[n.name] = up + isinstance(n.op, o.CoreOp)
    return level


def _ancestors(block: list[Node], node: Node) -> list[Node]:
    """The nodes of `block` that `node` depends on, and `node`, in block order."""
    inside = {n.name: n for n in block}
    needed, todo = set(), [node.name]
    while todo:
        name = todo.pop()
        if name in inside and name not in needed:
            needed.add(name)
            todo.extend(inside[name].inputs)
    return [n for n in block if n.name in needed]
