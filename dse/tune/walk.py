"""`TuneWalk`: the walk over the graph in topological order, block by block, and what it has committed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from dse.hardware.legality import feeds_core
from dse.hardware.spec import HardwareSpec
from dse.ir import ops as o
from dse.ir.graph import Graph, Node
from dse.sim import spiking
from dse.sim.float_exec import FLOAT_EXEC, core_accumulator
from dse.tune.losses import BlockReport
from dse.tune.options import TuneOptions
from dse.tune.qcore import fixed_output

Tensor = torch.Tensor
CHUNK_FLOATS = 2**25  # values of one block's nodes held at once while it runs on the calibration data (128 MB)


def block_inputs(block: list[Node]) -> list[str]:
    """The values from outside `block` that its nodes read, in the order they are first read."""
    names = {n.name for n in block}
    return list(dict.fromkeys(s for n in block for s in n.inputs if s not in names))


def core_code_max(graph: Graph, hw: HardwareSpec) -> dict[str, int]:
    """Largest output code of each core: an edge to another core must fit both ADC and DAC."""
    feeds = feeds_core(graph)
    return {n.name: hw.code_max(to_core=feeds[n.name]) for n in graph if isinstance(n.op, o.CoreOp)}


@dataclass
class TuneWalk:
    """State of the walk over the graph, block by block: what the chip computes so far on the calibration data
    (the committed ops, their values, spike trains and scales), which the next block is tuned on."""

    graph: Graph
    hw: HardwareSpec
    options: TuneOptions
    teacher: Callable[[str], Tensor]
    reports: list[BlockReport] | None
    shapes: dict[str, tuple[int, ...]]
    out_max: dict[str, int]
    chunk_floats: int  # values of a block's nodes held at once while it runs on the calibration data
    acts: dict[str, Tensor] = field(default_factory=dict)  # real values (code x scale)
    trains: dict[str, Tensor] = field(default_factory=dict)  # spiking chips: bool spike trains (N, T, ...)
    scales: dict[str, Tensor] = field(default_factory=dict)  # value of one code, per channel
    new_ops: dict[str, o.Op] = field(default_factory=dict)

    @property
    def spiking(self) -> bool:
        return self.hw.spiking

    def commit(self, node: Node, op: o.Op) -> None:
        """Record the node's final op and what it computes on the calibration data (on a spiking chip: by
        running the real dynamics, so the next block sees the real spike counts)."""
        self.new_ops[node.name] = op
        if isinstance(op, o.Readout):
            return
        ins = [self.acts[s] for s in node.inputs]
        if not self.spiking:  # a core (a max-pooling one) a chunk of images at a time, as a block
            self.acts[node.name] = (self.run_block([node], {node.name: op}, {node.name})[0][node.name]
                                    if isinstance(op, o.CoreOp) else FLOAT_EXEC[type(op)](op, ins))
            return
        neuron = self.hw.neuron
        if isinstance(op, o.CoreOp):
            self.trains[node.name], counts = self.core_trains(op, self.trains[node.inputs[0]])
            self.acts[node.name] = counts * op.quant.out_scale
        elif isinstance(op, o.Pad):
            step = float(self.scales[node.inputs[0]][0])
            self.trains[node.name] = spiking.pad_trains(self.trains[node.inputs[0]].float(), op, step, neuron).bool()
            self.acts[node.name] = FLOAT_EXEC[type(op)](op, ins)
        else:
            self.trains[node.name] = spiking.wire(op, [self.trains[s] for s in node.inputs])
            self.acts[node.name] = FLOAT_EXEC[type(op)](op, ins)

    def core_trains(self, op: o.CoreOp, src: Tensor) -> tuple[Tensor, Tensor]:
        """A core's spike trains (bool, N x T x ...) and spike counts (float32) on the calibration data, from
        its input trains, `spike_chunk_images` images at a time. Both are written in place (joining chunks
        would hold them twice) and the counts summed over each chunk's float trains (summing the bool trains
        costs five times as much)."""
        at_once = self.options.spike_chunk_images
        trains = counts = None
        for lo in range(0, len(src), at_once):
            out = spiking.core_trains(op, src[lo : lo + at_once].float(), self.hw.neuron)
            if trains is None:
                trains = torch.empty((len(src), *out.shape[1:]), dtype=torch.bool)
                counts = torch.empty((len(src), *out.shape[2:]), dtype=out.dtype)
            trains[lo : lo + at_once] = out
            counts[lo : lo + at_once] = out.sum(dim=1)
        return trains, counts

    def forget(self, name: str) -> None:
        self.acts.pop(name, None)
        self.trains.pop(name, None)

    def run_block(self, block: list[Node], ops: dict[str, o.Op], keep: set[str] = frozenset(), *,
                  peaks: dict[str, Callable[[Tensor], Tensor]] | None = None
                  ) -> tuple[dict[str, Tensor], dict[str, float]]:
        """Run `block` with `ops` on the calibration values of its inputs, a few images at a time; return the
        values of the nodes in `keep`, and for each core in `peaks` the largest value its function takes of
        the core's integer accumulator (`core_accumulator`: those cores' outputs are their accumulators).

        A block's internal values (partial sums, their concatenation and routing) are several times its
        output: for 32 images of 224x224 they do not fit at once, a few images at a time they do.
        """
        peaks = peaks or {}
        ext = block_inputs(block)
        per_image = sum(int(np.prod(self.shapes[n.name])) for n in block)
        n_images = len(self.acts[ext[0]])
        chunk = max(1, min(n_images, self.chunk_floats // max(per_image, 1)))
        out: dict[str, Tensor] = {}
        top = dict.fromkeys(peaks, -np.inf)
        for lo in range(0, n_images, chunk):
            v = {s: self.acts[s][lo : lo + chunk] for s in ext}
            for n in block:
                op, ins = ops[n.name], [v[s] for s in n.inputs]
                v[n.name] = (core_accumulator(op, ins[0]) if n.name in peaks
                             else fixed_output(op, ins[0]) if getattr(op, "fixed", False) and op.quant is not None
                             else FLOAT_EXEC[type(op)](op, ins))
            for k in keep:  # written in place: joining the chunks would hold the block's outputs twice
                if chunk >= n_images:
                    out[k] = v[k]
                    continue
                if k not in out:
                    out[k] = torch.empty((n_images, *v[k].shape[1:]), dtype=v[k].dtype)
                out[k][lo : lo + chunk] = v[k]
            for k, fn in peaks.items():
                top[k] = max(top[k], float(fn(v[k])))
        return out, top

    def read_after(self, block: list[Node]) -> set[str]:
        """The nodes of `block` that something after it reads (or that are graph outputs)."""
        names = {n.name for n in block}
        return {n.name for n in block if n.name in self.graph.outputs
                or any(c.name not in names for c in self.graph.consumers(n.name))}

    def commit_block(self, block: list[Node], ops: dict[str, o.Op]) -> None:
        """Commit every node of a block at once (see `commit`); only values read after the block are kept."""
        if self.spiking:  # spike trains of a whole layer: small chips, small networks
            for n in block:
                self.commit(n, ops[n.name])
            return
        for n in block:
            self.new_ops[n.name] = ops[n.name]
        self.acts.update(self.run_block(block, ops, self.read_after(block))[0])
