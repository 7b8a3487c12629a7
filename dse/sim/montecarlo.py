"""Monte-Carlo evaluation: N manufactured chips (`hardware.device`), simulated at once, against the original.

`evaluate_instances` draws the chips (`dse.sim.device_noise.draw_instances`) and runs them through the
integer (or spiking) simulator with rules of its own, the N instances stacked along the batch axis, each core
one batched product over them where it can (`dse.sim.device_noise.instance_linear`), so 20 chips cost a few
times one. Its
`DeviceReport` is report.json's `device` block: the accuracy delta's mean, std and 5th percentile of accuracy
over the instances.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from dse.bounds import check_int
from dse.errors import ConfigError
from dse.hardware.spec import HardwareSpec
from dse.ir import ops as o
from dse.ir.graph import Graph
from dse.sim.device_noise import Instances, draw_instances, instance_linear, read_noise
from dse.sim.integer import EXACT_LIMIT_F32, INTEGER_EXEC, run_integer
from dse.sim.spiking import SPIKING_EXEC, integrate, run_spiking

Tensor = torch.Tensor


@dataclass(frozen=True)
class MonteCarlo:
    """`evaluate.*`: how many chip instances a compile is evaluated on."""

    instances: int = 1  # chips drawn from hardware.device and simulated (needs a non-ideal device beyond 1)
    seed: int = 0  # instance i draws from the stream (seed, i): the same chip whatever `instances`

    def __post_init__(self) -> None:
        check_int("evaluate.instances", self.instances, 1)
        check_int("evaluate.seed", self.seed, 0)  # a seed starts numpy streams: not negative

    def check(self, hw: HardwareSpec) -> None:
        """The instances need a device whose chips differ."""
        if self.instances > 1 and not hw.device.random:
            raise ConfigError(f"evaluate.instances={self.instances} needs a device whose chips differ "
                              "(hardware.device.* variation, noise or stuck-at rates)")


@dataclass(frozen=True)
class DeviceReport:
    """The compiled network on `instances` drawn chips (report.json's `device`)."""

    instances: int  # chips simulated
    seed: int  # evaluate.seed
    accuracy_delta_pp_mean: float | None  # original - chip accuracy, percentage points, mean over the chips
    accuracy_delta_pp_std: float | None  # its standard deviation over the chips (ddof 1; 0 for one chip)
    accuracy_p5: float | None  # 5th percentile of the chips' accuracy: 95 % of chips do at least this well
    accuracy_delta_pp_p95: float | None  # the same as a delta: 95 % of chips lose at most this
    accuracy_delta_pp: list[float] | None  # per chip
    agreement_mean: float  # top-1 agreement with the original, mean over the chips
    seconds: float  # wall seconds of drawing and simulating every chip
    fault_map: str | None = None  # the known chip's stuck cells every instance has

    def to_dict(self) -> dict:
        return asdict(self)

    def columns(self) -> dict[str, float]:
        """The numeric columns of a sweep's trial row (`DEVICE_COLUMNS`), named ``device.<field>``."""
        return {f"device.{k}": getattr(self, k) for k in DEVICE_COLUMNS}


# a trial row's columns from a non-ideal device (what a study's objectives and figures may name)
DEVICE_COLUMNS = ("accuracy_delta_pp_mean", "accuracy_delta_pp_std", "accuracy_p5", "accuracy_delta_pp_p95",
                  "agreement_mean")


def _instance_core(inst: Instances, name: str, op: o.CoreOp, x: Tensor, gen: torch.Generator,
                   shared: bool = False) -> Tensor:
    """Every instance's accumulator (I*N, O, ...) in accumulator units, read noise included (bias not), of x
    (I*N, C, ...), or (N, C, ...) the same for every instance (`shared`)."""
    row_sum = inst.row_sum(name)
    # float32 where no accumulator can reach 2**24 (as the integer simulator): codes below 2**16 need no look
    bound = row_sum * (2**16 if row_sum * 2**16 < EXACT_LIMIT_F32 else float(x.max()))
    dtype = torch.float32 if bound < EXACT_LIMIT_F32 else torch.float64
    if shared and name in inst.read_std:  # every instance's reads draw their own noise
        x, shared = x.repeat(inst.count, *([1] * (x.dim() - 1))), False
    acc = instance_linear(x.to(dtype), inst.weights_as(name, dtype), op, shared)
    if name in inst.read_std:
        acc = acc + read_noise(x.to(dtype), op, inst.read_std[name], gen)
    return acc


def _per_instance(values: Tensor, like: Tensor) -> Tensor:
    """(I, O, ...) per-instance values laid out like `like` (I*N, O, ...), instance-major."""
    out = values.repeat_interleave(like.shape[0] // values.shape[0], dim=0)
    return out.reshape(*out.shape, *([1] * (like.dim() - out.dim())))


def integer_table(graph: Graph, inst: Instances, gen: torch.Generator) -> dict:
    """`INTEGER_EXEC` for N instances, every core with its drawn weights and converters. The input's codes are
    the same for every instance: they (and wiring on them alone) stay N rows, every instance's first cores
    computed at once from them (`instance_linear`); wiring that meets per-instance rows repeats them."""
    names = {id(n.op): n.name for n in graph.of_type(o.CoreOp)}
    noise = inst.device.adc_noise_lsb
    rows = [0]  # the batch's samples: a tensor of that many rows is the same for every instance

    def _input(op, xs, steps):
        codes, scale = INTEGER_EXEC[o.Input](op, xs, steps)
        rows[0] = len(codes)
        return codes, scale

    def _wire(rule):
        def run(op, codes, steps):
            if inst.count > 1 and len({len(c) for c in codes}) > 1:
                codes = [c.repeat(inst.count, *([1] * (c.dim() - 1))) if len(c) == rows[0] else c for c in codes]
            return rule(op, codes, steps)
        return run

    def _core(op, codes, steps):
        name, q = names[id(op)], op.quant
        acc = _instance_core(inst, name, op, codes[0], gen, shared=inst.count > 1 and len(codes[0]) == rows[0])
        # acc * mult + bias * mult in the accumulator's type (float32 unless it could reach 2**24), in place: the
        # converters of I chips are most of the work; float32 rounds differently from float64 only at a tie
        mult = torch.as_tensor(q.weight_scale / q.out_scale, dtype=acc.dtype)
        bias = torch.as_tensor(q.bias_int, dtype=acc.dtype) * mult
        shape = (-1,) if op.dense else (-1, 1, 1)
        y = acc.mul_(mult.reshape(shape)).add_(bias.reshape(shape))
        if name in inst.adc_offset:
            y.add_(_per_instance(inst.adc_offset[name].to(y.dtype), y))
        if noise:
            y.add_(torch.randn(y.shape, generator=gen, dtype=y.dtype), alpha=noise)
        return torch.round_(y).clamp_(0, q.out_max).float(), q.out_scale

    return {**{kind: _wire(rule) for kind, rule in INTEGER_EXEC.items()}, o.Input: _input, o.CoreOp: _core}


def spiking_table(graph: Graph, inst: Instances, gen: torch.Generator) -> dict:
    """`SPIKING_EXEC` for N instances: every core with its drawn weights and its neurons' thresholds."""

    def _input(node, xs, steps, batch):
        trains, scale = SPIKING_EXEC[o.Input](node, xs, steps, batch)
        return trains.repeat(inst.count, *([1] * (trains.dim() - 1))), scale

    def _core(node, trains, steps, batch):
        op, q, x, n_inst = node.op, node.op.quant, trains[0], inst.count
        n = x.shape[0] // n_inst
        rows = x.reshape(-1, *x.shape[2:])  # (I*N*T, C, ...), instance-major
        acc = _instance_core(inst, node.name, op, rows, gen).to(x.dtype)
        acc = acc.reshape(*x.shape[:2], *acc.shape[1:])  # (I*N, T, O, ...)
        bias = torch.as_tensor(q.bias_int / batch.neuron.timesteps, dtype=x.dtype)
        current = acc + (bias if op.dense else bias.reshape(-1, 1, 1))
        th = torch.as_tensor(q.out_scale / q.weight_scale, dtype=x.dtype)
        th = (th if op.dense else th.reshape(-1, 1, 1)).expand(n_inst, *current.shape[2:])
        if node.name in inst.threshold:
            th = th * inst.threshold[node.name].to(x.dtype)
        return integrate(current, th.repeat_interleave(n, dim=0), batch.neuron), q.out_scale

    return {**SPIKING_EXEC, o.Input: _input, o.CoreOp: _core}


def run_instances(graph: Graph, hw: HardwareSpec, x, inst: Instances, *, seed: int = 0,
                  batch_size: int = 500) -> np.ndarray:
    """Every instance's decoded outputs on `x`: (instances, samples, outputs). Inside the simulators the
    instances are stacked instance-major (row i * N + n) along the batch axis: wiring moves them as samples."""
    gen = torch.Generator().manual_seed(seed)
    outs = []
    batch_size = max(1, batch_size // inst.count)  # the simulators' tensors as large as one chip's batch
    for start in range(0, len(x), batch_size):
        xb = np.asarray(x[start : start + batch_size])
        if hw.spiking:
            logits, _, _ = run_spiking(graph, hw.neuron, xb, batch_size=len(xb), seed=seed + start,
                                       table=spiking_table(graph, inst, gen))
        else:
            logits, _ = run_integer(graph, xb, batch_size=len(xb), table=integer_table(graph, inst, gen))
        outs.append(logits.reshape(inst.count, len(xb), *logits.shape[1:]))
    return np.concatenate(outs, axis=1)


def evaluate_instances(graph: Graph, hw: HardwareSpec, x, original: np.ndarray, labels: np.ndarray | None,
                       mc: MonteCarlo, fault_map: dict[str, np.ndarray] | None = None,
                       batch_size: int = 500) -> DeviceReport:
    """Draw `mc.instances` chips from `hw.device` and measure each against the original network's logits."""
    start = time.perf_counter()
    inst = draw_instances(graph, hw, mc.instances, mc.seed, fault_map)
    logits = run_instances(graph, hw, x, inst, seed=mc.seed, batch_size=batch_size)
    agree = [float((lg.argmax(1) == original.argmax(1)).mean()) for lg in logits]
    deltas, acc = None, None
    if labels is not None:
        acc = np.array([float((lg.argmax(1) == labels).mean()) for lg in logits])
        deltas = (float((original.argmax(1) == labels).mean()) - acc) * 100.0
    return DeviceReport(
        instances=mc.instances, seed=mc.seed,
        accuracy_delta_pp_mean=None if deltas is None else round(float(deltas.mean()), 6),
        accuracy_delta_pp_std=None if deltas is None else round(float(deltas.std(ddof=1)) if len(deltas) > 1 else 0.0,
                                                                6),
        accuracy_p5=None if acc is None else float(np.percentile(acc, 5)),
        accuracy_delta_pp_p95=None if deltas is None else round(float(np.percentile(deltas, 95)), 6),
        accuracy_delta_pp=None if deltas is None else [round(float(d), 6) for d in deltas],
        agreement_mean=float(np.mean(agree)), seconds=time.perf_counter() - start,
        fault_map=hw.device.fault_map)
