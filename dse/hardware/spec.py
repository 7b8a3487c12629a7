"""The hardware model: a frozen `HardwareSpec` built from small parts, one concern each.

A field that is None means "no constraint" (the `ideal` chip). Units are in the names or the docstrings.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any, Literal

from dse.bounds import check_int
from dse.choices import check_choice, choices
from dse.errors import ConfigError
from dse.hardware.device import Device

NeuronModel = Literal["relu", "if", "lif", "if_floor"]
Reset = Literal["subtract", "zero"]
Reuse = Literal["time_multiplexed", "expanded"]
ScaleMode = Literal["per_crossbar", "per_column"]
Encoding = Literal["rate", "poisson"]
NEURON_MODELS: tuple[NeuronModel, ...] = choices(NeuronModel)
SPIKING_MODELS: tuple[NeuronModel, ...] = ("if", "lif", "if_floor")  # the models whose values travel as spike trains

# What the simulators and the tuner hold exactly, which bounds the bit widths a chip may have
# (`HardwareSpec.check_exact`). float64 holds every integer up to 2**53, float32 every one up to 2**24.
EXACT_FLOAT64 = 2**53  # the integer simulator's accumulator where it could pass float32's (dse.sim.integer)
EXACT_FLOAT32 = 2**24  # codes between cores, as the integer simulator and the tuner hold them; spike currents
CODE_BITS_MAX = 24  # the largest code, 2**bits - 1, must be a float32 integer (dse.sim.integer holds codes so)
WEIGHT_BITS_MAX = 25  # the largest weight code, 2**(bits-1) - 1: the tuner trains weight codes in float32


@dataclass(frozen=True)
class Crossbar:
    """A core: at most `rows` inputs (fan-in) by `cols` physical columns.

    A weight of `b` bits takes ``ceil(b / cell_bits)`` cells along a row (bit slicing); when `differential`, a
    signed weight is stored as two unsigned magnitudes of ``b - 1`` bits in two columns (positive, negative).
    `spare_columns` (count, default 0): physical columns each crossbar carries beyond `cols` for repair: a
    column whose stuck cells (a known fault map) do the most harm is read from a spare instead
    (`dse.passes.spare_repair`); they hold no neurons of their own, and cost their cells' area and the periphery
    that scales with columns.
    """

    rows: int | None = 256
    cols: int | None = 256
    cell_bits: int = 4
    differential: bool = True
    spare_columns: int = 0


@dataclass(frozen=True)
class Weights:
    """Weights are signed integers of `bits` bits (symmetric range ``±(2**(bits-1) - 1)``) times a scale
    shared `per_crossbar` (one scale for a layer's crossbars) or `per_column` (one per output neuron)."""

    bits: int | None = 8
    scale: ScaleMode = "per_crossbar"


@dataclass(frozen=True)
class IO:
    """Every value entering a core is an unsigned code of `input_bits` bits (DAC), every value leaving one a
    code of `output_bits` bits (ADC); a value passed from core to core must fit both."""

    input_bits: int | None = 6
    output_bits: int | None = 8


@dataclass(frozen=True)
class Neuron:
    """The chip's only non-linearity.

    `relu`: a clipped, quantized ReLU. `if` / `lif`: (leaky) integrate-and-fire over `timesteps` steps, the
    membrane multiplied by `leak` in (0, 1] every step (1 = no leak), reset by `subtract`-ing the threshold
    or to `zero`; inputs enter as spikes by a deterministic `rate` code or a `poisson` one. `if_floor`: `if`
    on an unsigned membrane register, clamped at zero after every step's update (``v <- max(v, 0)``), so a
    negative current builds no debt that delays later spikes; it does not leak either. `offered` lists
    the models the chip can be configured with (a sweep may choose among them, nothing else).
    """

    model: NeuronModel = "relu"
    timesteps: int = 1
    leak: float = 1.0
    reset: Reset = "subtract"
    encoding: Encoding = "rate"
    offered: tuple[NeuronModel, ...] = NEURON_MODELS

    @property
    def decay(self) -> float:
        """The membrane's factor per step: `leak` for a LIF neuron; an IF neuron does not leak."""
        return self.leak if self.model == "lif" else 1.0

    @property
    def floor(self) -> float | None:
        """The membrane's lower bound after every step's update (accumulator units): 0 for `if_floor`, whose
        register is unsigned; None (unbounded) for the others."""
        return 0.0 if self.model == "if_floor" else None


@dataclass(frozen=True)
class Mapping:
    """`time_multiplexed`: one set of crossbars serves every position of a convolution (PIM).
    `expanded`: every output position has neurons of its own (spatial neuromorphic chips).
    `cores_per_chip`: how many cores one chip holds (None: count no chips). `mesh`: (width, height) in cores
    of the whole system the cores are placed on, a whole number of chips (None: as few chips as hold the
    network, in a near-square grid; `dse.cost.placement`)."""

    reuse: Reuse = "time_multiplexed"
    cores_per_chip: int | None = None
    mesh: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Cost:
    """The chip's energy, latency and area coefficients, the unit in each name. A chip kind uses one set: a PIM
    chip (ReLU neurons) `dse.cost.model.PimCost`'s fields, a spiking chip `SpikingCost`'s, whose docstrings and
    comments give each value's source (a row of COST_SOURCES.md); the presets give every one of them with its
    row ID. None: not set (the chip kind's default); none set: the chip has no cost model; a field of the other
    kind that is set is refused.
    `tests/cost/test_cost_model.py` keeps these fields the union of the two."""

    # PIM (PimCost)
    dac_bits: int | None = None
    dac_1b_pj_per_activation: float | None = None
    dac_1b_um2: float | None = None
    adc_8b_pj_per_conversion: float | None = None
    adc_8b_um2: float | None = None
    adc_ns_per_conversion: float | None = None
    columns_per_adc: int | None = None
    crossbar_fj_per_cell_read: float | None = None
    crossbar_um2_per_cell: float | None = None
    read_ns: float | None = None
    shift_add_pj_per_op: float | None = None
    shift_add_um2: float | None = None
    buffer_pj_per_bit: float | None = None
    buffer_mm2_per_kb: float | None = None
    noc_pj_per_bit_hop: float | None = None
    router_um2_per_core: float | None = None
    # spiking (SpikingCost)
    synaptic_event_pj: float | None = None
    synaptic_event_ns: float | None = None
    neuron_update_pj: float | None = None
    neuron_update_ns: float | None = None
    spike_pj: float | None = None
    spike_ns: float | None = None
    hop_x_pj_per_spike: float | None = None
    hop_y_pj_per_spike: float | None = None
    barrier_ns: float | None = None
    static_mw_per_core: float | None = None
    synapse_um2: float | None = None

    def given(self) -> dict[str, float]:
        """The coefficients set, by name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


@dataclass(frozen=True)
class HardwareSpec:
    name: str = "custom"
    crossbar: Crossbar = field(default_factory=Crossbar)
    weights: Weights = field(default_factory=Weights)
    io: IO = field(default_factory=IO)
    neuron: Neuron = field(default_factory=Neuron)
    mapping: Mapping = field(default_factory=Mapping)
    cost: Cost = field(default_factory=Cost)  # none set (the ideal chip): no cost model, no cost in the report
    device: Device = field(default_factory=Device)  # cell and converter non-idealities (default: exact)

    # --- derived quantities ------------------------------------------------------------------------------
    @property
    def weight_max(self) -> int | None:
        """Largest weight code magnitude, or None for float weights."""
        return None if self.weights.bits is None else max(2 ** (self.weights.bits - 1) - 1, 1)

    @property
    def columns_per_weight(self) -> int:
        """Physical columns one logical output column takes (bit slices, times 2 when differential)."""
        if self.weights.bits is None:
            return 2 if self.crossbar.differential else 1
        magnitude_bits = self.weights.bits - 1 if self.crossbar.differential else self.weights.bits
        slices = max(1, math.ceil(max(magnitude_bits, 1) / self.crossbar.cell_bits))
        return slices * (2 if self.crossbar.differential else 1)

    @property
    def logical_cols(self) -> int | None:
        """Output neurons one crossbar holds."""
        if self.crossbar.cols is None:
            return None
        return self.crossbar.cols // self.columns_per_weight

    def edge_bits(self, *, to_core: bool) -> int | None:
        """Bits of a code leaving a core: to another core it must fit both ADC and DAC; to the host, the ADC."""
        out, inp = self.io.output_bits, self.io.input_bits
        if not to_core:
            return out
        if out is None:
            return inp
        return out if inp is None else min(out, inp)

    @property
    def spiking(self) -> bool:
        """Whether values travel as spike trains over `neuron.timesteps` steps (every spiking path reads this)."""
        return self.neuron.model in SPIKING_MODELS

    def code_max(self, *, to_core: bool) -> int | None:
        """Largest code a core emits: ``2**bits - 1`` behind an ADC, or `T` spikes in a window of T steps."""
        if self.spiking:
            return self.neuron.timesteps
        bits = self.edge_bits(to_core=to_core)
        return None if bits is None else 2**bits - 1

    @property
    def input_code_max(self) -> int | None:
        """Largest code the host sends into the chip (DAC levels, or spikes per window)."""
        if self.spiking:
            return self.neuron.timesteps
        return None if self.io.input_bits is None else 2**self.io.input_bits - 1

    @property
    def quantized(self) -> bool:
        """Whether the chip computes on integer codes (everything but the ideal chip)."""
        return self.weights.bits is not None

    @property
    def is_ideal(self) -> bool:
        return (
            self.crossbar.rows is None
            and self.crossbar.cols is None
            and self.weights.bits is None
            and self.io.input_bits is None
            and self.io.output_bits is None
            and self.neuron.model == "relu"
        )

    # --- construction -------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Every field; of `cost` only the coefficients set; `device` only when it is not ideal and
        `crossbar.spare_columns` only when there are some (a chip without either reads as it did before they
        existed)."""
        out = {**asdict(self), "cost": self.cost.given()}
        if self.device.is_ideal:
            del out["device"]
        if not self.crossbar.spare_columns:
            del out["crossbar"]["spare_columns"]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HardwareSpec:
        """Build and validate a spec from a plain (nested) dict; unknown keys and bad values raise ConfigError."""
        spec = _build(cls, dict(data), "hardware")
        spec.validate()
        return spec

    def validate(self) -> None:
        c, w, io, n, m = self.crossbar, self.weights, self.io, self.neuron, self.mapping
        self.device.validate(spiking=self.spiking, quantized=self.quantized)
        check_int("hardware.crossbar.rows", c.rows, 2, optional=True)
        check_int("hardware.crossbar.cols", c.cols, 2, optional=True)
        check_int("hardware.crossbar.cell_bits", c.cell_bits, 1, optional=True)
        check_int("hardware.crossbar.spare_columns", c.spare_columns, 0, optional=True)
        if c.spare_columns and c.cols is None:
            raise ConfigError(f"hardware.crossbar.spare_columns={c.spare_columns} needs crossbars "
                              "(hardware.crossbar.cols)")
        if c.cols is not None and c.spare_columns > c.cols:  # 1e9 of them: hours drawing a fault map's cells
            raise ConfigError(f"hardware.crossbar.spare_columns={c.spare_columns} is more than the crossbar's "
                              f"{c.cols} columns, each of which one spare stands in for")
        check_int("hardware.weights.bits", w.bits, 2 if c.differential is False else 1, optional=True)
        check_choice("hardware.weights.scale", w.scale, ScaleMode)
        check_int("hardware.io.input_bits", io.input_bits, 1, optional=True)
        check_int("hardware.io.output_bits", io.output_bits, 1, optional=True)
        self._check_bit_widths()
        for offered in n.offered:
            check_choice("hardware.neuron.offered", offered, NeuronModel)
        if n.model not in n.offered:
            offered = ", ".join(n.offered)
            raise ConfigError(f"hardware.neuron.model={n.model!r} is not offered by chip {self.name} "
                              f"(offered: {offered})")
        check_choice("hardware.neuron.reset", n.reset, Reset)
        check_choice("hardware.neuron.encoding", n.encoding, Encoding)
        check_int("hardware.neuron.timesteps", n.timesteps, 1, optional=True)
        self._check_spiking_io()
        if not 0.0 < n.leak <= 1.0:
            raise ConfigError(f"hardware.neuron.leak must be in (0, 1] (got {n.leak})")
        check_choice("hardware.mapping.reuse", m.reuse, Reuse)
        check_int("hardware.mapping.cores_per_chip", m.cores_per_chip, 1, optional=True)
        if m.mesh is not None:
            if len(m.mesh) != 2:
                raise ConfigError(f"hardware.mapping.mesh must be [width, height] in cores (got {list(m.mesh)})")
            for v in m.mesh:
                check_int("hardware.mapping.mesh", v, 1, optional=True)
        if c.cols is not None and self.columns_per_weight > c.cols:
            raise ConfigError(
                f"hardware.crossbar.cols={c.cols} cannot hold one {w.bits}-bit weight "
                f"({self.columns_per_weight} columns with {c.cell_bits}-bit cells)"
            )
        if c.rows is not None:  # no core reads more rows; without crossbars the network's fan-in decides
            self.check_exact(c.rows, f"hardware.crossbar.rows={c.rows}")

    def _check_bit_widths(self) -> None:
        """Each bit width within what the simulators hold exactly (`CODE_BITS_MAX`, `WEIGHT_BITS_MAX`): past
        them the compiled network's codes would round in float32 (64-bit I/O overflowed into a traceback)."""
        limits = (("weights.bits", self.weights.bits, WEIGHT_BITS_MAX, "weight codes, trained in float32"),
                  ("io.input_bits", self.io.input_bits, CODE_BITS_MAX, "codes, held in float32"),
                  ("io.output_bits", self.io.output_bits, CODE_BITS_MAX, "codes, held in float32"))
        for key, bits, limit, what in limits:
            if bits is not None and bits > limit:
                raise ConfigError(f"hardware.{key}={bits} is more than the {limit} bits the simulator holds exactly "
                                  f"({what}, exact up to 2**24)")

    def check_exact(self, fan_in: int, where: str) -> None:
        """Refuse (ConfigError, naming `where`) a core of `fan_in` rows whose accumulator could pass what its
        simulator holds exactly: every weight at its largest code times the largest code entering a core,
        below 2**53 (the integer simulator's float64); on a spiking chip the current of one step (spikes
        are 0 or 1) below 2**24 too (the spiking simulator's float32). Bias aside: the tuner sets it."""
        if self.weight_max is None or self.input_code_max is None:
            return
        bound = fan_in * self.weight_max * self.input_code_max
        if bound >= EXACT_FLOAT64:
            raise ConfigError(
                f"{where} with hardware.weights.bits={self.weights.bits} and {self._code_source}: a core's accumulator "
                f"can reach {fan_in} x {self.weight_max} x {self.input_code_max} = {bound:.3g}, past 2**53, the "
                "largest integer the simulator's float64 holds exactly; lower one of them")
        if self.spiking and fan_in * self.weight_max >= EXACT_FLOAT32:
            raise ConfigError(
                f"{where} with hardware.weights.bits={self.weights.bits}: a core's current in one time step can "
                f"reach {fan_in} x {self.weight_max} = {fan_in * self.weight_max:.3g}, past 2**24, the largest "
                "integer the spiking simulator's float32 holds exactly; lower one of them")

    @property
    def _code_source(self) -> str:
        """The setting that makes the largest code entering a core, as `check_exact` names it."""
        if self.spiking:
            return f"hardware.neuron.timesteps={self.neuron.timesteps}"
        return f"hardware.io.input_bits={self.io.input_bits}"

    def _check_spiking_io(self) -> None:
        """A spiking chip carries every value as a count of 0..T spikes: I/O bits would be accepted and change
        nothing. A preset that leaves `io` out gets the schema's 6 and 8 bits (the relu chip's defaults), so a
        spiking preset must say null, as chip_b's does."""
        io, n = self.io, self.neuron
        if not self.spiking:
            return
        for key in ("input_bits", "output_bits"):
            bits = getattr(io, key)
            if bits is not None:
                raise ConfigError(
                    f"hardware.io.{key}={bits} on a spiking chip (hardware.neuron.model={n.model}, values travel as "
                    f"0..{n.timesteps} spikes) changes nothing: set hardware.io.input_bits and output_bits to null "
                    "(a preset without them gets the relu chip's 6 and 8)")


def _build(cls: type, data: dict[str, Any], path: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    for key in data:
        if key not in known:
            raise ConfigError(f"unknown key {path}.{key} (known: {', '.join(known)})")
    kwargs = {}
    for name, f in known.items():
        if name not in data:
            continue
        value = data[name]
        default = f.default_factory() if callable(f.default_factory) else None  # type: ignore[misc]
        if is_dataclass(default):
            if not isinstance(value, dict):
                raise ConfigError(f"{path}.{name} must be a mapping (got {value!r})")
            value = _build(type(default), value, f"{path}.{name}")
        kwargs[name] = tuple(value) if isinstance(value, list) else value
    return cls(**kwargs)
