"""The cost coefficients against the rows of COST_SOURCES.md they cite, and their validation.

Each test recomputes a published number from the row's primary figures (powers, rates, areas per group of
units) and checks the default coefficient, or the model's figure, against it.
"""

from __future__ import annotations

import re
from dataclasses import fields

import pytest
import yaml

from dse.config import conf_dir
from dse.cost.model import PimCost, SpikingCost, cost_from_dict, cost_model
from dse.errors import ConfigError
from dse.hardware.spec import IO, Cost, Crossbar, HardwareSpec, Mapping, Neuron, Weights

PIM = PimCost()
SPIKING = SpikingCost()
CHIP_A = HardwareSpec(name="chip_a", crossbar=Crossbar(256, 256, 4, True), weights=Weights(8), io=IO(6, 8))
CHIP_B = HardwareSpec(name="chip_b", crossbar=Crossbar(256, 256, 4, False), weights=Weights(4), io=IO(None, None),
                      neuron=Neuron(model="if", timesteps=16), mapping=Mapping(reuse="expanded"))


def test_a1_a2_adc_energy_is_power_over_sample_rate() -> None:
    """A2: 2 mW / 1.28 GS/s = 1.56 pJ per 8-bit conversion; A1: 1.28 GS/s."""
    assert PIM.adc_8b_pj_per_conversion == pytest.approx(2e-3 / 1.28e9 * 1e12, abs=0.005)
    assert PIM.adc_pj_per_conversion(8) == PIM.adc_8b_pj_per_conversion
    assert PIM.adc_ns_per_conversion == pytest.approx(1 / 1.28)


@pytest.mark.parametrize(("bits", "pj", "um2"), [(4, 0.79, 361), (5, 0.99, 477), (6, 1.20, 627), (7, 1.42, 845),
                                                 (8, 1.67, 1200), (9, 1.97, 1828), (10, 2.38, 3002)])
def test_a3_a4_adc_energy_and_area_follow_the_table_scaled_to_a2(bits: int, pj: float, um2: float) -> None:
    """A4's shape, A2's 8-bit energy (A4 itself says 1.67 pJ at 8 bits: the table is scaled by 1.56/1.67); A3's
    1200 um^2 at 8 bits is A4's own point, so the areas are A4's."""
    assert PIM.adc_pj_per_conversion(bits) == pytest.approx(pj * 1.56 / 1.67)
    assert PIM.adc_um2(bits) == pytest.approx(um2)


def test_adc_beyond_the_table_grows_geometrically() -> None:
    assert PIM.adc_pj_per_conversion(11) / PIM.adc_pj_per_conversion(10) == pytest.approx(2.38 / 1.97)
    assert PIM.adc_um2(3) / PIM.adc_um2(4) == pytest.approx(361 / 477)


def test_a9_a10_dac_energy_and_area_per_row() -> None:
    """A9: 4 mW and 0.00017 mm^2 per 8 x 128 1-bit DACs, 100-ns reads; A10: x2 from 1 to 2 bits, x4 per 2 bits."""
    assert PIM.dac_1b_pj_per_activation == pytest.approx(4e-3 / (8 * 128) * 100e-9 * 1e12, abs=0.005)
    assert PIM.dac_1b_um2 == pytest.approx(170 / 128 / 8, abs=0.001)
    for bits, um2, mw in [(1, 0.166, 0.0039), (2, 0.332, 0.0078), (4, 1.328, 0.0312), (6, 5.312, 0.1248),
                          (8, 21.248, 0.4992)]:
        chip = PimCost(dac_bits=bits)
        assert chip.dac_um2() == pytest.approx(um2)
        assert chip.dac_pj_per_activation() / PIM.dac_pj_per_activation() == pytest.approx(mw / 0.0039)


def test_a11_a12_a13_crossbar_read_energy_and_area() -> None:
    """A12: 30 pJ per 128x128 array per input bit (A11: 0.3 mW x 100 ns), 120 pJ for 256x256; A13: 25 um^2."""
    assert 128 * 128 * PIM.crossbar_fj_per_cell_read * 1e-3 == pytest.approx(0.3e-3 * 100e-9 * 1e12, rel=1e-3)
    assert 256 * 256 * PIM.crossbar_fj_per_cell_read * 1e-3 == pytest.approx(120, rel=1e-3)
    assert 128 * 128 * PIM.crossbar_um2_per_cell == pytest.approx(25, rel=1e-3)


def test_a17_a18_one_adc_serves_128_columns_within_one_read() -> None:
    """A18: 1.28 GS/s x 100 ns = 128 conversions per read, so the slice time is the read time (A17)."""
    assert PIM.columns_per_adc * PIM.adc_ns_per_conversion == pytest.approx(PIM.read_ns)
    assert PIM.slice_ns() == PIM.read_ns == 100.0
    assert PimCost(columns_per_adc=256).slice_ns() == pytest.approx(200.0)


def test_a21_a22_d3_periphery() -> None:
    """A21: 4 shift-add units in 0.00024 mm^2; A22: 20.45 pJ per 256 bits, 0.083 mm^2 per 64 KB; D3: 20.74 pJ
    per 256-bit traversal, 0.150 mm^2 per router of 4 tiles; a tile holds 12 IMAs (0.090 mm^2 bus / 7500 um^2
    per IMA, A25) of 8 crossbars (A11)."""
    assert PIM.shift_add_pj_per_op == 0.021
    assert PIM.shift_add_um2 == pytest.approx(0.00024e6 / 4)
    assert PIM.buffer_pj_per_bit == pytest.approx(20.45 / 256, abs=0.001)
    assert PIM.buffer_mm2_per_kb == pytest.approx(0.083 / 64, rel=1e-4)
    assert PIM.noc_pj_per_bit_hop == pytest.approx(20.74 / 256, abs=0.001)
    crossbars_per_tile = round(0.090e6 / 7500) * 8
    assert PIM.router_um2_per_core == pytest.approx(0.150e6 / (4 * crossbars_per_tile), abs=0.1)


def test_b4_b7_b9_d1_spiking_coefficients() -> None:
    """B7 (= D1 for hops), B9: 104 mW per 128-core chip, B4: 240 x 390 um per 256 x 256 core."""
    s = SPIKING
    assert (s.synaptic_event_pj, s.neuron_update_pj, s.spike_pj) == (23.6, 52.0, 1.7)
    assert (s.synaptic_event_ns, s.neuron_update_ns, s.spike_ns, s.barrier_ns) == (3.5, 5.3, 2.1, 113.0)
    assert (s.hop_x_pj_per_spike, s.hop_y_pj_per_spike) == (3.0, 4.0)
    assert s.static_mw_per_core == pytest.approx(104 / 128, abs=0.003)
    assert s.synapse_um2 == pytest.approx(240 * 390 / (256 * 256), abs=0.001)


@pytest.mark.parametrize(("chip", "defaults"), [("chip_a", PIM), ("chip_b", SPIKING)])
def test_the_preset_cost_blocks_equal_the_defaults_and_cite_a_row_on_every_line(chip: str, defaults) -> None:
    text = (conf_dir() / "hardware" / f"{chip}.yaml").read_text()
    preset = yaml.safe_load(text)
    preset.pop("defaults")
    hw = HardwareSpec.from_dict(preset)
    assert cost_model(hw) == defaults
    block = text[text.index("\ncost:\n"):]
    values = [line for line in block.splitlines() if re.match(r"\s{2}\w+: ", line)]
    assert len(values) == len(preset["cost"]) == len(fields(defaults))
    assert all(re.search(r"# [ABD]\d+", line) for line in values), [v for v in values if "#" not in v]


def test_the_spec_cost_fields_are_those_of_both_chip_kinds() -> None:
    assert [f.name for f in fields(Cost)] == [f.name for f in (*fields(PimCost), *fields(SpikingCost))]


def test_no_cost_block_no_cost_model() -> None:
    assert cost_model(CHIP_A) is None


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), True, "1"])
def test_a_coefficient_must_be_a_positive_number(value) -> None:
    with pytest.raises(ConfigError, match=r"^hardware\.cost\.adc_8b_pj_per_conversion must be a positive number"):
        cost_from_dict(CHIP_A, {"adc_8b_pj_per_conversion": value})


def test_a_count_must_be_a_positive_integer() -> None:
    with pytest.raises(ConfigError, match=r"hardware\.cost\.columns_per_adc must be a positive integer"):
        cost_from_dict(CHIP_A, {"columns_per_adc": 1.5})


def test_a_field_of_the_other_chip_kind_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"hardware\.cost\.synaptic_event_pj is a cost of spiking chips; "
                                          r"chip chip_a is a pim chip"):
        cost_from_dict(CHIP_A, {"synaptic_event_pj": 20.0})
    with pytest.raises(ConfigError, match=r"hardware\.cost\.adc_8b_um2 is a cost of pim chips"):
        cost_from_dict(CHIP_B, {"adc_8b_um2": 100.0})
    with pytest.raises(ConfigError, match=r"unknown key hardware\.cost\.adc_pj"):
        cost_from_dict(CHIP_A, {"adc_pj": 1.0})


def test_a_pim_cost_needs_the_converter_bits() -> None:
    chip = HardwareSpec(name="x", crossbar=Crossbar(256, 256, 4, True), weights=Weights(8), io=IO(None, 8))
    with pytest.raises(ConfigError, match="needs hardware.io.input_bits and output_bits"):
        cost_from_dict(chip, {})


def test_an_override_changes_only_its_field() -> None:
    model = cost_from_dict(CHIP_A, {"adc_8b_pj_per_conversion": 15.6, "dac_bits": 2})
    assert model.adc_8b_pj_per_conversion == 15.6 and model.dac_bits == 2
    assert model.crossbar_fj_per_cell_read == PIM.crossbar_fj_per_cell_read
