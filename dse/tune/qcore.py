"""`QCore`: one core-op in training. Phase 1 works on real values, phases 2-3 on codes (weights in grid units);
`quantized()` gives its integer form."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from dse.errors import ConfigError, ConstraintError
from dse.hardware.spec import EXACT_FLOAT64
from dse.ir import ops as o
from dse.sim.float_exec import conv_core, core_accumulator, grouped_linear
from dse.tune.quantizers import best_act_scale, best_weight_scale, fake_quant_act, round_clamp_ste, round_ste
from dse.tune.scales import weight_in_scale

if TYPE_CHECKING:
    from dse.tune.noise import StepNoise

Tensor = torch.Tensor


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
        self.weight = nn.Parameter(self.masked(torch.tensor(op.weight[:rows], dtype=torch.float32)))
        self.bias = nn.Parameter(torch.as_tensor(op.bias, dtype=torch.float32).clone())
        self.log_scale = nn.Parameter(torch.zeros(()))
        self.domain = "real"
        self.ws: Tensor | None = None  # weight step per output channel (both halves of a pair)
        self.target: Tensor | None = None  # weights in grid units before rounding (see `correct_bias`)
        self.frozen = torch.zeros(self.weight.shape, dtype=torch.bool)
        self.noise: StepNoise | None = None  # tuning.noise_aware: a drawn chip's errors in training steps

    def masked(self, w: Tensor) -> Tensor:
        """`w` with the synapses the op lacks at zero."""
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
        w = self.masked(self.weight)
        if self.noise is not None:
            w = self.noise.weights(self, w)
        if self.copy_inputs is not None:
            x = x[:, : self.copy_inputs]
        if self.patch:
            y = grouped_linear(x, w, None, self.op.groups)
        else:
            y = conv_core(x, w, None, self.op)
        if self.tied:
            y = torch.cat([y, -y], dim=1)
        if self.noise is not None:
            y = self.noise.outputs(self, y)
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
        return round_clamp_ste(y / self.scale.detach(), 0, self.qmax)  # codes

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
        return self.weight * self._rows(weight_in_scale(self.op, self.in_scale))

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
            ws = best_weight_scale(w_code, self.wmax, self.per_column,
                                   stored=None if self.noise is None else self.noise.stored)
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
            err_w, float_w = self.masked(self.weight - self.target), self.masked(self.target)
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

    def quantized(self, name: str) -> o.CoreOp:
        """The core's integer form; `name`: the core-op's, for the error that refuses a bias the accumulator
        cannot hold."""
        with torch.no_grad():
            if self.ws is None:
                self.to_code_domain()
            k, step = self.k, float(self.scale)
            # int8 holds every code up to 8 bits: a quarter of the memory of int64 for VGG-size layers
            w_int = self.masked(torch.round(self.weight)).to(torch.int8 if self.wmax <= 127 else torch.int32)
            w_int = torch.cat([w_int, -w_int]) if self.tied else w_int
            bias = torch.cat([torch.round((self.bias - i * self.qmax * step) / self.ws) for i in range(k)])
            _check_bias(name, bias, self.ws)
            q = o.CoreQuant(
                weight_int=np.concatenate([w_int.numpy()] * k),
                weight_scale=np.concatenate([self.ws.double().numpy()] * k),
                bias_int=bias.to(torch.int64).numpy(),
                in_scale=self.in_scale.double().numpy(),
                out_scale=step,
                out_max=self.qmax,
            )
        op = self.full_op
        in_scale = weight_in_scale(op, self.in_scale).double().numpy()
        weight = q.weight_int * (q.weight_scale.reshape(-1, 1, 1, 1) / in_scale).astype(np.float32)  # float32
        return o.CoreOp(weight, (q.bias_int * q.weight_scale).astype(np.float32), op.stride,
                        op.padding, op.groups, op.dense, op.mask, q, op.fixed, op.population)


def _check_bias(name: str, bias: Tensor, ws: Tensor) -> None:
    """Refuse (ConstraintError) a bias past 2**53 accumulator units, which neither the integer simulator's float64
    nor int64 holds exactly: weights of 1e-20 beside a bias of 1 (a weight step of 1e-24) made a bias of 8e23,
    which the cast to int64 wrapped into -2**63, a silently wrong network."""
    top = float(bias.abs().max()) if bias.numel() else 0.0
    if not top < EXACT_FLOAT64:
        raise ConstraintError(
            f"core {name}: its bias is {top:.3g} accumulator units (its weight step {float(ws.min()):.3g}), past "
            "2**53, what the chip's simulator holds exactly: the layer's weights are too small beside its bias")


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


def fixed_output(op: o.CoreOp, x: Tensor) -> Tensor:
    """A committed max-pooling core's output on real input `x`: what `FLOAT_EXEC` computes, a third faster.
    Its weights are +-1 and its output step its input's (`fixed_core`): ``weight_scale / out_scale`` is 1.0
    exactly, so the accumulator already holds the output codes and only the clamp is left of `core_output`'s
    requantization."""
    q = op.quant
    return core_accumulator(op, x).clamp_(0, q.out_max).mul_(q.out_scale)
