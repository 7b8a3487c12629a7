"""Noise-aware tuning (`tuning.noise_aware`): the chip's non-idealities (`hardware.device`) drawn afresh at every
training step and injected into the cores' weights and outputs, so that the tuned block tolerates them.

What a cell does is defined once, in `dse.sim.device_noise`: a step's weights are the integer weights the core
would be committed with (the trained weights rounded, in grid units), programmed, perturbed and read as one drawn
chip holds them (`drawn_weights`: programming variation with its state dependence, drift, stuck cells drawn at
the device's rates, weight mismatch; read noise of `read_std`), the difference added to the trained weights
(straight through: the gradient is the noiseless one). On the real-valued weights of the first phase the grid is
the one `QCore.round_weights` would choose (max |weight| of the row or crossbar on the largest code). A step's
outputs get each converter's offset (one per output channel) and noise in LSB of the output code; on a spiking
chip each neuron's threshold is scaled by its mismatch (the spike-aware phase, `dse.tune.spiking`). The weight
step is chosen on what one drawn chip stores (`StepNoise.stored`): the cells' error is a fixed number of grid
units, so a smaller step, clipping the largest weights, buys signal against it.

A training step draws a fresh chip (`injected`, around the step's loss). The held-out checks that end a phase,
keep its lowest loss and choose between the tuned block and its rounded start (`held_out`) take the mean loss
over `tuning.noise_checks` chips drawn once, the same at every check: noise-free checks do not see what noise-aware
steps gain (measured: every phase kept its start), and a fresh draw per check would compare parameters by the
luck of the draw (docs/device.md).

Each block draws from its own generator, seeded by `tuning.seed` and the block's name: the same draws whatever
else is tuned, on any machine.

On a spiking chip the blocks so tuned are then tuned together, end to end, each calibration image on a drawn chip
(`dse.tune.network`, `tuning.network_steps`): what one neuron's mismatch does, only the layers after it can
bear, which a block-wise fit to the teacher cannot teach them.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Protocol

import numpy as np
import torch

from dse.hardware.device import Device
from dse.hardware.spec import HardwareSpec
from dse.ir import ops as o
from dse.sim.device_noise import CellLayout, drawn_weights, read_std
from dse.tune.scales import weight_in_scale

Tensor = torch.Tensor


class QCore(Protocol):
    """What the noise reads of a `dse.tune.qcore.QCore` (which holds a `StepNoise`: no import back)."""

    op: o.CoreOp
    domain: str
    wmax: int
    per_column: bool
    in_scale: Tensor
    ws: Tensor | None
    scale: Tensor
    noise: StepNoise | None

    def masked(self, w: Tensor) -> Tensor: ...


class StepNoise:
    """One block's source of noise: a drawn chip's errors on a core's weights and outputs while `on`."""

    def __init__(self, hw: HardwareSpec, seed: int, block: str, checks: int) -> None:
        self.device, self.layout = hw.device, CellLayout.of(hw)
        self.key = [seed, zlib.crc32(block.encode())]
        self.checks = checks  # the chips every held-out check is measured on
        self.rng, self.gen = streams([*self.key, 0])
        self.on = False

    @contextmanager
    def chip(self, index: int) -> Iterator[None]:
        """On, with the draws of held-out chip `index` (the same at every check); the training draws after."""
        training = self.rng, self.gen
        self.rng, self.gen = streams([*self.key, 1, index])
        self.on = True
        try:
            yield
        finally:
            self.on = False
            self.rng, self.gen = training

    def weights(self, core: QCore, w: Tensor) -> Tensor:
        """`w` (the core's trained weights, masked) plus the error a drawn chip makes on their integer form."""
        if not self.on:
            return w
        with torch.no_grad():
            unit = _grid_unit(core, w)  # weight units per grid unit
            w_int = torch.clamp(torch.round(w / unit), -core.wmax, core.wmax).to(torch.int64).numpy()
            error = core.masked(cell_error(w_int, self.layout, self.device, self.rng, self.gen) * unit)
        return w + error

    def stored(self, codes: Tensor) -> Tensor:
        """The weights one drawn chip (always the same) holds for integer `codes`: the weight step is chosen
        on them (`best_weight_scale`), so that it weighs the cells' errors against rounding and clipping."""
        rng, gen = streams([*self.key, 2])
        w_int = codes.to(torch.int64).numpy()
        held = torch.from_numpy(drawn_weights(w_int, self.layout, self.device, [rng])[0]).to(codes.dtype)
        if self.device.read_sigma:
            held += read_noise(w_int, self.layout, self.device, gen, codes.dtype)
        return held

    def outputs(self, core: QCore, y: Tensor) -> Tensor:
        """A core's accumulator `y` (N, O, ...) plus its converters' offsets and noise, in LSB of its output."""
        device = self.device
        if not self.on or not (device.adc_offset_lsb or device.adc_noise_lsb):
            return y
        with torch.no_grad():
            lsb = core.scale.detach() / (core.ws if core.domain == "code" else 1.0)  # one output code in y's units
            shape = (1, -1, *([1] * (y.dim() - 2)))
            noise = device.adc_offset_lsb * torch.randn(y.shape[1], generator=self.gen).reshape(shape)
            noise = noise + device.adc_noise_lsb * torch.randn(y.shape, generator=self.gen)
            noise = noise * (lsb.reshape(shape) if lsb.dim() else lsb)
        return y + noise

    def thresholds(self, threshold: Tensor, shape: tuple[int, ...]) -> Tensor:
        """A spiking core's threshold (its output step) times each neuron's mismatch ``1 + e`` for outputs of
        `shape` (N, O, ...): one draw per output channel and position, shared by the step's rows."""
        mismatch = self.device.threshold_mismatch
        if not self.on or not mismatch:
            return threshold
        factor = 1.0 + mismatch * torch.randn(shape[1:], generator=self.gen)
        return threshold * factor


def _grid_unit(core: QCore, w: Tensor) -> Tensor | float:
    """The weight units of one integer step: 1 in the code domain; on real-valued weights the step
    `QCore.round_weights` would choose (max |weight code| of the row, or of the crossbar, on the largest code)
    over each weight's input step."""
    if core.domain == "code":
        return 1.0
    per_input = weight_in_scale(core.op, core.in_scale)[: w.shape[0]]  # the trained rows' (a tied pair: half)
    top = (w * per_input).abs().reshape(w.shape[0], -1).amax(dim=1)
    if not core.per_column:
        top = top.max().expand_as(top)
    step = torch.where(top > 0, top / core.wmax, torch.ones_like(top))
    return step.reshape(-1, 1, 1, 1) / per_input


def cell_error(w_int: np.ndarray, layout: CellLayout, device: Device, rng: np.random.Generator,
               gen: torch.Generator) -> Tensor:
    """What one drawn chip holds for the integer weights `w_int`, less `w_int` (float32): its cells' errors
    (`drawn_weights`, from `rng`) and, where the device has read noise, one read's (from `gen`)."""
    held = drawn_weights(w_int, layout, device, [rng])[0]
    error = torch.from_numpy(held - w_int).float()
    if device.read_sigma:
        error += read_noise(w_int, layout, device, gen)
    return error


def read_noise(w_int: np.ndarray, layout: CellLayout, device: Device, gen: torch.Generator,
               dtype: torch.dtype = torch.float32) -> Tensor:
    """One read's noise on the integer weights `w_int` (from `gen`): `read_std` per weight times a normal draw."""
    return read_std(layout, device, w_int) * torch.randn(w_int.shape, generator=gen, dtype=dtype)


def streams(key: list[int]) -> tuple[np.random.Generator, torch.Generator]:
    """A numpy and a torch generator, both from `key` (the torch one seeded by the numpy one's first draw)."""
    rng = np.random.default_rng(key)
    return rng, torch.Generator().manual_seed(int(rng.integers(2**62)))


def attach(cores: Iterable[QCore], hw: HardwareSpec, seed: int, block: str, checks: int) -> None:
    """Give a block's cores one source of noise (`tuning.noise_aware` on a chip whose device is not ideal)."""
    noise = StepNoise(hw, seed, block, checks)
    for c in cores:
        c.noise = noise


def _source(cores: Iterable[QCore]) -> StepNoise | None:
    return next((c.noise for c in cores if c.noise is not None), None)


def noise_aware(cores: Iterable[QCore]) -> bool:
    """Whether the block trains and is measured on drawn chips (`attach`ed noise)."""
    return _source(cores) is not None


def held_out(cores: Iterable[QCore], measure: Callable[[], float]) -> float:
    """`measure()` (a held-out loss), or with noise its mean over the block's `checks` fixed drawn chips."""
    source = _source(cores)
    if source is None:
        return measure()
    total = 0.0
    for i in range(source.checks):
        with source.chip(i):
            total += measure()
    return total / source.checks


@contextmanager
def injected(cores: Iterable[QCore]) -> Iterator[None]:
    """Noise on the cores' weights and outputs within the block (one training step's forward pass)."""
    source = _source(cores)
    if source is not None:
        source.on = True
    try:
        yield
    finally:
        if source is not None:
            source.on = False
