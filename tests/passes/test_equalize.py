"""Cross-layer equalization: the function never changes (ReLU's positive scaling), and the ranges of a
channel's row and of the weights that read it end equal (Nagel et al., 2019)."""

from __future__ import annotations

import numpy as np
import pytest
from compiler_helpers import F32, assert_same_function, core_ops, images, rand, run_pass

from dse.ir import ops as o
from dse.ir.graph import GraphBuilder


def chain(rows_scale: np.ndarray):
    """fc1 (8 -> 6, rows of very different ranges, as after a folded batch norm) + ReLU, fc2 (6 -> 3)."""
    b = GraphBuilder()
    x = b.add("x", o.Input((8,)))
    w1 = rand(6, 8, seed=1) * rows_scale[:, None].astype(F32)
    y = b.add("relu", o.Relu(), b.add("fc1", o.Linear(w1, rand(6, seed=2)), x))
    return b.build([b.add("fc2", o.Linear(rand(3, 6, seed=3), rand(3, seed=4)), y)])


def test_a_chain_is_equalized_to_equal_ranges_and_the_same_function() -> None:
    """Channel i of fc1 (row range r1_i) read by fc2 (column range r2_i): scaled by s_i = sqrt(r1_i / r2_i),
    both become sqrt(r1_i r2_i). fc2 feeds the host (its outputs keep scale 1)."""
    before = chain(np.array([0.01, 0.1, 1.0, 10.0, 100.0, 1.0]))
    exact = run_pass("reform", run_pass("canonicalize", before))
    eq = run_pass("equalize", exact)
    assert_same_function(exact, eq, images(32, 8, seed=5))
    fc1_before, fc2_before = core_ops(exact)
    fc1, fc2 = core_ops(eq)
    r1_before = np.abs(fc1_before.weight).reshape(6, -1).max(axis=1)
    r2_before = np.abs(fc2_before.weight).reshape(len(fc2_before.weight), 6).max(axis=0)
    r1 = np.abs(fc1.weight).reshape(6, -1).max(axis=1)
    r2 = np.abs(fc2.weight).reshape(len(fc2.weight), 6).max(axis=0)
    np.testing.assert_allclose(r1, r2, rtol=1e-5)
    np.testing.assert_allclose(r1, np.sqrt(r1_before * r2_before), rtol=1e-5)
    np.testing.assert_array_equal(np.abs(fc2.weight).reshape(len(fc2.weight), -1).max(axis=1) > 0, True)
    assert r1.max() / r1.min() < (r1_before.max() / r1_before.min()) ** 0.6  # the spread shrinks


def test_signed_pair_rows_keep_one_scale() -> None:
    """fc2's output is signed (a pair [s; -s] the host reads): it keeps scale 1, and fc1 -> fc2 stays a
    pair up to sign, so fitting can still share its partial sums."""
    before = chain(np.array([0.01, 0.1, 1.0, 10.0, 100.0, 1.0]))
    eq = run_pass("equalize", run_pass("reform", run_pass("canonicalize", before)))
    fc2 = core_ops(eq)[-1]
    np.testing.assert_array_equal(fc2.weight[:3], -fc2.weight[3:])


def network(activation: o.Op):
    """conv + ReLU + maxpool (of values >= 0), a residual block (conv, conv, add), depthwise conv, global pool, fc."""
    b = GraphBuilder()
    x = b.add("x", o.Input((2, 8, 8)))
    scale = np.array([0.05, 1.0, 20.0, 0.5], F32)[:, None, None, None]
    y = b.add("a0", o.Relu(), b.add("c0", o.Conv(rand(4, 2, 3, 3, seed=1) * scale, rand(4, seed=2),
                                                    padding=(1,) * 4), x))
    y = b.add("pool", o.MaxPool((2, 2), (2, 2)), y)
    r = b.add("a1", activation, b.add("c1", o.Conv(rand(4, 4, 3, 3, seed=3) * scale, rand(4, seed=4),
                                                    padding=(1,) * 4), y))
    r = b.add("c2", o.Conv(rand(4, 4, 3, 3, seed=5), rand(4, seed=6), padding=(1,) * 4), r)
    y = b.add("a2", activation, b.add("add", o.Add(), y, r))
    y = b.add("a3", activation, b.add("dw", o.Conv(rand(4, 1, 3, 3, seed=7) * scale, rand(4, seed=8),
                                                   padding=(1,) * 4, groups=4), y))
    y = b.add("flat", o.Reshape((4,)), b.add("gap", o.GlobalAvgPool(), y))
    return b.build([b.add("fc", o.Linear(rand(3, 4, seed=9), rand(3, seed=10)), y)])


@pytest.mark.parametrize("activation", [o.Relu(), o.Clip(0.0, 6.0)], ids=["relu", "relu6"])
def test_equalization_is_exact_through_pooling_residuals_clips_and_depthwise(activation: o.Op) -> None:
    exact = run_pass("reform", run_pass("canonicalize", network(activation)))
    eq = run_pass("equalize", exact)
    assert_same_function(exact, eq, images(16, 2, 8, 8, seed=11), rtol=1e-5)
    moved = [a for a, b in zip(core_ops(exact), core_ops(eq), strict=True) if not np.allclose(a.weight, b.weight)]
    assert len(moved) >= 4
    for a, b in zip(core_ops(exact), core_ops(eq), strict=True):
        if a.fixed:  # max-pooling trees keep their +-1 weights
            np.testing.assert_array_equal(a.weight, b.weight)
