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
reset to zero, a floor) keep the ReLU model of the counts as their gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dse.hardware.spec import Neuron
from dse.ir import ops as o
from dse.sim.float_exec import FLOAT_EXEC, conv_core, decode_population, grouped_linear
from dse.sim.spiking import integrate, wire
from dse.tune.adam import Adam
from dse.tune.block import BlockProblem, Samples
from dse.tune.losses import BlockLoss, BlockReport
from dse.tune.noise import held_out, injected, noise_aware
from dse.tune.options import TuneOptions
from dse.tune.patches import PatchGeometry
from dse.tune.qcore import QCore
from dse.tune.quantizers import round_clamp_ste, round_ste
from dse.tune.stopping import Patience, copy_params, load_params, train_until_done
from dse.tune.walk import TuneWalk

Tensor = torch.Tensor
Pair = tuple[Tensor, Tensor]  # a value on the real dynamics: spike trains (B, T, ...) and spike counts (B, ...)


# --- the neuron's differentiable model ------------------------------------------------------------------


def running_max_counts(current: Tensor, threshold: Tensor, timesteps: int) -> Tensor:
    """Spike counts of IF neurons (reset by subtraction, membrane started at half the threshold) for
    per-step currents (B, T, ...): ``clamp(floor(max_t S_t / threshold + 1/2), 0, T)``, ``S_t`` the current
    integrated up to step t. Exact while no step brings more than one threshold; differentiable (the
    gradient flows to the peak step's integrated current) but for the rounding."""
    peak = current.cumsum(dim=1).amax(dim=1)
    return round_clamp_ste(torch.relu(peak) / threshold, 0, timesteps)


def exact_model(neuron: Neuron) -> bool:
    """Whether `running_max_counts` is the neuron's count: IF, reset by subtraction, no floor (a floor
    forgets the negative current, which the running maximum of the integrated current does not)."""
    return neuron.decay == 1.0 and neuron.reset == "subtract" and neuron.floor is None


# --- sampling the block's input trains -------------------------------------------------------------------


def _pointwise(problem: BlockProblem) -> bool:
    """Whether every output position of the block depends on the same position of its inputs only (1x1
    cores of stride 1 on maps of one size: a residual add, a merge), so (image, position) rows suffice."""
    shapes = problem.shapes
    spatial = {tuple(shapes[s][1:]) for s in problem.ext} | {tuple(shapes[problem.out_name][1:])}
    if len(spatial) != 1 or len(next(iter(spatial))) != 2:
        return False
    return all(n.op.kernel == (1, 1) and n.op.stride == (1, 1) and not any(n.op.padding) and not n.op.dense
               for n in problem.nodes if isinstance(n.op, o.CoreOp))


def _patches(trains: Tensor, img: Tensor, ys: Tensor, xs: Tensor, geometry: PatchGeometry) -> Tensor:
    """Input patches (rows, T, C * kh * kw) of bool trains (N, T, C, H, W), unfold's feature order, without
    unfolding whole maps (T times the memory of the activations)."""
    kernel, stride, padding = geometry.kernel, geometry.stride, geometry.padding
    top, left, bottom, right = padding
    padded = F.pad(trains, (left, right, top, bottom)) if any(padding) else trains
    taps = []
    for dy in range(kernel[0]):
        for dx in range(kernel[1]):
            taps.append(padded[img, :, :, ys * stride[0] + dy, xs * stride[1] + dx])  # (rows, T, C)
    return torch.stack(taps, dim=-1).reshape(len(img), trains.shape[1], -1)


def spike_samples(walk: TuneWalk, problem: BlockProblem, target: Tensor, gen: torch.Generator) -> Samples:
    """The block's input trains as float tensors, with the matching targets, sampled like the ReLU phases
    sample patches: (image, position) rows (patches of a conv block, positions of a pointwise one), else whole
    samples (the rows of a dense block)."""
    options, geometry, ext = walk.options, problem.geometry, problem.ext
    trains = {s: walk.trains[s] for s in ext}
    n = trains[ext[0]].shape[0]
    patch = geometry is not None and not geometry.dense
    if patch or (geometry is None and _pointwise(problem)):
        h, w = target.shape[2:]
        total = n * h * w
        pick = torch.randperm(total, generator=gen)[: min(options.spike_rows, total)]
        img, pos = pick // (h * w), pick % (h * w)
        ys, xs = pos // w, pos % w
        t = target[img, :, ys, xs]
        if patch:
            return Samples({ext[0]: _patches(trains[ext[0]], img, ys, xs, geometry).float()}, t, geometry.taps, True)
        return Samples({s: tr[img, :, :, ys, xs].float() for s, tr in trains.items()}, t, 1, True)
    per_sample = sum(tr[0].numel() for tr in trains.values())
    keep = max(1, min(n, options.spike_samples, options.spike_sample_floats // per_sample))
    pick = torch.randperm(n, generator=gen)[:keep]
    dense = geometry is not None  # a dense block: rows already
    return Samples({s: tr[pick].float() for s, tr in trains.items()}, target[pick], 1, dense)


# --- one core on trains ------------------------------------------------------------------------------------


def _linear(core: QCore, x: Tensor, rows: bool) -> Tensor:
    """The core's accumulator on codes (or spikes) for weights on the integer grid (rounded forward, straight
    through backward)."""
    w = core.masked(round_clamp_ste(core.weight, -core.wmax, core.wmax))
    if core.noise is not None:
        w = core.noise.weights(core, w)
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

    if exact_model(neuron):
        acc = copies(_linear(core, trains.reshape(b * steps, *trains.shape[2:]), rows))
        current = acc.reshape(b, steps, *acc.shape[1:]) * ws + bias / steps
        threshold = _threshold(core, scale, current[:, 0].shape)
        model = running_max_counts(current, threshold, core.qmax)
        current = current.detach()
    else:
        pre = copies(_linear(core, counts, rows)) * ws + bias  # the ReLU model on counts: the current over steps
        threshold = _threshold(core, scale, pre.shape)
        model = round_clamp_ste(torch.relu(pre) / threshold, 0, core.qmax)
        with torch.no_grad():
            acc = copies(_linear(core, trains.reshape(b * steps, *trains.shape[2:]), rows))
            current = acc.reshape(b, steps, *acc.shape[1:]) * ws + bias / steps
    with torch.no_grad():
        spikes = integrate(current, threshold.detach(), neuron)
    return spikes, model + (spikes.sum(dim=1) - model).detach()


def _threshold(core: QCore, scale: Tensor, shape: torch.Size) -> Tensor:
    """The neurons' threshold for outputs of `shape`: the output step, or (`tuning.noise_aware`, in a training
    step) times each neuron's drawn mismatch."""
    return scale if core.noise is None else core.noise.thresholds(scale, shape)


# --- the block ---------------------------------------------------------------------------------------------


def _spike_loss(problem: BlockProblem, samples: Samples, counts: dict[str, Tensor], neuron: Neuron, loss: BlockLoss,
                idx: slice) -> Tensor:
    """`loss` of the block's output on the real dynamics, at rows `idx` of `samples` (whose inputs' spike counts
    are `counts`)."""
    x, cores = samples.inputs, problem.cores
    v = problem.run({s: (x[s][idx], counts[s][idx]) for s in problem.ext}, samples.taps,
                    core=lambda n, tc: _core(cores[n.name], *tc, neuron, samples.rows), wire=_wire_pair,
                    columns=lambda tc, a, b: (tc[0][:, :, a:b], tc[1][:, a:b]))
    got = decode_population(v[problem.out_name][1], problem.out_core.k) * problem.out_core.scale
    return loss(got, samples.target[idx])


def _wire_pair(op: o.Op, ins: list[Pair]) -> Pair:
    return wire(op, [t for t, _ in ins]), FLOAT_EXEC[type(op)](op, [c for _, c in ins])


def _groups(options: TuneOptions, cores: dict[str, QCore]) -> list[dict]:
    """Adam's groups: biases and output steps, and (`tuning.spike_weights`) the weights in grid units."""
    weights = [c.weight for c in cores.values() if not c.op.fixed]
    lr = options.lr * options.spike_lr_factor
    groups = [{"params": [c.bias for c in cores.values()], "lr": lr},
              {"params": [c.log_scale for c in cores.values()], "lr": lr}]
    if options.spike_weights and weights:
        groups.append({"params": weights, "lr": options.grid_lr})
    return groups


def _keep(cores: dict[str, QCore]) -> None:
    """The parameters as they are, weights rounded onto the grid and frozen, steps fixed."""
    with torch.no_grad():
        for c in cores.values():
            c.weight.copy_(torch.clamp(torch.round(c.weight), -c.wmax, c.wmax))
            c.frozen[:] = True
            c.log_scale.requires_grad_(False)


def _step_rows(walk: TuneWalk, problem: BlockProblem, samples: Samples, n_rows: int) -> int:
    """Rows per step: a step runs T times the rows of a ReLU-model step, under the same bound on its work
    (`tuning.step_macs`) as there."""
    options, rows = walk.options, samples.rows
    return problem.step_rows(rows, min(options.batch_size * (options.spike_batch_factor if rows else 1), n_rows),
                             min(options.spike_min_rows if rows else options.min_batch, n_rows), options.step_macs,
                             factor=walk.hw.neuron.timesteps)


def spike_phase(walk: TuneWalk, problem: BlockProblem, report: BlockReport, loss: BlockLoss,
                rate_loss: float) -> None:
    """Tune the block's integer weights, biases and output steps on the real dynamics (see the module
    docstring) to minimize `loss`, until the stopping rule (dse/tune/stopping.py) ends it: the first rows
    (`tuning.spike_loss_rows`, at most `holdout_fraction` of them) are held out, the others trained on, a slice
    a step; the parameters with the lowest held-out loss are kept.

    A hidden block whose loss on the real dynamics is within `tuning.floor_factor` of `rate_loss`, the held-out
    loss the ReLU-model phases left it at, is not trained: the spikes cost it too little for these steps to win
    back. The output block always is: its loss decides the accuracy, and on chip_b these steps lowered it by 29 to
    56 % (lenet, cnn3, conv1d, mlp_mnist), by 43 % on mlp_mnist's, whose spikes cost only 6 % over the ReLU
    model's loss. Under noise-aware tuning every block is: its losses are measured on drawn chips, whose errors
    these steps also answer."""
    options, neuron, cores = walk.options, walk.hw.neuron, problem.cores
    gen = torch.Generator().manual_seed(options.seed + 1)
    samples = spike_samples(walk, problem, walk.teacher(problem.out_name), gen)
    counts = {s: x.sum(dim=1) for s, x in samples.inputs.items()}
    n = len(samples)
    held = max(1, min(options.spike_loss_rows, int(n * options.holdout_fraction))) if n > 1 else 0
    batch = max(1, min(_step_rows(walk, problem, samples, n), n - held))
    cursor = [n]

    def measured() -> float:
        with torch.no_grad():
            return held_out(cores.values(), lambda: float(_spike_loss(problem, samples, counts, neuron, loss,
                                                                      slice(0, held or n))))

    def step() -> None:
        if cursor[0] + batch > n:
            cursor[0] = held
        with injected(cores.values()):  # tuning.noise_aware: a drawn chip's errors, in training only
            value = _spike_loss(problem, samples, counts, neuron, loss, slice(cursor[0], cursor[0] + batch))
        cursor[0] += batch
        opt.zero_grad()
        value.backward()
        opt.step()
        with torch.no_grad():
            for c in cores.values():
                c.weight.clamp_(-c.wmax, c.wmax)

    for c in cores.values():
        c.log_scale.requires_grad_(True)
    report.losses["rate_model"] = rate_loss
    start = report.losses["spike_init"] = measured()
    if not loss.output and not noise_aware(cores.values()) and start <= options.floor_factor * rate_loss:
        _keep(cores)
        report.steps["spike"], report.losses["spike"] = 0, start
        return
    opt = Adam(_groups(options, cores))
    rule = Patience(options.spike_patience, options.min_improvement, start, start)
    steps = options.output_spike_steps if loss.output else options.spike_steps
    params = [p for c in cores.values() for p in (c.weight, c.bias, c.log_scale)]
    report.steps["spike"] = train_until_done(rule, steps, options.spike_check_steps, step, measured,
                                             lambda: copy_params(params), lambda saved: load_params(params, saved))
    _keep(cores)
    report.losses["spike"] = rule.lowest
