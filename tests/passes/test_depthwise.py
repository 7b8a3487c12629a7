"""Depthwise and grouped convolutions stay grouped through reform and fit (never a dense op of mostly zeros),
so that the mapping packs their channels block-diagonally."""

from __future__ import annotations

import pytest
from compiler_helpers import F32, assert_same_function, core_ops, images, rand, run_pass

from dse.cost.resources import layer_resources
from dse.hardware.spec import IO, Crossbar, HardwareSpec, Weights
from dse.ir import ops as o
from dse.ir.graph import GraphBuilder

CHIP_A = HardwareSpec(name="a", crossbar=Crossbar(256, 256, 4, True), weights=Weights(8), io=IO(6, 8))


def separable(activation: o.Op, multiplier: int, stride: int, signed_output: bool = False):
    """conv 3x3 (1 -> 8) + activation, depthwise 3x3 (8 -> 8 * multiplier) + activation, pointwise 1x1."""
    b = GraphBuilder()
    x = b.add("x", o.Input((1, 10, 10)))
    y = b.add("act0", activation, b.add("c0", o.Conv(rand(8, 1, 3, 3, seed=1), rand(8, seed=2), padding=(1,) * 4), x))
    dw = o.Conv(rand(8 * multiplier, 1, 3, 3, seed=3), rand(8 * multiplier, seed=4), (stride, stride), (1,) * 4,
                groups=8)
    y = b.add("dw", dw, y)
    if not signed_output:
        y = b.add("act1", activation, y)
    y = b.add("pw", o.Conv(rand(4, 8 * multiplier, 1, 1, seed=5), rand(4, seed=6)), y)
    return b.build([y])


@pytest.mark.parametrize("activation", [o.Relu(), o.Clip(0.0, 6.0)], ids=["relu", "relu6"])
@pytest.mark.parametrize("multiplier, stride", [(1, 1), (2, 2)])
@pytest.mark.parametrize("signed_output", [False, True], ids=["activated", "linear"])
def test_a_depthwise_conv_stays_grouped_and_exact(activation, multiplier, stride, signed_output) -> None:
    """A ReLU6 (two ReLUs) or a linear depthwise output (a signed pair) keeps the op grouped: its two halves
    sit next to each other in each group and a Gather routes them; fitting 256 rows changes nothing."""
    before = separable(activation, multiplier, stride, signed_output)
    canonical = run_pass("canonicalize", before)
    exact = run_pass("fit_crossbar", run_pass("reform", canonical), CHIP_A, strategy="split")
    x = images(16, 1, 10, 10, seed=7).astype(F32)
    assert_same_function(before, exact, x)
    dw = [op for op in core_ops(exact) if op.groups > 1]
    assert len(dw) == 1 and dw[0].groups == 8 and dw[0].mask is None
    assert dw[0].weight.shape[1] == (2 if isinstance(activation, o.Clip) else 1)  # a clip's input: two terms
    [layer] = [lr for lr in layer_resources(exact, CHIP_A) if lr.groups > 1]
    assert layer.kind == "grouped" and layer.crossbars == 1


def test_a_grouped_conv_split_stays_grouped() -> None:
    """A grouped conv whose fan-in per group (2 groups x 36 channels x 9 taps = 324) exceeds 256 rows is
    split per group: its partial-sum cores and its merge are grouped too."""
    b = GraphBuilder()
    x = b.add("x", o.Input((72, 6, 6)))
    y = b.add("relu", o.Relu(), b.add("g", o.Conv(rand(8, 36, 3, 3, seed=8), rand(8, seed=9), groups=2), x))
    before = b.build([y])
    exact = run_pass("fit_crossbar", run_pass("reform", run_pass("canonicalize", before)), CHIP_A, strategy="split")
    assert all(op.groups > 1 and op.mask is None for op in core_ops(exact))
    assert_same_function(before, exact, images(8, 72, 6, 6, seed=10).astype(F32))
