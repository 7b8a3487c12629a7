"""Resource counts against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
from compiler_helpers import run_pass

from dse.cost.resources import depth, layer_resources, pack_columns, total_resources
from dse.hardware.spec import IO, Crossbar, HardwareSpec, Mapping, Weights
from dse.ir import ops as o
from dse.ir.graph import Graph, GraphBuilder

# chip_a's crossbar: 256 x 256 cells of 4 bits, 8-bit weights in differential pairs -> 4 columns per weight
CHIP = HardwareSpec(name="t", crossbar=Crossbar(256, 256, 4, True), weights=Weights(8), io=IO(6, 8))
CELLS_PER_WEIGHT = 4
NEURONS_PER_XBAR = 256 // CELLS_PER_WEIGHT


def dense_layer(fan_in: int, out: int) -> Graph:
    b = GraphBuilder()
    x = b.add("x", o.Input((fan_in,)))
    w = np.random.default_rng(0).standard_normal((out, fan_in, 1, 1)).astype(np.float32)
    return b.build([b.add("fc", o.CoreOp(w, np.zeros(out, np.float32), dense=True), x)])


def test_a_dense_layer_that_fits() -> None:
    """200 x 100: one row tile; 100 neurons at 64 per crossbar -> 2 crossbars; 4 cells per synapse."""
    [layer] = layer_resources(dense_layer(200, 100), CHIP)
    assert CHIP.columns_per_weight == CELLS_PER_WEIGHT and CHIP.logical_cols == NEURONS_PER_XBAR
    assert layer.crossbars == math.ceil(100 / NEURONS_PER_XBAR) == 2
    assert layer.synapses == 200 * 100 and layer.neurons == 100
    assert layer.cells_used == 200 * 100 * CELLS_PER_WEIGHT == 80_000
    assert layer.utilization == pytest.approx(80_000 / (2 * 256 * 256))
    assert (layer.fan_in, layer.fan_out, layer.positions, layer.kind) == (200, 100, 1, "dense")


def test_a_dense_300x100_layer_split_on_256_rows() -> None:
    """Split into inputs 0..255 and 256..299: each partial core emits (relu(s), relu(-s)) for 100 neurons, so
    200 columns of weights -> ceil(200 / 64) = 4 crossbars each; the merge has fan-in 2 groups x 2 = 4 and 64
    merge neurons fill exactly 256 rows -> ceil(100 / 64) = 2 crossbars. 10 crossbars in all."""
    split = run_pass("fit_crossbar", dense_layer(300, 100), CHIP, strategy="split")
    layers = {lr.name: lr for lr in layer_resources(split, CHIP)}
    parts = sorted((lr for lr in layers.values() if lr.name != "fc"), key=lambda lr: -lr.fan_in)
    assert [p.fan_in for p in parts] == [256, 44]
    assert [p.crossbars for p in parts] == [math.ceil(200 / NEURONS_PER_XBAR)] * 2 == [4, 4]
    assert [p.synapses for p in parts] == [200 * 256, 200 * 44]
    merge = layers["fc"]
    assert (merge.fan_in, merge.crossbars, merge.synapses) == (4, 2, 100 * 4)

    total = total_resources(list(layers.values()), CHIP)
    synapses = 200 * 256 + 200 * 44 + 100 * 4
    assert total["crossbars"] == 10
    assert total["synapses"] == synapses == 60_400
    assert total["cells_used"] == synapses * CELLS_PER_WEIGHT == 241_600
    assert total["utilization"] == pytest.approx(241_600 / (10 * 256 * 256))
    assert total["neurons"] == 200 + 200 + 100
    assert depth(split) == 2


def conv_layer(in_c: int, out_c: int, k: int, size: int, padding: int = 0) -> Graph:
    b = GraphBuilder()
    x = b.add("x", o.Input((in_c, size, size)))
    w = np.ones((out_c, in_c, k, k), np.float32)
    pads = (padding,) * 4
    return b.build([b.add("conv", o.CoreOp(w, np.zeros(out_c, np.float32), padding=pads), x)])


def with_reuse(reuse: str) -> HardwareSpec:
    return HardwareSpec(name="t", crossbar=CHIP.crossbar, weights=CHIP.weights, io=CHIP.io, mapping=Mapping(reuse))


def test_a_conv_time_multiplexed_vs_expanded() -> None:
    """3x3 conv, 4 -> 8 channels, 6x6 input, 4x4 = 16 output positions.

    time multiplexed: one crossbar (36 rows, 8 neurons) reused at every position.
    expanded: every position has its own 8 neurons; a tile of th x tw positions needs 4 (th+2)(tw+2) rows and
    th tw 8 x 4 columns, so at most 8 positions per crossbar (2 x 4 fits 96 rows): 16 / 8 = 2 crossbars.
    """
    g = conv_layer(4, 8, 3, 6)
    [tm] = layer_resources(g, with_reuse("time_multiplexed"))
    assert (tm.crossbars, tm.neurons, tm.synapses, tm.positions, tm.fan_in) == (1, 8, 8 * 36, 16, 36)
    assert tm.cells_used == 8 * 36 * CELLS_PER_WEIGHT

    [ex] = layer_resources(g, with_reuse("expanded"))
    best = min(math.ceil(4 / th) * math.ceil(4 / tw) for th in range(1, 5) for tw in range(1, 5)
               if 4 * (th + 2) * (tw + 2) <= 256 and th * tw * 8 * CELLS_PER_WEIGHT <= 256)
    assert ex.crossbars == best == 2
    assert (ex.neurons, ex.synapses) == (8 * 16, 8 * 36 * 16)
    assert ex.cells_used == 8 * 36 * 16 * CELLS_PER_WEIGHT


def test_expanded_counts_only_synapses_that_read_real_inputs() -> None:
    """3x3, padding 1 on 4x4: along each axis the window covers 2, 3, 3, 2 real pixels -> 10 x 10 synapses."""
    g = conv_layer(1, 1, 3, 4, padding=1)
    [ex] = layer_resources(g, with_reuse("expanded"))
    [tm] = layer_resources(g, with_reuse("time_multiplexed"))
    assert ex.synapses == 100 and tm.synapses == 9


def test_chips_are_counted_when_a_chip_has_a_core_budget() -> None:
    hw = HardwareSpec(name="t", crossbar=CHIP.crossbar, weights=CHIP.weights, io=CHIP.io,
                      mapping=Mapping("time_multiplexed", cores_per_chip=3))
    split = run_pass("fit_crossbar", dense_layer(300, 100), hw, strategy="split")
    assert total_resources(layer_resources(split, hw), hw)["chips"] == math.ceil(10 / 3)


def test_pack_columns_stacks_disjoint_rows_and_shares_common_rows() -> None:
    disjoint = np.kron(np.eye(6, dtype=bool), np.ones((1, 10), dtype=bool))  # 6 neurons, 10 own rows each
    assert [len(g) for g in pack_columns(disjoint, rows=30, logical_cols=64)] == [3, 3]
    shared = np.ones((6, 30), dtype=bool)
    assert [len(g) for g in pack_columns(shared, rows=30, logical_cols=4)] == [4, 2]
    assert [len(g) for g in pack_columns(shared, rows=None, logical_cols=None)] == [6]


def test_pack_columns_of_a_grouped_op_stacks_the_rows_of_its_groups() -> None:
    """A grouped op's row sets are local to each group: two neurons of one group share their 10 rows, neurons
    of different groups stack theirs. 3 groups x 10 rows on 25 rows: two groups per crossbar fit (20), the
    third does not."""
    local = np.ones((6, 10), dtype=bool)  # 3 groups of 2 neurons, each reading its group's 10 inputs
    assert [list(g) for g in pack_columns(local, rows=25, logical_cols=64, groups=3)] == [[0, 1, 2, 3], [4, 5]]
    assert [len(g) for g in pack_columns(local, rows=30, logical_cols=64, groups=3)] == [6]
    assert [len(g) for g in pack_columns(local, rows=30, logical_cols=3, groups=3)] == [3, 3]


@pytest.mark.parametrize("groups, per_group, group_rows, rows, cols", [
    (1, 100, 200, 256, 64), (1, 7, 300, 256, 4), (3, 2, 10, 25, 64), (3, 2, 10, 30, 3), (50, 1, 6, 256, 64),
    (8, 4, 40, 100, 5), (5, 3, 7, None, 4), (5, 3, 7, 20, None), (4, 2, 9, None, None),
])
def test_pack_uniform_equals_the_general_packing(groups: int, per_group: int, group_rows: int, rows, cols) -> None:
    from dse.cost.resources import pack_uniform

    row_sets = np.ones((groups * per_group, group_rows), dtype=bool)
    general = [len(g) for g in pack_columns(row_sets, rows, cols, groups)]
    assert pack_uniform(groups, per_group, group_rows, rows, cols) == general


def depthwise_layer(channels: int, multiplier: int, size: int, stride: int = 1) -> Graph:
    b = GraphBuilder()
    x = b.add("x", o.Input((channels, size, size)))
    w = np.ones((channels * multiplier, 1, 3, 3), np.float32)
    op = o.CoreOp(w, np.zeros(len(w), np.float32), (stride, stride), (1, 1, 1, 1), groups=channels)
    return b.build([b.add("dw", op, x)])


@pytest.mark.parametrize("channels, multiplier", [(40, 1), (40, 2), (100, 1), (16, 8)])
def test_a_depthwise_layer_is_packed_block_diagonally(channels: int, multiplier: int) -> None:
    """Time multiplexed, 256 x 256 cells, 4 cells per weight (64 neurons per crossbar): a group of
    `multiplier` neurons reads its own 9 rows, so a crossbar holds floor(256 / 9) = 28 groups, or fewer when
    their neurons exceed 64 columns: ceil(C / min(28, floor(64 / multiplier))) crossbars. The cells used are
    C x multiplier x 9 synapses x 4 cells, only on the diagonal blocks."""
    [layer] = layer_resources(depthwise_layer(channels, multiplier, 8), CHIP)
    per_crossbar = min(256 // 9, NEURONS_PER_XBAR // multiplier)
    crossbars = math.ceil(channels / per_crossbar)
    cells = channels * multiplier * 9 * CELLS_PER_WEIGHT
    assert (layer.kind, layer.groups, layer.fan_in) == ("grouped", channels, 9)
    assert layer.crossbars == crossbars
    assert layer.cells_used == cells and layer.utilization == pytest.approx(cells / (crossbars * 256 * 256))
    total = total_resources([layer], CHIP)
    assert total["grouped_crossbars"] == crossbars
    assert total["grouped_utilization"] == pytest.approx(layer.utilization)


@pytest.mark.parametrize("channels, multiplier, size, stride", [(16, 1, 28, 1), (32, 1, 28, 2), (8, 2, 12, 1)])
def test_an_expanded_depthwise_layer_takes_the_best_channels_and_tile(channels, multiplier, size, stride) -> None:
    """Expanded (chip_b's 256 x 256 cores, 1 column per 4-bit weight): c groups over a tile of th x tw
    positions need c (th-1)s+3 x (tw-1)s+3 rows and c multiplier th tw columns; the count is the least of
    ceil(C / c) ceil(Ho / th) ceil(Wo / tw) over every c, th, tw that fit (brute force here)."""
    hw = HardwareSpec(name="b", crossbar=Crossbar(256, 256, 4, False), weights=Weights(4), io=IO(None, None),
                      mapping=Mapping("expanded"))
    [layer] = layer_resources(depthwise_layer(channels, multiplier, size, stride), hw)
    out = (size + 2 - 3) // stride + 1
    best = min(
        math.ceil(channels / c) * math.ceil(out / th) * math.ceil(out / tw)
        for c in range(1, channels + 1) for th in range(1, out + 1) for tw in range(1, out + 1)
        if c * ((th - 1) * stride + 3) * ((tw - 1) * stride + 3) <= 256 and c * multiplier * th * tw <= 256
    )
    assert layer.crossbars == best
    assert layer.neurons == channels * multiplier * out * out


@pytest.mark.parametrize("scale", ["per_crossbar", "per_column"])
def test_weight_scales_are_one_per_crossbar_or_one_per_column(scale: str) -> None:
    hw = HardwareSpec(name="t", crossbar=CHIP.crossbar, weights=Weights(8, scale), io=CHIP.io)
    [layer] = layer_resources(dense_layer(200, 100), hw)
    assert layer.weight_scales == (2 if scale == "per_crossbar" else 100)
    assert total_resources([layer], hw)["weight_scales"] == layer.weight_scales
