"""Layer-wise tuning of a graph's core-ops into integer form (DESIGN.md section 3, step 5).

The core-ops are visited block by block in topological order (a block is a core-op of the exact graph, or the
partial-sum and merge cores a split made of it). Each block is trained so that its output matches the
original network's activation at the same point (the *teacher*), while its input is what the already
transformed upstream really produces, so upstream error is compensated downstream. Weight precision is reached
in phases:

1. free tuning: float weights, the chip's activation quantization (codes of the edge's bits) with a
   straight-through estimator; output steps learned (LSQ);
2. value-range tuning: the weights move to code space (they act on input codes), a weight step is chosen per
   column or per crossbar by least squares, weights are clipped to the integer range and tuned within it;
3. rounding tuning: the weights closest to the integer grid are rounded and frozen, the rest tuned, in rounds,
   until every weight is an integer code.

On a spiking chip a fourth phase tunes on the real dynamics (dse/tune/spiking.py). `mode="none"` is the naive
baseline: round to nearest with max-abs weight steps and max activation steps, no training (dse/tune/baseline.py).

This module is the driver: `tune_graph` walks the graph (`TuneWalk`, dse/tune/walk.py), and `tune_block` makes
each block a `BlockProblem` (dse/tune/block.py) and runs the phases on it (dse/tune/phases.py); the settings are
`TuneOptions` (dse/tune/options.py), a core in training a `QCore` (dse/tune/qcore.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch

from dse.errors import ConfigError
from dse.hardware.spec import HardwareSpec
from dse.ir import ops as o
from dse.ir.graph import Graph, Node
from dse.ir.shapes import infer_shapes
from dse.sim import spiking
from dse.sim.float_exec import FLOAT_EXEC, decode_population
from dse.tune import network, noise
from dse.tune.baseline import round_block, round_block_spiking
from dse.tune.block import BlockProblem, value_samples
from dse.tune.losses import BlockReport, relative_mse
from dse.tune.options import TuneOptions
from dse.tune.phases import Fit, create_cores, set_up, train_block
from dse.tune.qcore import fixed_core
from dse.tune.scales import wired_scales
from dse.tune.spiking import spike_phase
from dse.tune.walk import CHUNK_FLOATS, TuneWalk, core_code_max

log = logging.getLogger(__name__)
Tensor = torch.Tensor


def check_quantizable(hw: HardwareSpec) -> None:
    bits = (hw.weights.bits, hw.io.input_bits, hw.io.output_bits)
    if hw.spiking:  # values travel as spike counts: the I/O bits play no part
        if hw.weights.bits is None:
            raise ConfigError("hardware.weights.bits must be set for a spiking chip")
        return
    if any(b is None for b in bits) and not all(b is None for b in bits):
        raise ConfigError(
            "hardware.weights.bits, hardware.io.input_bits and hardware.io.output_bits must be all set or all null"
        )


def tune_graph(
    graph: Graph,
    hw: HardwareSpec,
    calib_x: Tensor,
    teacher: Callable[[str], Tensor],
    options: TuneOptions,
    *,
    value_range: tuple[float, float] = (0.0, 1.0),
    reports: list[BlockReport] | None = None,
    progress: Callable[[str], None] | None = None,
    chunk_floats: int = CHUNK_FLOATS,
) -> Graph:
    """Return `graph` with every core-op in integer form, the input encoded, for chip `hw`.

    `teacher(name)` returns the exact graph's activation of core-op `name` on `calib_x`. A block runs over the
    calibration data (and its training rows are gathered) a few images at a time, holding about
    `chunk_floats` values at once (the result does not depend on it).
    """
    check_quantizable(hw)
    if not hw.quantized:
        return graph  # an unconstrained chip computes the float graph itself
    if hw.spiking and len(calib_x) > options.spike_calib_samples:
        n = options.spike_calib_samples  # every layer's spike trains are simulated: fewer images, same method
        calib_x, full_teacher = calib_x[:n], teacher
        teacher = lambda name: full_teacher(name)[:n]  # noqa: E731
    torch.manual_seed(options.seed)
    walk = TuneWalk(graph, hw, options, teacher, reports, infer_shapes(graph), core_code_max(graph, hw),
                    chunk_floats)
    last_use = {src: i for i, n in enumerate(graph) for src in n.inputs}
    done_blocks: set[str] = set()
    lo, hi = value_range
    if lo < 0:
        raise ConfigError(f"the input range starts below 0 ({lo}); chip inputs are unsigned codes")
    in_step = (hi - lo) / hw.input_code_max if hi > 0 else 1.0
    for i, node in enumerate(graph):
        if node.block_name in done_blocks:
            pass  # committed with its block
        elif isinstance(node.op, o.Input):
            in_step /= node.op.population  # a population spreads the range over its copies at a finer step
            _commit_input(walk, node, calib_x, in_step)
        elif isinstance(node.op, o.CoreOp):
            done_blocks.add(node.block_name)
            if progress:
                progress(node.block_name)
            tune_block(walk, [n for n in graph if n.block_name == node.block_name])
        else:
            _commit_wiring(walk, node)
        for src in node.inputs:  # free calibration activations no later node reads
            if last_use.get(src, -1) <= i:
                walk.forget(src)
    tuned = graph.replace_nodes(Node(n.name, walk.new_ops[n.name], n.inputs, n.block) for n in graph)
    if network.wanted(hw, options):
        if progress:
            progress("network (end to end)")
        tuned = network.tune_network(tuned, hw, calib_x, teacher(graph.outputs[0]), options, reports)
    return tuned


def _commit_input(walk: TuneWalk, node: Node, calib_x: Tensor, in_step: float) -> None:
    """The input encoded in codes of step `in_step` (on a spiking chip, also as spike trains)."""
    op, hw = node.op, walk.hw
    new = o.Input(op.shape, in_step, hw.input_code_max, op.population)
    walk.new_ops[node.name] = new
    walk.acts[node.name] = FLOAT_EXEC[o.Input](new, [calib_x])
    walk.scales[node.name] = torch.full((op.shape[0] * op.population,), in_step)
    if walk.spiking:
        codes = torch.round(walk.acts[node.name] / in_step)
        walk.trains[node.name] = spiking.encode(codes, hw.neuron.timesteps, hw.neuron.encoding,
                                                torch.Generator().manual_seed(walk.options.seed)).bool()


def _commit_wiring(walk: TuneWalk, node: Node) -> None:
    """Wiring outside the blocks (a pad of the host, a readout), with its scales."""
    op = node.op
    if isinstance(op, o.Pad):  # the host pads with the code nearest to the normalized zero
        in_max = walk.hw.input_code_max
        src = node.inputs[0]
        while isinstance(walk.new_ops[src], o.Reshape):  # a 1-D signal's image: the input, one channel axis kept
            src = walk.graph[src].inputs[0]
        k = walk.new_ops[src].population if isinstance(walk.new_ops[src], o.Input) else 1
        scale = walk.scales[node.inputs[0]].numpy()
        channels = len(scale) // k
        codes = np.clip(np.rint(np.broadcast_to(np.asarray(op.value), (channels,)) / scale[:channels]),
                        0, in_max * k)
        codes = np.concatenate([np.clip(codes - i * in_max, 0, in_max) for i in range(k)])  # copies
        op = o.Pad(op.padding, tuple(float(v) for v in codes * scale))
    walk.commit(node, op)
    if not isinstance(op, o.Readout):
        walk.scales[node.name] = wired_scales(op, node.inputs, walk.scales, walk.shapes)


def tune_block(walk: TuneWalk, block: list[Node]) -> None:
    """Tune one block into integer form (a max-pooling core is exact; `tuning.mode=none` rounds) and commit it."""
    problem = BlockProblem.of(walk, block)
    if len(block) == 1 and block[0].op.fixed:
        n = block[0]
        walk.commit(n, fixed_core(n.op, problem.in_scale(n), walk.out_max[n.name]))
        walk.scales[n.name] = torch.full((n.op.out_channels,), walk.new_ops[n.name].quant.out_scale)
    elif walk.options.mode == "none":
        (round_block_spiking if walk.spiking else round_block)(walk, problem)
        for n in block:
            walk.scales[n.name] = problem.scales[n.name]
        if walk.reports is not None:
            walk.reports.append(BlockReport(problem.out_name, len(problem.cores)))
    else:
        _commit(walk, _multiphase(walk, problem))


def _multiphase(walk: TuneWalk, problem: BlockProblem) -> Fit:
    """The phases, in order, on the block's training rows; on a spiking chip, then on the real dynamics."""
    options = walk.options
    gen = torch.Generator().manual_seed(options.seed)
    samples = value_samples(walk, problem, gen)
    create_cores(walk, problem, samples)
    if options.noise_aware and not walk.hw.device.is_ideal:
        noise.attach(problem.cores.values(), walk.hw, options.seed, problem.out_name, options.noise_checks)
    fit = set_up(walk, problem, samples)
    rate_loss = train_block(fit, walk)
    for c in problem.cores.values():
        c.weight.requires_grad_(True)
    if walk.spiking and options.spike_steps > 0:
        spike_phase(walk, problem, fit.report, fit.loss, rate_loss)
        problem.refresh_scales()  # thresholds moved: scales inside the block follow
    return fit


def _commit(walk: TuneWalk, fit: Fit) -> None:
    """The integer ops, and their outputs on the calibration set, exactly as the chip computes them."""
    problem, report = fit.problem, fit.report
    block, cores, out_name = problem.nodes, problem.cores, problem.out_name
    walk.commit_block(block, {n.name: cores[n.name].quantized(n.name) if isinstance(n.op, o.CoreOp) else n.op
                              for n in block})
    for n in block:
        walk.scales[n.name] = problem.scales[n.name]
    with torch.no_grad():
        got = decode_population(walk.acts[out_name], problem.out_core.k)
        report.losses["final"] = relative_mse(got, walk.teacher(out_name), walk.chunk_floats)
    if walk.reports is not None:
        walk.reports.append(report)
    log.info("tuned block %s (%d cores, %d rows per step%s): %s, steps %s", out_name, len(cores), fit.batch,
             "" if fit.weights_train else ", weights rounded (too few calibration values to train them)",
             {k: round(v, 4) for k, v in report.losses.items()}, report.steps)
