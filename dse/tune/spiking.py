"""Spiking-aware tuning: fit each block's weights, thresholds and bias currents to what the real dynamics emit.

After the multi-phase tuning has made a block's weights integers under the rate-coded ReLU model (codes
0..T), the block is run with the real IF/LIF dynamics on the real spike trains its inputs receive from the
already compiled upstream. The forward pass uses the spike counts the neurons really emit (timing, saturation,
leak and reset included); the backward pass uses the gradient of a differentiable model of the neuron (a
straight-through estimator), so the measured spiking error is what the weights (kept on the integer grid),
thresholds (output steps) and biases minimize.

The model matters. A neuron whose input current changes sign within the window (mixed-sign weights on spike
trains that arrive at different times: every signed pair ``relu(s), relu(-s)``, every residual add, every
convolution with negative weights) fires on the *running maximum* of its integrated current, not on its
final value: a spike cannot be taken back. For the IF neuron with reset by subtraction, started at half the
threshold, that is exact (`running_max_counts`): ``n = clamp(floor(max_t S_t / theta + 1/2), 0, T)`` with
``S_t`` the current integrated up to step t, as long as no step brings more than one threshold. Its gradient
reaches the synapses through the spikes that arrived *before* the peak, so tuning sees (and can reduce) the
overshoot that the ReLU model of the final count cannot: on resnet_mnist the running maximum is what most
neurons of the deeper layers emit (0.3 to 0.6 extra spikes per neuron over 2 to 3). Other neuron models (leak,
reset to zero) keep the ReLU model of the counts as their gradient.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from dse.hardware.spec import Neuron
from dse.ir import ops as o
from dse.sim.float_exec import FLOAT_EXEC, conv_core, decode_population, grouped_linear
from dse.sim.spiking import integrate, wire
from dse.tune.quantizers import round_ste

if TYPE_CHECKING:
    from dse.tune.losses import BlockLoss
    from dse.tune.multiphase import BlockReport, QCore, _Walk

Tensor = torch.Tensor
MAX_ROWS = 8192  # (image, position) rows sampled per block, each T steps long
MAX_SAMPLES = 2048  # whole samples, for a block that does not work position by position
SAMPLE_FLOATS = 2**26  # and at most this many input values over the T steps (256 MB)
EVAL_ROWS = 2048  # rows the loss is measured on to keep the best parameters
MIN_ROWS = 128  # rows per step at least
CHECKS = 4  # times the loss is measured during training (the best parameters win)


# --- the neuron's differentiable model ------------------------------------------------------------------


def running_max_counts(current: Tensor, threshold: Tensor, timesteps: int) -> Tensor:
    """Spike counts of IF neurons (reset by subtraction, membrane started at half the threshold) for
    per-step currents (B, T, ...): ``clamp(floor(max_t S_t / threshold + 1/2), 0, T)``, ``S_t`` the current
    integrated up to step t. Exact while no step brings more than one threshold; differentiable (the
    gradient flows to the peak step's integrated current) but for the rounding."""
    peak = current.cumsum(dim=1).amax(dim=1)
    return torch.clamp(round_ste(torch.relu(peak) / threshold), 0, timesteps)


def _exact_model(neuron: Neuron) -> bool:
    return neuron.decay == 1.0 and neuron.reset == "subtract"


# --- sampling the block's input trains -------------------------------------------------------------------


def _pointwise(block: list, ext: list[str], shapes: dict) -> bool:
    """Whether every output position of the block depends on the same position of its inputs only (1x1
    cores of stride 1 on maps of one size: a residual add, a merge), so (image, position) rows suffice."""
    spatial = {tuple(shapes[s][1:]) for s in ext} | {tuple(shapes[block[-1].name][1:])}
    if len(spatial) != 1 or len(next(iter(spatial))) != 2:
        return False
    return all(n.op.kernel == (1, 1) and n.op.stride == (1, 1) and not any(n.op.padding) and not n.op.dense
               for n in block if isinstance(n.op, o.CoreOp))


def _patches(trains: Tensor, img: Tensor, ys: Tensor, xs: Tensor, geometry: tuple) -> Tensor:
    """Input patches (rows, T, C * kh * kw) of bool trains (N, T, C, H, W), unfold's feature order, without
    unfolding whole maps (T times the memory of the activations)."""
    kernel, stride, padding, _ = geometry
    top, left, bottom, right = padding
    padded = F.pad(trains, (left, right, top, bottom)) if any(padding) else trains
    taps = []
    for dy in range(kernel[0]):
        for dx in range(kernel[1]):
            taps.append(padded[img, :, :, ys * stride[0] + dy, xs * stride[1] + dx])  # (rows, T, C)
    return torch.stack(taps, dim=-1).reshape(len(img), trains.shape[1], -1)


def _rows(walk: _Walk, block: list, ext: list[str], target: Tensor, geometry: tuple | None,
          gen: torch.Generator) -> tuple[dict[str, Tensor], Tensor, int, bool]:
    """The block's input trains as float tensors, with the matching targets, sampled like the ReLU phases
    sample patches; also the taps per channel and whether the values are rows (N, T, F) for a matrix product."""
    trains = {s: walk.trains[s] for s in ext}
    n = trains[ext[0]].shape[0]
    patch = geometry is not None and not geometry[3]
    if patch or (geometry is None and _pointwise(block, ext, walk.shapes)):
        h, w = target.shape[2:]
        total = n * h * w
        pick = torch.randperm(total, generator=gen)[: min(MAX_ROWS, total)]
        img, pos = pick // (h * w), pick % (h * w)
        ys, xs = pos // w, pos % w
        t = target[img, :, ys, xs]
        if patch:
            taps = geometry[0][0] * geometry[0][1]
            return {ext[0]: _patches(trains[ext[0]], img, ys, xs, geometry).float()}, t, taps, True
        return {s: tr[img, :, :, ys, xs].float() for s, tr in trains.items()}, t, 1, True
    per_sample = sum(tr[0].numel() for tr in trains.values())
    pick = torch.randperm(n, generator=gen)[: max(1, min(n, MAX_SAMPLES, SAMPLE_FLOATS // per_sample))]
    dense = geometry is not None  # a dense block: rows already
    return {s: tr[pick].float() for s, tr in trains.items()}, target[pick], 1, dense


# --- one core on trains ------------------------------------------------------------------------------------


def _linear(core: QCore, x: Tensor, rows: bool) -> Tensor:
    """The core's accumulator on codes (or spikes) for weights on the integer grid (rounded forward, straight
    through backward)."""
    w = core._masked(torch.clamp(round_ste(core.weight), -core.wmax, core.wmax))
    if core.copy_inputs is not None:  # a population's grouped copy: its own groups' inputs
        x = x[:, : core.copy_inputs]
    y = grouped_linear(x, w, None, core.op.groups) if rows or core.op.dense else conv_core(x, w, None, core.op)
    return torch.cat([y, -y], dim=1) if core.tied else y


def _core(core: QCore, trains: Tensor, counts: Tensor, neuron: Neuron, rows: bool) -> tuple[Tensor, Tensor]:
    """One core on trains (B, T, ...) and counts (B, ...): real spikes forward, the model's gradient back.
    A population's copies (copy-major) share the accumulator; copy i's bias is one full count range lower."""
    steps, k = neuron.timesteps, core.k
    b = trains.shape[0]
    flat_out = rows or core.op.dense
    scale = core.scale
    ws = core.ws.repeat(k)
    bias = torch.cat([round_ste((core.bias - i * core.qmax * scale) / core.ws) * core.ws for i in range(k)])
    if not flat_out:
        ws, bias = ws.reshape(-1, 1, 1), bias.reshape(-1, 1, 1)

    def copies(acc: Tensor) -> Tensor:  # (..., C, *) -> (..., k C, *)
        return acc if k == 1 else torch.cat([acc] * k, dim=1)

    if _exact_model(neuron):
        acc = copies(_linear(core, trains.reshape(b * steps, *trains.shape[2:]), rows))
        current = acc.reshape(b, steps, *acc.shape[1:]) * ws + bias / steps
        model = running_max_counts(current, scale, core.qmax)
        current = current.detach()
    else:
        pre = copies(_linear(core, counts, rows)) * ws + bias  # the ReLU model on counts: the current over steps
        model = torch.clamp(round_ste(torch.relu(pre) / scale), 0, core.qmax)
        with torch.no_grad():
            acc = copies(_linear(core, trains.reshape(b * steps, *trains.shape[2:]), rows))
            current = acc.reshape(b, steps, *acc.shape[1:]) * ws + bias / steps
    with torch.no_grad():
        spikes = integrate(current, scale.detach(), neuron)
    return spikes, model + (spikes.sum(dim=1) - model).detach()


# --- the block ---------------------------------------------------------------------------------------------


def tune_spiking(walk: _Walk, block: list, ext: list[str], cores: dict[str, QCore], *, target_full: Tensor,
                 geometry: tuple | None, report: BlockReport, loss: BlockLoss) -> None:
    """Tune the block's integer weights, biases and output steps on the real dynamics (see the module
    docstring) to minimize `loss`; the parameters with the lowest measured loss are kept."""
    options, neuron = walk.options, walk.hw.neuron
    gen = torch.Generator().manual_seed(options.seed + 1)
    x, target, taps, rows = _rows(walk, block, ext, target_full, geometry, gen)
    out_name = block[-1].name
    patch = geometry is not None and not geometry[3]

    def loss_of(idx: Tensor) -> Tensor:
        v = {s: (x[s][idx], x[s][idx].sum(dim=1)) for s in ext}
        for n in block:
            if isinstance(n.op, o.CoreOp):
                v[n.name] = _core(cores[n.name], *v[n.inputs[0]], neuron, rows)
            elif patch and isinstance(n.op, o.Slice) and n.inputs[0] == ext[0]:
                a, b = n.op.start * taps, n.op.stop * taps
                v[n.name] = (v[ext[0]][0][:, :, a:b], v[ext[0]][1][:, a:b])
            else:
                ins = [v[s] for s in n.inputs]
                v[n.name] = (wire(n.op, [t for t, _ in ins]), FLOAT_EXEC[type(n.op)](n.op, [c for _, c in ins]))
        got = decode_population(v[out_name][1], cores[out_name].k) * cores[out_name].scale
        return loss(got, target[idx])

    n_rows = target.shape[0]
    measure = torch.arange(min(n_rows, EVAL_ROWS))

    def measured() -> float:
        with torch.no_grad():
            return float(loss_of(measure))

    def state() -> list[Tensor]:
        return [p.detach().clone() for c in cores.values() for p in (c.weight, c.bias, c.log_scale)]

    for c in cores.values():
        c.log_scale.requires_grad_(True)
    best_loss = report.losses["spike_init"] = measured()
    best = state()
    weights = [c.weight for c in cores.values() if not c.op.fixed]
    groups = [{"params": [c.bias for c in cores.values()], "lr": options.lr * 10},
              {"params": [c.log_scale for c in cores.values()], "lr": options.lr * 10}]
    if options.spike_weights and weights:
        groups.append({"params": weights, "lr": options.grid_lr})
    opt = torch.optim.Adam(groups)
    steps = options.output_spike_steps if loss.output else options.spike_steps
    checks = {round(steps * (i + 1) / CHECKS) for i in range(CHECKS)}
    # a step runs T times the rows of a ReLU-model step: the same bound on its work (`step_macs`) as there
    per_row = neuron.timesteps * sum(
        c.weight.numel() * (1 if rows or c.op.dense else int(torch.tensor(walk.shapes[name][1:]).prod()))
        for name, c in cores.items())
    batch = int(min(options.batch_size * (4 if rows else 1), n_rows,
                    max(options.step_macs // max(per_row, 1), min(MIN_ROWS if rows else options.min_batch, n_rows))))
    for step in range(1, steps + 1):
        idx = torch.randint(0, n_rows, (batch,), generator=gen)
        value = loss_of(idx)
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        with torch.no_grad():
            for c in cores.values():
                c.weight.clamp_(-c.wmax, c.wmax)
        if step in checks:
            now = measured()
            if now < best_loss:
                best_loss, best = now, state()
    with torch.no_grad():
        params = [p for c in cores.values() for p in (c.weight, c.bias, c.log_scale)]
        for p, b in zip(params, best, strict=True):
            p.copy_(b)
        for c in cores.values():
            c.weight.copy_(torch.clamp(torch.round(c.weight), -c.wmax, c.wmax))
            c.frozen[:] = True
            c.log_scale.requires_grad_(False)
    report.losses["spike"] = best_loss
