"""The phases of tuning one block on the values the chip computes (see dse/tune/multiphase.py): each takes the
block's `Fit` (its problem, training rows and set-up) and leaves the cores one step further to integers."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from dse.ir.graph import Node
from dse.sim.float_exec import decode_population
from dse.tune.adam import Adam
from dse.tune.bias_correction import correct_biases
from dse.tune.block import BlockProblem, Samples, float_wire
from dse.tune.losses import BlockLoss, BlockReport, block_loss
from dse.tune.noise import held_out, injected, noise_aware
from dse.tune.options import TuneOptions
from dse.tune.qcore import QCore
from dse.tune.quantizers import best_act_scale
from dse.tune.stopping import Patience, train_until_done
from dse.tune.walk import TuneWalk

log = logging.getLogger(__name__)
Tensor = torch.Tensor
Snapshot = dict[str, dict[str, object]]  # per core, `QCore.snapshot()`


@dataclass
class Fit:
    """A block's training set-up, shared by its phases. Its rows: the first `held` are held out (every measured
    loss, the stopping rule and the choice between tuned and rounded start are taken on them), the others are
    trained on, `batch` consecutive rows a step, cycling (value rows are in random order: `value_samples`)."""

    problem: BlockProblem
    samples: Samples  # its rows (`value_samples`)
    options: TuneOptions
    loss: BlockLoss
    report: BlockReport
    batch: int  # rows per step
    lr_factor: float  # Adam's rates are scaled by it: a smaller step is a noisier one
    held: int  # rows 0..held-1 are held out
    weights_train: bool  # the calibration data determine the weights (else only biases and steps move)
    weight_max: int  # the largest weight code
    domain: str = "real"  # what `samples.inputs` hold: real values, or codes (after `to_codes`)
    cursor: int = -1  # the first row of the next step's batch (-1: the first training row)

    @property
    def cores(self) -> dict[str, QCore]:
        return self.problem.cores

    def inputs(self, rows: slice, domain: str) -> dict[str, Tensor]:
        """The block's inputs at `rows`: real values, or (in the code domain) codes."""
        problem, samples = self.problem, self.samples
        if domain == self.domain:
            return {s: samples.inputs[s][rows] for s in problem.ext}
        if domain == "real":
            raise RuntimeError("tuning: the real-valued inputs of a block were asked for after its codes")
        return {s: samples.inputs[s][rows] / self._scale(s) for s in problem.ext}

    def _scale(self, name: str) -> Tensor:
        """The value of one code of input `name`, shaped to divide its rows (or maps)."""
        samples = self.samples
        scale = self.problem.scales[name]
        scale = scale.repeat_interleave(samples.taps) if samples.rows else scale
        return scale if samples.inputs[name].dim() == 2 else scale.reshape(-1, 1, 1)

    def to_codes(self) -> None:
        """Every row's inputs as codes, once, before the phases that train on codes (in place where the rows are
        the block's own, else a copy of the committed values); the real values are gone from then on."""
        if self.domain == "code":
            return
        samples = self.samples
        for s in self.problem.ext:
            x = samples.inputs[s]
            samples.inputs[s] = x.div_(self._scale(s)) if samples.owned else x / self._scale(s)
        self.domain = "code"

    def loss_of(self, rows: slice, domain: str) -> Tensor:
        problem = self.problem
        out = problem.run(self.inputs(rows, domain), self.samples.taps, core=lambda n, x: self.cores[n.name](x),
                          wire=float_wire)[problem.out_name]
        if domain == "code":
            out = out * problem.out_core.scale.detach()
        return self.loss(decode_population(out, problem.out_core.k), self.samples.target[rows])

    def measured(self, domain: str) -> float:
        """The loss on the held-out rows."""
        with torch.no_grad():
            return held_out(self.cores.values(), lambda: float(self.loss_of(slice(0, self.held), domain)))

    def next_rows(self) -> slice:
        """The next step's training rows."""
        if self.cursor < self.held or self.cursor + self.batch > len(self.samples):
            self.cursor = self.held
        rows = slice(self.cursor, self.cursor + self.batch)
        self.cursor += self.batch
        return rows

    def snapshot(self) -> Snapshot:
        return {name: c.snapshot() for name, c in self.cores.items()}

    def restore(self, snap: Snapshot) -> None:
        for name, c in self.cores.items():
            c.restore(snap[name])

    def weights(self) -> list[Tensor]:
        return [c.weight for c in self.cores.values()] if self.weights_train else []

    def train(self, steps: int, lr_groups: list[dict], domain: str, phase: str) -> None:
        """At most `steps` Adam steps, ended by the patience rule (dse/tune/stopping.py); the parameters of the
        lowest held-out loss are kept, and that loss is the phase's."""
        if steps <= 0:
            return
        options = self.options
        opt = Adam([{**g, "lr": g["lr"] * self.lr_factor} for g in lr_groups if g["params"]])
        start = self.measured(domain)
        rule = Patience(options.patience, options.min_improvement, start, start)

        def step() -> None:
            with injected(self.cores.values()):  # tuning.noise_aware: a drawn chip's errors, in training only
                loss = self.loss_of(self.next_rows(), domain)
            opt.zero_grad()
            loss.backward()
            if domain == "code":
                for c in self.cores.values():
                    if c.weight.grad is not None:
                        c.weight.grad.masked_fill_(c.frozen, 0)
            opt.step()
            if domain == "code":
                for c in self.cores.values():
                    c.project()

        self.report.steps[phase] = train_until_done(rule, steps, options.check_steps, step,
                                                    lambda: self.measured(domain), self.snapshot, self.restore)
        self.report.losses[phase] = rule.lowest


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


def set_up(walk: TuneWalk, problem: BlockProblem, samples: Samples) -> Fit:
    """The block's loss, rows per step (bounded by `tuning.step_macs`), held-out rows, and whether its weights
    train."""
    options, n = walk.options, len(samples)
    loss = block_loss(walk.graph, problem.out_name, samples.target, options.output_loss)
    nominal = min(options.batch_size * (options.patch_batch_factor if samples.taps > 1 else 1), n)
    batch = problem.step_rows(samples.rows, nominal, min(options.min_batch, nominal), options.step_macs)
    # held out: `tuning.loss_rows` at most, `loss_rows_min` or `loss_batches` steps' worth at least, but never
    # more than `holdout_fraction` of the rows (a single row is measured and trained on)
    wanted = min(options.loss_rows, max(options.loss_batches * batch, options.loss_rows_min))
    held = max(1, min(wanted, int(n * options.holdout_fraction))) if n > 1 else 0
    batch = max(1, min(batch, n - held))
    # weights train only where the calibration data determine them: VGG's FC1 (103 M weights) against 32
    # images x 4096 outputs would be fitted to noise; there only biases and steps move, weights are rounded
    weights = sum(c.weight.numel() for c in problem.cores.values())
    weights_train = n * int(np.prod(samples.target.shape[1:])) >= weights
    # Adam's steps shrink with the square root of the rows (1 at full size)
    return Fit(problem, samples, options, loss, BlockReport(problem.out_name, len(problem.cores)), batch,
               (batch / nominal) ** 0.5, held, weights_train, walk.hw.weight_max)


def quantization_floor(fit: Fit) -> float:
    """The block's loss that its output quantization alone gives, on the held-out rows: the loss of the
    teacher's own output in the block's output codes (0..qmax x population copies, clipped at 0 as the ReLU
    does) at the step that quantizes it best (`best_act_scale`, the least squared error). Tuning cannot go
    below it (up to the noise of the rows); a block whose rounded start is within `tuning.floor_factor` of it
    is not trained (`train_block`)."""
    core = fit.problem.out_core
    target = fit.samples.target[: fit.held or len(fit.samples)]
    qmax = core.qmax * core.k
    step = best_act_scale(torch.relu(target), qmax)
    with torch.no_grad():
        return float(fit.loss(torch.clamp(torch.round(target / step), 0, qmax) * step, target))


def free_phase(fit: Fit) -> None:
    """Phase 1: float weights, biases and output steps (LSQ) under the chip's activation quantization."""
    options, cores = fit.options, fit.cores.values()
    for c in cores:
        c.weight.requires_grad_(fit.weights_train)
    params = [{"params": fit.weights(), "lr": options.lr},
              {"params": [c.bias for c in cores], "lr": options.lr},
              {"params": [c.log_scale for c in cores], "lr": options.lr * options.step_lr_factor}]
    fit.train(options.free_steps, params, "real", "free")


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
    fit.to_codes()
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


def rounded_start(fit: Fit, walk: TuneWalk) -> tuple[float, Snapshot]:
    """The block's start rounded as it is (weights in grid units of a least-squares step, rounded; its biases
    corrected where `tuning.bias_correction` and that is better), its held-out loss, and a copy of it."""
    with torch.no_grad():
        to_code_domain(fit.problem, keep_target=fit.options.bias_correction)
        for c in fit.cores.values():
            c.round_more(1.0)
        loss = fit.report.losses["rounded_start"] = fit.measured("code")
        if fit.options.bias_correction:
            loss = bias_correction_phase(fit, walk, loss)
    return loss, fit.snapshot()


def keep_better_start(fit: Fit, rounded_loss: float, rounded: Snapshot) -> float:
    """A block never leaves tuning worse than its start rounded as it is (training on a few rows per step can
    wander off): measured on the same held-out rows, the rounded start is kept where it is clearly better (by
    more than `tuning.keep_margin`: a closer call is within the noise of the rows, and the tuned block has
    learned to correct its real inputs). Returns the loss of what is kept."""
    tuned_loss = fit.report.losses["tuned"] = fit.measured("code")
    if not tuned_loss * (1 - fit.options.keep_margin) <= rounded_loss:  # NaN too: a step blown up by training
        log.info("block %s: its rounded start (loss %.4g) beats the tuned block (%.4g); kept",
                 fit.problem.out_name, rounded_loss, tuned_loss)
        set_state(fit, rounded)
        return rounded_loss
    return tuned_loss


def set_state(fit: Fit, snap: Snapshot) -> None:
    """The cores as in `snap`, the block's scales following."""
    fit.restore(snap)
    for n in fit.problem.nodes:
        fit.problem.propagate(n)


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


def train_block(fit: Fit, walk: TuneWalk) -> float:
    """The phases on the block, from its start (the cores `create_cores` made), unless its start rounded as it
    is already sits at the floor its output quantization gives (`quantization_floor`, within
    `tuning.floor_factor`): then that is kept untrained. After the free phase, the rounded start is kept if it is
    within `floor_factor` of what the float weights reach there: rounding then costs too little for the range
    and rounding phases, whose work is to bring float weights to integers, to win back (docs/quantization.md).
    Not under noise-aware tuning: there those phases also train the integer weights against the drawn chips'
    errors, which dominate every loss measured (studies/device_stuck_adc: 1 % stuck cells lost 8.1 pp instead of 6.0
    with the rule).
    Its losses go to `fit.report`; returns the held-out loss of the cores it leaves."""
    losses = fit.report.losses
    start = fit.snapshot()
    losses["init"] = fit.measured("real")
    rounded_loss, rounded = rounded_start(fit, walk)
    floor = losses["floor"] = quantization_floor(fit)
    if rounded_loss <= fit.options.floor_factor * floor:
        log.info("block %s: its rounded start (loss %.4g) is at its quantization floor (%.4g); not trained",
                 fit.problem.out_name, rounded_loss, floor)
        return rounded_loss
    set_state(fit, start)
    free_phase(fit)
    trained = losses.get("free", losses["init"])  # no free steps: the float weights as they start
    if not noise_aware(fit.cores.values()) and rounded_loss <= fit.options.floor_factor * trained:
        log.info("block %s: its rounded start (loss %.4g) is within the floor factor of its float weights' (%.4g); "
                 "kept, not rounded by training", fit.problem.out_name, rounded_loss, trained)
        set_state(fit, rounded)
        return rounded_loss
    range_phase(fit)
    round_phase(fit)
    return keep_better_start(fit, rounded_loss, rounded)
