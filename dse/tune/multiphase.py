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

`mode="none"` is the naive baseline: round to nearest with max-abs weight steps and max activation steps,
no training.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from dse.errors import ConfigError
from dse.hardware.legality import feeds_core
from dse.hardware.spec import HardwareSpec
from dse.ir import ops as o
from dse.ir.graph import Graph, Node
from dse.ir.shapes import SHAPE_RULES
from dse.ir.wiring import WIRING
from dse.sim import spiking
from dse.sim.float_exec import FLOAT_EXEC, conv_core, core_accumulator, core_output, decode_population, grouped_linear
from dse.tune.losses import OUTPUT_LOSSES, block_loss
from dse.tune.patches import patch_geometry, sample_patches
from dse.tune.quantizers import best_act_scale, best_weight_scale, fake_quant_act, round_ste
from dse.tune.spiking import tune_spiking

log = logging.getLogger(__name__)
Tensor = torch.Tensor
TUNING_MODES = ("multiphase", "none")
KEEP_MARGIN = 0.05  # a phase (or the whole tuning) ending this much (relative) above its start is undone
BIAS_CORRECTION_IMAGES = 64  # calibration images per step of `QCore.correct_bias`
CHUNK_FLOATS = 2**25  # values of one block's nodes held at once while it runs on the calibration data (128 MB)


@dataclass(frozen=True)
class TuneOptions:
    mode: str = "multiphase"
    free_steps: int = 150  # phase 1
    range_steps: int = 50  # phase 2
    round_fractions: tuple[float, ...] = (0.5, 0.75, 0.9, 0.97, 1.0)  # phase 3: fraction rounded after each round
    round_steps: int = 30  # steps after each rounding round
    batch_size: int = 256  # samples per step (x16 rows when training on conv patches)
    spike_steps: int = 60  # spiking chips: steps tuning thresholds, biases (and weights) on the real dynamics
    # spiking chips: steps for the block that computes the network's output in place of `spike_steps` (small, and
    # its loss decides the accuracy: resnet_mnist's logits on chip_b reach top-1 0.979 after 60 steps, 0.984
    # after 600); `spike_steps=0` turns the spike-aware steps off for every block
    output_spike_steps: int = 600
    spike_weights: bool = True  # spiking chips: those steps also move the integer weights (see dse/tune/spiking.py)
    spike_calib_samples: int = 2000  # spiking chips: calibration images simulated over T steps (memory, time)
    max_rows: int = 200_000  # (image, position) pairs sampled once per conv block
    tie_pairs_above: int = 1_000_000  # a signed pair core with more weights trains one tensor for both halves
    step_macs: int = 250_000_000  # forward multiply-adds of one step at most (fewer rows for a big block)
    min_batch: int = 8  # rows per step at least
    lr: float = 1e-3  # Adam, real-valued weights (phase 1)
    grid_lr: float = 0.02  # Adam, weights in grid units (phases 2-3), times sqrt of the weight range
    output_loss: str = "kd"  # the output block's loss: kd (class probabilities), mse (values), or both (losses.py)
    # cross-layer equalization of the float graph before fitting (dse/passes/equalize.py)
    equalize: bool = False
    # empirical bias correction of rounded weights: bias -= E[(W_q - W) x] over the calibration inputs on which
    # the neuron is active (`QCore.correct_bias`); the baseline applies it to every core whose input is known,
    # the tuner weighs it as a second rounded start (see `_tune_block`)
    bias_correction: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in TUNING_MODES:
            raise ConfigError(f"tuning.mode must be one of {', '.join(TUNING_MODES)} (got {self.mode!r})")
        if self.output_loss not in OUTPUT_LOSSES:
            raise ConfigError(f"tuning.output_loss must be one of {', '.join(OUTPUT_LOSSES)} "
                              f"(got {self.output_loss!r})")


@dataclass
class BlockReport:
    """What tuning did to one block: its loss after each phase (MSE over the teacher's variance; for the block
    that computes the network's output, `tuning.output_loss`), and as `final` the MSE of what it commits."""

    name: str
    cores: int
    losses: dict[str, float] = field(default_factory=dict)


# --- scales: the value of one code, per channel of a tensor -----------------------------------------------


def _channel_scales(op: o.Op, ins: list[Tensor], in_shapes: list[tuple[int, ...]]) -> Tensor:
    out_shape = SHAPE_RULES[type(op)](op, in_shapes)
    scales, mixed = WIRING[type(op)].channels(op, [s.numpy() for s in ins], in_shapes, out_shape)
    if mixed.any():
        raise ConfigError(f"a {type(op).__name__} mixes channels of different scales; the compiler cannot encode it")
    return torch.from_numpy(np.ascontiguousarray(scales))


def _weight_in_scale(op: o.CoreOp, in_scale: Tensor) -> Tensor:
    """in_scale of the input channel each weight entry reads, shaped to broadcast against the weight."""
    out_c, in_g = op.weight.shape[:2]
    per_group = out_c // op.groups
    idx = (torch.arange(out_c) // per_group)[:, None] * in_g + torch.arange(in_g)[None, :]
    return in_scale[idx][:, :, None, None]


# --- one trainable core ---------------------------------------------------------------------------------


def _signed_pair(op: o.CoreOp) -> bool:
    """Whether the op emits ``[s; -s]`` of one linear form (a partial sum of a split, a signed output)."""
    out_c = op.out_channels
    if op.groups != 1 or out_c % 2:
        return False
    half = out_c // 2
    w = op.weight.reshape(out_c, -1)
    same_mask = op.mask is None or np.array_equal(op.mask[:half], op.mask[half:])
    return same_mask and bool(np.any(w[:half])) and np.array_equal(w[half:], -w[:half])


class QCore(nn.Module):
    """A core-op in training. Phase 1 works on real values, phases 2-3 on codes (weights in grid units).

    A signed pair (`_signed_pair`) of more than `tie_above` weights trains one weight tensor for both halves
    (``tied``; biases stay separate): half the memory of weights, gradients and optimizer state, and half the
    work. Smaller pairs keep two tensors: the chip holds two columns anyway, and they may differ.
    """

    def __init__(self, op: o.CoreOp, in_scale: Tensor, out_max: int, wmax: int, per_column: bool,
                 patch: bool = False, tie_above: int | None = None) -> None:
        super().__init__()
        self.patch = patch  # inputs are rows of patches (N, fan-in): the conv is a matrix product
        self.full_op, self.k = op, op.population
        self.copy_inputs: int | None = None  # a grouped copy reads only its own groups' input channels
        if self.k > 1:  # a population code: train one copy, the others are its thresholds staggered
            base = op.out_channels // self.k
            groups = op.groups // self.k if op.groups > 1 else 1  # copy-major: copy 0 holds the first groups
            if op.groups > 1:
                self.copy_inputs = groups * op.weight.shape[1]
            op = o.CoreOp(op.weight[:base], op.bias[:base], op.stride, op.padding, groups, op.dense,
                          None if op.mask is None else op.mask[:base])
        self.op, self.in_scale, self.qmax, self.wmax, self.per_column = op, in_scale, out_max, wmax, per_column
        self.tied = tie_above is not None and op.weight.size > tie_above and _signed_pair(op)
        rows = op.out_channels // 2 if self.tied else op.out_channels
        # None: every synapse exists (no mask tensor as large as the weights)
        self.mask = None if op.mask is None else torch.as_tensor(op.mask[:rows], dtype=torch.float32)
        # a copy: the op's weights belong to a graph a sweep shares between compiles
        self.weight = nn.Parameter(self._masked(torch.tensor(op.weight[:rows], dtype=torch.float32)))
        self.bias = nn.Parameter(torch.as_tensor(op.bias, dtype=torch.float32).clone())
        self.log_scale = nn.Parameter(torch.zeros(()))
        self.domain = "real"
        self.ws: Tensor | None = None  # weight step per output channel (both halves of a pair)
        self.target: Tensor | None = None  # weights in grid units before rounding (see `correct_bias`)
        self.frozen = torch.zeros(self.weight.shape, dtype=torch.bool)

    def _masked(self, w: Tensor) -> Tensor:
        return w if self.mask is None else w * self.mask

    def _live(self) -> Tensor:
        return torch.ones_like(self.frozen) if self.mask is None else self.mask.bool()

    def _rows(self, per_output: Tensor) -> Tensor:
        """A per-output-channel tensor cut to the trained weight rows."""
        return per_output[: self.weight.shape[0]]

    def _outputs(self, per_row: Tensor) -> Tensor:
        """A per-trained-row tensor extended to every output channel."""
        return torch.cat([per_row, per_row]) if self.tied else per_row

    @property
    def scale(self) -> Tensor:
        return self.log_scale.exp()

    def init_scale(self, y: Tensor) -> None:
        with torch.no_grad():
            self.log_scale.fill_(float(np.log(best_act_scale(y, self.qmax * self.k))))

    def _linear(self, x: Tensor, bias: Tensor | None) -> Tensor:
        w = self._masked(self.weight)
        if self.copy_inputs is not None:
            x = x[:, : self.copy_inputs]
        if self.patch:
            y = grouped_linear(x, w, None, self.op.groups)
        else:
            y = conv_core(x, w, None, self.op)
        if self.tied:
            y = torch.cat([y, -y], dim=1)
        if bias is None:
            return y
        return y + (bias if y.dim() == 2 else bias.reshape(-1, 1, 1))

    def pre(self, x: Tensor) -> Tensor:
        if self.domain == "real":
            return self._linear(x, self.bias)
        flat = self.patch or self.op.dense
        ws = self.ws if flat else self.ws.reshape(-1, 1, 1)
        acc = self._linear(x, None)  # x: codes, weight: grid units
        bias = round_ste(self.bias / self.ws)
        return (acc + (bias if flat else bias.reshape(-1, 1, 1))) * ws

    def forward(self, x: Tensor) -> Tensor:
        if self.k == 1:
            y = torch.relu(self.pre(x))
        else:  # copy i's threshold sits i full code ranges higher
            flat = self.patch or self.op.dense
            acc = self._linear(x, None)
            scale = self.scale if self.domain == "real" else self.scale.detach()
            if self.domain == "code":
                acc = acc * (self.ws if flat else self.ws.reshape(-1, 1, 1))
            copies = []
            for i in range(self.k):
                bias = self.bias - i * self.qmax * scale
                if self.domain == "code":
                    bias = round_ste(bias / self.ws) * self.ws
                copies.append(torch.relu(acc + (bias if flat else bias.reshape(-1, 1, 1))))
            y = torch.cat(copies, dim=1)
        if self.domain == "real":
            return fake_quant_act(y, self.scale, self.qmax)
        return torch.clamp(round_ste(y / self.scale.detach()), 0, self.qmax)  # codes

    def value(self, x: Tensor) -> Tensor:
        """Real-valued output for a real-valued input, in either domain."""
        if self.domain == "real":
            return self(x)
        scale = self.in_scale
        if self.patch and not self.op.dense:
            scale = scale.repeat_interleave(self.op.kernel[0] * self.op.kernel[1])
        return self(x / (scale if x.dim() == 2 else scale.reshape(-1, 1, 1))) * self.scale

    def _code_weight(self) -> Tensor:
        """The trained weights acting on input codes (their real values times each input's step)."""
        return self.weight * self._rows(_weight_in_scale(self.op, self.in_scale))

    def round_weights(self, keep_target: bool = False) -> None:
        """The baseline's weights: a step from max |weight| (per column or per crossbar), rounded to it.
        `keep_target`: remember the unrounded weights for `correct_bias`."""
        with torch.no_grad():
            w_code = self._code_weight()
            top = w_code.abs().reshape(w_code.shape[0], -1).amax(dim=1)
            if not self.per_column:
                top = top.max().expand_as(top)
            ws = torch.where(top > 0, top / self.wmax, torch.ones_like(top)).clone()
            self.target = w_code / ws.reshape(-1, 1, 1, 1) if keep_target else None
            self.weight.copy_(torch.clamp(torch.round(w_code / ws.reshape(-1, 1, 1, 1)), -self.wmax, self.wmax))
            self.ws = self._outputs(ws)
            self.frozen[:] = True
        self.log_scale.requires_grad_(False)
        self.domain = "code"

    def set_step(self, top: float) -> None:
        """The baseline's output step: the largest output (`top`, of one copy) is the largest code."""
        with torch.no_grad():
            self.log_scale.fill_(float(np.log(max(top, 1e-12) / (self.qmax * self.k))))

    def to_code_domain(self, keep_target: bool = False) -> None:
        """Fix the output step; express weights in grid units of a least-squares weight step. `keep_target`:
        remember them before clipping, for `correct_bias` after they are rounded."""
        with torch.no_grad():
            w_code = self._code_weight()
            ws = best_weight_scale(w_code, self.wmax, self.per_column)
            self.target = w_code / ws.reshape(-1, 1, 1, 1) if keep_target else None
            self.weight.copy_(torch.clamp(w_code / ws.reshape(-1, 1, 1, 1), -self.wmax, self.wmax))
            self.ws = self._outputs(ws)
        self.log_scale.requires_grad_(False)
        self.domain = "code"

    def correct_bias(self, chunks: Iterable[Tensor]) -> None:
        """Empirical bias correction (Nagel et al., ICCV 2019; Finkelstein et al., 2019), where the neuron is
        active. Rounding and clipping the weights (from `target`, kept by `round_weights` or `to_code_domain`)
        moves output j by ``e_j(x) = ((W_q - W) x)_j``. Behind a ReLU only the inputs on which the float neuron
        is active (pre-activation > 0) show that error, so the bias takes back the mean of e_j over those
        (every image and position of the calibration data, real-valued inputs in `chunks`); a neuron that is
        never active takes back the plain mean ``E[e_j]``. The plain mean over every input, for every neuron,
        moves a unit that is active on few inputs (an approximator's hinge, a clip's upper half) by errors it
        never shows (mobilenet_mnist at 4-bit weights, tuning=none: 17.7 pp lost with the plain mean, 14.1 with
        this one, 7.5 with neither; lenet_mnist: 0.7, 0.2, 1.6; docs/quantization.md).
        """
        with torch.no_grad():
            n_out = self.bias.shape[0]
            err_w, float_w = self._masked(self.weight - self.target), self._masked(self.target)
            bias_grid = (self.bias / self.ws).double()[:, None]
            on_sum, on_count, all_sum, all_count = (torch.zeros(n_out, dtype=torch.float64) for _ in range(4))
            for x in chunks:
                scale = self.in_scale if x.dim() == 2 else self.in_scale.reshape(-1, 1, 1)
                codes = (x / scale)[:, : self.copy_inputs] if self.copy_inputs else x / scale
                err, lin = (conv_core(codes, w, None, self.op) for w in (err_w, float_w))
                if self.tied:
                    err, lin = torch.cat([err, -err], dim=1), torch.cat([lin, -lin], dim=1)
                err = err.transpose(0, 1).reshape(n_out, -1).double()
                on = lin.transpose(0, 1).reshape(n_out, -1).double() + bias_grid > 0
                on_sum += (err * on).sum(dim=1)
                on_count += on.sum(dim=1)
                all_sum += err.sum(dim=1)
                all_count += err.shape[1]
            shift = torch.where(on_count > 0, on_sum / on_count.clamp(min=1), all_sum / all_count.clamp(min=1))
            self.bias -= shift.float() * self.ws
            self.target = None

    def project(self) -> None:
        with torch.no_grad():
            w = torch.clamp(self.weight, -self.wmax, self.wmax)
            self.weight.copy_(torch.where(self.frozen, torch.round(w), w))

    def round_more(self, fraction: float) -> None:
        """Round and freeze the weights closest to the grid until `fraction` of the synapses are frozen."""
        with torch.no_grad():
            if fraction >= 1.0:  # everything: no ordering needed (an argsort of VGG's FC1 takes seconds)
                self.frozen[:] = True
                self.project()
                return
            live = self._live()
            target = int(round(fraction * int(live.sum())))
            dist = (self.weight - torch.round(self.weight)).abs()
            dist = torch.where(self.frozen | ~live, torch.full_like(dist, -1.0), dist)
            n_new = target - int((self.frozen & live).sum())
            if n_new > 0:
                order = torch.argsort(dist.flatten())
                candidates = order[(dist.flatten()[order] >= 0)][:n_new]
                self.frozen.view(-1)[candidates] = True
            self.project()

    def snapshot(self) -> dict[str, object]:
        """Everything training changes, copied (see `restore`)."""
        return {"weight": self.weight.detach().clone(), "bias": self.bias.detach().clone(),
                "log_scale": self.log_scale.detach().clone(), "frozen": self.frozen.clone(), "domain": self.domain,
                "ws": None if self.ws is None else self.ws.clone(), "in_scale": self.in_scale,
                "scale_grad": self.log_scale.requires_grad}

    def restore(self, snap: dict[str, object]) -> None:
        with torch.no_grad():
            for name in ("weight", "bias", "log_scale"):
                getattr(self, name).copy_(snap[name])
        self.frozen, self.domain, self.ws, self.in_scale = snap["frozen"], snap["domain"], snap["ws"], snap["in_scale"]
        self.log_scale.requires_grad_(snap["scale_grad"])

    def quantized(self) -> o.CoreOp:
        with torch.no_grad():
            if self.ws is None:
                self.to_code_domain()
            k, step = self.k, float(self.scale)
            # int8 holds every code up to 8 bits: a quarter of the memory of int64 for VGG-size layers
            w_int = self._masked(torch.round(self.weight)).to(torch.int8 if self.wmax <= 127 else torch.int32)
            w_int = torch.cat([w_int, -w_int]) if self.tied else w_int
            bias = torch.cat([torch.round((self.bias - i * self.qmax * step) / self.ws) for i in range(k)])
            q = o.CoreQuant(
                weight_int=np.concatenate([w_int.numpy()] * k),
                weight_scale=np.concatenate([self.ws.double().numpy()] * k),
                bias_int=bias.to(torch.int64).numpy(),
                in_scale=self.in_scale.double().numpy(),
                out_scale=step,
                out_max=self.qmax,
            )
        op = self.full_op
        in_scale = _weight_in_scale(op, self.in_scale).double().numpy()
        weight = q.weight_int * (q.weight_scale.reshape(-1, 1, 1, 1) / in_scale).astype(np.float32)  # float32
        return o.CoreOp(weight, (q.bias_int * q.weight_scale).astype(np.float32), op.stride,
                        op.padding, op.groups, op.dense, op.mask, q, op.fixed, op.population)


def fixed_core(op: o.CoreOp, in_scale: Tensor, out_max: int) -> o.CoreOp:
    """A max-pooling core: +-1 weights on codes of one scale pass codes through exactly."""
    s = float(in_scale[0])
    if not torch.allclose(in_scale, in_scale[:1].expand_as(in_scale)):
        raise ConfigError("a max-pooling core reads channels of different scales")
    q = o.CoreQuant(
        weight_int=np.rint(op.weight).astype(np.int64),
        weight_scale=np.full(op.out_channels, s),
        bias_int=np.zeros(op.out_channels, np.int64),
        in_scale=in_scale.double().numpy(),
        out_scale=s,
        out_max=out_max,
    )
    return o.CoreOp(op.weight, op.bias, op.stride, op.padding, op.groups, op.dense, op.mask, q, True, op.population)


# --- the walk over the graph ----------------------------------------------------------------------------


def _out_max(graph: Graph, hw: HardwareSpec) -> dict[str, int]:
    """Largest output code of each core: an edge to another core must fit both ADC and DAC."""
    feeds = feeds_core(graph)
    return {n.name: hw.code_max(to_core=feeds[n.name]) for n in graph if isinstance(n.op, o.CoreOp)}


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


@dataclass
class _Walk:
    """State of the walk over the graph: what the chip computes so far on the calibration data."""

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
            src = self.trains[node.inputs[0]]
            chunks = [spiking.core_trains(op, src[i : i + 128].float(), neuron).bool() for i in range(0, len(src), 128)]
            self.trains[node.name] = torch.cat(chunks)
            counts = self.trains[node.name].sum(dim=1, dtype=torch.float32)
            self.acts[node.name] = counts * op.quant.out_scale
        elif isinstance(op, o.Pad):
            step = float(self.scales[node.inputs[0]][0])
            self.trains[node.name] = spiking.pad_trains(self.trains[node.inputs[0]].float(), op, step, neuron).bool()
            self.acts[node.name] = FLOAT_EXEC[type(op)](op, ins)
        else:
            self.trains[node.name] = spiking.wire(op, [self.trains[s] for s in node.inputs])
            self.acts[node.name] = FLOAT_EXEC[type(op)](op, ins)

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
        names = {n.name for n in block}
        ext = list(dict.fromkeys(s for n in block for s in n.inputs if s not in names))
        per_image = sum(int(np.prod(self.shapes[n.name])) for n in block)
        n_images = len(self.acts[ext[0]])
        chunk = max(1, min(n_images, self.chunk_floats // max(per_image, 1)))
        out: dict[str, Tensor] = {}
        top = dict.fromkeys(peaks, -np.inf)
        for lo in range(0, n_images, chunk):
            v = {s: self.acts[s][lo : lo + chunk] for s in ext}
            for n in block:
                op, ins = ops[n.name], [v[s] for s in n.inputs]
                v[n.name] = core_accumulator(op, ins[0]) if n.name in peaks else FLOAT_EXEC[type(op)](op, ins)
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
    from dse.ir.shapes import infer_shapes

    walk = _Walk(graph, hw, options, teacher, reports, infer_shapes(graph), _out_max(graph, hw),
                 chunk_floats)
    last_use = {src: i for i, n in enumerate(graph) for src in n.inputs}
    done_blocks: set[str] = set()
    in_max = hw.input_code_max
    lo, hi = value_range
    if lo < 0:
        raise ConfigError(f"the input range starts below 0 ({lo}); chip inputs are unsigned codes")
    in_step = (hi - lo) / in_max if hi > 0 else 1.0

    for i, node in enumerate(graph):
        op = node.op
        if node.block_name in done_blocks:
            pass  # committed with its block
        elif isinstance(op, o.Input):
            in_step /= op.population  # a population spreads the range over its copies at a finer step
            new = o.Input(op.shape, in_step, in_max, op.population)
            walk.new_ops[node.name] = new
            walk.acts[node.name] = FLOAT_EXEC[o.Input](new, [calib_x])
            walk.scales[node.name] = torch.full((op.shape[0] * op.population,), in_step)
            if walk.spiking:
                codes = torch.round(walk.acts[node.name] / in_step)
                walk.trains[node.name] = spiking.encode(codes, hw.neuron.timesteps, hw.neuron.encoding,
                                                        torch.Generator().manual_seed(options.seed)).bool()
        elif isinstance(op, o.CoreOp):
            block = [n for n in graph if n.block_name == node.block_name]
            done_blocks.add(node.block_name)
            if progress:
                progress(node.block_name)
            _tune_block(walk, block)
        else:
            if isinstance(op, o.Pad):  # the host pads with the code nearest to the normalized zero
                src = walk.new_ops[node.inputs[0]]
                k = src.population if isinstance(src, o.Input) else 1
                scale = walk.scales[node.inputs[0]].numpy()
                channels = len(scale) // k
                codes = np.clip(np.rint(np.broadcast_to(np.asarray(op.value), (channels,)) / scale[:channels]),
                                0, in_max * k)
                codes = np.concatenate([np.clip(codes - i * in_max, 0, in_max) for i in range(k)])  # copies
                op = o.Pad(op.padding, tuple(float(v) for v in codes * scale))
            walk.commit(node, op)
            if not isinstance(op, o.Readout):
                walk.scales[node.name] = _channel_scales(op, [walk.scales[s] for s in node.inputs],
                                                         [walk.shapes[s] for s in node.inputs])
        for src in node.inputs:  # free calibration activations no later node reads
            if last_use.get(src, -1) <= i:
                walk.forget(src)
    return graph.replace_nodes(Node(n.name, walk.new_ops[n.name], n.inputs, n.block) for n in graph)


def _relative_mse(got: Tensor, ref: Tensor, chunk_floats: int) -> float:
    """``mse(got, ref) / var(ref)`` over a few images at a time: at once, the differences and the variance's
    temporaries of an ImageNet-size layer on the calibration images would take more than the layer itself."""
    rows = max(1, chunk_floats // max(ref[0].numel(), 1))
    sq_err = total = sq_total = 0.0
    for lo in range(0, len(ref), rows):
        g, r = got[lo : lo + rows], ref[lo : lo + rows]
        sq_err += float(((g - r) ** 2).sum(dtype=torch.float64))
        total += float(r.sum(dtype=torch.float64))
        sq_total += float((r.double() ** 2).sum())
    n = ref.numel()
    var = (sq_total - total * total / n) / max(n - 1, 1)  # unbiased, as torch's var
    return sq_err / n / (var + 1e-12)


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


def _core_inputs(walk: _Walk, block: list[Node]) -> Callable[[Node], Callable[[], Iterator[Tensor]] | None]:
    """For `correct_bias`: per core of a block, the calibration values it reads, `BIAS_CORRECTION_IMAGES` at a
    time: committed values, carried through the block's wiring; None behind another core of the block (a
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
        n, step = len(walk.acts[src]), BIAS_CORRECTION_IMAGES
        return lambda: (value(node.inputs[0], lo, lo + step) for lo in range(0, n, step))

    return inputs


def _round_block_spiking(walk: _Walk, block: list[Node], new_core: Callable[[Node], QCore],
                         propagate: Callable[[Node], None]) -> None:
    """The baseline on a spiking chip, node by node: each node's input spike counts are committed first."""
    for n in block:
        if isinstance(n.op, o.CoreOp):
            core = new_core(n)
            x = walk.acts[n.inputs[0]]
            with torch.no_grad():  # the baseline: the step from the float output's max, weights rounded
                top = float(torch.relu(core.pre(x)).max())
                core.round_weights(keep_target=walk.options.bias_correction)
                if walk.options.bias_correction:
                    core.correct_bias(x[lo : lo + BIAS_CORRECTION_IMAGES]
                                      for lo in range(0, len(x), BIAS_CORRECTION_IMAGES))
                core.set_step(top)
            walk.commit(n, core.quantized())
        else:
            walk.commit(n, n.op)
        propagate(n)


def _round_block(walk: _Walk, block: list[Node], new_core: Callable[[Node], QCore],
                 propagate: Callable[[Node], None]) -> None:
    """The baseline, level by level: a core's weights are rounded as soon as its input steps are known, its
    integer accumulator (which does not depend on its own step) gives its largest output, hence its step.
    A split costs one pass over the calibration data per level of cores (partial sums, then the merge), and
    the last level's accumulators give the block's output without another pass."""
    level: dict[str, int] = {}  # cores on the longest path inside the block up to the node (0: wiring on inputs)
    for n in block:
        up = max((level[s] for s in n.inputs if s in level), default=0)
        level[n.name] = up + isinstance(n.op, o.CoreOp)
    cores: dict[str, QCore] = {}
    ops: dict[str, o.Op] = {n.name: n.op for n in block}
    for n in block:
        if level[n.name] == 0:
            propagate(n)
    last = max(level.values())
    read_after = walk.read_after(block)
    accs: dict[str, Tensor] = {}
    reuse = False
    core_inputs = _core_inputs(walk, block)
    for lvl in range(1, last + 1):
        now = [n for n in block if isinstance(n.op, o.CoreOp) and level[n.name] == lvl]
        peaks = {}
        for n in now:
            core = cores[n.name] = new_core(n)
            x = core_inputs(n) if walk.options.bias_correction else None
            core.round_weights(keep_target=x is not None)
            if x is not None:
                core.correct_bias(x())
            core.set_step(1.0)  # provisional: the accumulator does not depend on it
            ops[n.name] = core.quantized()
            base = core.op.out_channels  # one copy of a population code
            ws = core.ws[:base].reshape(-1, *([1] * (len(walk.shapes[n.name]) - 1)))
            peaks[n.name] = lambda acc, ws=ws, base=base: (acc[:, :base] * ws).max()
        # the last level keeps its accumulators when they are all the block hands on (and no copy's bias
        # depends on the step, as a population's does)
        reuse = lvl == last and read_after <= set(peaks) and all(cores[n].k == 1 for n in peaks)
        upstream = {m.name for n in now for m in _ancestors(block, n)}
        needed = [n for n in block if n.name in upstream]
        kept, tops = walk.run_block(needed, ops, read_after if reuse else set(), peaks=peaks)
        accs.update(kept)
        for n in now:
            cores[n.name].set_step(max(tops[n.name], 0.0))
            ops[n.name] = cores[n.name].quantized()
        for n in block:
            if level[n.name] == lvl:
                propagate(n)
    if reuse:
        for n in block:
            walk.new_ops[n.name] = ops[n.name]
        for name, acc in accs.items():
            walk.acts[name] = core_output(ops[name], acc)
    else:
        walk.commit_block(block, ops)


def _tune_block(walk: _Walk, block: list[Node]) -> None:
    hw, options, acts, scales, shapes = walk.hw, walk.options, walk.acts, walk.scales, walk.shapes
    wmax, per_column, out_max, teacher = hw.weight_max, hw.weights.scale == "per_column", walk.out_max, walk.teacher
    names = {n.name for n in block}
    out_name = block[-1].name  # the merge core (or the core itself) carries the block's name
    ext = list(dict.fromkeys(s for n in block for s in n.inputs if s not in names))
    cores: dict[str, QCore] = {}
    local_scales = {s: scales[s] for s in ext}

    def in_scale_of(node: Node) -> Tensor:
        return local_scales[node.inputs[0]]

    def propagate(n: Node) -> None:
        """Scales inside the block follow from the cores' output steps."""
        if isinstance(n.op, o.CoreOp):
            local_scales[n.name] = torch.full((n.op.out_channels,), float(cores[n.name].scale.detach()))
        else:
            local_scales[n.name] = _channel_scales(n.op, [local_scales[s] for s in n.inputs],
                                                   [shapes[s] for s in n.inputs])

    if len(block) == 1 and block[0].op.fixed:
        n = block[0]
        walk.commit(n, fixed_core(n.op, in_scale_of(n), out_max[n.name]))
        scales[n.name] = torch.full((n.op.out_channels,), walk.new_ops[n.name].quant.out_scale)
        return

    if options.mode == "none":  # the baseline: each core's step from its largest output
        def new_core(n: Node) -> QCore:  # once its input steps are known
            cores[n.name] = QCore(n.op, in_scale_of(n), out_max[n.name], wmax, per_column, tie_above=0)
            return cores[n.name]

        (_round_block_spiking if walk.spiking else _round_block)(walk, block, new_core, propagate)
        for n in block:
            scales[n.name] = local_scales[n.name]
        if walk.reports is not None:
            walk.reports.append(BlockReport(out_name, len(cores)))
        return

    gen = torch.Generator().manual_seed(options.seed)
    geometry = patch_geometry(block, ext)
    target = teacher(out_name)
    taps = 1
    if geometry is not None:
        x, target, taps = sample_patches(acts[ext[0]], target, geometry, options.max_rows, gen,
                                          walk.chunk_floats)
        x_ext = {ext[0]: x}
    else:
        x_ext = {s: acts[s] for s in ext}

    def run_block(v: dict[str, Tensor], call) -> dict[str, Tensor]:
        for n in block:
            if isinstance(n.op, o.CoreOp):
                v[n.name] = call(cores[n.name], v[n.inputs[0]])
            elif geometry is not None and isinstance(n.op, o.Slice) and n.inputs[0] == ext[0]:
                v[n.name] = v[n.inputs[0]][:, n.op.start * taps : n.op.stop * taps]  # patch columns
            else:
                v[n.name] = FLOAT_EXEC[type(n.op)](n.op, [v[s] for s in n.inputs])
        return v

    def ext_codes(idx: Tensor | slice) -> dict[str, Tensor]:
        out = {}
        for s in ext:
            scale = local_scales[s].repeat_interleave(taps) if geometry is not None else local_scales[s]
            xs = x_ext[s][idx]
            out[s] = xs / (scale if xs.dim() == 2 else scale.reshape(-1, 1, 1))
        return out

    # init: walk the block once on (a sample of) the quantized inputs; each core's step from its own output
    sample = slice(0, min(4096, len(x_ext[ext[0]])))
    vals = {s: x_ext[s][sample] for s in ext}
    for n in block:
        if isinstance(n.op, o.CoreOp):
            core = QCore(n.op, in_scale_of(n), out_max[n.name], wmax, per_column, patch=geometry is not None,
                         tie_above=options.tie_pairs_above)
            cores[n.name] = core
            with torch.no_grad():
                core.init_scale(torch.relu(core.pre(vals[n.inputs[0]])))
                vals[n.name] = core(vals[n.inputs[0]])
        elif geometry is not None and isinstance(n.op, o.Slice) and n.inputs[0] == ext[0]:
            vals[n.name] = vals[n.inputs[0]][:, n.op.start * taps : n.op.stop * taps]
        else:
            vals[n.name] = FLOAT_EXEC[type(n.op)](n.op, [vals[s] for s in n.inputs])
        propagate(n)
    del vals
    report = BlockReport(out_name, len(cores))

    block_error = block_loss(walk.graph, out_name, target, options.output_loss)
    n_samples = target.shape[0]
    nominal = min(options.batch_size * (16 if geometry is not None and taps > 1 else 1), n_samples)
    # an ImageNet-size block costs millions of MACs per row: fewer rows per step keep a step's work bounded
    per_row = sum(c.weight.numel() * (1 if geometry is not None or c.op.dense else
                                      int(np.prod(shapes[name][1:]))) for name, c in cores.items())
    batch = int(np.clip(options.step_macs // max(per_row, 1), min(options.min_batch, nominal), nominal))
    # a smaller step is a noisier one: Adam's steps shrink with the square root of the rows (1 at full size)
    lr_factor = (batch / nominal) ** 0.5
    # weights train only where the calibration data determine them: VGG's FC1 (103 M weights) against 32
    # images x 4096 outputs would be fitted to noise; there only biases and steps move, weights are rounded
    weights_train = n_samples * int(np.prod(target.shape[1:])) >= sum(c.weight.numel() for c in cores.values())
    measure = torch.arange(min(n_samples, 8192, max(4 * batch, 1024)))  # rows each phase's loss is measured on

    def loss_of(idx: Tensor, domain: str) -> Tensor:
        if domain == "real":
            out = run_block({s: x_ext[s][idx] for s in ext}, lambda c, x: c(x))[out_name]
        else:
            out = run_block(ext_codes(idx), lambda c, x: c(x))[out_name] * cores[out_name].scale.detach()
        return block_error(decode_population(out, cores[out_name].k), target[idx])

    def train(steps: int, lr_groups: list[dict], domain: str, phase: str) -> None:
        if steps <= 0:
            return
        opt = torch.optim.Adam([{**g, "lr": g["lr"] * lr_factor} for g in lr_groups if g["params"]])
        for _ in range(steps):
            idx = torch.randint(0, n_samples, (batch,), generator=gen)
            loss = loss_of(idx, domain)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if domain == "code":
                for c in cores.values():
                    if c.weight.grad is not None:
                        c.weight.grad[c.frozen] = 0
            opt.step()
            if domain == "code":
                for c in cores.values():
                    c.project()
        with torch.no_grad():
            report.losses[phase] = float(loss_of(measure, domain))

    def to_code_domain(keep_target: bool = False) -> None:
        for n in block:  # steps are final now: inputs to internal cores have known scales
            if n.name in cores:
                cores[n.name].in_scale = in_scale_of(n)
                cores[n.name].to_code_domain(keep_target)
            propagate(n)

    def correct_biases() -> None:
        """Bias correction of every core whose input is known (the cores that read the block's inputs)."""
        core_inputs = _core_inputs(walk, block)
        for n in block:
            x = core_inputs(n) if n.name in cores else None
            if x is not None:
                cores[n.name].correct_bias(x())
        for c in cores.values():
            c.target = None

    with torch.no_grad():
        report.losses["init"] = float(loss_of(measure, "real"))
    start = {name: c.snapshot() for name, c in cores.items()}
    weights = [c.weight for c in cores.values()] if weights_train else []
    for c in cores.values():
        c.weight.requires_grad_(weights_train)
    params = [{"params": weights, "lr": options.lr},
              {"params": [c.bias for c in cores.values()], "lr": options.lr},
              {"params": [c.log_scale for c in cores.values()], "lr": options.lr * 10}]
    train(options.free_steps, params, "real", "free")
    if options.free_steps > 0 and not report.losses["free"] * (1 - KEEP_MARGIN) <= report.losses["init"]:
        for name, c in cores.items():  # free training made it worse: the later phases start from the start
            c.restore(start[name])
    to_code_domain()
    grid = [{"params": weights, "lr": options.grid_lr * max(wmax, 1) ** 0.5},
            {"params": [c.bias for c in cores.values()], "lr": options.lr}]
    train(options.range_steps, grid, "code", "range")
    for frac in options.round_fractions if weights_train else (1.0,):
        for c in cores.values():
            c.round_more(frac)
        train(options.round_steps if frac < 1.0 else 0, grid, "code", f"round{frac:g}")
    for c in cores.values():
        c.round_more(1.0)

    # a block never leaves tuning worse than its start rounded as it is (training on a few rows per step can
    # wander off): measured on the same rows, the rounded start is kept where it is clearly better (by more
    # than `KEEP_MARGIN`: a closer call is within the noise of the sampled rows, and the tuned block has
    # learned to correct its real inputs)
    with torch.no_grad():
        tuned_loss = report.losses["tuned"] = float(loss_of(measure, "code"))
        tuned = {name: c.snapshot() for name, c in cores.items()}
        for name, c in cores.items():
            c.restore(start[name])
        to_code_domain(keep_target=options.bias_correction)
        for c in cores.values():
            c.round_more(1.0)
        rounded_loss = report.losses["rounded_start"] = float(loss_of(measure, "code"))
        if options.bias_correction:  # the rounded start with its biases corrected, where that is better
            plain = {name: c.snapshot() for name, c in cores.items()}
            correct_biases()
            corrected = report.losses["rounded_start_bias_corrected"] = float(loss_of(measure, "code"))
            if corrected < rounded_loss:
                rounded_loss = corrected
            else:
                for name, c in cores.items():
                    c.restore(plain[name])
        if not tuned_loss * (1 - KEEP_MARGIN) <= rounded_loss:  # NaN too: a step size blown up by training
            log.info("block %s: its rounded start (loss %.4g) beats the tuned block (%.4g); kept",
                     out_name, rounded_loss, tuned_loss)
        else:
            for name, c in cores.items():
                c.restore(tuned[name])
            for n in block:
                propagate(n)
    del start, tuned
    for c in cores.values():
        c.weight.requires_grad_(True)

    if walk.spiking and options.spike_steps > 0:
        tune_spiking(walk, block, ext, cores, target_full=teacher(out_name), geometry=geometry, report=report,
                     loss=block_error)
        for n in block:  # thresholds moved: scales inside the block follow
            if n.name in cores:
                cores[n.name].in_scale = in_scale_of(n)
            propagate(n)

    # commit: the integer ops, and their outputs on the calibration set, exactly as the chip computes them
    walk.commit_block(block, {n.name: cores[n.name].quantized() if isinstance(n.op, o.CoreOp) else n.op
                              for n in block})
    for n in block:
        scales[n.name] = local_scales[n.name]
    with torch.no_grad():
        got = decode_population(acts[out_name], cores[out_name].k)
        report.losses["final"] = _relative_mse(got, teacher(out_name), walk.chunk_floats)
    if walk.reports is not None:
        walk.reports.append(report)
    log.info("tuned block %s (%d cores, %d rows per step%s): %s", out_name, len(cores), batch,
             "" if weights_train else ", weights rounded (too few calibration values to train them)",
             {k: round(v, 4) for k, v in report.losses.items()})


