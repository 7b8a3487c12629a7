"""`Device`: how far a manufactured chip's cells and periphery are from the exact integers the compiler wrote.

Every field is zero (or off) by default: the ideal device, which changes no result. The models and their
published parameters are in COST_SOURCES.md part 3 (rows C1-C11) and docs/device.md; `dse.sim.device_noise`
draws chip instances from them.

A stored weight is a set of cells (`dse.sim.device_noise.cell_levels`): its magnitude bit-sliced over
``ceil(bits / cell_bits)`` cells of ``2**cell_bits`` levels, in two columns (positive, negative) on a
differential chip, or offset-binary (``w + 2**(bits-1)``) in one column otherwise. Level 0 is the cell's lowest
conductance, level ``2**cell_bits - 1`` its highest; variations are fractions of that range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Literal

from dse.choices import check_choice
from dse.errors import ConfigError

# constant: one sigma at every level; reram_wan2022 / pcm_nandakumar2019: sigma follows the published fit of
# sigma against the normalized conductance x = g / g_max (C5, C1), scaled so that its largest value over
# x in [0, 1] is `programming_sigma`
ProgrammingModel = Literal["constant", "reram_wan2022", "pcm_nandakumar2019"]
DriftModel = Literal["none", "pcm"]  # pcm: g(t) = g(t0) * (t / t0) ** -nu, t0 = 20 s (C2)

DRIFT_T0_S = 20.0  # C2: the reference time of the PCM drift law (aihwkit `t0`)
# the largest sigma, offset or drift exponent: the drawn chips hold it in float32 (largest 3.4e38) times normal
# draws and levels or codes of up to 2**24 (1e300 overflowed: numpy's warnings, or a torch RuntimeError traceback)
AMOUNT_MAX = 1e30


@dataclass(frozen=True)
class Device:
    """Non-idealities of a chip instance. Rates are per cell (a fraction of the cells), sigmas are standard
    deviations; everything is drawn independently per chip instance (`evaluate.instances`)."""

    # programming error of each cell's conductance, std as a fraction of the cell's range (g_max - g_min);
    # C9: MNSIM 0.01, literature 0.05-0.10
    programming_sigma: float = 0.0
    programming_model: ProgrammingModel = "constant"  # how that std depends on the programmed level (above)
    # read noise of each cell, std as a fraction of its range, drawn afresh at every read (every inference);
    # C5: w_noise ~0.01
    read_sigma: float = 0.0
    stuck_low: float = 0.0  # fraction of cells stuck at their lowest conductance (level 0); C10: MNSIM 0.001
    stuck_high: float = 0.0  # fraction of cells stuck at their highest conductance (top level); C10: 0.001
    drift_model: DriftModel = "none"  # conductance drift after programming (none, or pcm: C2)
    drift_seconds: float = 0.0  # s: time since programming at which the chip is read (needs a drift model)
    drift_nu: float = 0.05  # drift exponent nu, mean over cells (C2: 0.049-0.1)
    drift_nu_sigma: float = 0.0  # std of nu across cells (C2: 0.008-0.045)
    # global drift compensation (aihwkit's GlobalDriftCompensation, C4): each core's outputs are rescaled by
    # the ratio of its cells' total conductance when programmed to that at read time
    drift_compensation: bool = False
    adc_offset_lsb: float = 0.0  # std of each output converter's fixed offset, in LSB of the output code (C11)
    adc_noise_lsb: float = 0.0  # std of each conversion's noise, in LSB, drawn at every read (C7: 0.04-0.1 ~ 1)
    # spiking chips: std of each neuron's threshold, relative to it (a fixed factor 1 + e per neuron)
    threshold_mismatch: float = 0.0
    # spiking chips: std of each synapse's weight, relative to it (a fixed factor 1 + e per weight)
    weight_mismatch: float = 0.0
    # an .npz of one chip's stuck cells (`dse.sim.device_noise.save_fault_map`): compile for that chip and
    # simulate it; None = no known chip
    fault_map: str | None = None
    # true: the compiler knows the fault map (programs each weight's cells around its stuck ones and corrects
    # the rest of its column and the bias, `dse.passes.faults`); false: it is ignored, the chip only measured
    fault_map_known: bool = True

    @property
    def is_ideal(self) -> bool:
        """Whether every cell and converter is exact (the default)."""
        return (self.fault_map is None and not self.drift_active and all(
            getattr(self, name) == 0.0 for name in _AMOUNTS))

    @property
    def drift_active(self) -> bool:
        return self.drift_model != "none" and self.drift_seconds > DRIFT_T0_S

    @property
    def random(self) -> bool:
        """Whether drawn chips differ from one another (a fault map alone, or drift with one exponent for every
        cell, makes every chip the same)."""
        return any(getattr(self, name) for name in _AMOUNTS) or (self.drift_active and self.drift_nu_sigma > 0)

    def validate(self, *, spiking: bool = False, quantized: bool = True) -> None:
        """Refuse a bad value, or an effect the chip has no part for, with one line naming the field."""
        if not self.is_ideal and not quantized:
            raise ConfigError("hardware.device needs cells that hold integer weights (hardware.weights.bits)")
        for name in (("adc_offset_lsb", "adc_noise_lsb") if spiking else ("threshold_mismatch", "weight_mismatch")):
            if getattr(self, name):
                kind = "a spiking chip has no output converter" if spiking else "only a spiking chip has it"
                raise ConfigError(f"hardware.device.{name}={getattr(self, name)}: {kind}")
        check_choice("hardware.device.programming_model", self.programming_model, ProgrammingModel)
        check_choice("hardware.device.drift_model", self.drift_model, DriftModel)
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float | int) and not isinstance(value, bool) and not math.isfinite(value):
                raise ConfigError(f"hardware.device.{f.name} must be finite (got {value})")
        for name in (*_AMOUNTS, "drift_seconds", "drift_nu", "drift_nu_sigma"):
            if getattr(self, name) < 0:
                raise ConfigError(f"hardware.device.{name} must be >= 0 (got {getattr(self, name)})")
        for name in (*_AMOUNTS, "drift_nu", "drift_nu_sigma"):  # drift_seconds enters as its logarithm
            if getattr(self, name) > AMOUNT_MAX:
                raise ConfigError(f"hardware.device.{name}={getattr(self, name)} is more than {AMOUNT_MAX:g}, the "
                                  "largest the drawn chips hold in float32 times their levels and codes")
        for name in ("stuck_low", "stuck_high"):
            if getattr(self, name) > 1:
                raise ConfigError(f"hardware.device.{name} is a fraction of the cells, at most 1 "
                                  f"(got {getattr(self, name)})")
        if self.stuck_low + self.stuck_high > 1:
            raise ConfigError(f"hardware.device.stuck_low + stuck_high must be at most 1 "
                              f"(got {self.stuck_low + self.stuck_high})")
        if self.drift_model == "none":  # a drift setting without the law it parametrizes would be ignored
            default = Device()
            for name in ("drift_seconds", "drift_nu", "drift_nu_sigma", "drift_compensation"):
                if getattr(self, name) != getattr(default, name):
                    raise ConfigError(f"hardware.device.{name}={getattr(self, name)} needs a drift model "
                                      f"(hardware.device.drift_model=pcm)")
        if not self.fault_map_known and self.fault_map is None:
            raise ConfigError("hardware.device.fault_map_known=false needs a fault map (hardware.device.fault_map): "
                              "without one there is nothing to ignore")


# the fields whose zero means "this effect is off"
_AMOUNTS = ("programming_sigma", "read_sigma", "stuck_low", "stuck_high", "adc_offset_lsb", "adc_noise_lsb",
            "threshold_mismatch", "weight_mismatch")


def programming_shape(model: ProgrammingModel, x):  # noqa: ANN001, ANN201 - a numpy array in and out
    """The relative programming std at normalized conductance `x` in [0, 1], largest value 1 over [0, 1]."""
    if model == "constant":
        return x * 0 + 1.0
    if model == "pcm_nandakumar2019":  # C1: 0.26348 + 1.9650 x - 1.1731 x^2 uS; its largest value at x = 1
        return (0.26348 + 1.9650 * x - 1.1731 * x**2) / (0.26348 + 1.9650 - 1.1731)
    # C5 (Wan, Nature 2022, at 1 s): 0.348 + 16.030 x - 43.853 x^2 + 45.393 x^3 - 16.815 x^4 uS
    return (0.348 + 16.030 * x - 43.853 * x**2 + 45.393 * x**3 - 16.815 * x**4) / _WAN_MAX


_WAN_MAX = max(0.348 + 16.030 * x - 43.853 * x**2 + 45.393 * x**3 - 16.815 * x**4
               for x in (i / 1000 for i in range(1001)))
