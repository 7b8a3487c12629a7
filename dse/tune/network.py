"""Noise-aware tuning of a spiking network end to end (`tuning.network_steps`; with `tuning.noise_aware`, on a
spiking chip whose device is not ideal).

Block by block, tuning fits each block to the teacher's values. The errors a drawn spiking chip makes, each
neuron's threshold mismatch and each synapse's weight error, are independent per neuron and per chip: a
block-wise regression can at best average them, and measured, noise-aware block tuning did not reduce
lenet_mnist's loss on chip_b at 10 % threshold mismatch (docs/device.md). What can is the network as a whole,
its later layers made to bear what its earlier ones get wrong. After the walk has committed every block, this
phase runs the whole compiled network on the calibration images with the real dynamics, each image on a chip
of its own (every neuron's threshold times a drawn ``1 + e``; the weights as one drawn chip holds them, a fresh
chip every step), and moves the integer weights and the biases (rounded forward, straight through backward; the
spikes are the real ones, the gradient that of the neuron's model, as in `dse.tune.spiking`) so that the
network's class probabilities at temperature `tuning.network_temperature` match the teacher's (distillation,
Hinton et al. 2015: a high temperature weighs the whole ranking of the logits, which a drawn chip perturbs, not
only the top one). The first `tuning.network_held` images are held out and measured on `tuning.noise_checks`
chips drawn once; they decide when the phase stops (the patience rule, `dse/tune/stopping.py`) and which
parameters are kept, the start included.

Measured on lenet_mnist, chip_b, 10 % threshold mismatch, 20 drawn chips: docs/device.md.
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass

import numpy as np
import torch

from dse.hardware.spec import HardwareSpec
from dse.ir import ops as o
from dse.ir.graph import Graph, Node
from dse.ir.shapes import infer_shapes
from dse.sim.device_noise import CellLayout
from dse.sim.float_exec import conv_core
from dse.sim.spiking import SPIKING_EXEC, SpikeStats, SpikingRule, integrate, spike_graph
from dse.tune.adam import Adam
from dse.tune.losses import BlockReport, host_loss
from dse.tune.noise import cell_error, streams
from dse.tune.options import TuneOptions
from dse.tune.quantizers import round_clamp_ste, round_ste
from dse.tune.spiking import exact_model, running_max_counts
from dse.tune.stopping import Patience, copy_params, load_params, train_until_done

Tensor = torch.Tensor
HELD_FLOATS = 2**27  # values (over the T steps) of the held-out images run at once: more are run in chunks


@dataclass
class _Core:
    """A core's trained parameters: integer weights and bias (accumulator units) as floats."""

    weight: Tensor
    bias: Tensor
    mask: Tensor | None
    threshold: Tensor  # the neurons' threshold (accumulator units), per output channel, shaped for the output


class _Chip:
    """The draws of one step or one held-out check: each image's neurons' thresholds, one chip's weight errors."""

    def __init__(self, hw: HardwareSpec, key: list[int]) -> None:
        self.device, self.layout = hw.device, CellLayout.of(hw)
        self.rng, self.gen = streams(key)

    def weights(self, w: Tensor, wmax: int) -> Tensor:
        """`w` (rounded) plus the error one drawn chip makes on it, with one read's noise (straight through: a
        constant)."""
        with torch.no_grad():
            w_int = torch.clamp(torch.round(w), -wmax, wmax).to(torch.int64).numpy()
            error = cell_error(w_int, self.layout, self.device, self.rng, self.gen).to(w.dtype)
        return w + error

    def thresholds(self, threshold: Tensor, shape: tuple[int, ...]) -> Tensor:
        """Per image and neuron: the threshold times its mismatch (`shape`: images, channels, ...)."""
        mismatch = self.device.threshold_mismatch
        if not mismatch:
            return threshold
        return threshold * (1.0 + mismatch * torch.randn(shape, generator=self.gen))


def _core_rule(hw: HardwareSpec, cores: dict[str, _Core], chip: _Chip | None) -> SpikingRule:
    """`SPIKING_EXEC`'s core rule with the cores' trained parameters (and a drawn chip's errors): the real spikes
    forward; backward the gradient of the neuron's model (`dse.tune.spiking`), spread evenly over the time steps
    of the output trains (the next core's current sums them)."""

    def rule(node: Node, ins: list[Tensor], in_steps: list[float], batch: object) -> tuple[Tensor, float]:
        op, core, neuron = node.op, cores[node.name], hw.neuron
        steps, wmax = neuron.timesteps, hw.weight_max
        w = round_clamp_ste(core.weight, -wmax, wmax) if core.weight.requires_grad else core.weight
        if chip is not None:
            w = chip.weights(w, wmax)
        if core.mask is not None:
            w = w * core.mask
        bias = round_ste(core.bias) if core.bias.requires_grad else core.bias
        bias = bias if op.dense else bias.reshape(-1, 1, 1)
        trains = ins[0]
        b = trains.shape[0]
        acc = conv_core(trains.reshape(b * steps, *trains.shape[2:]), w, None, op)
        current = acc.reshape(b, steps, *acc.shape[1:]) + bias / steps
        threshold = core.threshold if chip is None else chip.thresholds(core.threshold, (b, *acc.shape[1:]))
        if exact_model(neuron):
            model = running_max_counts(current, threshold, op.quant.out_max)
        else:  # the ReLU model of the count on the current summed over the window
            model = round_clamp_ste(torch.relu(current.sum(dim=1)) / threshold, 0, op.quant.out_max)
        with torch.no_grad():
            spikes = integrate(current.detach(), threshold, neuron)
        return spikes + ((model - model.detach()) / steps).unsqueeze(1), op.quant.out_scale

    return rule


def _forward(graph: Graph, x: Tensor, hw: HardwareSpec, cores: dict[str, _Core], chip: _Chip | None) -> Tensor:
    """The network's output values (spike counts times their step) on images `x`: the spiking simulator
    (`spike_graph`, every other op by its `SPIKING_EXEC` rule), its cores with their trained parameters."""
    table = {**SPIKING_EXEC, o.CoreOp: _core_rule(hw, cores, chip)}
    trains, steps = spike_graph(graph, hw.neuron, x, torch.Generator().manual_seed(0), SpikeStats(), table)
    out = graph.outputs[0]
    return trains[out].sum(dim=1) * steps[out]


def _cores(graph: Graph, shapes: dict[str, tuple[int, ...]]) -> dict[str, _Core]:
    cores = {}
    for node in graph.of_type(o.CoreOp):
        op, q = node.op, node.op.quant
        threshold = torch.as_tensor(q.out_scale / q.weight_scale, dtype=torch.float32)
        cores[node.name] = _Core(
            torch.tensor(np.asarray(q.weight_int, dtype=np.float32), requires_grad=not op.fixed),
            torch.tensor(np.asarray(q.bias_int, dtype=np.float32), requires_grad=not op.fixed),
            None if op.mask is None else torch.as_tensor(op.mask, dtype=torch.float32),
            threshold if op.dense else threshold.reshape(-1, *([1] * (len(shapes[node.name]) - 1))))
    return cores


def _installed(graph: Graph, cores: dict[str, _Core], wmax: int) -> Graph:
    """`graph` with the cores' weights and biases as trained, rounded (and clipped) to integers."""
    def node_of(n: Node) -> Node:
        if n.name not in cores or n.op.fixed:
            return n
        q, core = n.op.quant, cores[n.name]
        weight = torch.clamp(torch.round(core.weight.detach()), -wmax, wmax).numpy()
        if core.mask is not None:
            weight = weight * core.mask.numpy()
        quant = dataclasses.replace(q, weight_int=weight.astype(q.weight_int.dtype),
                                    bias_int=torch.round(core.bias.detach()).numpy().astype(q.bias_int.dtype))
        return Node(n.name, dataclasses.replace(n.op, quant=quant), n.inputs, n.block)

    return graph.replace_nodes(node_of(n) for n in graph)


def wanted(hw: HardwareSpec, options: TuneOptions) -> bool:
    """Whether tuning ends with this phase: noise-aware tuning, on a spiking chip, with a device that is not ideal,
    and steps to run."""
    return (hw.spiking and options.mode == "multiphase" and options.noise_aware and not hw.device.is_ideal
            and options.network_steps > 0)


def tune_network(graph: Graph, hw: HardwareSpec, x: Tensor, target: Tensor, options: TuneOptions,
                 reports: list[BlockReport] | None = None) -> Graph:
    """`graph` (integer, committed by the walk) tuned end to end on the calibration images `x` against the
    teacher's outputs `target`, each image on a drawn chip (see the module docstring)."""
    shapes = infer_shapes(graph)
    cores = _cores(graph, shapes)
    trained = [c for c in cores.values() if c.weight.requires_grad]
    n = len(x)
    held = min(options.network_held, n // 2)
    batch = max(1, min(options.network_batch, n - held))
    key = [options.seed, zlib.crc32(b"network")]
    report = BlockReport("network", len(cores))

    loss_of = host_loss(target, options.output_loss, temperature=options.network_temperature)
    per_image = hw.neuron.timesteps * sum(int(np.prod(s)) for s in shapes.values())
    chunk = max(1, HELD_FLOATS // per_image)  # held-out images run at once (every value over the T steps)

    def measured() -> float:
        total = 0.0
        with torch.no_grad():
            for i in range(options.noise_checks):
                chip = _Chip(hw, [*key, 1, i])
                for lo in range(0, held, chunk):
                    hi = min(held, lo + chunk)
                    total += float(loss_of(_forward(graph, x[lo:hi], hw, cores, chip), target[lo:hi])) * (hi - lo)
        return total / (options.noise_checks * held)

    gen = torch.Generator().manual_seed(int(np.random.default_rng([*key, 2]).integers(2**62)))
    count = [0]

    def step() -> None:
        count[0] += 1
        rows = held + torch.randint(0, n - held, (batch,), generator=gen)
        chip = _Chip(hw, [*key, 0, count[0]])
        loss = loss_of(_forward(graph, x[rows], hw, cores, chip), target[rows])
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            for c in trained:
                c.weight.clamp_(-hw.weight_max, hw.weight_max)

    start = report.losses["network_start"] = measured()
    opt = Adam([{"params": [c.weight for c in trained], "lr": options.grid_lr},
                {"params": [c.bias for c in trained], "lr": options.network_bias_lr}])
    rule = Patience(options.patience, options.min_improvement, start, start)
    params = [p for c in cores.values() for p in (c.weight, c.bias)]
    report.steps["network"] = train_until_done(rule, options.network_steps, options.network_check_steps, step,
                                               measured, lambda: copy_params(params),
                                               lambda saved: load_params(params, saved))
    report.losses["network"] = rule.lowest
    if reports is not None:
        reports.append(report)
    return _installed(graph, cores, hw.weight_max)
