"""Device non-idealities: the cell layout, drawn chip instances against hand computation and against the exact
integer simulator, reproducibility, and bad settings refused with one line."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch

from dse.errors import ConfigError
from dse.hardware.device import Device
from dse.hardware.spec import IO, Crossbar, HardwareSpec, Weights
from dse.ir import ops as o
from dse.ir.graph import GraphBuilder
from dse.sim.device_noise import (
    HIGH,
    LOW,
    CellLayout,
    check_fault_map,
    draw_fault_map,
    draw_instances,
    instance_linear,
    perturbed_levels,
    program_levels,
    read_noise,
)
from dse.sim.float_exec import conv_core
from dse.sim.integer import run_integer
from dse.sim.montecarlo import MonteCarlo, run_instances


def chip(device: Device | None = None, *, bits: int = 5, cell_bits: int = 2, differential: bool = True) -> HardwareSpec:
    return HardwareSpec(crossbar=Crossbar(8, 16, cell_bits, differential), weights=Weights(bits), io=IO(4, 8),
                        device=device or Device())


def dense_graph(w_int: np.ndarray, bias: np.ndarray, mult: float, out_max: int = 255):
    out_c, in_c = w_int.shape
    quant = o.CoreQuant(w_int.reshape(out_c, in_c, 1, 1), np.full(out_c, mult), bias.astype(np.int64),
                        np.ones(in_c), 1.0, out_max)
    b = GraphBuilder()
    x = b.add("x", o.Input((in_c,), 1.0, 15))
    core = b.add("core", o.CoreOp(w_int.reshape(out_c, in_c, 1, 1).astype(np.float32), np.zeros(out_c, np.float32),
                                  dense=True, quant=quant), x)
    return b.build([core])


@pytest.mark.parametrize("differential", [True, False])
def test_cell_levels_store_every_weight_exactly(differential: bool) -> None:
    hw = chip(bits=7, cell_bits=2, differential=differential)
    layout = CellLayout.of(hw)
    w = np.arange(-63, 64).reshape(1, -1)
    levels = layout.levels(w)
    assert levels.shape == (layout.slices, 2 if differential else 1, *w.shape)
    assert levels.min() >= 0 and levels.max() <= layout.top
    assert layout.slices * layout.columns == hw.columns_per_weight
    np.testing.assert_array_equal(layout.weight(levels.astype(float)), w)
    assert layout.gain(np.array([1, -1, 0])) == 63 and layout.gain(w) == 1  # a max-pool core: at full range


def test_an_instance_with_stuck_cells_and_adc_offsets_matches_a_hand_computed_crossbar() -> None:
    """5-bit differential weights (4 magnitude bits) on 2-bit cells: two slices (weights 1, 4) in a positive and
    a negative column. Two stuck cells and an offset per converter, computed by hand."""
    w_int = np.array([[5, -3, 0], [-15, 2, 1]])  # 15 = wmax: stored as it is (gain 1)
    graph = dense_graph(w_int, np.array([2, 40]), mult=0.5)
    faults = np.zeros((2, 2, 2, 3, 1, 1), np.int8)  # (slice, column, out, in, 1, 1)
    faults[1, 0, 0, 2] = HIGH  # w[0, 2] = 0: its positive high slice reads level 3, +3 * 4: w = 12
    faults[0, 1, 1, 0] = LOW  # w[1, 0] = -15 = -(3 * 4 + 3): its negative low slice reads 0: w = -12
    hw = chip(Device(adc_offset_lsb=1.0, fault_map_known=False))  # cells written as plain bit slices
    known = draw_instances(graph, chip(Device(adc_offset_lsb=1.0)), 1, seed=0, fault_map={"core": faults})
    # knowing the map, the chip writes the pair's other high cell to 3 too (w[0, 2] = 0 again); w[1, 0] = -15
    # cannot be reached without its negative low cell: -12 is the nearest
    np.testing.assert_array_equal(known.weights["core"][0].reshape(2, 3).numpy(), [[5, -3, 0], [-12, 2, 1]])
    inst = draw_instances(graph, hw, 1, seed=0, fault_map={"core": faults})
    inst.adc_offset["core"] = torch.tensor([[0.25, -1.25]], dtype=torch.float64)  # the converters' offsets, given
    np.testing.assert_array_equal(inst.weights["core"][0].reshape(2, 3).numpy(), [[5, -3, 12], [-12, 2, 1]])
    x = np.array([[3, 1, 2], [0, 4, 1], [9, 9, 9]], np.float64)
    out = run_instances(graph, hw, x, inst)[0]
    # by hand, acc = W' x + b, code = round(acc * 0.5 + offset):
    # (3, 1, 2): 15 - 3 + 24 + 2 = 38 -> 19.25 -> 19;   -36 + 2 + 2 + 40 = 8 -> 2.75 -> 3
    # (0, 4, 1): -12 + 12 + 2 = 2 -> 1.25 -> 1;          8 + 1 + 40 = 49 -> 23.25 -> 23
    # (9, 9, 9): 9 * 14 + 2 = 128 -> 64.25 -> 64;        9 * -9 + 40 = -41 -> -21.75 -> 0
    np.testing.assert_array_equal(out, [[19, 3], [1, 23], [64, 0]])


def conv_graph():
    rng = np.random.default_rng(3)
    w_int = rng.integers(-15, 16, size=(4, 2, 3, 3))
    quant = o.CoreQuant(w_int, np.full(4, 1 / 64), rng.integers(-20, 20, 4), np.ones(4), 1.0, 31)
    b = GraphBuilder()
    x = b.add("x", o.Input((4, 6, 6), 1.0, 15))
    conv = b.add("conv", o.CoreOp(w_int.astype(np.float32), np.zeros(4, np.float32), padding=(1, 1, 0, 0), groups=2,
                                  quant=quant), x)
    w_pool = rng.integers(-15, 16, size=(8, 2, 2, 2))  # windows that do not overlap: stride = kernel, grouped
    q_pool = o.CoreQuant(w_pool, np.full(8, 1 / 8), np.zeros(8, np.int64), np.ones(4), 1.0, 31)
    pool = b.add("pool", o.CoreOp(w_pool.astype(np.float32), np.zeros(8, np.float32), stride=(2, 2), groups=2,
                                  quant=q_pool), conv)
    flat = b.add("flat", o.Reshape((8 * 2 * 2,)), pool)
    w2 = rng.integers(-15, 16, size=(3, 32, 1, 1))
    q2 = o.CoreQuant(w2, np.full(3, 1 / 64), np.zeros(3, np.int64), np.ones(32), 1.0, 63)
    return b.build([b.add("fc", o.CoreOp(w2.astype(np.float32), np.zeros(3, np.float32), dense=True, quant=q2), flat)])


def test_exact_instances_run_as_the_integer_simulator() -> None:
    """Instances whose cells are exact (a device whose only effect rounds away) compute the integer
    simulator's outputs exactly, through a padded grouped convolution, wiring and a dense core."""
    graph = conv_graph()
    hw = chip(Device(stuck_low=1e-12), bits=5, cell_bits=2)
    x = np.random.default_rng(0).integers(0, 16, size=(7, 4, 6, 6)).astype(np.float64)
    ref, _ = run_integer(graph, x)
    out = run_instances(graph, hw, x, draw_instances(graph, hw, 3, seed=1), batch_size=6)
    for chip_out in out:
        np.testing.assert_array_equal(chip_out, ref)


@pytest.mark.parametrize(("weight", "groups", "stride", "padding"), [
    ((6, 1, 3, 3), 1, (1, 1), (1, 1, 1, 1)),  # a convolution: instance by instance (or shared)
    ((8, 2, 2, 2), 2, (2, 2), (0, 0, 0, 0)),  # kernel = stride: one batched product of its tiles
    ((6, 2, 2, 2), 3, (2, 2), (0, 0, 0, 0)),  # ... on a map the kernel does not divide (7x7)
    ((4, 3, 1, 1), 2, (1, 1), (0, 0, 0, 0)),  # 1x1, grouped
])
def test_every_instance_computes_its_own_convolution(weight, groups, stride, padding) -> None:
    """`instance_linear` (batched over instances, or from one input every instance shares) against each
    instance's own convolution."""
    rng = np.random.default_rng(0)
    n_inst, n, c = 3, 4, weight[1] * groups
    op = o.CoreOp(np.zeros(weight, np.float32), np.zeros(weight[0], np.float32), stride, padding, groups)
    w = torch.from_numpy(rng.normal(size=(n_inst, *weight)).astype(np.float32))
    x = torch.from_numpy(rng.integers(0, 16, size=(n_inst * n, c, 7, 7)).astype(np.float32))
    want = torch.cat([conv_core(x[i * n : (i + 1) * n], w[i], None, op) for i in range(n_inst)])
    torch.testing.assert_close(instance_linear(x, w, op), want, rtol=1e-6, atol=1e-5)
    shared = x[:n]
    want = torch.cat([conv_core(shared, w[i], None, op) for i in range(n_inst)])
    torch.testing.assert_close(instance_linear(shared, w, op, shared=True), want, rtol=1e-6, atol=1e-5)


def test_wiring_that_meets_the_shared_input_and_an_instance_value_runs_as_the_integer_simulator() -> None:
    """The input's codes are one copy for every instance until wiring meets a per-instance value (a concat of
    the input and a core's output): exact instances still compute the integer simulator's outputs."""
    rng = np.random.default_rng(5)
    w1, w2 = rng.integers(-15, 16, size=(4, 4, 1, 1)), rng.integers(-15, 16, size=(3, 8, 1, 1))
    b = GraphBuilder()
    x = b.add("x", o.Input((4,), 1.0, 15))
    q1 = o.CoreQuant(w1, np.full(4, 1 / 16), np.zeros(4, np.int64), np.ones(4), 1.0, 15)
    c1 = b.add("c1", o.CoreOp(w1.astype(np.float32), np.zeros(4, np.float32), dense=True, quant=q1), x)
    cat = b.add("cat", o.Concat(), x, c1)
    q2 = o.CoreQuant(w2, np.full(3, 1 / 16), np.zeros(3, np.int64), np.ones(8), 1.0, 63)
    graph = b.build([b.add("c2", o.CoreOp(w2.astype(np.float32), np.zeros(3, np.float32), dense=True, quant=q2),
                           cat)])
    hw = chip(Device(stuck_low=1e-12), bits=5, cell_bits=2)
    xs = rng.integers(0, 16, size=(9, 4)).astype(np.float64)
    ref, _ = run_integer(graph, xs)
    for chip_out in run_instances(graph, hw, xs, draw_instances(graph, hw, 3, seed=1), batch_size=6):
        np.testing.assert_array_equal(chip_out, ref)


def test_instances_are_reproducible_and_independent_of_how_many_are_drawn() -> None:
    graph = conv_graph()
    hw = chip(Device(programming_sigma=0.05, stuck_high=0.01, adc_offset_lsb=0.5))
    few, many = draw_instances(graph, hw, 2, seed=4), draw_instances(graph, hw, 5, seed=4)
    for name in ("conv", "fc"):
        torch.testing.assert_close(few.weights[name], many.weights[name][:2], rtol=0, atol=0)
        torch.testing.assert_close(few.adc_offset[name], many.adc_offset[name][:2], rtol=0, atol=0)
        assert not torch.equal(many.weights[name][0], many.weights[name][1])
    other = draw_instances(graph, hw, 2, seed=5)
    assert not torch.equal(other.weights["fc"], few.weights["fc"])


def test_programming_variation_has_the_std_it_is_given() -> None:
    """Constant variation of 2 % of the range (3 levels): each cell's level error has std 0.06 levels, and a
    weight sums its cells' errors with their place values (1, 4). w = 9 holds levels (1, 2) in its positive
    column, unclipped, and (0, 0) in its negative one, clipped at the lowest conductance: a normal clipped at
    0 has std sqrt((1 - 1/pi) / 2) of the normal's."""
    hw = chip(Device(programming_sigma=0.02))
    inst = draw_instances(dense_graph(np.full((1, 20000), 9), np.zeros(1), 1.0), hw, 1, seed=0)
    err = inst.weights["core"][0].numpy().ravel() - 9
    positive = 0.06 * np.sqrt(1 + 16)
    negative = positive * np.sqrt((1 - 1 / np.pi) / 2)
    assert abs(err.std() / np.hypot(positive, negative) - 1) < 0.03


def test_read_noise_has_the_std_of_every_cell_read_with_noise() -> None:
    op = o.CoreOp(np.ones((1, 50, 1, 1), np.float32), np.zeros(1, np.float32), dense=True)
    x = torch.full((40000, 50), 2.0)
    noise = read_noise(x, op, 0.3, torch.Generator().manual_seed(0))
    assert abs(float(noise.std()) / (0.3 * 2.0 * np.sqrt(50)) - 1) < 0.02


@pytest.mark.parametrize("field, value, message", [
    ("programming_sigma", -0.01, "programming_sigma must be >= 0"),
    ("stuck_low", 1.5, "stuck_low is a fraction of the cells, at most 1"),
    ("adc_noise_lsb", -1.0, "adc_noise_lsb must be >= 0"),
    ("drift_seconds", 3600.0, "needs a drift model"),
    # settings that were accepted and changed nothing
    ("drift_compensation", True, r"drift_compensation=True needs a drift model"),
    ("drift_nu", 0.1, r"drift_nu=0.1 needs a drift model"),
    ("drift_nu_sigma", 0.02, r"drift_nu_sigma=0.02 needs a drift model"),
    ("fault_map_known", False, r"fault_map_known=false needs a fault map"),
    ("programming_model", "gaussian", "programming_model must be one of"),
    ("threshold_mismatch", 0.1, "only a spiking chip has it"),
    # past float32 once drawn: numpy's overflow warnings, or a torch RuntimeError traceback (ADC noise)
    ("adc_noise_lsb", 1e300, r"adc_noise_lsb=1e\+300 is more than 1e\+30, the largest the drawn chips hold"),
    ("programming_sigma", 1e31, r"programming_sigma=1e\+31 is more than 1e\+30"),
])
def test_bad_device_settings_are_refused_with_one_line(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        HardwareSpec.from_dict({"device": {field: value}, "weights": {"bits": 8}})


def test_an_ideal_device_leaves_the_chip_as_it_was() -> None:
    assert Device().is_ideal and not Device().random
    assert "device" not in HardwareSpec().to_dict()
    assert "device" in dataclasses.replace(HardwareSpec(), device=Device(read_sigma=0.01)).to_dict()
    with pytest.raises(ConfigError, match="evaluate.instances=4 needs a device"):
        MonteCarlo(instances=4).check(HardwareSpec())


def test_a_known_stuck_cell_is_programmed_around() -> None:
    """w = 5 on 2-bit cells, differential: its positive high cell stuck high would read 3 * 4 + 1 = 13; knowing it,
    the chip writes the negative column's high cell to 3 as well and the low cells to 1 - 0: exactly 5 again."""
    layout = CellLayout.of(chip())
    faults = np.zeros((2, 2, 1), np.int8)
    faults[1, 0, 0] = HIGH
    w = np.array([5])
    perturb = perturbed_levels(program_levels(layout, w, faults), layout, Device(), [np.random.default_rng(0)], faults)
    unaware = perturbed_levels(layout.levels(w), layout, Device(), [np.random.default_rng(0)], faults)
    assert layout.weight(np.moveaxis(perturb, 0, 2))[0, 0] == 5
    assert layout.weight(np.moveaxis(unaware, 0, 2))[0, 0] == 13


def test_a_fault_map_that_does_not_fit_names_the_crossbar(tmp_path) -> None:
    graph = conv_graph()
    hw = chip(Device(stuck_low=0.01))
    faults = draw_fault_map(graph, hw, seed=0)
    check_fault_map(graph, hw, faults, "f.npz")
    faults["pool"] = faults["pool"][:, :, :4]
    with pytest.raises(ConfigError, match="crossbar 'pool' has cells"):
        check_fault_map(graph, hw, faults, "f.npz")
    del faults["pool"]
    with pytest.raises(ConfigError, match="crossbar 'pool' is missing"):
        check_fault_map(graph, hw, faults, "f.npz")


def test_pcm_drift_scales_every_cell_and_global_compensation_takes_it_back() -> None:
    """One exponent for every cell (nu = 0.05, no spread): after 2000 s each level is (2000 / 20) ** -0.05 of
    itself, so is each weight; the global compensation rescales the core back to what was programmed."""
    graph = dense_graph(np.array([[9, -15, 4], [0, 7, -1]]), np.zeros(2), 1.0)
    w = np.array([[9, -15, 4], [0, 7, -1]], np.float32)
    drifted = Device(drift_model="pcm", drift_seconds=2000.0, drift_nu=0.05)
    got = draw_instances(graph, chip(drifted), 1, seed=0).weights["core"][0].reshape(2, 3).numpy()
    np.testing.assert_allclose(got, w * 100.0**-0.05, rtol=1e-6)
    compensated = dataclasses.replace(drifted, drift_compensation=True)
    got = draw_instances(graph, chip(compensated), 1, seed=0).weights["core"][0].reshape(2, 3).numpy()
    np.testing.assert_allclose(got, w, rtol=1e-6)
    assert not drifted.random and dataclasses.replace(drifted, drift_nu_sigma=0.01).random


@pytest.mark.parametrize("compensation", [False, True])
def test_a_drift_time_past_float32_is_computed_without_a_warning(compensation: bool) -> None:
    """1e301 s after programming: t / t0 overflowed float32 in the power (numpy's warning) and every cell read 0,
    compensated or not. Each level is (t / t0) ** -nu of itself, about 1e-15 at nu = 0.05; the compensation
    takes one exponent for every cell back exactly."""
    graph = dense_graph(np.array([[9, -15, 4], [0, 7, -1]]), np.zeros(2), 1.0)
    w = np.array([[9, -15, 4], [0, 7, -1]], np.float32)
    device = Device(drift_model="pcm", drift_seconds=1e301, drift_nu=0.05, drift_compensation=compensation)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        got = draw_instances(graph, chip(device), 1, seed=0).weights["core"][0].reshape(2, 3).numpy()
    np.testing.assert_allclose(got, w if compensation else w * (1e301 / 20) ** -0.05, rtol=1e-5)
