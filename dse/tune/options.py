"""`TuneOptions`: every setting of tuning, with its meaning and unit (the Hydra schema `tuning` mirrors it, so a
sweep can vary each one and the resume check sees each one)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dse.bounds import Bound
from dse.choices import check_choice, choices
from dse.errors import ConfigError
from dse.tune.losses import OutputLoss

TuningMode = Literal["multiphase", "none"]
TUNING_MODES: tuple[TuningMode, ...] = choices(TuningMode)


@dataclass(frozen=True)
class TuneOptions:
    mode: TuningMode = "multiphase"  # multiphase (dse/tune/multiphase.py) or none: the round-to-nearest baseline
    free_steps: int = 150  # phase 1: training steps on float weights, at most (as every step count: a cap)
    range_steps: int = 50  # phase 2: training steps on clipped weights in grid units
    round_fractions: tuple[float, ...] = (0.5, 0.75, 0.9, 0.97, 1.0)  # phase 3: fraction rounded after each round
    round_steps: int = 30  # phase 3: steps after each rounding round, at most
    batch_size: int = 256  # rows per step (samples, or (image, position) rows of a dense block)
    patch_batch_factor: int = 16  # a block trained on conv patches (kernel > 1x1) takes this many times the rows
    init_rows: int = 4096  # rows the cores' first output steps are chosen on (the head of the block's rows)
    # a block's held-out rows (its first rows, never trained on): every phase's loss, the stopping rule and the
    # choice between the tuned block and its rounded start are measured on them (dse/tune/stopping.py)
    loss_rows: int = 8192  # held-out rows at most ...
    loss_rows_min: int = 1024  # ... at least this many ...
    loss_batches: int = 4  # ... or this many steps' worth of rows if more ...
    holdout_fraction: float = 0.2  # ... but never more than this fraction of the block's rows
    # the stopping rule of every phase (free, range, each round, spike-aware; dse/tune/stopping.py): the
    # held-out loss is checked every `check_steps` steps (`spike_check_steps` in the spike-aware phase); a
    # check improves when it is below (1 - `min_improvement`) times the last improving one; `patience` checks
    # (`spike_patience` in the spike-aware phase) in a row without improving end the phase (`free_steps`,
    # `range_steps`, `round_steps`, `spike_steps`, `output_spike_steps` are caps); the parameters of the lowest
    # held-out loss are kept
    check_steps: int = 10  # training steps between two checks
    patience: int = 2  # checks without improving that end a phase
    min_improvement: float = 0.01  # relative improvement of the held-out loss that counts as one
    # a block whose start, rounded as it is, has a held-out loss at most this many times its quantization floor
    # (the loss of the teacher's own output quantized to the block's output codes at its best step,
    # `dse.tune.phases.quantization_floor`) is not trained; nor, after the free phase, is one whose rounded start
    # is within this factor of the loss its float weights reach there (its range and rounding phases are
    # skipped, its rounded start kept); on a spiking chip, nor is a hidden block whose loss on the real dynamics is
    # within this factor of the loss the ReLU-model phases left it at (its spike-aware steps are skipped); neither
    # of these two under noise-aware tuning on a device that is not ideal; 0 trains every block through every phase
    floor_factor: float = 1.1
    # spiking chips: steps tuning thresholds, biases (and weights) on the real dynamics, at most (the stopping
    # rule ends them earlier)
    spike_steps: int = 60
    # spiking chips: the cap for the block that computes the network's output in place of `spike_steps` (small,
    # and its loss decides the accuracy: with fixed step counts resnet_mnist's logits on chip_b reached top-1 0.979
    # after 60 steps, 0.984 after 600); `spike_steps=0` turns the spike-aware steps off for every block
    output_spike_steps: int = 600
    spike_weights: bool = True  # spiking chips: those steps also move the integer weights (see dse/tune/spiking.py)
    spike_calib_samples: int = 2000  # spiking chips: calibration images simulated over T steps (memory, time)
    spike_rows: int = 8192  # spiking chips: (image, position) rows sampled per block for those steps, each T long
    spike_samples: int = 2048  # spiking chips: whole images sampled for a block not trained position by position
    spike_sample_floats: int = 2**26  # ... and at most this many input values over the T steps (4 bytes each)
    spike_batch_factor: int = 4  # spiking chips: a block trained on rows takes this many times `batch_size` rows
    spike_min_rows: int = 128  # spiking chips: rows per step at least, for a block trained on rows
    spike_loss_rows: int = 2048  # spiking chips: held-out rows of those steps (at most `holdout_fraction`)
    spike_check_steps: int = 30  # spiking chips: steps between two checks of the stopping rule in those steps
    # spiking chips: checks without improving that end those steps. More than `patience`: a block's first steps
    # on the real dynamics often raise its held-out loss before they lower it (resnet_mnist chip_b's logits: 21 %
    # above the start after 20 steps, 8 % below it after 140), and only the output block (cap
    # `output_spike_steps`) runs long enough for more than two checks
    spike_patience: int = 4
    spike_lr_factor: float = 10.0  # spiking chips: biases and output steps learn at `lr` times this
    spike_chunk_images: int = 128  # spiking chips: images simulated at once to commit a core (memory only)
    max_rows: int = 200_000  # (image, position) pairs sampled once per conv block
    tie_pairs_above: int = 1_000_000  # a signed pair core with more weights trains one tensor for both halves
    step_macs: int = 250_000_000  # forward multiply-adds of one step at most (fewer rows for a big block)
    min_batch: int = 8  # rows per step at least
    lr: float = 1e-3  # Adam, real-valued weights and biases (phase 1), biases (phases 2-3)
    step_lr_factor: float = 10.0  # Adam, phase 1: the output steps (their logarithm) learn at `lr` times this
    grid_lr: float = 0.02  # Adam, weights in grid units (phases 2-3), times sqrt of the weight range
    # a tuned block whose held-out loss ends this much (relative, of its loss) above its rounded start's is replaced
    # by that rounded start (`dse.tune.phases.keep_better_start`; each phase already keeps its lowest loss)
    keep_margin: float = 0.05
    # the output block's loss: kd (class probabilities), mse (values), or both (dse/tune/losses.py)
    output_loss: OutputLoss = "kd"
    # cross-layer equalization of the float graph before fitting (dse/passes/equalize.py)
    equalize: bool = False
    # empirical bias correction of rounded weights: bias -= E[(W_q - W) x] over the calibration inputs on which
    # the neuron is active (`QCore.correct_bias`); the baseline applies it to every core whose input is known,
    # the tuner weighs it as a second rounded start (see `dse.tune.phases.keep_better_start`)
    bias_correction: bool = False
    bias_correction_images: int = 64  # calibration images per step of the bias correction's sums
    # noise-aware tuning (dse/tune/noise.py): every training step of every phase sees one chip freshly drawn
    # from `hardware.device` (its cells' errors on the weights, its converters' offset and noise on the outputs,
    # its neurons' threshold mismatch), so the compiled network tolerates them. No effect on an ideal device
    noise_aware: bool = False
    # ... and every held-out check (stopping, keeping the lowest, the rounded start) takes the mean loss over
    # this many chips, drawn once per block (the same chips at every check: parameters compared on equal terms)
    noise_checks: int = 4
    # ... and on a spiking chip, the whole compiled network then tuned end to end, each calibration image on a drawn
    # chip (dse/tune/network.py): at most this many steps (the stopping rule ends them earlier; 0: no such phase) ...
    network_steps: int = 300
    network_temperature: float = 4.0  # ... matching the teacher's class probabilities at this temperature ...
    network_batch: int = 64  # ... this many images a step ...
    network_held: int = 200  # ... the first this many calibration images held out (at most half of them) ...
    network_check_steps: int = 50  # ... measured every this many steps ...
    network_bias_lr: float = 0.2  # ... Adam's rate for the biases, in accumulator units (the weights: `grid_lr`)
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice("tuning.mode", self.mode, TuningMode)
        check_choice("tuning.output_loss", self.output_loss, OutputLoss)
        for name, bound in BOUNDS.items():
            bound.check(f"tuning.{name}", getattr(self, name))
        for name in FLAGS:
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"tuning.{name} must be true or false (got {getattr(self, name)!r})")
        if self.noise_aware and self.mode == "none":
            raise ConfigError("tuning.noise_aware=true needs tuning.mode=multiphase (mode=none does not train)")
        fractions = list(self.round_fractions)
        if any(not isinstance(f, int | float) or not 0 < f <= 1 for f in fractions) or fractions != sorted(fractions):
            raise ConfigError(f"tuning.round_fractions must be fractions in (0, 1], each at least the one before "
                              f"(got {fractions})")


# a rate or factor at most 1e9: the tuner multiplies up to three of them (lr x step_lr_factor x spike_lr_factor),
# and Adam's first step 10 times that, into float32 tensors, whose range ends at 3.4e38 (lr=1e300 was a torch
# RuntimeError traceback)
RATE_MAX = 1e9
COUNT, CAP, MARGIN, FRACTION = Bound(1), Bound(0), Bound(0, False), Bound(0, False, high=1)
RATE = Bound(0, False, True, high=RATE_MAX)
# every numeric setting's valid values (tests/tune/test_options.py checks that each field has its rule): step caps
# and the seed may be 0, row and step counts not, rates and factors are positive (below RATE_MAX), margins not
# negative
BOUNDS: dict[str, Bound] = {
    **dict.fromkeys(("free_steps", "range_steps", "round_steps", "spike_steps", "output_spike_steps",
                     "network_steps", "tie_pairs_above", "seed"), CAP),
    **dict.fromkeys(("batch_size", "patch_batch_factor", "init_rows", "loss_rows", "loss_rows_min", "loss_batches",
                     "check_steps", "patience", "spike_calib_samples", "spike_rows", "spike_samples",
                     "spike_sample_floats", "spike_batch_factor", "spike_min_rows", "spike_loss_rows",
                     "spike_check_steps", "spike_patience", "spike_chunk_images", "max_rows", "step_macs", "min_batch",
                     "bias_correction_images", "noise_checks", "network_batch", "network_held",
                     "network_check_steps"), COUNT),
    **dict.fromkeys(("spike_lr_factor", "lr", "step_lr_factor", "grid_lr", "network_temperature", "network_bias_lr"),
                    RATE),
    **dict.fromkeys(("floor_factor", "keep_margin"), MARGIN),
    **dict.fromkeys(("holdout_fraction", "min_improvement"), FRACTION),
}
FLAGS = ("spike_weights", "equalize", "bias_correction", "noise_aware")
