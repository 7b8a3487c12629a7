"""NIR export: a compiled spiking network as a Neuromorphic Intermediate Representation graph.

`export_nir(graph, hw)` maps a compiled graph (every core-op in integer form, a chip whose neuron is `if` or
`lif`) onto NIR nodes so that a consumer stepping the graph in discrete time (dt = 1 time step) reproduces
`dse.sim.spiking` exactly. The conventions, one per line of our dynamics
(``v <- leak * v + I_t``; spike when ``v >= theta``; reset; ``v_0 = theta / 2``):

- **Input.** `nir.Input` of the per-sample frame the host sends. The consumer is fed spike trains, one 0/1
  tensor per step: the rate (or Poisson) code of ``clamp(round(x / scale), 0, T)`` that `dse.sim.spiking`
  sends; `input_trains` computes them. A host-side pad with a non-zero value (an input normalization folded
  into a padded convolution) is part of that frame: the host sends the pad value's trains around the image,
  so the exported input shape is the padded one.
- **Core-op.** A weight node then a neuron node. The weight node is `nir.Affine` (dense core) or
  `nir.Conv2d` (stride, symmetric padding; groups written out as a block-diagonal weight, see `_ungroup`)
  holding the integer weights as float32 (exact: they are small integers) and the per-step
  bias current ``bias_int / T`` as its bias, so its output at step t is the core's current
  ``I_t = conv(s_t, weight_int) + bias_int / T`` in accumulator units. A core reading several sources (a merge
  of partial sums, a residual add) gets one weight node per source, all feeding the neuron node: NIR sums
  the edges that enter a node. Sibling cores concatenated into one value (column splits, the partial-sum
  cores of a split) are fused into one NIR layer, which keeps the graph a chain where the network is one:
  some consumers run a graph depth first (nirtorch 2.0.2, under sinabs) and cannot join branches of
  different depth.
- **Neuron.** `nir.IF` (``r = 1``: the step's current moves v by I_t) or `nir.LIF` with ``v_leak = 0``,
  ``tau = -1 / ln(leak)`` (the membrane decays by exactly `leak` over one step of dt = 1) and ``r = tau``
  (the charge of one step moves v by I_t, as for IF). ``v_threshold = out_scale / weight_scale`` per
  neuron, as float32 (the precision the simulator runs in, so a float32 consumer repeats its arithmetic).
  A consumer that discretizes with forward Euler (``beta = 1 - dt / tau``) gets a slightly different leak;
  the exact `leak` is in the node's metadata. An `if_floor` neuron (membrane clamped at zero) has no NIR
  form: `UnsupportedOpError`.
- **Reset, firing, initial state** (NIR 1.0.4's text: spike when ``v > v_thr``, reset by subtracting
  ``v_thr``). We fire at ``v >= theta``: the two differ only when v lands exactly on the threshold. A chip that
  resets to zero cannot be said in NIR 1.0.4's IF/LIF; its neuron nodes say so in metadata ``reset``. NIR
  has no initial state, and ours is not zero: v starts at half the threshold (so that a constant current
  gives the rounded count). Every neuron node carries ``metadata["v_init"]`` (= v_threshold / 2, same shape);
  a consumer must start its membrane there. It cannot be folded into the graph: a bias acts at every step,
  and NIR has no one-step input.
- **Wiring.** A flattening `Reshape` is `nir.Flatten`; `Slice`, `Gather` and `Concat` (along
  channels/features) are folded into the weight nodes of the cores that read them (a slice is a block of zero
  weights); a zero `Pad` is folded into the padding of the convolution that reads it; an output gathered from several
  ranges gets fixed 0/1 `nir.Affine` / 1x1 `nir.Conv2d` nodes. A `SpaceToDepth` is a fixed 0/1 `nir.Conv2d`
  of kernel and stride its block. A channels-last input's permutation (the importer's Reshape, Gather, Reshape
  of the input) is the host's, as a host-side pad is: the NIR input is the permuted frame, `input_trains`
  permutes the trains, the graph's metadata holds the order (``host_permutation``). Other reshapes (NIR has no
  unflatten), asymmetric padding and a `DepthToSpace` (values onto a finer grid: NIR has no transposed
  convolution or permutation) have no NIR form: `UnsupportedOpError`.
- **Readout.** The graph's output is the spike trains of the last core(s): a signed value leaves the chip as
  a (positive, negative) pair of channels, and the host computes ``y = (count[:C] - count[C:]) * out_scale``
  over the T steps, after summing the k copies of a population readout (`strategy.readout_k`; the graph's
  metadata says so per output: ``<output>_copies``, ``<output>_decode``, ``<output>_scale``).

Where each dse core lives in the NIR graph is in the neuron nodes' metadata (``dse_cores``,
``dse_core_channels``), so a test can compare every core's counts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import nir
import numpy as np

from dse.errors import ConfigError, UnsupportedOpError
from dse.files import atomic_write
from dse.hardware.spec import SPIKING_MODELS, HardwareSpec
from dse.ir import ops as o
from dse.ir.graph import Graph, Node
from dse.ir.shapes import infer_shapes
from dse.ir.wiring import WIRING

__all__ = ["export_nir", "input_trains", "write_nir"]

F32 = np.float32
NO_PAD: o.Pads = (0, 0, 0, 0)

SEMANTICS = (
    "dse spiking core-ops, discrete time, dt = 1 step, T steps per inference. Input: spike trains (0/1 per "
    "step) of the host's rate/poisson code. Weight nodes output the step's current I_t (integer weights on "
    "spikes plus bias_int/T). Neuron: v <- leak*v + I_t; spike when v >= v_threshold; reset per metadata "
    "'reset' (subtract v_threshold, or to zero); v starts at metadata 'v_init' (= v_threshold/2). Output: "
    "spike counts over T steps; a Readout output is decoded by the host as (count[:C] - count[C:]) * out_scale."
)


@dataclass(frozen=True)
class _Term:
    """A contiguous range [start, stop) of axis 0 (channels or features) of the NIR node `src`, with the
    zero padding still to apply to its spatial axes (folded into the convolution that reads it)."""

    src: str
    start: int
    stop: int
    pad: o.Pads = NO_PAD

    @property
    def size(self) -> int:
        return self.stop - self.start


def _dse_version() -> str:
    try:
        return importlib_metadata.version("dse")
    except importlib_metadata.PackageNotFoundError:  # a source tree that was never installed
        return "unknown"


def _merge(terms: list[_Term]) -> list[_Term]:
    """Join neighbouring ranges of one source, so a concatenation of a whole layer reads as that layer."""
    out: list[_Term] = []
    for t in terms:
        if out and out[-1].src == t.src and out[-1].stop == t.start and out[-1].pad == t.pad:
            out[-1] = replace(out[-1], stop=t.stop)
        else:
            out.append(t)
    return out


class _Exporter:
    def __init__(self, graph: Graph, hw: HardwareSpec) -> None:
        self.graph, self.hw = graph, hw
        self.shapes = infer_shapes(graph)
        self.nodes: dict[str, nir.NIRNode] = {}
        self.edges: list[tuple[str, str]] = []
        self.nir_shapes: dict[str, tuple[int, ...]] = {}
        self.values: dict[str, list[_Term]] = {}
        self.scales: dict[str, float] = {}
        self.flattened: dict[str, str] = {}  # NIR source -> its Flatten node
        self.names: set[str] = set()
        self.output_names: list[str] = []
        self.output_meta: dict[str, Any] = {}
        self.permuted: list[Node] = host_permutation(graph)  # the host's permutation of the input, if any
        self.host_pad: o.Pad | None = None  # set by `run` (see `_host_pad`), as are:
        self.fused: dict[str, list[str]] = {}  # concat -> the sibling cores it fuses into one layer
        self.deferred: set[str] = set()  # cores emitted with the concat that fuses them

    # --- naming ------------------------------------------------------------------------------------------
    def _fresh(self, base: str) -> str:
        # consumers turn node names into torch module names: keep them identifiers
        base = re.sub(r"\W", "_", base) or "node"
        name, i = base, 1
        while name in self.names:
            name, i = f"{base}_{i}", i + 1
        self.names.add(name)
        return name

    def _add(self, base: str, node: nir.NIRNode, shape: tuple[int, ...], *inputs: str) -> str:
        name = self._fresh(base)
        self.nodes[name] = node
        self.nir_shapes[name] = shape
        self.edges.extend((src, name) for src in inputs)
        return name

    # --- the walk ----------------------------------------------------------------------------------------
    def run(self) -> nir.NIRGraph:
        if not self.hw.spiking:
            raise ConfigError(
                f"NIR export needs a spiking chip (hardware.neuron.model one of {', '.join(SPIKING_MODELS)}, got "
                f"{self.hw.neuron.model!r})"
            )
        self.host_pad = self._host_pad()
        self.fused = self._fusable_concats()
        self.deferred = {core for cores in self.fused.values() for core in cores}
        for node in self.graph:
            if node.name in {n.name for n in self.permuted}:  # the host's: `_input` sends the permuted frame
                continue
            rule = NIR_EXPORT.get(type(node.op))
            if rule is None:
                raise UnsupportedOpError(type(node.op).__name__, node.name, "not a chip op (export a compiled graph)")
            rule(self, node)
        for i, out in enumerate(self.graph.outputs):
            self._output(out, "output" if i == 0 else f"output_{out}")
        return nir.NIRGraph(nodes=self.nodes, edges=self.edges, metadata=self._graph_metadata(self.host_pad))

    def _graph_metadata(self, host_pad: o.Pad | None) -> dict[str, Any]:
        n, inp = self.hw.neuron, self.graph.input.op
        assert isinstance(inp, o.Input)
        meta: dict[str, Any] = {
            "generator": "dse", "dse_version": _dse_version(), "semantics": SEMANTICS, "chip": self.hw.name,
            "neuron_model": n.model, "timesteps": int(n.timesteps), "leak": float(n.leak), "reset": n.reset,
            "encoding": n.encoding, "input_scale": float(inp.scale), "input_code_max": int(n.timesteps),
            "outputs": ",".join(self.output_names),
            **self.output_meta,
        }
        if self.permuted:
            meta["host_permutation"] = np.asarray(self.permuted[1].op.index, dtype=np.int64)
        if host_pad is not None:
            meta["host_pad"] = np.asarray(host_pad.padding, dtype=np.int64)  # top, left, bottom, right
            meta["host_pad_value"] = np.asarray(host_pad.value, dtype=np.float64)
        return meta

    # --- host side ---------------------------------------------------------------------------------------
    def _host_pad(self) -> o.Pad | None:
        """A non-zero Pad right after the Input (or its permutation) is sent by the host (it is the trains of the
        pad value's code): it belongs to the input frame, not to the chip."""
        inp = self.permuted[-1].name if self.permuted else self.graph.input.name
        pads = [n for n in self.graph.consumers(inp) if isinstance(n.op, o.Pad) and any(n.op.value)]
        if not pads:
            return None
        if len(self.graph.consumers(inp)) != 1:
            raise UnsupportedOpError("Pad", pads[0].name, "a host-side pad must be the input's only reader")
        assert isinstance(pads[0].op, o.Pad)
        return pads[0].op

    def _input(self, node: Node) -> None:
        name, op = node.name, node.op
        shape = tuple(int(s) for s in op.shape)
        if self.permuted:  # channels-last data: the host sends the permuted frame
            name = self.permuted[-1].name
            shape = tuple(int(s) for s in self.permuted[-1].op.shape)
        if self.host_pad is not None:
            top, left, bottom, right = self.host_pad.padding
            shape = (shape[0], shape[1] + top + bottom, shape[2] + left + right)
        self.nodes["input"] = nir.Input(input_type={"input": np.array(shape)})  # encoding: graph metadata
        self.names.add("input")
        self.nir_shapes["input"] = shape
        self.values[name] = [_Term("input", 0, shape[0])]
        self.scales[name] = float(op.scale)

    def _output(self, name: str, base: str) -> None:
        terms = self.values[name]
        shape = tuple(int(s) for s in self.shapes[name])
        readout = self.graph[name].op if isinstance(self.graph[name].op, o.Readout) else None
        if readout is not None:  # the chip emits both halves (k copies of them); the host sums and subtracts
            shape = (2 * readout.population * shape[0], *shape[1:])
        whole = len(terms) == 1 and terms[0].start == 0 and terms[0].pad == NO_PAD \
            and terms[0].stop == self.nir_shapes[terms[0].src][0]
        if whole:
            sources = [terms[0].src]
        else:  # gather the ranges with fixed 0/1 weight nodes; the Output sums them
            sources = self._placements(name, terms, shape)
        out = self._add(base, nir.Output(output_type={"output": np.array(shape)}), shape)
        self.edges.extend((src, out) for src in sources)
        # NIR 1.0.4's Output holds no metadata: the graph's says how the host decodes each output
        self.output_names.append(out)
        self.output_meta[f"{out}_dse_node"] = name
        self.output_meta[f"{out}_scale"] = float(self.scales[name])
        # a population readout: the host first sums the copies (copy-major) of the output's channels
        self.output_meta[f"{out}_copies"] = readout.population if readout is not None else 1
        self.output_meta[f"{out}_decode"] = "count * scale" if readout is None else "(count[:C] - count[C:]) * scale"

    def _placements(self, name: str, terms: list[_Term], shape: tuple[int, ...]) -> list[str]:
        names, offset = [], 0
        for t in terms:
            src_shape = self.nir_shapes[t.src]
            if t.pad != NO_PAD or src_shape[1:] != shape[1:]:
                raise UnsupportedOpError(type(self.graph[name].op).__name__, name, "cannot gather this output")
            w = np.zeros((shape[0], src_shape[0]), dtype=F32)
            w[offset + np.arange(t.size), t.start + np.arange(t.size)] = 1.0
            if len(shape) == 1:
                node: nir.NIRNode = nir.Affine(weight=w, bias=np.zeros(shape[0], dtype=F32))
            else:
                node = nir.Conv2d(input_shape=tuple(src_shape[1:]), weight=w.reshape(*w.shape, 1, 1), stride=(1, 1),
                                  padding=(0, 0), dilation=(1, 1), groups=1, bias=np.zeros(shape[0], dtype=F32))
            names.append(self._add(f"{name}_gather", node, shape, t.src))
            offset += t.size
        return names

    def _readout(self, node: Node) -> None:
        """The host decodes: the chip's output is the pair of trains."""
        self.values[node.name] = self.values[node.inputs[0]]
        self.scales[node.name] = self.scales[node.inputs[0]]

    # --- wiring ------------------------------------------------------------------------------------------
    def _concat(self, node: Node) -> None:
        if node.name not in self.fused:
            if node.op.axis != 0:
                raise UnsupportedOpError("Concat", node.name, f"axis {node.op.axis}: NIR export joins channels only")
            route_channels(self, node)
        elif self._agree_on_padding(self.fused[node.name]):
            self._layer(node.name, self.fused[node.name])
        else:  # cannot fuse after all: emit the cores one by one, then join them
            for core in self.fused[node.name]:
                self._layer(core, [core])
            route_channels(self, node)

    def _pad(self, node: Node) -> None:
        name, op, src = node.name, node.op, node.inputs[0]
        self.scales[name] = self.scales[src]
        if op is self.host_pad:  # already in the input frame
            self.values[name] = self.values[src]
            return
        if any(op.value):
            raise UnsupportedOpError("Pad", name, "a non-zero pad value is only exportable on the host's input")
        self.values[name] = [replace(t, pad=tuple(a + b for a, b in zip(t.pad, op.padding, strict=True)))
                             for t in self.values[src]]

    def _reshape(self, node: Node) -> None:
        name, op, src = node.name, node.op, node.inputs[0]
        self.scales[name] = self.scales[src]
        before, after = tuple(self.shapes[src]), tuple(op.shape)
        if before == after:
            self.values[name] = self.values[src]
            return
        if len(after) != 1:
            raise UnsupportedOpError("Reshape", name, f"{before} -> {after}: NIR export flattens only (NIR 1.0.4 has "
                                     "no node that unflattens: a reflect or edge Pad's copies are such a reshape)")
        terms = []
        for t in self.values[src]:
            src_shape = self.nir_shapes[t.src]
            if len(src_shape) == 1:
                terms.append(t)
                continue
            if t.pad != NO_PAD:
                raise UnsupportedOpError("Reshape", name, "flattening a padded value")
            if t.src not in self.flattened:
                flat = nir.Flatten(input_type={"input": np.array(src_shape)}, start_dim=0, end_dim=-1)
                self.flattened[t.src] = self._add(f"{t.src}_flatten", flat, (int(np.prod(src_shape)),), t.src)
            per_channel = int(np.prod(src_shape[1:]))
            terms.append(_Term(self.flattened[t.src], t.start * per_channel, t.stop * per_channel))
        self.values[name] = _merge(terms)

    # --- cores -------------------------------------------------------------------------------------------
    def _core(self, node: Node) -> None:
        if node.op.quant is None:
            raise UnsupportedOpError("CoreOp", node.name, "not in integer form (export a compiled graph)")
        if node.name not in self.deferred:  # a core of a fused concat is emitted with the concat
            self._layer(node.name, [node.name])

    def _fusable_concats(self) -> dict[str, list[str]]:
        """Concats of sibling cores read by nothing else, all dense or all convolutions of one geometry: each
        becomes one NIR layer (whether their inputs agree is checked when the concat is reached)."""
        fused = {}
        outputs = set(self.graph.outputs)
        for node in self.graph.of_type(o.Concat):
            cores = [self.graph[s] for s in node.inputs]
            # a population code's Concat interleaves its inputs' copies: routed channel by channel, not fused
            if node.op.axis != 0 or node.op.copies != 1 or len(cores) < 2 or len(set(node.inputs)) != len(cores):
                continue
            if not all(isinstance(c.op, o.CoreOp) and c.name not in outputs
                       and [n.name for n in self.graph.consumers(c.name)] == [node.name] for c in cores):
                continue
            ops = [c.op for c in cores]
            first = ops[0]
            if all(op.dense for op in ops) or all(
                not op.dense and op.kernel == first.kernel and op.stride == first.stride and op.padding == first.padding
                and self.shapes[c.inputs[0]][1:] == self.shapes[cores[0].inputs[0]][1:]
                for c, op in zip(cores, ops, strict=True)
            ):
                fused[node.name] = list(node.inputs)
        return fused

    def _agree_on_padding(self, cores: list[str]) -> bool:
        """Whether fused convolutions read every source with one padding (one weight node per source)."""
        pads: dict[str, o.Pads] = {}
        return all(pads.setdefault(t.src, t.pad) == t.pad
                   for core in cores for t in self.values[self.graph[core].inputs[0]])

    def _layer(self, name: str, cores: list[str]) -> None:
        """One NIR layer (weight nodes, then one neuron node) for `cores` side by side along channels."""
        ops = [self.graph[c].op for c in cores]
        assert all(isinstance(op, o.CoreOp) and op.quant is not None for op in ops)
        steps = self.hw.neuron.timesteps
        dense = ops[0].dense
        sizes = [op.out_channels for op in ops]
        total = sum(sizes)
        out_shape = (total, *self.shapes[cores[0]][1:])
        weights: dict[str, np.ndarray] = {}  # NIR source -> (total, C_src, kh, kw) or (total, F_src)
        pads: dict[str, o.Pads] = {}  # NIR source -> the zero padding still to apply to it
        row = 0
        for core, op in zip(cores, ops, strict=True):
            w = _ungroup(np.asarray(op.quant.weight_int, dtype=F32), op.groups)  # a merge is grouped, dense or not
            col = 0
            for t in self.values[self.graph[core].inputs[0]]:
                src_shape = self.nir_shapes[t.src]
                if dense:
                    if t.pad != NO_PAD or len(src_shape) != 1:
                        raise UnsupportedOpError("CoreOp", core, f"a dense core reads a {src_shape} value")
                    block = weights.setdefault(t.src, np.zeros((total, src_shape[0]), dtype=F32))
                    block[row : row + op.out_channels, t.start : t.stop] += w.reshape(op.out_channels, -1)[
                        :, col : col + t.size]
                else:
                    if pads.setdefault(t.src, t.pad) != t.pad:
                        raise UnsupportedOpError("CoreOp", core, f"reads {t.src} with two different paddings")
                    block = weights.setdefault(t.src, np.zeros((total, src_shape[0], *w.shape[2:]), dtype=F32))
                    block[row : row + op.out_channels, t.start : t.stop] += w[:, col : col + t.size]
                col += t.size
            row += op.out_channels
        bias = np.concatenate([np.asarray(op.quant.bias_int / steps, dtype=F32) for op in ops])
        threshold = np.concatenate([np.asarray(op.quant.out_scale / op.quant.weight_scale, dtype=F32) for op in ops])
        threshold = np.broadcast_to(threshold.reshape(-1, *[1] * (len(out_shape) - 1)), out_shape).copy()

        weight_nodes = []
        for i, (src, w) in enumerate(weights.items()):
            b = bias if i == 0 else np.zeros_like(bias)  # the bias current enters once
            base = f"{name}_weight" if len(weights) == 1 else f"{name}_weight_{i}"
            if dense:
                node: nir.NIRNode = nir.Affine(weight=w, bias=b)
            else:
                op = ops[0]
                top, left, bottom, right = (a + p for a, p in zip(op.padding, pads[src], strict=True))
                if top != bottom or left != right:
                    raise UnsupportedOpError("CoreOp", name, "asymmetric padding (NIR pads both sides alike)")
                node = nir.Conv2d(input_shape=tuple(int(s) for s in self.nir_shapes[src][1:]), weight=w,
                                  stride=tuple(int(s) for s in op.stride), padding=(int(top), int(left)),
                                  dilation=(1, 1), groups=1, bias=b)
            weight_nodes.append(self._add(base, node, out_shape, src))

        bounds = np.cumsum([0, *sizes]).astype(np.int64)
        neuron = self._add(name, self._neuron(threshold, cores, bounds), out_shape, *weight_nodes)
        for core, start, stop in zip(cores, bounds[:-1], bounds[1:], strict=True):
            self.values[core] = [_Term(neuron, int(start), int(stop))]
            self.scales[core] = float(self.graph[core].op.quant.out_scale)
        if name not in cores:  # a fused concat: its value is the whole layer
            self.values[name] = [_Term(neuron, 0, total)]
            self.scales[name] = self.scales[cores[0]]

    def _neuron(self, threshold: np.ndarray, cores: list[str], bounds: np.ndarray) -> nir.NIRNode:
        n = self.hw.neuron
        if n.floor is not None:  # NIR 1.0.4's IF/LIF have no lower bound on the membrane
            raise UnsupportedOpError("CoreOp", cores[0], f"NIR has no neuron with a membrane floor "
                                     f"(hardware.neuron.model={n.model})")
        meta = {
            "v_init": (threshold / 2).astype(F32),  # dse starts the membrane at half the threshold
            "reset": n.reset,  # 'subtract' (v -= v_threshold) or 'zero' (v = 0)
            "fire": "v >= v_threshold",
            "leak": float(n.decay),
            "dse_cores": ",".join(cores),
            "dse_core_channels": bounds,  # core i holds channels bounds[i]:bounds[i+1]
        }
        if n.decay == 1.0:  # an IF neuron, or a LIF one that does not leak
            return nir.IF(r=np.ones_like(threshold), v_threshold=threshold, metadata=meta)
        tau = np.full_like(threshold, -1.0 / math.log(n.decay), dtype=np.float64)
        return nir.LIF(tau=tau, r=tau.copy(), v_leak=np.zeros_like(tau), v_threshold=threshold, metadata=meta)


def route_channels(ex: _Exporter, node: Node) -> None:
    """A wiring op that routes channels (`dse.ir.wiring`): its value is the channels of its inputs' NIR ranges
    that the routing picks, joined back into ranges (a repeated channel is read twice by the weight node)."""
    channels = [(t.src, ch, t.pad) for s in node.inputs for t in ex.values[s] for ch in range(t.start, t.stop)]
    ids, offset = [], 0
    for s in node.inputs:
        ids.append(np.arange(offset, offset + ex.shapes[s][0]))
        offset += ex.shapes[s][0]
    picked, mixed = WIRING[type(node.op)].channels(node.op, ids, [ex.shapes[s] for s in node.inputs],
                                                   ex.shapes[node.name])
    if mixed.any():
        raise UnsupportedOpError(type(node.op).__name__, node.name, "mixes channels (NIR export routes whole ones)")
    ex.values[node.name] = _merge([_Term(src, ch, ch + 1, pad) for src, ch, pad in (channels[i] for i in picked)])
    ex.scales[node.name] = ex.scales[node.inputs[0]]


def _to_space(ex: _Exporter, node: Node) -> None:
    raise UnsupportedOpError("DepthToSpace", node.name, "moves values onto a finer grid (an upsampling, a transposed "
                             "convolution's interleave, a pixel shuffle): NIR 1.0.4 has no node that does (no "
                             "transposed convolution, unflatten or permutation)")


def _to_depth(ex: _Exporter, node: Node) -> None:
    """SpaceToDepth is a fixed 0/1 `nir.Conv2d` of kernel and stride the block: output channel (i bw + j) C + c
    reads input channel c at tap (i, j) of each cell. A weight node between the neurons and their reader's weight
    node: NIR applies the two in turn, exactly (0/1 weights of spike counts)."""
    op, terms = node.op, ex.values[node.inputs[0]]
    if len(terms) != 1 or terms[0].pad != NO_PAD:
        raise UnsupportedOpError("SpaceToDepth", node.name, "of a padded value or of several layers' values")
    t, (bh, bw) = terms[0], op.block
    src_shape = ex.nir_shapes[t.src]
    weight = np.zeros((bh * bw * t.size, src_shape[0], bh, bw), dtype=F32)
    for i, j, c in np.ndindex(bh, bw, t.size):
        weight[(i * bw + j) * t.size + c, t.start + c, i, j] = 1.0
    shape = tuple(int(s) for s in ex.shapes[node.name])
    conv = nir.Conv2d(input_shape=tuple(int(s) for s in src_shape[1:]), weight=weight, stride=(bh, bw),
                      padding=(0, 0), dilation=(1, 1), groups=1, bias=np.zeros(shape[0], dtype=F32))
    ex.values[node.name] = [_Term(ex._add(node.name, conv, shape, t.src), 0, shape[0])]
    ex.scales[node.name] = ex.scales[node.inputs[0]]


NIR_EXPORT: dict[type[o.Op], Callable[[_Exporter, Node], None]] = {
    o.Input: _Exporter._input,
    o.CoreOp: _Exporter._core,
    o.Readout: _Exporter._readout,
    o.Reshape: _Exporter._reshape,
    o.Slice: route_channels,
    o.Gather: route_channels,
    o.Concat: _Exporter._concat,
    o.Pad: _Exporter._pad,
    o.DepthToSpace: _to_space,
    o.SpaceToDepth: _to_depth,
}
"""How each chip op becomes NIR nodes (or NIR ranges of the values it routes), keyed by op type."""


def _ungroup(weight: np.ndarray, groups: int) -> np.ndarray:
    """(O, C/g, kh, kw) -> the equal block-diagonal (O, C, kh, kw). NIR's Conv2d has `groups`, but not every
    consumer reads it right (sinabs 3.1 builds its Conv2d with in_channels = weight.shape[1]); a dense weight
    means the same to all of them, at g times the size (small: max-pooling trees, and merges of the small
    networks a spiking chip runs)."""
    if groups == 1:
        return weight
    out_c, per_group = weight.shape[:2]
    full = np.zeros((out_c, per_group * groups, *weight.shape[2:]), dtype=weight.dtype)
    out_per_group = out_c // groups
    for g in range(groups):
        rows = slice(g * out_per_group, (g + 1) * out_per_group)
        full[rows, g * per_group : (g + 1) * per_group] = weight[rows]
    return full


def host_permutation(graph: Graph) -> list[Node]:
    """The nodes of a channels-last input's permutation, as the importer writes it (the input's only reader a
    Reshape to a vector, read only by a Gather, read only by a Reshape to an image), or none. The host sends the
    input in that order: the NIR input is the permuted frame, and `input_trains` permutes the trains."""
    chain, name = [], graph.input.name
    for kind, rank in ((o.Reshape, 1), (o.Gather, 1), (o.Reshape, 3)):
        readers = graph.consumers(name)
        if len(readers) != 1 or not isinstance(readers[0].op, kind) or name in graph.outputs:
            return []
        chain.append(readers[0])
        name = readers[0].name
        if kind is o.Reshape and len(readers[0].op.shape) != rank:
            return []
    return chain


def export_nir(graph: Graph, hw: HardwareSpec) -> nir.NIRGraph:
    """The NIR graph of a compiled spiking network (see the module docstring for the conventions)."""
    return _Exporter(graph, hw).run()


def write_nir(graph: Graph, hw: HardwareSpec, path: str | Path) -> None:
    """Write `export_nir(graph, hw)` to `path` (HDF5, `nir.write`) atomically: a reader never sees half a file."""
    path = Path(path)
    nir_graph = export_nir(graph, hw)
    atomic_write(path, lambda tmp: nir.write(tmp, nir_graph))


def input_trains(graph: Graph, hw: HardwareSpec, x: np.ndarray, *, seed: int = 0, dtype: Any = None) -> Any:
    """The spike trains (N, T, *input shape of the NIR graph) the host sends for real inputs `x`: exactly what
    `dse.sim.spiking.run_spiking` feeds the chip (same encoder, same seed, one batch), host-side pad included.
    """
    # the trains are defined by the simulator's encoder: import it rather than restate it
    import torch

    from dse.sim.spiking import encode, pad_trains

    dtype = torch.float32 if dtype is None else dtype
    inp = graph.input.op
    assert isinstance(inp, o.Input)
    gen = torch.Generator().manual_seed(seed)
    codes = torch.clamp(torch.round(torch.as_tensor(np.array(x), dtype=dtype) / inp.scale), 0, inp.code_max)
    trains = encode(codes, hw.neuron.timesteps, hw.neuron.encoding, gen)
    permuted = host_permutation(graph)
    if permuted:  # channels-last data: the frame in the order the Gather picks, viewed as the image
        n, steps = trains.shape[:2]
        order = torch.as_tensor(np.asarray(permuted[1].op.index))
        trains = trains.reshape(n, steps, -1)[:, :, order].reshape(n, steps, *permuted[-1].op.shape)
    pad = _Exporter(graph, hw)._host_pad()
    return trains if pad is None else pad_trains(trains, pad, inp.scale, hw.neuron)
