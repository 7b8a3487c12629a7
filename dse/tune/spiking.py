"""Spiking-aware tuning: fit each block's thresholds and bias currents to what the real dynamics emit.

After the multi-phase tuning has made a block's weights integers under the rate-coded ReLU model (codes
0..T), the block is run with the real IF/LIF dynamics on the real spike trains its input receives from the
already compiled upstream. The forward pass uses the spike counts the neurons really emit (timing, saturation,
leak and reset included); the backward pass uses the gradient of the ReLU model (a straight-through
estimator), so the measured spiking error is what the thresholds (output steps) and biases minimize.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from dse.ir import ops as o
from dse.sim.float_exec import FLOAT_EXEC
from dse.sim.spiking import integrate, wire
from dse.tune.patches import sample_patches
from dse.tune.quantizers import round_ste

if TYPE_CHECKING:
    from dse.tune.multiphase import BlockReport, QCore, _Walk

Tensor = torch.Tensor
MAX_ROWS = 8192


def _rows(walk: _Walk, src: str, target: Tensor, geometry: tuple | None, gen: torch.Generator
          ) -> tuple[Tensor, Tensor, int]:
    """(rows, T, fan-in) input trains and (rows, O) targets, sampled like the ReLU phases sample patches."""
    trains = walk.trains[src]
    n, steps = trains.shape[:2]
    if geometry is None or geometry[3]:  # dense, or a block that is not per patch: whole samples
        pick = torch.randperm(n, generator=gen)[: min(n, MAX_ROWS // 4)]
        return trains[pick].float(), target[pick], 1
    flat = trains.reshape(n, steps * trains.shape[2], *trains.shape[3:]).float()
    x, t, taps = sample_patches(flat, target, geometry, MAX_ROWS, gen)
    return x.reshape(x.shape[0], steps, -1), t, taps


def _core(core: QCore, trains: Tensor, counts: Tensor, walk: _Walk) -> tuple[Tensor, Tensor]:
    """One core on trains (B, T, ...) and counts (B, ...): real spikes forward, ReLU-model gradient back."""
    steps = walk.hw.neuron.timesteps
    b = trains.shape[0]
    ws = core.ws if (core.patch or core.op.dense) else core.ws.reshape(-1, 1, 1)
    bias = round_ste(core.bias / core.ws) * core.ws
    bias = bias if (core.patch or core.op.dense) else bias.reshape(-1, 1, 1)
    scale = core.scale
    pre = core._linear(counts, None) * ws + bias  # the ReLU model on counts: sum over steps of the current
    model = torch.clamp(round_ste(torch.relu(pre) / scale), 0, core.qmax)
    with torch.no_grad():
        flat = trains.reshape(b * steps, *trains.shape[2:])
        current = core._linear(flat, None).reshape(b, steps, *pre.shape[1:]) * ws + bias / steps
        spikes = integrate(current, scale.detach(), walk.hw.neuron)
    return spikes, model + (spikes.sum(dim=1) - model).detach()


def tune_spiking(walk: _Walk, block: list, ext: list[str], cores: dict[str, QCore], *, target_full: Tensor,
                 geometry: tuple | None, report: BlockReport) -> None:
    options = walk.options
    if len(ext) != 1:
        return  # a block reading several tensors keeps its ReLU-model thresholds
    gen = torch.Generator().manual_seed(options.seed + 1)
    x, target, taps = _rows(walk, ext[0], target_full, geometry, gen)
    out_name = block[-1].name
    norm = float(target.var()) + 1e-12
    patch = geometry is not None and not geometry[3]

    def loss_of(idx: Tensor) -> Tensor:
        tr = x[idx]
        v = {ext[0]: (tr, tr.sum(dim=1))}
        for n in block:
            if isinstance(n.op, o.CoreOp):
                v[n.name] = _core(cores[n.name], *v[n.inputs[0]], walk)
            elif patch and isinstance(n.op, o.Slice) and n.inputs[0] == ext[0]:
                a, b = n.op.start * taps, n.op.stop * taps
                v[n.name] = (v[ext[0]][0][:, :, a:b], v[ext[0]][1][:, a:b])
            elif isinstance(n.op, o.Concat):
                ins = [v[s] for s in n.inputs]
                v[n.name] = (wire(n.op, [t for t, _ in ins]), FLOAT_EXEC[o.Concat](n.op, [c for _, c in ins]))
            else:
                src = v[n.inputs[0]]
                v[n.name] = (wire(n.op, [src[0]]), FLOAT_EXEC[type(n.op)](n.op, [src[1]]))
        return F.mse_loss(v[out_name][1] * cores[out_name].scale, target[idx]) / norm

    params = []
    for c in cores.values():
        c.log_scale.requires_grad_(True)
        params += [c.bias, c.log_scale]
    opt = torch.optim.Adam(params, lr=options.lr * 10)
    rows = x.shape[0]
    with torch.no_grad():
        report.losses["spike_init"] = float(loss_of(torch.arange(min(rows, 2048))))
    for _ in range(options.spike_steps):
        idx = torch.randint(0, rows, (min(options.batch_size, rows),), generator=gen)
        loss = loss_of(idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    for c in cores.values():
        c.log_scale.requires_grad_(False)
    with torch.no_grad():
        report.losses["spike"] = float(loss_of(torch.arange(min(rows, 2048))))
