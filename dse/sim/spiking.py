"""Spiking simulator: runs a compiled graph with the real dynamics of IF/LIF neurons over T time steps.

A value travels as a spike train; its code is the spike count over the window (0..T). The host encodes the
input with a deterministic rate code (a code of c spikes is spread evenly over the T steps) or a Poisson one.
Each core integrates, every step, the current ``I_t = conv(s_t, weight_int) + bias_int / T`` (in accumulator
units) into its membrane ``v <- leak * v + I_t``, which starts at half the threshold (so that a constant
current gives the rounded count), fires when ``v >= threshold`` (``threshold = out_scale / weight_scale``)
and is reset by subtracting the threshold or to zero (an `if_floor` membrane is clamped at zero after each
update). Wiring moves trains; the host decodes the output counts
exactly as the integer simulator decodes codes.

Everything is vectorized over batch and time; only the membrane update loops over the T steps. With constant
currents (every input train regular, no negative current arriving after a spike) an IF neuron with reset by
subtraction emits exactly the integer simulator's code; timing, leak and reset to zero make the difference
that tuning then compensates.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from dse.hardware.spec import Neuron
from dse.ir import ops as o
from dse.ir.graph import Graph, Node
from dse.ir.wiring import WIRING, pad_with
from dse.sim.float_exec import FLOAT_EXEC, conv_core

Tensor = torch.Tensor
SPIKE_BATCH = 100  # samples simulated at once: every node's trains of them are held (dse.compile.memory)


def encode(codes: Tensor, timesteps: int, encoding: str = "rate", generator: torch.Generator | None = None
           ) -> Tensor:
    """Spike trains (N, T, ...) for integer codes (N, ...) in 0..T."""
    t = torch.arange(timesteps, dtype=codes.dtype).reshape(1, timesteps, *([1] * (codes.dim() - 1)))
    c = codes.unsqueeze(1)
    if encoding == "rate":  # step t fires when the running count floor((t+1) c / T) steps up
        return (torch.floor((t + 1) * c / timesteps) > torch.floor(t * c / timesteps)).to(codes.dtype)
    rate = (c / timesteps).expand(codes.shape[0], timesteps, *codes.shape[1:])
    return torch.bernoulli(rate, generator=generator).to(codes.dtype)


def integrate(current: Tensor, threshold: Tensor, neuron: Neuron) -> Tensor:
    """Membrane dynamics over axis 1 (time); returns the output trains. `threshold` broadcasts per step.

    Each step: ``v <- decay * v + I_t``; with a floor (`if_floor`) ``v <- max(v, floor)``; fire when
    ``v >= threshold``; reset by subtracting the threshold or to zero. v starts at half the threshold.

    A step is three in-place operations on the whole layer: the comparison writes the step's spikes (0 or 1)
    straight into the trains, and the reset is ``v - threshold * s`` or ``v - v * s`` in one fused
    multiply-add, exact (a product with 0 or 1 does not round). Writing a boolean mask into the trains and
    resetting in two more operations took 1.3 to 4.1 times as long (`tests/sim/test_spiking.py` keeps a
    step-by-step reference).
    """
    v = (threshold / 2).expand_as(current[:, 0]).clone()
    spikes = torch.empty_like(current)
    threshold = threshold.expand_as(v)
    for t in range(current.shape[1]):
        if neuron.decay != 1.0:
            v.mul_(neuron.decay)
        v.add_(current[:, t])
        if neuron.floor is not None:  # an unsigned register: negative current leaves no debt
            v.clamp_(min=neuron.floor)
        fired = torch.ge(v, threshold, out=spikes[:, t])
        v.addcmul_(threshold if neuron.reset == "subtract" else v, fired, value=-1.0)
    return spikes


def core_current(op: o.CoreOp, trains: Tensor, timesteps: int) -> Tensor:
    """Per-step input current (N, T, O, ...) of a core in accumulator units."""
    q = op.quant
    n, steps = trains.shape[:2]
    flat = trains.reshape(n * steps, *trains.shape[2:])
    w = torch.as_tensor(q.weight_int, dtype=trains.dtype)
    acc = conv_core(flat, w, None, op, integral=True)
    acc = acc.reshape(n, steps, *acc.shape[1:])
    bias = torch.as_tensor(q.bias_int / timesteps, dtype=trains.dtype)
    return acc.add_(bias if op.dense else bias.reshape(-1, 1, 1))  # acc is the product's own tensor


def core_threshold(op: o.CoreOp, dtype: torch.dtype) -> Tensor:
    q = op.quant
    th = torch.as_tensor(q.out_scale / q.weight_scale, dtype=dtype)
    return th if op.dense else th.reshape(-1, 1, 1)


def core_trains(op: o.CoreOp, trains: Tensor, neuron: Neuron) -> Tensor:
    return integrate(core_current(op, trains, neuron.timesteps), core_threshold(op, trains.dtype), neuron)


def pad_trains(trains: Tensor, op: o.Pad, step: float, neuron: Neuron) -> Tensor:
    """Pad the spatial axes with the trains of the pad value's code (the host sends them)."""
    steps, c = trains.shape[1:3]
    codes = torch.as_tensor(np.rint(np.broadcast_to(np.asarray(op.value), (c,)) / step), dtype=trains.dtype)
    border = encode(codes.reshape(1, c), neuron.timesteps).reshape(1, steps, c, 1, 1)  # rate code, as the host
    return pad_with(trains, op.padding, border)


def wire(op: o.Op, ins: list[Tensor]) -> Tensor:
    """A wiring op on trains (axis 1 is time): its routing (`dse.ir.wiring`). Spike trains carry no constant:
    a pad of non-zero values is the host's (`pad_trains`)."""
    routing = WIRING[type(op)]
    if not routing.homogeneous(op):
        raise TypeError(f"{type(op).__name__} adds constants: not wiring on spike trains")
    return routing.move(op, ins, 2)


@dataclass
class SpikeStats:
    """Activity on a batch: spikes each core emitted and synaptic events each core received."""

    spikes: dict[str, float] = field(default_factory=dict)
    events: dict[str, float] = field(default_factory=dict)
    neurons: dict[str, int] = field(default_factory=dict)
    samples: int = 0

    def add(self, other: SpikeStats) -> None:
        for k, v in other.spikes.items():
            self.spikes[k] = self.spikes.get(k, 0.0) + v
        for k, v in other.events.items():
            self.events[k] = self.events.get(k, 0.0) + v
        self.neurons.update(other.neurons)
        self.samples += other.samples


def synaptic_events(op: o.CoreOp, counts: Tensor) -> float:
    """Spikes arriving at existing (non-zero) synapses: sum over neurons of sum_i [w_ij != 0] * count_i."""
    live = torch.as_tensor(op.quant.weight_int != 0, dtype=counts.dtype)
    return float(conv_core(counts, live, None, op, integral=True).sum())


@dataclass
class _Batch:
    """What a node's rule sees besides its op and inputs: the chip's neuron, the input encoder's random
    generator, and the batch's activity it adds to."""

    neuron: Neuron
    generator: torch.Generator
    stats: SpikeStats


SpikingRule = Callable[[Node, list[Tensor], list[float], _Batch], tuple[Tensor, float]]
"""A chip op on spike trains: (its node, its inputs' trains (N, T, ...), the value of one spike count of each,
the batch) -> (its trains, the value of one of its counts). The input node is given the real inputs."""


def _input(node: Node, xs: list[Tensor], steps: list[float], batch: _Batch) -> tuple[Tensor, float]:
    op = node.op
    codes = torch.clamp(torch.round(xs[0] / op.scale), 0, op.code_max)
    return encode(codes, batch.neuron.timesteps, batch.neuron.encoding, batch.generator), op.scale


def _core(node: Node, trains: list[Tensor], steps: list[float], batch: _Batch) -> tuple[Tensor, float]:
    name, op = node.name, node.op
    out = core_trains(op, trains[0], batch.neuron)
    batch.stats.spikes[name] = float(out.sum())
    batch.stats.events[name] = synaptic_events(op, trains[0].sum(dim=1))
    batch.stats.neurons[name] = int(np.prod(out.shape[2:]))
    return out, op.quant.out_scale


def _readout(node: Node, trains: list[Tensor], steps: list[float], batch: _Batch) -> tuple[Tensor, float]:
    """The host's decoding (copies summed, pos - neg), step by step."""
    return FLOAT_EXEC[o.Readout](node.op, [trains[0].transpose(1, 2)]).transpose(1, 2), steps[0]


def _pad(node: Node, trains: list[Tensor], steps: list[float], batch: _Batch) -> tuple[Tensor, float]:
    return pad_trains(trains[0], node.op, steps[0], batch.neuron), steps[0]


def route(node: Node, trains: list[Tensor], steps: list[float], batch: _Batch) -> tuple[Tensor, float]:
    """A wiring op moves trains; one step for the whole value is enough to decode it (the first input's)."""
    return wire(node.op, trains), steps[0]


SPIKING_EXEC: dict[type[o.Op], SpikingRule] = {
    o.Input: _input,
    o.CoreOp: _core,
    o.Readout: _readout,
    **dict.fromkeys((o.Reshape, o.Slice, o.Gather, o.Concat, o.DepthToSpace, o.SpaceToDepth), route),
    o.Pad: _pad,  # the host sends the trains of a non-zero pad value
}


def spike_graph(graph: Graph, neuron: Neuron, x: Tensor, generator: torch.Generator, stats: SpikeStats,
                table: Mapping[type[o.Op], SpikingRule] | None = None) -> tuple[dict[str, Tensor], dict[str, float]]:
    """Every node's spike trains (N, T, ...) on the batch of real inputs `x`, and the value of one of its spike
    counts, by the rules of `table` (None: `SPIKING_EXEC`); the activity goes to `stats`. Differentiable where the
    rules are: `run_spiking` runs it without gradients, `dse.tune.network` trains through it."""
    trains: dict[str, Tensor] = {}
    scales: dict[str, float] = {}
    batch = _Batch(neuron, generator, stats)
    for node in graph:
        ins = [trains[s] for s in node.inputs] if node.inputs else [x]
        rule = (table or SPIKING_EXEC).get(type(node.op))
        if rule is None:
            raise TypeError(f"node {node.name!r}: {type(node.op).__name__} is not a chip op")
        trains[node.name], scales[node.name] = rule(node, ins, [scales[s] for s in node.inputs], batch)
    return trains, scales


@torch.no_grad()
def run_spiking(graph: Graph, neuron: Neuron, x: np.ndarray, *, batch_size: int = SPIKE_BATCH, seed: int = 0,
                keep: tuple[str, ...] = (), dtype: torch.dtype = torch.float32,
                table: Mapping[type[o.Op], SpikingRule] | None = None,
                ) -> tuple[np.ndarray, SpikeStats, dict[str, np.ndarray]]:
    """Run `graph` (integer form) on real inputs `x`; return decoded outputs, activity, and kept counts.
    `table`: the rules (None: `SPIKING_EXEC`; `dse.sim.montecarlo` runs N drawn chip instances with its own).

    float32 holds every accumulator exactly (spikes are 0/1 and weights small integers, far below 2**24);
    float64 is there for a test that wants the membrane's fractional part exact too.
    """
    gen = torch.Generator().manual_seed(seed)
    out_name = graph.outputs[0]
    outs, stats, kept = [], SpikeStats(), {k: [] for k in keep}
    for start in range(0, len(x), batch_size):
        xb = torch.as_tensor(np.array(x[start : start + batch_size]), dtype=dtype)
        batch_stats = SpikeStats(samples=len(xb))
        trains, scales = spike_graph(graph, neuron, xb, gen, batch_stats, table)
        outs.append((trains[out_name].sum(dim=1) * scales[out_name]).numpy())
        for k in keep:
            kept[k].append(trains[k].sum(dim=1).numpy())
        stats.add(batch_stats)
    return np.concatenate(outs), stats, {k: np.concatenate(v) for k, v in kept.items()}
