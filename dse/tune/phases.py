"""The phases of tuning one block on the values the chip computes (see dse/tune/multiphase.py): each takes the
block's `Fit` (its problem, training rows and set-up) and leaves the cores one step further to integers."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from dse.ir.graph import Node
from dse.sim.float_exec import decode_population
from dse.tune.bias_correction import correct_biases
from dse.tune.adam import Adam
from dse.tune.block import BlockProblem, Samples, float_wire
from dse.tune.losses import BlockLoss, BlockReport, block_loss
from dse.tune.options import TuneOptions
from dse.tune.qcore import QCore
from dse.tune.walk import TuneWalk

log = logging.getLogger(__name__)
Tensor = torch.Tensor
Snapshot = dict[str, dict[str, object]]  # per core, `QCore.snapshot()`


@dataclass
class Fit:
    """A block's training set-up, shared by its phases."""

    problem: BlockProblem
    samples: Samples  # its training rows (`value_samples`)
    options: TuneOptions
    loss: BlockLoss
    report: BlockReport
    gen: torch.Generator  # the rows of every step
    batch: int  # rows per step
    lr_factor: float  # Adam's rates are scaled by it: a smaller step is a noisier one
    measure: Tensor  # the rows each phase's loss is measured on
    weights_train: bool  # the calibration data determine the weights (else only biases and steps move)
    weight_max: int  # the largest weight code

    @property
    def cores(self) -> dict[str, QCore]:
        return self.problem.cores

    def inputs(self, idx: Tensor | slice, domain: str) -> dict[str, Tensor]:
        """The block's inputs at rows `idx`: real values, or (in the code domain) codes."""
        problem, samples = self.problem, self.samples
        if domain == "real":
            return {s: samples.inputs[s][idx] for s in problem.ext}
        out = {}
        for s in problem.ext:
            scale = problem.scales[s].repeat_interleave(samples.taps) if samples.rows else problem.scales[s]
            xs = samples.inputs[s][idx]
            out[s] = xs / (scale if xs.dim() == 2 else scale.reshape(-1, 1, 1))
        return out

    def loss_of(self, idx: Tensor, domain: str) -> Tensor:
        problem = self.problem
        out = problem.run(self.inputs(idx, domain), self.samples.taps, core=lambda n, x: self.cores[n.name](x),
                          wire=float_wire)[problem.out_name]
        if domain == "code":
            out = out * problem.out_core.scale.detach()
        return self.loss(decode_population(out, problem.out_core.k), self.samples.target[idx])

    def measured(self, domain: str) -> float:
        with torch.no_grad():
            return float(self.loss_of(self.measure, domain))

    def snapshot(self) -> Snapshot:
        return {name: c.snapshot() for name, c in self.cores.items()}

    def restore(self, snap: Snapshot) -> None:
        for name, c in self.cores.items():
            c.restore(snap[name])

    def weights(self) -> list[Tensor]:
        return [c.weight for c in self.cores.values()] if self.weights_train else []

    def train(self, steps: int, lr_groups: list[dict], domain: str, phase: str) -> None:
        """`steps` Adam steps on random rows; the loss measured after them is the phase's."""
        if steps <= 0:
            return
        opt = Adam([{**g, "lr": g["lr"] * self.lr_factor} for g in lr_groups if g["params"]])
        for _ in range(steps):
            idx = torch.randint(0, len(self.samples), (self.batch,), generator=self.gen)
            loss = self.loss_of(idx, domain)
            opt.zero_grad()
            loss.backward()
            if domain == "code":
                for c in self.cores.values():
                    if c.weight.grad is not None:
                        c.weight.grad[c.frozen] = 0
            opt.step()
            if domain == "code":
                for c in self.cores.values():
                    c.project()
        self.report.losses[phase] = self.measured(domain)


def create_cores(walk: TuneWalk, problem: BlockProblem, samples: Samples) -> None:
    """The block's cores, each with its output step from its own output: the block walked once on (the head of)
    its training rows, on the chip's quantized inputs."""
    options = walk.options
    head = slice(0, min(options.init_rows, len(samples.inputs[problem.ext[0]])))

    def first(n: Node, x: Tensor) -> Tensor:
        core = problem.new_core(walk, n, patch=samples.rows, tie_above=options.tie_pairs_above)
        with torch.no_grad():
            core.init_scale(torch.relu(core.pre(x)))
            return core(x)

    problem.run({s: samples.inputs[s][head] for s in problem.ext}, samples.taps, core=first, wire=float_wire,
                after=problem.propagate)


def set_up(walk: TuneWalk, problem: BlockProblem, samples: Samples, gen: torch.Generator) -> Fit:
    """The block's loss, rows per step (bounded by `tuning.step_macs`), and whether its weights train."""
    options, n = walk.options, len(samples)
    loss = block_loss(walk.graph, problem.out_name, samples.target, options.output_loss)
    nominal = min(options.batch_size * (options.patch_batch_factor if samples.taps > 1 else 1), n)
    batch = problem.step_rows(samples.rows, nominal, min(options.min_batch, nominal), options.step_macs)
    # weights train only where the calibration data determine them: VGG's FC1 (103 M weights) against 32
    # images x 4096 outputs would be fitted to noise; there only biases and steps move, weights are rounded
    weights = sum(c.weight.numel() for c in problem.cores.values())
    weights_train = n * int(np.prod(samples.target.shape[1:])) >= weights
    measure = torch.arange(min(n, options.loss_rows, max(options.loss_batches * batch, options.loss_rows_min)))
    # Adam's steps shrink with the square root of the rows (1 at full size)
    return Fit(problem, samples, options, loss, BlockReport(problem.out_name, len(problem.cores)), gen, batch,
               (batch / nominal) ** 0.5, measure, weights_train, walk.hw.weight_max)


def free_phase(fit: Fit) -> Snapshot:
    """Phase 1: float weights, biases and output steps (LSQ) under the chip's activation quantization, undone
    when it ends worse than it started. Returns the start, for `keep_better_start`."""
    options, cores, losses = fit.options, fit.cores.values(), fit.report.losses
    losses["init"] = fit.measured("real")
    start = fit.snapshot()
    for c in cores:
        c.weight.requires_grad_(fit.weights_train)
    params = [{"params": fit.weights(), "lr": options.lr},
              {"params": [c.bias for c in cores], "lr": options.lr},
              {"params": [c.log_scale for c in cores], "lr": options.lr * options.step_lr_factor}]
    fit.train(options.free_steps, params, "real", "free")
    if options.free_steps > 0 and not losses["free"] * (1 - options.keep_margin) <= losses["init"]:
        fit.restore(start)  # free training made it worse: the later phases start from the start
    return start


def to_code_domain(problem: BlockProblem, keep_target: bool = False) -> None:
    """Every core's weights in grid units of a least-squares step, clipped (`QCore.to_code_domain`)."""
    for n in problem.nodes:  # steps are final now: inputs to internal cores have known scales
        if n.name in problem.cores:
            problem.cores[n.name].in_scale = problem.in_scale(n)
            problem.cores[n.name].to_code_domain(keep_target)
        problem.propagate(n)


def grid_groups(fit: Fit) -> list[dict]:
    """Adam's groups in the code domain: weights in grid units, biases."""
    return [{"params": fit.weights(), "lr": fit.options.grid_lr * max(fit.weight_max, 1) ** 0.5},
            {"params": [c.bias for c in fit.cores.values()], "lr": fit.options.lr}]


def range_phase(fit: Fit) -> None:
    """Phase 2: weights in the integer range, tuned within it."""
    to_code_domain(fit.problem)
    fit.train(fit.options.range_steps, grid_groups(fit), "code", "range")


def round_phase(fit: Fit) -> None:
    """Phase 3: the weights closest to the grid rounded and frozen, the rest tuned, in rounds, until every
    weight is an integer code (at once where the weights do not train)."""
    groups = grid_groups(fit)
    for frac in fit.options.round_fractions if fit.weights_train else (1.0,):
        for c in fit.cores.values():
            c.round_more(frac)
        fit.train(fit.options.round_steps if frac < 1.0 else 0, groups, "code", f"round{frac:g}")
    for c in fit.cores.values():
        c.round_more(1.0)


def keep_better_start(fit: Fit, walk: TuneWalk, start: Snapshot) -> None:
    """A block never leaves tuning worse than its start rounded as it is (training on a few rows per step can
    wander off): measured on the same rows, the rounded start (its biases corrected, where that is better) is
    kept where it is clearly better (by more than `tuning.keep_margin`: a closer call is within the noise of the
    sampled rows, and the tuned block has learned to correct its real inputs)."""
    options, losses, problem = fit.options, fit.report.losses, fit.problem
    with torch.no_grad():
        tuned_loss = losses["tuned"] = fit.measured("code")
        tuned = fit.snapshot()
        fit.restore(start)
        to_code_domain(problem, keep_target=options.bias_correction)
        for c in fit.cores.values():
            c.round_more(1.0)
        rounded_loss = losses["rounded_start"] = fit.measured("code")
        if options.bias_correction:
            rounded_loss = bias_correction_phase(fit, walk, rounded_loss)
        if not tuned_loss * (1 - options.keep_margin) <= rounded_loss:  # NaN too: a step blown up by training
            log.info("block %s: its rounded start (loss %.4g) beats the tuned block (%.4g); kept",
                     problem.out_name, rounded_loss, tuned_loss)
        else:
            fit.restore(tuned)
            for n in problem.nodes:
                problem.propagate(n)


def bias_correction_phase(fit: Fit, walk: TuneWalk, rounded_loss: float) -> float:
    """The rounded start with its biases corrected (`correct_biases`), kept where that is better than its
    loss `rounded_loss`; returns the loss of what is kept."""
    plain = fit.snapshot()
    correct_biases(walk, fit.problem)
    corrected = fit.report.losses["rounded_start_bias_corrected"] = fit.measured("code")
    if corrected < rounded_loss:
        return corrected
    fit.restore(plain)
    return rounded_loss
