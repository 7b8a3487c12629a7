"""Energy, latency and area of tiny compiled graphs against the closed forms of docs/cost.md."""

from __future__ import annotations

import dataclasses

import pytest
from cost_graphs import PIM_CHIP, SPIKING_CHIP, one_conv, two_dense

from dse.cost.energy import PIM_AREA, PIM_ENERGY, SPIKING_AREA, SPIKING_ENERGY, network_cost
from dse.cost.model import PimCost, SpikingCost
from dse.cost.resources import layer_resources
from dse.errors import ConfigError
from dse.sim.spiking import SpikeStats

PIM, SPIKING = PimCost(), SpikingCost()


def pim_cost(graph, hw=PIM_CHIP, coeffs=PIM):
    return network_cost(graph, hw, coeffs, layer_resources(graph, hw))


def test_two_dense_layers_on_a_pim_chip() -> None:
    """64 -> 32 -> 10, one 128x128 crossbar each, 4-bit inputs over 1-bit DACs: 4 slices; 4 columns a weight."""
    cost = pim_cost(two_dense())
    fc1, fc2 = cost.layers
    slices, cols_per_weight = 4, 4
    assert fc1.energy_pj["crossbar"] == pytest.approx(slices * 30.0, rel=1e-3)  # A12: 30 pJ per 128x128 per slice
    assert fc1.energy_pj["dac"] == pytest.approx(slices * 128 * 0.39)
    conversions = 32 * cols_per_weight * slices
    assert fc1.energy_pj["adc"] == pytest.approx(conversions * 1.56)
    assert fc1.energy_pj["shift_add"] == pytest.approx(conversions * 0.021)
    assert fc1.energy_pj["buffer"] == pytest.approx((64 * 4 + 32 * 8) * 0.080)
    assert fc2.energy_pj["adc"] == pytest.approx(10 * cols_per_weight * slices * 1.56)
    # fc1's core (0, 0) sends its 32 values of min(8, 4) = 4 bits one hop east to fc2's core (1, 0)
    assert fc1.energy_pj["noc"] == pytest.approx(32 * 4 * 1 * 0.081) and fc2.energy_pj["noc"] == 0
    assert fc1.latency_ns == fc2.latency_ns == slices * 100.0
    assert cost.latency_ns == 2 * slices * 100.0  # in series
    assert cost.inferences_per_s == pytest.approx(1e9 / (slices * 100.0))  # pipelined: one layer's time
    area = cost.area_mm2()
    assert area["crossbar"] == pytest.approx(2 * 128 * 128 * 0.001526e-6)
    assert area["adc"] == pytest.approx(2 * 1 * 1200e-6)  # one ADC per 128 columns
    assert area["dac"] == pytest.approx(2 * 128 * 0.166e-6)
    assert area["buffer"] == pytest.approx((64 + 32) * 4 / 8 / 1024 * 0.0012969)
    assert area["total"] == pytest.approx(sum(v for k, v in area.items() if k != "total"))
    energy = cost.energy_pj()
    assert set(energy) == {*PIM_ENERGY, "total"} and set(area) == {*PIM_AREA, "total"}
    assert cost.tops_per_w() == pytest.approx(2 * (64 * 32 + 32 * 10) / energy["total"])


def test_a_time_multiplexed_conv_visits_every_position() -> None:
    """2x6x6 input, 3x3 kernel, 4 outputs: 16 positions, each read in 4 slices by one crossbar."""
    cost = pim_cost(one_conv())
    [conv] = cost.layers
    reads = 16 * 4
    assert conv.energy_pj["crossbar"] == pytest.approx(reads * 30.0, rel=1e-3)
    assert conv.energy_pj["adc"] == pytest.approx(4 * 16 * 4 * 4 * 1.56)
    assert conv.energy_pj["buffer"] == pytest.approx(16 * (2 * 9 * 4 + 4 * 8) * 0.080)
    assert conv.latency_ns == cost.latency_ns == reads * 100.0
    assert conv.ops == 2 * 4 * 2 * 9 * 16


def test_converter_bits_and_adc_sharing_move_energy_area_and_latency() -> None:
    graph = two_dense()
    base = pim_cost(graph)
    more_adc_bits = pim_cost(graph, dataclasses.replace(PIM_CHIP, io=dataclasses.replace(PIM_CHIP.io, output_bits=10)))
    assert more_adc_bits.energy_pj()["adc"] / base.energy_pj()["adc"] == pytest.approx(2.38 / 1.67)
    wide_dac = pim_cost(graph, coeffs=PimCost(dac_bits=2))  # 2 slices instead of 4, each DAC twice the energy
    assert wide_dac.latency_ns == base.latency_ns / 2
    assert wide_dac.energy_pj()["dac"] == pytest.approx(base.energy_pj()["dac"])
    shared = pim_cost(graph, coeffs=PimCost(columns_per_adc=64))  # two ADCs a crossbar, each half the columns
    assert shared.area_mm2()["adc"] == pytest.approx(2 * base.area_mm2()["adc"])
    assert shared.latency_ns == base.latency_ns
    slow = pim_cost(graph, coeffs=PimCost(adc_ns_per_conversion=1.5625))  # 128 conversions take 200 ns
    assert slow.latency_ns == 2 * base.latency_ns


def spiking_stats() -> SpikeStats:
    """Over 10 samples: fc1 received 1000 events and fired 320 spikes, fc2 640 events and 50 spikes."""
    return SpikeStats(spikes={"fc1": 320.0, "fc2": 50.0}, events={"fc1": 1000.0, "fc2": 640.0},
                      neurons={"fc1": 32, "fc2": 10}, samples=10)


def test_two_dense_layers_on_a_spiking_chip() -> None:
    graph = two_dense(out_max=4)
    cost = network_cost(graph, SPIKING_CHIP, SPIKING, layer_resources(graph, SPIKING_CHIP), spiking_stats())
    fc1, fc2 = cost.layers
    steps = 4 + 2 - 1  # T + depth - 1
    assert cost.extra["latency_steps"] == steps
    assert fc1.energy_pj["synapses"] == pytest.approx(100 * 23.6)
    assert fc2.energy_pj["synapses"] == pytest.approx(64 * 23.6)
    assert fc1.energy_pj["neurons"] == pytest.approx(32 * steps * 52.0)
    assert fc2.energy_pj["spikes"] == pytest.approx(5 * 1.7)
    # fc1's 32 spikes an inference go one hop east to fc2's core
    assert fc1.energy_pj["noc"] == pytest.approx(32 * 3.0)
    # per step: fc1 (active steps 0-3) 32 x 5.3 + (100 x 3.5 + 32 x 2.1) / 4; fc2 (active 1-4) 10 x 5.3 + (64 x
    # 3.5 + 5 x 2.1) / 4; the busiest core sets each step, plus the barrier
    fc1_step, fc2_idle = 32 * 5.3 + (100 * 3.5 + 32 * 2.1) / 4, 10 * 5.3
    fc2_step = fc2_idle + (64 * 3.5 + 5 * 2.1) / 4
    latency = steps * 113.0 + 4 * max(fc1_step, fc2_step) + max(32 * 5.3, fc2_step)
    assert cost.latency_ns == pytest.approx(latency)
    assert fc1.energy_pj["static"] == pytest.approx(1 * 0.815 * latency)
    assert cost.inferences_per_s == pytest.approx(1e9 / latency)
    assert cost.area_mm2()["cores"] == pytest.approx(2 * 128 * 128 * 1.428e-6)
    assert set(cost.energy_pj()) == {*SPIKING_ENERGY, "total"} and set(cost.area_mm2()) == {*SPIKING_AREA, "total"}
    assert cost.tops_per_w() is None
    out = cost.to_dict()
    assert out["energy_pj"]["total"] == pytest.approx(sum(x.row()["energy_pj"] for x in cost.layers))
    assert {"energy_pj", "latency_ns", "area_mm2", "inferences_per_s", "tops_per_w"} <= set(out)


def test_layer_rows_are_flat_numbers() -> None:
    rows = pim_cost(two_dense()).layer_rows()
    assert all(isinstance(v, float) for row in rows for v in row.values())
    assert {"energy_pj", "latency_ns", "area_mm2", "energy_adc_pj", "area_adc_mm2"} <= set(rows[0])


def test_the_cost_model_must_fit_the_chip_kind() -> None:
    graph = two_dense()
    with pytest.raises(ConfigError, match="chip pim is a pim chip but its cost model is SpikingCost"):
        network_cost(graph, PIM_CHIP, SPIKING, layer_resources(graph, PIM_CHIP))
    with pytest.raises(ConfigError, match="needs the simulator's spike counts"):
        network_cost(graph, SPIKING_CHIP, SPIKING, layer_resources(graph, SPIKING_CHIP))


def test_a_chip_without_a_crossbar_size_has_no_cost() -> None:
    graph = two_dense()
    unbounded = dataclasses.replace(PIM_CHIP, crossbar=dataclasses.replace(PIM_CHIP.crossbar, rows=None, cols=None))
    with pytest.raises(ConfigError, match="a cost model needs hardware.crossbar.rows and cols"):
        network_cost(graph, unbounded, PIM, layer_resources(graph, unbounded))


def test_spare_columns_add_their_cells_and_converters_area_and_nothing_else() -> None:
    """Two 128x128 crossbars with 2 spare columns each: 2 x 128 x 2 cells more, and 130 columns need two ADCs of
    128 (and their shift-and-add units); a repaired column is read in place of its own: energy and latency as
    without spares."""
    graph = two_dense()
    base = pim_cost(graph)
    spared_chip = dataclasses.replace(PIM_CHIP, crossbar=dataclasses.replace(PIM_CHIP.crossbar, spare_columns=2))
    spared = pim_cost(graph, spared_chip)
    area, base_area = spared.area_mm2(), base.area_mm2()
    assert area["crossbar"] - base_area["crossbar"] == pytest.approx(2 * 128 * 2 * 0.001526e-6)
    assert area["adc"] == pytest.approx(2 * base_area["adc"]) and area["shift_add"] == pytest.approx(
        2 * base_area["shift_add"])
    assert {k: v for k, v in area.items() if k not in ("crossbar", "adc", "shift_add", "total")} == {
        k: v for k, v in base_area.items() if k not in ("crossbar", "adc", "shift_add", "total")}
    assert area["total"] > base_area["total"]
    assert spared.energy_pj() == base.energy_pj() and spared.latency_ns == base.latency_ns
    one_adc = PimCost(columns_per_adc=130)  # converters that already serve the spares' columns: cells alone
    assert pim_cost(graph, spared_chip, one_adc).area_mm2()["total"] - pim_cost(graph, coeffs=one_adc).area_mm2()[
        "total"] == pytest.approx(2 * 128 * 2 * 0.001526e-6)
    spiking, spiking_spared = (network_cost(two_dense(out_max=4), chip, SPIKING, layer_resources(
        two_dense(out_max=4), chip), spiking_stats()).area_mm2()["cores"] for chip in (
        SPIKING_CHIP, dataclasses.replace(SPIKING_CHIP, crossbar=dataclasses.replace(SPIKING_CHIP.crossbar,
                                                                                      spare_columns=2))))
    rows = SPIKING_CHIP.crossbar.rows
    assert spiking_spared - spiking == pytest.approx(2 * rows * 2 * SPIKING.synapse_um2 * 1e-6)
