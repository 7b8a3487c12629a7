"""Cost coefficients of a chip: one frozen spec per chip kind, every field's unit in its name.

A PIM chip (`hw.spiking` false, chip_a) is costed with `PimCost`, a spiking chip (chip_b) with `SpikingCost`.
The chip's `hardware.cost` (`HardwareSpec.cost`, the preset's `cost:` block) sets them; `cost_model(hw)` builds
the one its chip kind uses. The defaults are the presets' values (a test keeps them equal); each cites its row in
`COST_SOURCES.md` (shared with the project), as the presets do on every line.

Choices where published models disagree (docs/cost.md gives the formulas):

- ADC energy per conversion spans about 100x at 8 bits: 0.16 pJ (NeuroSim's SAR model, A7), 1.56 pJ (ISAAC:
  2 mW / 1.28 GS/s, A2), 15.6 pJ (MNSIM's P(N+2)/f_s model, A6). The default is ISAAC's 1.56 pJ, the figure the
  rest of chip_a's coefficients come from (A1-A22). `adc_8b_pj_per_conversion` is that one number; a study
  sweeps it over 0.16..15.6 pJ.
- ADC energy and area against bits: the A4 table (hwcomponents' ISAAC ADC scaled by bits after Saberi 2011),
  normalized to its 8-bit point so that only the shape comes from A4 and the 8-bit value from the coefficient;
  looked up at 4..10 bits, extended geometrically beyond by the ratio of the table's last step.
- DAC energy and area against bits: 2**(bits-1) times the 1-bit DAC's, the A10 table exactly (1, 2, 4, 6 and 8
  bits). The spec's `io.input_bits` is the input code's width; `dac_bits` (a coefficient here) is the DAC's, and
  an input goes in ``ceil(input_bits / dac_bits)`` bit slices (A18). ISAAC's DAC is 1 bit (bit-serial).
- The ADC's bits are the spec's `io.output_bits` (the code a core emits).
- chip_b mixes Loihi's per-operation energies (14 nm, B7) with TrueNorth's area per synapse (28 nm, B4, a core of
  256 x 256 like chip_b's): no scaling between the nodes is applied (that rule is unverified, R).
- A neuron update costs Loihi's inactive figure (52 pJ) every step for every neuron, and each spike the
  within-tile spike energy on top; the active figure (81 pJ) is not used: it is not known which updates are
  active.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from dse.errors import ConfigError
from dse.hardware.spec import HardwareSpec

# A4: ADC energy (pJ) and area (um^2) at 4..10 bits; only their ratio to the 8-bit point is used
_ADC_BITS = (4, 5, 6, 7, 8, 9, 10)
_ADC_PJ = (0.79, 0.99, 1.20, 1.42, 1.67, 1.97, 2.38)
_ADC_UM2 = (361.0, 477.0, 627.0, 845.0, 1200.0, 1828.0, 3002.0)


def _a4_ratio(table: tuple[float, ...], bits: int) -> float:
    """A4's value at `bits` over its value at 8 bits; geometric beyond the table by its end steps."""
    if bits < _ADC_BITS[0]:
        value = table[0] * (table[0] / table[1]) ** (_ADC_BITS[0] - bits)
    elif bits > _ADC_BITS[-1]:
        value = table[-1] * (table[-1] / table[-2]) ** (bits - _ADC_BITS[-1])
    else:
        value = table[_ADC_BITS.index(bits)]
    return value / table[_ADC_BITS.index(8)]


@dataclass(frozen=True)
class PimCost:
    """A ReRAM PIM chip, ISAAC-like at 32 nm (chip_a)."""

    dac_bits: int = 1  # A9, A18: a 1-bit DAC per row, inputs bit-serial
    dac_1b_pj_per_activation: float = 0.39  # A9: one 1-bit DAC driving one row for one 100-ns read
    dac_1b_um2: float = 0.166  # A9; A10 scales it by 2**(bits-1)
    adc_8b_pj_per_conversion: float = 1.56  # A2: 2 mW / 1.28 GS/s (A1); A4 gives the other bits
    adc_8b_um2: float = 1200.0  # A3; A4 gives the other bits
    adc_ns_per_conversion: float = 0.78125  # A1: 1 / 1.28 GS/s
    columns_per_adc: int = 128  # A18: one ADC serves 128 columns within one 100-ns read
    crossbar_fj_per_cell_read: float = 1.831  # A12: 30 pJ per 128x128 array per input bit slice
    crossbar_um2_per_cell: float = 0.001526  # A13: 25 um^2 per 128x128 array
    read_ns: float = 100.0  # A17: one crossbar read (one input bit slice)
    shift_add_pj_per_op: float = 0.021  # A21: one 16-bit shift-and-add
    shift_add_um2: float = 60.0  # A21: one unit, one per ADC
    buffer_pj_per_bit: float = 0.080  # A22: eDRAM, 20.45 pJ per 256-bit access
    buffer_mm2_per_kb: float = 0.0012969  # A22: 0.083 mm^2 per 64 KB
    noc_pj_per_bit_hop: float = 0.081  # D3: one router traversal
    router_um2_per_core: float = 390.6  # D3 (0.150 mm^2 per router, 4 tiles) over 96 crossbars a tile (A11, A25)

    def adc_pj_per_conversion(self, bits: int) -> float:
        return self.adc_8b_pj_per_conversion * _a4_ratio(_ADC_PJ, bits)

    def adc_um2(self, bits: int) -> float:
        return self.adc_8b_um2 * _a4_ratio(_ADC_UM2, bits)

    def dac_pj_per_activation(self) -> float:
        return self.dac_1b_pj_per_activation * 2 ** (self.dac_bits - 1)

    def dac_um2(self) -> float:
        return self.dac_1b_um2 * 2 ** (self.dac_bits - 1)

    def slice_ns(self) -> float:
        """One bit slice: the array's read, or its ADC converting its share of columns if that is slower."""
        return max(self.read_ns, self.columns_per_adc * self.adc_ns_per_conversion)


@dataclass(frozen=True)
class SpikingCost:
    """A spiking chip, Loihi's per-operation figures with TrueNorth's core area (chip_b)."""

    synaptic_event_pj: float = 23.6  # B7: synaptic spike op (min)
    synaptic_event_ns: float = 3.5  # B7
    neuron_update_pj: float = 52.0  # B7: neuron update, inactive (active: 81)
    neuron_update_ns: float = 5.3  # B7
    spike_pj: float = 1.7  # B7: within-tile spike
    spike_ns: float = 2.1  # B7
    hop_x_pj_per_spike: float = 3.0  # D1: tile hop east-west
    hop_y_pj_per_spike: float = 4.0  # D1: tile hop north-south
    barrier_ns: float = 113.0  # B7: barrier sync of a time step (113 ns at 1 tile .. 465 ns at 32)
    static_mw_per_core: float = 0.815  # B9: Loihi static power per core (upper bound)
    synapse_um2: float = 1.428  # B4: TrueNorth core 0.0936 mm^2 over 256 x 256 synapses


CostModel = PimCost | SpikingCost
COST_KINDS: dict[str, type] = {"pim": PimCost, "spiking": SpikingCost}


def chip_kind(hw: HardwareSpec) -> str:
    return "spiking" if hw.spiking else "pim"


def cost_model(hw: HardwareSpec) -> CostModel | None:
    """The cost coefficients chip `hw` sets (`hw.cost`), validated; None when it sets none (no cost model)."""
    given = hw.cost.given()
    return cost_from_dict(hw, given) if given else None


def cost_from_dict(hw: HardwareSpec, data: dict[str, Any] | None) -> CostModel:
    """The cost coefficients of chip `hw` from a preset's `cost:` block (None or {}: the defaults); a key of the
    other chip kind, an unknown key or a value that is not a positive number raises ConfigError."""
    kind = chip_kind(hw)
    cls = COST_KINDS[kind]
    mine = {f.name for f in fields(cls)}
    for key in data or {}:
        if key in mine:
            continue
        other = next((k for k, c in COST_KINDS.items() if key in {f.name for f in fields(c)}), None)
        if other is not None:
            raise ConfigError(f"hardware.cost.{key} is a cost of {other} chips; chip {hw.name} is a {kind} chip "
                              f"(its cost fields: {', '.join(sorted(mine))})")
        raise ConfigError(f"unknown key hardware.cost.{key} (known for a {kind} chip: {', '.join(sorted(mine))})")
    model = cls(**(data or {}))
    validate_cost(model, hw)
    return model


def validate_cost(model: CostModel, hw: HardwareSpec) -> None:
    """Every coefficient a positive number (integers where a count); the bits a PIM cost needs are set."""
    for f in fields(model):
        value = getattr(model, f.name)
        integral = f.type in ("int", int)
        ok_type = isinstance(value, int) if integral else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok_type or not math.isfinite(value) or value <= 0:
            what = "a positive integer" if integral else "a positive number"
            raise ConfigError(f"hardware.cost.{f.name} must be {what} (got {value!r})")
    if isinstance(model, PimCost) and (hw.io.input_bits is None or hw.io.output_bits is None):
        raise ConfigError(f"a PIM cost model needs hardware.io.input_bits and output_bits (chip {hw.name} has "
                          f"{hw.io.input_bits} and {hw.io.output_bits})")
    if isinstance(model, PimCost) and model.dac_bits > hw.io.input_bits:  # 2000 bits: 2**1999 overflowed a float
        raise ConfigError(f"hardware.cost.dac_bits={model.dac_bits} is wider than the codes it converts "
                          f"(hardware.io.input_bits={hw.io.input_bits}): an input goes in "
                          "ceil(input_bits / dac_bits) slices, at least one")


def cost_to_dict(model: CostModel) -> dict[str, Any]:
    return asdict(model)
