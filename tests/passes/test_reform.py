"""reform: network ops become ReLU core-ops (still float) and nothing changes on the ideal chip."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from compiler_helpers import (
    F32,
    assert_graphs_equal,
    assert_same_function,
    core_ops,
    images,
    only_chip_ops,
    rand,
    run64,
    run_pass,
)

from dse.errors import UnsupportedOpError
from dse.ir import ops as o
from dse.ir.graph import Graph, GraphBuilder
from dse.passes.approximator import FUNCTIONS, fit_hinges


def reform(g: Graph) -> Graph:
    return run_pass("reform", g)


def check(before: Graph, x: np.ndarray) -> Graph:
    """Reform `before`; the result holds only chip ops and computes the same function."""
    after = reform(before)
    assert only_chip_ops(after), after.op_counts()
    assert_same_function(before, after, x)
    return after


def dense_core(w: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> o.CoreOp:
    return o.CoreOp(w.reshape(*w.shape, 1, 1).astype(F32), b.astype(F32), dense=True, mask=mask)


# --- a signed output leaves the chip as a pair, and the host subtracts it ---------------------------------------


def test_signed_output_is_a_pair_and_a_readout() -> None:
    w, bias = rand(3, 5, seed=1), rand(3, seed=2)
    b = GraphBuilder()
    x = b.add("x", o.Input((5,)))
    before = b.build([b.add("fc", o.Linear(w, bias), x)])

    e = GraphBuilder()
    x = e.add("x", o.Input((5,)))
    y = e.add("fc", dense_core(np.concatenate([w, -w]), np.concatenate([bias, -bias])), x)
    expected = e.build([e.add("fc_readout", o.Readout(), y)])
    after = check(before, images(6, 5))
    assert_graphs_equal(after, expected)


def test_relu_output_needs_no_readout() -> None:
    w, bias = rand(3, 5, seed=3), rand(3, seed=4)
    b = GraphBuilder()
    x = b.add("x", o.Input((5,)))
    y = b.add("fc", o.Linear(w, bias), x)
    before = b.build([b.add("relu", o.Relu(), y)])

    e = GraphBuilder()
    x = e.add("x", o.Input((5,)))
    expected = e.build([e.add("relu", dense_core(w, bias), x)])  # the core is named after the value it makes
    assert_graphs_equal(check(before, images(6, 5)), expected)


def test_pair_feeding_a_layer_folds_its_difference_into_the_weights() -> None:
    """A signed hidden value (no activation) costs no extra core: the consumer reads both halves."""
    w1, b1, w2, b2 = rand(4, 3, seed=5), rand(4, seed=6), rand(2, 4, seed=7), rand(2, seed=8)
    b = GraphBuilder()
    x = b.add("x", o.Input((3,)))
    y = b.add("fc1", o.Linear(w1, b1), x)
    y = b.add("fc2", o.Linear(w2, b2), y)
    before = b.build([b.add("relu", o.Relu(), y)])

    e = GraphBuilder()
    x = e.add("x", o.Input((3,)))
    y = e.add("fc1", dense_core(np.concatenate([w1, -w1]), np.concatenate([b1, -b1])), x)
    expected = e.build([e.add("relu", dense_core(np.concatenate([w2, -w2], axis=1), b2), y)])
    assert_graphs_equal(check(before, images(6, 3)), expected)


# --- Clip -------------------------------------------------------------------------------------------------------


def test_clip_zero_hi_is_the_difference_of_two_relus() -> None:
    """clip(s, 0, hi) = relu(s) - relu(s - hi): one core emits both, the consumer subtracts."""
    w1, b1, w2, b2, hi = rand(3, 4, seed=9, scale=2), rand(3, seed=10), rand(2, 3, seed=11), rand(2, seed=12), 0.5
    b = GraphBuilder()
    x = b.add("x", o.Input((4,)))
    y = b.add("fc", o.Linear(w1, b1), x)
    y = b.add("clip", o.Clip(0.0, hi), y)
    before = b.build([b.add("fc2", o.Linear(w2, b2), y)])

    e = GraphBuilder()
    x = e.add("x", o.Input((4,)))
    y = e.add("clip", dense_core(np.concatenate([w1, w1]), np.concatenate([b1, b1 - hi])), x)
    w_both = np.concatenate([w2, -w2], axis=1)  # reads relu(s) with +w2, relu(s - hi) with -w2
    y = e.add("fc2", dense_core(np.concatenate([w_both, -w_both]), np.concatenate([b2, -b2])), y)
    expected = e.build([e.add("fc2_readout", o.Readout(), y)])
    xs = images(64, 4) * 3  # wide enough to hit both bounds
    after = check(before, xs)
    assert_graphs_equal(after, expected)
    clipped = run64(before, xs, keep=["clip"])["clip"]
    assert (clipped == 0).any() and (clipped == hi).any()


@pytest.mark.parametrize(("lo", "hi"), [(None, 0.7), (0.0, None), (None, None)])
def test_clip_with_a_missing_bound_is_exact(lo: float | None, hi: float | None) -> None:
    b = GraphBuilder()
    x = b.add("x", o.Input((4,)))
    y = b.add("fc", o.Linear(rand(3, 4, seed=13, scale=2), rand(3, seed=14)), x)
    y = b.add("clip", o.Clip(lo, hi), y)
    before = b.build([b.add("fc2", o.Linear(rand(2, 3, seed=15), rand(2, seed=16)), y)])
    check(before, images(64, 4) * 3)


def test_clip_with_a_nonzero_lower_bound_as_the_output_is_exact() -> None:
    """Clip(-1, 6) of a Linear read by the host: its two ReLUs and the always-on units carrying -1 sum in one
    core before the readout."""
    b = GraphBuilder()
    x = b.add("x", o.Input((4,)))
    y = b.add("fc", o.Linear(rand(3, 4, scale=3), None), x)
    check(b.build([b.add("clip6", o.Clip(-1.0, 6.0), y)]), images(32, 4))


# --- max pooling: an exact tree of fixed ReLU cores ---------------------------------------------------------


def conv_relu(b: GraphBuilder, x: str, out_c: int, in_c: int, seed: int, k: int = 3) -> str:
    y = b.add("conv", o.Conv(rand(out_c, in_c, k, k, seed=seed), rand(out_c, seed=seed + 1)), x)
    return b.add("relu", o.Relu(), y)


def test_maxpool_2x2_tree_expected_graph() -> None:
    """max(a, b, c, d): stage 1 relu(a-b), b, relu(c-d), d; stage 2 relu(max(a,b) - max(c,d)), max(c,d);
    stage 3 their sum. Weights of +-1 on codes of one scale, marked fixed."""
    channels = 2
    b = GraphBuilder()
    x = b.add("x", o.Input((1, 6, 6)))
    y = conv_relu(b, x, channels, 1, seed=17)
    before = b.build([b.add("pool", o.MaxPool((2, 2), (2, 2)), y)])

    stage1 = np.array([[1, -1, 0, 0], [0, 1, 0, 0], [0, 0, 1, -1], [0, 0, 0, 1]], F32).reshape(4, 1, 2, 2)
    stage2 = np.array([[1, 1, -1, -1], [0, 0, 1, 1]], F32).reshape(2, 4, 1, 1)
    stage3 = np.array([[1, 1]], F32).reshape(1, 2, 1, 1)

    def fixed(w: np.ndarray, stride: tuple[int, int] = (1, 1)) -> o.CoreOp:
        w = np.tile(w, (channels, 1, 1, 1))
        return o.CoreOp(w, np.zeros(len(w), F32), stride, (0, 0, 0, 0), channels, fixed=True)

    conv = before["conv"].op
    e = GraphBuilder()
    x = e.add("x", o.Input((1, 6, 6)))
    y = e.add("relu", o.CoreOp(conv.weight, conv.bias), x)
    y = e.add("pool_max", fixed(stage1, (2, 2)), y)
    y = e.add("pool_max_1", fixed(stage2), y)
    expected = e.build([e.add("pool_max_2", fixed(stage3), y)])
    after = check(before, images(4, 1, 6, 6))
    assert_graphs_equal(after, expected)


@pytest.mark.parametrize(
    ("kernel", "stride", "padding"),
    [((2, 2), (2, 2), (0, 0, 0, 0)), ((3, 3), (2, 2), (1, 1, 1, 1)), ((3, 2), (1, 2), (0, 1, 0, 0)),
     ((1, 1), (1, 1), (0, 0, 0, 0)), ((5, 5), (1, 1), (2, 2, 2, 2))],
)
def test_maxpool_tree_is_exact_with_ties(kernel: tuple[int, int], stride: tuple[int, int], padding: o.Pads) -> None:
    b = GraphBuilder()
    x = b.add("x", o.Input((2, 7, 7)))
    y = b.add("relu", o.Relu(), b.add("id", o.Conv(np.eye(2, dtype=F32).reshape(2, 2, 1, 1), None), x))
    before = b.build([b.add("pool", o.MaxPool(kernel, stride, padding), y)])
    xs = np.random.default_rng(0).integers(0, 3, size=(16, 2, 7, 7)).astype(np.float64)  # many equal values
    after = reform(before)
    np.testing.assert_array_equal(run64(after, xs)[after.outputs[0]], run64(before, xs)["pool"])
    tree = [op for op in core_ops(after) if op.fixed]
    assert tree, "the pooling became no fixed core"
    for op in tree:
        assert set(np.unique(op.weight)) <= {-1.0, 0.0, 1.0}
        assert not np.any(op.bias)
        assert op.groups == 2  # depthwise: a channel never reads another


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "dilation"),
    [((2, 2), (1, 1), (0, 0, 0, 0), (2, 2)), ((3, 2), (2, 1), (1, 1, 1, 0), (2, 3)),
     ((1, 3), (1, 2), (0, 2, 0, 2), (1, 2))],
)
def test_dilated_maxpool_tree_reads_a_dilated_window(kernel, stride, padding, dilation) -> None:
    """Stage 1 of the tree reads the window's taps only: its kernel is the dilated one, zero between taps."""
    b = GraphBuilder()
    x = b.add("x", o.Input((2, 9, 8)))
    y = b.add("relu", o.Relu(), b.add("id", o.Conv(np.eye(2, dtype=F32).reshape(2, 2, 1, 1), None), x))
    before = b.build([b.add("pool", o.MaxPool(kernel, stride, padding, dilation=dilation), y)])
    xs = np.random.default_rng(1).integers(0, 3, size=(16, 2, 9, 8)).astype(np.float64)  # many equal values
    after = reform(before)
    np.testing.assert_array_equal(run64(after, xs)[after.outputs[0]], run64(before, xs)["pool"])
    stage1 = after["pool_max"].op
    (kh, kw), (dh, dw) = kernel, dilation
    assert stage1.kernel == ((kh - 1) * dh + 1, (kw - 1) * dw + 1) and stage1.stride == stride
    taps = np.zeros(stage1.kernel, dtype=bool)
    taps[::dh, ::dw] = True
    assert not np.any(stage1.weight[..., ~taps])


def test_maxpool_ceil_mode_is_refused_only_when_a_window_overhangs() -> None:
    b = GraphBuilder()
    x = b.add("x", o.Input((1, 7, 7)))
    y = conv_relu(b, x, 2, 1, seed=19, k=1)
    exact = b.build([b.add("pool", o.MaxPool((3, 3), (2, 2), ceil_mode=True), y)])  # (7 - 3) / 2: no overhang
    check(exact, images(4, 1, 7, 7))
    b = GraphBuilder()
    x = b.add("x", o.Input((1, 6, 6)))
    y = conv_relu(b, x, 2, 1, seed=19, k=1)
    overhang = b.build([b.add("pool", o.MaxPool((3, 3), (2, 2), ceil_mode=True), y)])
    with pytest.raises(UnsupportedOpError, match=r"MaxPool.*'pool'.*ceil_mode"):
        reform(overhang)


# --- residual add, concat ----------------------------------------------------------------------------------


def test_residual_add_concatenates_terms_into_one_core() -> None:
    b = GraphBuilder()
    x = b.add("x", o.Input((2, 5, 5)))
    c1 = b.add("c1", o.Conv(rand(2, 2, 3, 3, seed=18), rand(2, seed=19), padding=(1, 1, 1, 1)), x)
    r1 = b.add("r1", o.Relu(), c1)
    c2 = b.add("c2", o.Conv(rand(2, 2, 3, 3, seed=20), rand(2, seed=21), padding=(1, 1, 1, 1)), r1)
    add = b.add("add", o.Add(), c2, r1)
    before = b.build([b.add("r2", o.Relu(), add)])
    after = check(before, images(4, 2, 5, 5))
    assert [type(n.op) for n in after] == [o.Input, o.CoreOp, o.CoreOp, o.Concat, o.Gather, o.CoreOp]
    merge = after["r2"].op  # relu(pos(c2) - neg(c2) + r1): a grouped 1x1 core, 3 rows per channel
    assert merge.kernel == (1, 1) and merge.groups == 2 and merge.weight.shape[:2] == (2, 3)
    np.testing.assert_array_equal(merge.weight[:, :, 0, 0], [[1.0, -1.0, 1.0]] * 2)
    # channel c reads pos(c2)[c], neg(c2)[c], r1[c] of the concatenation (c2 pair: 4 channels, then r1)
    np.testing.assert_array_equal(after[after["r2"].inputs[0]].op.index, [0, 2, 4, 1, 3, 5])


def test_residual_add_of_three_tensors() -> None:
    b = GraphBuilder()
    x = b.add("x", o.Input((3,)))
    ys = [b.add(f"fc{i}", o.Linear(rand(4, 3, seed=22 + i), rand(4, seed=30 + i)), x) for i in range(3)]
    add = b.add("add", o.Add(), *ys)
    before = b.build([b.add("relu", o.Relu(), add)])
    check(before, images(8, 3))


def test_concat_of_relu_outputs_is_wiring() -> None:
    b = GraphBuilder()
    x = b.add("x", o.Input((2, 5, 5)))
    r1 = b.add("r1", o.Relu(), b.add("c1", o.Conv(rand(2, 2, 3, 3, seed=40), rand(2, seed=41)), x))
    r2 = b.add("r2", o.Relu(), b.add("c2", o.Conv(rand(3, 2, 3, 3, seed=42), rand(3, seed=43)), x))
    cat = b.add("cat", o.Concat(0), r1, r2)
    before = b.build([b.add("r3", o.Relu(), b.add("c3", o.Conv(rand(4, 5, 1, 1, seed=44), None), cat))])
    after = check(before, images(4, 2, 5, 5))
    assert [type(n.op) for n in after] == [o.Input, o.CoreOp, o.CoreOp, o.Concat, o.CoreOp]


def test_concat_of_signed_values_is_exact() -> None:
    b = GraphBuilder()
    x = b.add("x", o.Input((2, 5, 5)))
    c1 = b.add("c1", o.Conv(rand(2, 2, 3, 3, seed=45), rand(2, seed=46)), x)
    c2 = b.add("c2", o.Conv(rand(3, 2, 3, 3, seed=47), rand(3, seed=48)), x)
    cat = b.add("cat", o.Concat(0), c1, c2)
    before = b.build([b.add("r", o.Relu(), cat)])
    check(before, images(4, 2, 5, 5))


def test_concat_along_a_spatial_axis_is_refused() -> None:
    b = GraphBuilder()
    x = b.add("x", o.Input((1, 4, 4)))
    r = b.add("r", o.Relu(), b.add("c", o.Conv(rand(1, 1, 1, 1), None), x))
    before = b.build([b.add("cat_h", o.Concat(1), r, r)])
    with pytest.raises(UnsupportedOpError, match=r"Concat.*cat_h"):
        reform(before)


# --- average pooling --------------------------------------------------------------------------------------------


def test_avgpool_and_global_avgpool_become_depthwise_cores() -> None:
    b = GraphBuilder()
    x = b.add("x", o.Input((2, 6, 6)))
    y = b.add("r1", o.Relu(), b.add("c1", o.Conv(rand(3, 2, 3, 3, seed=50), rand(3, seed=51)), x))
    y = b.add("ap", o.AvgPool((2, 2), (2, 2)), y)
    y = b.add("gap", o.GlobalAvgPool(), y)
    y = b.add("flat", o.Reshape((3,)), y)
    before = b.build([b.add("fc", o.Linear(rand(2, 3, seed=52), rand(2, seed=53)), y)])
    after = check(before, images(4, 2, 6, 6))
    ap, gap = after["ap"].op, after["gap"].op
    assert isinstance(ap, o.CoreOp) and ap.groups == 3 and ap.kernel == (2, 2) and ap.stride == (2, 2)
    np.testing.assert_allclose(ap.weight, 0.25)
    assert isinstance(gap, o.CoreOp) and gap.groups == 3 and gap.kernel == (2, 2)  # the whole 2x2 map
    np.testing.assert_allclose(gap.weight, 0.25)
    assert not np.any(ap.bias) and not np.any(gap.bias)


def test_avgpool_of_a_signed_value_and_counted_padding_is_exact() -> None:
    b = GraphBuilder()
    x = b.add("x", o.Input((2, 6, 6)))
    y = b.add("c1", o.Conv(rand(3, 2, 3, 3, seed=54), rand(3, seed=55)), x)
    y = b.add("ap", o.AvgPool((3, 3), (2, 2), (1, 1, 1, 1), count_include_pad=True), y)
    before = b.build([b.add("relu", o.Relu(), y)])
    check(before, images(4, 2, 6, 6))


def test_avgpool_with_a_varying_border_divisor_is_refused() -> None:
    b = GraphBuilder()
    x = b.add("x", o.Input((1, 6, 6)))
    y = b.add("r", o.Relu(), b.add("c", o.Conv(rand(1, 1, 1, 1), None), x))
    before = b.build([b.add("ap", o.AvgPool((3, 3), (2, 2), (1, 1, 1, 1), count_include_pad=False), y)])
    with pytest.raises(UnsupportedOpError, match=r"AveragePool.*ap"):
        reform(before)


def test_dilated_avgpool_is_a_core_with_a_dilated_kernel() -> None:
    b = GraphBuilder()
    x = b.add("x", o.Input((2, 8, 9)))
    y = b.add("c1", o.Conv(rand(3, 2, 3, 3, seed=56), rand(3, seed=57)), x)  # signed: the pool's terms are a pair
    y = b.add("ap", o.AvgPool((2, 3), (1, 2), (1, 0, 1, 2), count_include_pad=True, dilation=(3, 2)), y)
    before = b.build([b.add("relu", o.Relu(), y)])
    after = check(before, images(4, 2, 8, 9))
    pool = after["relu"].op
    assert isinstance(pool, o.CoreOp) and pool.kernel == (4, 5) and pool.stride == (1, 2)
    taps = np.zeros((4, 5), dtype=bool)
    taps[::3, ::2] = True
    assert not np.any(pool.weight[..., ~taps])
    w = pool.weight[..., taps]  # the conv's pair read back: +-1/6 on each of the 2x3 taps
    np.testing.assert_allclose(np.abs(w[w != 0]), 1 / 6, rtol=1e-6)


def test_an_inner_softmax_is_refused_naming_op_and_node() -> None:
    b = GraphBuilder()
    x = b.add("x", o.Input((3,)))
    y = b.add("attn", o.Softmax(0), b.add("fc", o.Linear(rand(3, 3), None), x))
    before = b.build([b.add("fc2", o.Linear(rand(2, 3), None), y)])
    with pytest.raises(UnsupportedOpError, match=r"Softmax.*'attn'"):
        reform(before)


def test_every_core_is_named_after_a_network_value() -> None:
    """Tuning looks up each core's teacher by name: the cores realizing network values keep their names."""
    b = GraphBuilder()
    x = b.add("x", o.Input((1, 8, 8)))
    y = conv_relu(b, x, 3, 1, seed=60)
    y = b.add("pool", o.MaxPool((2, 2), (2, 2)), y)
    y = b.add("flat", o.Reshape((27,)), y)
    y = b.add("hidden", o.Relu(), b.add("fc1", o.Linear(rand(8, 27, seed=61), rand(8, seed=62)), y))
    before = b.build([b.add("logits", o.Linear(rand(4, 8, seed=63), rand(4, seed=64)), y)])
    after = check(before, images(4, 1, 8, 8))
    assert {"relu", "hidden", "logits"} <= {n.name for n in after if isinstance(n.op, o.CoreOp)}
    assert after.outputs == ("logits_readout",)


# --- grouped (depthwise) ops whose value is signed or clipped: regression of a pair built on shifted groups ------


def test_signed_output_of_a_residual_sum_is_exact() -> None:
    """An output that is a sum of terms goes through an identity (depthwise) core emitting a pair."""
    b = GraphBuilder()
    x = b.add("x", o.Input((3,)))
    ys = [b.add(f"fc{i}", o.Linear(rand(4, 3, seed=70 + i), rand(4, seed=80 + i)), x) for i in range(2)]
    before = b.build([b.add("add", o.Add(), *ys)])
    check(before, images(8, 3))


def test_clip_of_an_average_pool_of_a_signed_value_is_exact() -> None:
    b = GraphBuilder()
    x = b.add("x", o.Input((2, 6, 6)))
    y = b.add("c1", o.Conv(rand(3, 2, 3, 3, seed=90), rand(3, seed=91)), x)
    y = b.add("ap", o.AvgPool((2, 2), (2, 2)), y)
    y = b.add("clip", o.Clip(0.0, 0.5), y)
    before = b.build([b.add("fc", o.Linear(rand(2, 12, seed=92), None), b.add("flat", o.Reshape((12,)), y))])
    check(before, images(8, 2, 6, 6) * 2)


def test_a_per_channel_affine_at_the_output_is_exact() -> None:
    b = GraphBuilder()
    x = b.add("x", o.Input((3, 4, 4)))
    r = b.add("r", o.Relu(), b.add("c", o.Conv(rand(3, 3, 1, 1, seed=93), rand(3, seed=94)), x))
    before = b.build([b.add("aff", o.ScaleShift(np.array([-1.5, 2.0, 0.5], F32).reshape(3, 1, 1),
                                            np.array([0.1, -0.2, 0.3], F32).reshape(3, 1, 1)), r),
                      ])
    after = check(before, images(4, 3, 4, 4))
    pair = after[after[after.outputs[0]].inputs[0]].op  # the core the readout reads
    assert int(pair.fan_in().max()) == 1  # still one synapse per neuron: the grouping became a mask


def test_concat_of_a_relu_output_and_a_signed_value_is_exact() -> None:
    """Regression: the part >= 0 had no negative half, so the negative concat took its positive one."""
    b = GraphBuilder()
    x = b.add("x", o.Input((2, 4, 4)))
    r = b.add("relu", o.Relu(), b.add("conv", o.Conv(rand(1, 2, 1, 1, seed=95), rand(1, seed=96)), x))
    s = b.add("conv_1", o.Conv(rand(1, 2, 1, 1, seed=97), rand(1, seed=98)), x)
    cat = b.add("concat", o.Concat(0), r, s)
    before = b.build([b.add("logits", o.Linear(rand(3, 32, seed=99), rand(3, seed=100)),
                            b.add("flatten", o.Reshape((32,)), cat))])
    check(before, images(6, 2, 4, 4))


@pytest.mark.parametrize("op", [o.Sigmoid(), o.Tanh(), o.HardSwish(), o.Silu(), o.Gelu(), o.Gelu("tanh"), o.Elu(),
                                o.Elu(1.6733, 1.0507), o.Softplus(), o.Mish()],
                         ids=["Sigmoid", "Tanh", "HardSwish", "Silu", "Gelu", "Gelu_tanh", "Elu", "Selu", "Softplus",
                              "Mish"])
def test_an_approximated_function_of_a_relu_output_is_well_formed(op: o.Op) -> None:
    """Regression: the approximator stacked copies of a grouped (identity) op, which read the wrong groups and
    made a core whose weights did not fit its inputs."""
    b = GraphBuilder()
    x = b.add("x", o.Input((4,)))
    y = b.add("relu", o.Relu(), b.add("fc", o.Linear(rand(6, 4, seed=101, scale=2), rand(6, seed=102)), x))
    y = b.add("act", op, y)
    before = b.build([b.add("fc2", o.Linear(rand(3, 6, seed=103), rand(3, seed=104)), y)])
    xs = images(200, 4)
    after = run_pass("reform", before, samples={"relu": run64(before, xs, keep=["relu"])["relu"]})
    assert only_chip_ops(after)
    reference = run64(before, xs)["fc2"]
    error = np.abs(run64(after, xs)[after.outputs[0]] - reference).max()
    assert error < 0.05 * np.abs(reference).max()  # an approximation, not exact


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_a_gelu_of_a_signed_preactivation_is_approximated(approximate: str) -> None:
    """GELU straight after a Linear (a transformer's MLP): its input takes both signs, and the hinges must hold
    the dip below zero (about -0.17 near x = -0.75) as well as the linear tail."""
    b = GraphBuilder()
    x = b.add("x", o.Input((4,)))
    y = b.add("act", o.Gelu(approximate), b.add("fc", o.Linear(rand(6, 4, seed=131, scale=2), rand(6, seed=132)), x))
    before = b.build([b.add("fc2", o.Linear(rand(3, 6, seed=133), rand(3, seed=134)), y)])
    xs = images(300, 4)
    fc = run64(before, xs, keep=["fc"])["fc"]
    assert fc.min() < -1 and fc.max() > 1  # both sides of the function are exercised
    after = run_pass("reform", before, samples={"fc": fc})
    assert only_chip_ops(after)
    reference = run64(before, xs)["fc2"]
    assert np.abs(run64(after, xs)[after.outputs[0]] - reference).max() < 0.05 * np.abs(reference).max()


@pytest.mark.parametrize("op", [o.Silu(), o.Gelu(), o.HardSwish(), o.Tanh(), o.Sigmoid(), o.Elu(), o.Mish()],
                         ids=["Silu", "Gelu", "HardSwish", "Tanh", "Sigmoid", "Elu", "Mish"])
@pytest.mark.parametrize("pool", [o.MaxPool((2, 2), (2, 2)), o.MaxPool((3, 3), (1, 1), (1, 1, 1, 1))],
                         ids=["2x2", "3x3_same"])
def test_a_max_pool_of_a_function_bounded_below_is_lifted_over_its_floor(op: o.Op, pool: o.MaxPool) -> None:
    """A max pooling after SiLU (YOLO's SPPF), GELU or HardSwish, whose values go below zero: the value minus
    its floor (the fit's minimum) is one ReLU core, pooled by the max tree beside always-on units that carry the
    floor back, the second pool reading the first (SPPF's chain)."""
    b = GraphBuilder()
    x = b.add("x", o.Input((2, 6, 6)))
    y = b.add("act", op, b.add("conv", o.Conv(rand(3, 2, 3, 3, seed=135, scale=2), rand(3, seed=136),
                                              padding=(1, 1, 1, 1)), x))
    y = b.add("pool2", pool, b.add("pool", pool, y))
    y = b.add("flat", o.Reshape((int(np.prod(b.shape(y))),)), y)
    before = b.build([b.add("fc", o.Linear(rand(4, b.shape(y)[0], seed=137), rand(4, seed=138)), y)])
    xs = images(100, 2, 6, 6)
    conv = run64(before, xs, keep=["conv"])["conv"]
    after = run_pass("reform", before, samples={"conv": conv})
    assert only_chip_ops(after)
    assert [n.name for n in after if n.name.endswith("_lift")] == ["pool_lift"]  # the second pool reads the first
    reference = run64(before, xs)["fc"]
    assert np.abs(run64(after, xs)[after.outputs[0]] - reference).max() < 0.05 * np.abs(reference).max()


@pytest.mark.parametrize("act", [None, o.PRelu(np.float32(0.1)),
                                 o.PRelu(np.array([0.2, 0.5, 1.5], np.float32).reshape(3, 1, 1))],
                         ids=["conv", "leaky", "prelu"])
@pytest.mark.parametrize("pool", [o.MaxPool((2, 2), (2, 2)), o.MaxPool((3, 3), (1, 1)),
                                  o.MaxPool((2, 2), (1, 1), dilation=(2, 2))], ids=["2x2", "3x3_s1", "dilated"])
def test_a_max_pool_of_a_signed_pair_is_a_max_tree_and_a_min_tree(act: o.Op | None, pool: o.MaxPool) -> None:
    """A max pooling straight after a convolution, or after a LeakyRelu (darknet, YOLOv3): the value is
    relu(s) - c relu(-s), never both non-zero, so max = max(relu(s)) - c min(relu(-s)); exact, and a second
    pooling of the result too."""
    b = GraphBuilder()
    x = b.add("x", o.Input((2, 7, 7)))
    y = b.add("conv", o.Conv(rand(3, 2, 3, 3, seed=141), rand(3, seed=142), padding=(1, 1, 1, 1)), x)
    if act is not None:
        y = b.add("act", act, y)
    y = b.add("pool2", o.MaxPool((2, 2), (1, 1)), b.add("pool", pool, y))
    y = b.add("flat", o.Reshape((int(np.prod(b.shape(y))),)), y)
    before = b.build([b.add("fc", o.Linear(rand(4, b.shape(y)[0], seed=143), rand(4, seed=144)), y)])
    after = check(before, images(16, 2, 7, 7))
    assert after.of_type(o.CoreOp) and any(n.name.startswith("pool_neg_min") for n in after)


def test_a_max_pool_of_relu_outputs_added_sums_them_in_one_core_first() -> None:
    """relu(conv2(y)) + y with y = relu(conv1(x)) (a residual added after the ReLU), max-pooled: the sum is >= 0
    but the max of a sum is not the sum of the maxima, so one core adds the terms (its ReLU exact) and the
    tree pools it. Refused before as "a sum of values that may be < 0"."""
    b = GraphBuilder()
    x = b.add("x", o.Input((2, 6, 6)))
    same = (1, 1, 1, 1)
    y = b.add("r1", o.Relu(), b.add("c1", o.Conv(rand(3, 2, 3, 3, seed=160), rand(3, seed=161), padding=same), x))
    z = b.add("r2", o.Relu(), b.add("c2", o.Conv(rand(3, 3, 3, 3, seed=162), rand(3, seed=163), padding=same), y))
    p = b.add("pool", o.MaxPool((2, 2), (2, 2)), b.add("add", o.Add(), z, y))
    before = b.build([b.add("fc", o.Linear(rand(4, 27, seed=164), None), b.add("flat", o.Reshape((27,)), p))])
    after = check(before, images(16, 2, 6, 6))
    assert "pool_sum" in {n.name for n in after}


def test_a_global_max_pool_of_a_leaky_relu_is_exact() -> None:
    """GlobalMaxPool imports as a MaxPool whose window is the map: 25 taps, a tree five stages deep, max and min."""
    b = GraphBuilder()
    x = b.add("x", o.Input((2, 7, 7)))
    y = b.add("act", o.PRelu(np.float32(0.1)), b.add("conv", o.Conv(rand(3, 2, 3, 3, seed=156), rand(3, seed=157)), x))
    y = b.add("gmp", o.MaxPool((5, 5), (1, 1)), y)
    before = b.build([b.add("fc", o.Linear(rand(4, 3, seed=158), None), b.add("flat", o.Reshape((3,)), y))])
    check(before, images(16, 2, 7, 7))


def test_an_explicit_zero_pad_before_a_max_pool_of_a_leaky_relu_is_data() -> None:
    """YOLOv3-tiny's ZeroPad2d((0, 1, 0, 1)) and 2x2 stride-1 max pooling after a LeakyRelu: the Pad's zeros are
    values of the original (they take part in the max), so the pair is padded and both trees read them."""
    b = GraphBuilder()
    x = b.add("x", o.Input((2, 6, 6)))
    y = b.add("act", o.PRelu(np.float32(0.1)), b.add("conv", o.Conv(rand(3, 2, 3, 3, seed=150), rand(3, seed=151)), x))
    y = b.add("pool", o.MaxPool((2, 2), (1, 1)), b.add("pad", o.Pad((0, 0, 1, 1)), y))
    before = b.build([b.add("fc", o.Linear(rand(4, 48, seed=152), None), b.add("flat", o.Reshape((48,)), y))])
    check(before, images(16, 2, 6, 6))


@pytest.mark.parametrize(("lo", "hi"), [(-1.0, 1.0), (-0.5, None), (0.5, 6.0), (-0.3, -0.3)],
                         ids=["hardtanh", "floor_only", "above_zero", "constant"])
def test_a_clip_with_a_lower_bound_is_exact_and_may_be_max_pooled(lo: float, hi: float | None) -> None:
    """clip(s, lo, hi) = lo + relu(s - lo) - relu(s - hi): one core of the two ReLUs and always-on units; the
    value is >= lo, so a max pooling pools it above that floor."""
    b = GraphBuilder()
    x = b.add("x", o.Input((2, 6, 6)))
    y = b.add("clip", o.Clip(lo, hi), b.add("conv", o.Conv(rand(3, 2, 3, 3, seed=153, scale=2), rand(3, seed=154)), x))
    y = b.add("pool", o.MaxPool((2, 2), (2, 2)), y)
    before = b.build([b.add("fc", o.Linear(rand(4, 12, seed=155), None), b.add("flat", o.Reshape((12,)), y))])
    check(before, images(16, 2, 6, 6))


@pytest.mark.parametrize("pool", [o.MaxPool((2, 2), (2, 2)), o.MaxPool((3, 3), (1, 1), (1, 1, 1, 1))],
                         ids=["2x2", "3x3_same"])
@pytest.mark.parametrize("hi", [6.0, 1.0], ids=["relu6", "hard_sigmoid"])
def test_a_max_pool_of_a_clip_from_zero_is_exact(hi: float, pool: o.MaxPool) -> None:
    """ReLU6 (Clip(0, 6)) or HardSigmoid's Clip(0, 1) before a max pooling (MobileNet-style networks with
    pooling): relu(s) - relu(s - hi) is >= 0, so one core sums the two ReLUs and the max tree pools that, as a
    second pooling reads the first."""
    b = GraphBuilder()
    x = b.add("x", o.Input((2, 6, 6)))
    y = b.add("clip", o.Clip(0.0, hi), b.add("conv", o.Conv(rand(3, 2, 3, 3, seed=162, scale=2), rand(3, seed=163),
                                                             padding=(1, 1, 1, 1)), x))
    y = b.add("pool2", o.MaxPool((2, 2), (1, 1)), b.add("pool", pool, y))
    y = b.add("flat", o.Reshape((int(np.prod(b.shape(y))),)), y)
    before = b.build([b.add("fc", o.Linear(rand(4, b.shape(y)[0], seed=164), None), y)])
    after = check(before, images(16, 2, 6, 6))
    assert [n.name for n in after if n.name.endswith("_lift")] == ["pool_lift"]


def test_a_max_pool_of_a_channel_slice_of_a_signed_pair_is_exact() -> None:
    """A Slice takes the same channels of both parts of a pair, which stay disjoint, as through any wiring."""
    b = GraphBuilder()
    x = b.add("x", o.Input((2, 6, 6)))
    y = b.add("half", o.Slice(1, 3), b.add("conv", o.Conv(rand(4, 2, 3, 3, seed=159), rand(4, seed=160)), x))
    y = b.add("pool", o.MaxPool((2, 2), (2, 2)), y)
    before = b.build([b.add("fc", o.Linear(rand(3, 8, seed=161), None), b.add("flat", o.Reshape((8,)), y))])
    check(before, images(16, 2, 6, 6))


def test_a_padded_max_pool_of_a_signed_pair_is_refused() -> None:
    b = GraphBuilder()
    x = b.add("x", o.Input((2, 6, 6)))
    y = b.add("conv", o.Conv(rand(3, 2, 3, 3, seed=145), None), x)
    y = b.add("pool", o.MaxPool((3, 3), (1, 1), (1, 1, 1, 1)), y)
    before = b.build([b.add("fc", o.Linear(rand(4, 48, seed=146), None), b.add("flat", o.Reshape((48,)), y))])
    with pytest.raises(UnsupportedOpError, match=r"MaxPool at node 'pool': padding of a value that may be < 0"):
        reform(before)


def test_a_max_pool_of_a_sum_of_signed_values_is_refused() -> None:
    b = GraphBuilder()
    x = b.add("x", o.Input((2, 6, 6)))
    s = b.add("sum", o.Add(), b.add("c1", o.Conv(rand(3, 2, 3, 3, seed=147), None), x),
              b.add("c2", o.Conv(rand(3, 2, 3, 3, seed=148), None), x))
    y = b.add("pool", o.MaxPool((2, 2), (2, 2)), s)
    before = b.build([b.add("fc", o.Linear(rand(4, 12, seed=149), None), b.add("flat", o.Reshape((12,)), y))])
    with pytest.raises(UnsupportedOpError, match=r"MaxPool at node 'pool': its input is a sum of values that may "
                                                 r"be < 0"):
        reform(before)


def test_a_per_sample_scalar_output_is_refused_by_name() -> None:
    """A network whose output is squeezed to one number per sample (``fc(x).squeeze(1)``, a ReduceMean without
    keepdims) has no channel axis for the wiring to carry: one line naming the op and node, not an IndexError."""
    b = GraphBuilder()
    x = b.add("x", o.Input((6,)))
    before = b.build([b.add("squeeze", o.Reshape(()), b.add("fc", o.Linear(rand(1, 6), None), x))])
    with pytest.raises(UnsupportedOpError, match=r"Reshape at node 'squeeze'.*per-sample shape \(\)"):
        reform(before)


def test_a_value_of_rank_two_is_refused_by_name() -> None:
    """A (C, L) value has no core-op form: a typed one-line error naming the op and node, not a crash."""
    b = GraphBuilder()
    x = b.add("x", o.Input((4, 11)))
    before = b.build([b.add("act", o.Relu(), x)])
    with pytest.raises(UnsupportedOpError, match=r"Relu at node 'act'.*\(4, 11\)"):
        reform(before)


# --- a zero Pad that did not fold into its reader is wiring; a non-zero one inside the network is refused --------


def test_a_zero_pad_of_a_signed_value_is_wiring_of_its_terms() -> None:
    b = GraphBuilder()
    x = b.add("x", o.Input((2, 5, 5)))
    y = b.add("pad", o.Pad((1, 0, 0, 2)), b.add("conv", o.Conv(rand(3, 2, 3, 3, seed=110), rand(3, seed=111)), x))
    before = b.build([b.add("relu", o.Relu(), y)])  # a Relu cannot take the padding: the Pad stays
    after = check(before, images(4, 2, 5, 5))
    pads = after.of_type(o.Pad)
    assert len(pads) == 2 and all(n.op.padding == (1, 0, 0, 2) for n in pads)  # each half of the signed pair


def test_a_nonzero_pad_inside_the_network_is_refused() -> None:
    b = GraphBuilder()
    x = b.add("x", o.Input((2, 5, 5)))
    y = b.add("pad", o.Pad((1, 1, 1, 1), (0.5,)), b.add("relu", o.Relu(), x))
    before = b.build([b.add("conv", o.Conv(rand(3, 2, 3, 3, seed=112), None), y)])
    with pytest.raises(UnsupportedOpError, match=r"Pad at node 'pad': a non-zero constant pad inside"):
        reform(before)


# --- depthwise and grouped convolutions stay grouped ------------------------------------------------------------


@pytest.mark.parametrize(("channels", "multiplier"), [(4, 1), (3, 2)])
def test_a_depthwise_convolution_is_a_grouped_core(channels: int, multiplier: int) -> None:
    b = GraphBuilder()
    x = b.add("x", o.Input((channels, 6, 6)))
    dw = o.Conv(rand(channels * multiplier, 1, 3, 3, seed=113), rand(channels * multiplier, seed=114), (2, 2),
                (0, 0, 1, 1), groups=channels)
    before = b.build([b.add("relu", o.Relu(), b.add("dw", dw, x))])
    after = check(before, images(4, channels, 6, 6))
    core = after["relu"].op
    assert core.groups == channels and core.weight.shape == (channels * multiplier, 1, 3, 3)
    assert int(core.fan_in().max()) == 9  # one channel's 3x3 window: no dense, mostly-zero matrix


@pytest.mark.parametrize("slope", [np.float32(0.1), np.array([0.2, 0.0, 1.5], np.float32).reshape(3, 1, 1),
                                   np.array([-0.5, -1.0, -0.25], np.float32).reshape(3, 1, 1)],
                         ids=["leaky", "per_channel", "negative"])
def test_a_prelu_is_two_cores_on_the_same_inputs(slope: np.ndarray) -> None:
    b = GraphBuilder()
    x = b.add("x", o.Input((2, 5, 5)))
    y = b.add("act", o.PRelu(slope), b.add("conv", o.Conv(rand(3, 2, 3, 3, seed=115), rand(3, seed=116)), x))
    before = b.build([b.add("fc", o.Linear(rand(4, 27, seed=117), None), b.add("flat", o.Reshape((27,)), y))])
    after = check(before, images(4, 2, 5, 5))
    assert after["act"].op.out_channels == after["act_neg"].op.out_channels == 3  # relu(s); relu(-|a| s)


def test_a_prelu_with_slopes_of_both_signs_is_three_cores() -> None:
    """A learned PReLU whose per-channel slopes took both signs (and a zero): relu(s) - a+ relu(-s) + a- relu(-s),
    a core of relu(s) and one of relu(-|a| s) per sign, on the same inputs; exact."""
    b = GraphBuilder()
    x = b.add("x", o.Input((2, 5, 5)))
    slope = np.array([0.5, -0.3, 0.0], np.float32).reshape(3, 1, 1)
    y = b.add("act", o.PRelu(slope), b.add("conv", o.Conv(rand(3, 2, 3, 3, seed=118), rand(3, seed=119)), x))
    before = b.build([b.add("fc", o.Linear(rand(4, 27, seed=120), None), b.add("flat", o.Reshape((27,)), y))])
    after = check(before, images(4, 2, 5, 5))
    assert all(after[n].op.out_channels == 3 for n in ("act", "act_neg", "act_below"))


def test_a_global_pool_of_an_approximated_function_pools_each_hinge() -> None:
    """HardSwish before a global average pool (MobileNetV3): the pool reads 9 hinge outputs per channel. Pooled
    term by term, its core's fan-in is the 7x7 window, not 9 x 49; the Linear after it takes the coefficients."""
    b = GraphBuilder()
    x = b.add("x", o.Input((3, 7, 7)))
    y = b.add("act", o.HardSwish(), b.add("conv", o.Conv(rand(4, 3, 1, 1, seed=118, scale=3), rand(4, seed=119)), x))
    y = b.add("flat", o.Reshape((4,)), b.add("gap", o.GlobalAvgPool(), y))
    before = b.build([b.add("fc", o.Linear(rand(2, 4, seed=120), rand(2, seed=121)), y)])
    xs = images(64, 3, 7, 7)
    after = run_pass("reform", before, samples={"conv": run64(before, xs, keep=["conv"])["conv"]})
    assert only_chip_ops(after)
    pool = after["gap_part"].op
    assert pool.groups == pool.out_channels == 4 * 9 and int(pool.fan_in().max()) == 49  # 8 hinges + the constant
    reference = run64(before, xs)["fc"]
    assert np.abs(run64(after, xs)[after.outputs[0]] - reference).max() < 0.05 * np.abs(reference).max()


@pytest.mark.parametrize("op", [o.Sigmoid(), o.HardSwish(), o.Gelu(), o.Tanh()], ids=["Sigmoid", "HardSwish", "Gelu",
                                                                                       "Tanh"])
def test_the_approximator_as_a_core_of_its_own_computes_the_same(op: o.Op) -> None:
    """`approximator_output="core"`: one core ``[v - L; 1]`` after the hinges, so a global pool pools 2 channels
    per channel (not the hinges' 9) and the Linear after it reads 2 x 4; on the calibration values (the fit's
    range, where the core's ReLU clips nothing) the network computes what the merged form computes."""
    b = GraphBuilder()
    x = b.add("x", o.Input((3, 7, 7)))
    y = b.add("act", op, b.add("conv", o.Conv(rand(4, 3, 1, 1, seed=118, scale=3), rand(4, seed=119)), x))
    y = b.add("flat", o.Reshape((4,)), b.add("gap", o.GlobalAvgPool(), y))
    before = b.build([b.add("fc", o.Linear(rand(2, 4, seed=120), rand(2, seed=121)), y)])
    xs = images(64, 3, 7, 7)
    samples = {"conv": run64(before, xs, keep=["conv"])["conv"]}
    merged = run_pass("reform", before, samples=samples)
    core = run_pass("reform", before, samples=samples, approximator_output="core")
    assert only_chip_ops(core)
    assert core["act"].op.groups == 4 and core["act"].op.out_channels == 8  # each channel's hinges -> [v - L; 1]
    assert core["gap_part"].op.out_channels == 8 and merged["gap_part"].op.out_channels == 4 * 9
    assert int(core["fc"].op.fan_in().max()) == 8 and int(merged["fc"].op.fan_in().max()) == 4 * 9
    out = run64(core, xs)[core.outputs[0]]
    # the cores hold float32 weights: equal to their rounding
    np.testing.assert_allclose(out, run64(merged, xs)[merged.outputs[0]], rtol=1e-6, atol=1e-6 * np.abs(out).max())


def test_an_average_pool_of_a_signed_pair_pools_the_pair() -> None:
    b = GraphBuilder()
    x = b.add("x", o.Input((2, 6, 6)))
    y = b.add("pool", o.AvgPool((2, 2), (2, 2)), b.add("conv", o.Conv(rand(3, 2, 3, 3, seed=122), None), x))
    before = b.build([b.add("fc", o.Linear(rand(2, 12, seed=123), None), b.add("flat", o.Reshape((12,)), y))])
    after = check(before, images(4, 2, 6, 6))
    assert int(after["pool_part"].op.fan_in().max()) == 4  # the window, once: both halves pooled alike


@pytest.mark.parametrize("multiplier", [1, 2])
def test_an_approximated_function_after_a_depthwise_convolution_stays_depthwise(multiplier: int) -> None:
    """HardSwish after a depthwise conv (MobileNetV3): each hinge reads its own channel's 3x3 window (fan-in 9),
    not a dense copy of every channel's (fan-in 9 x channels, 11 crossbars instead of 2 at 32 channels)."""
    b = GraphBuilder()
    x = b.add("x", o.Input((4, 5, 5)))
    dw = o.Conv(rand(4 * multiplier, 1, 3, 3, seed=127, scale=2), rand(4 * multiplier, seed=128), (1, 1),
                (1, 1, 1, 1), groups=4)
    y = b.add("act", o.HardSwish(), b.add("dw", dw, x))
    n, fc = 4 * multiplier * 25, rand(2, 4 * multiplier * 25, seed=129)
    before = b.build([b.add("fc", o.Linear(fc, None), b.add("flat", o.Reshape((n,)), y))])
    xs = images(64, 4, 5, 5)
    s = run64(before, xs, keep=["dw"])["dw"]
    after = run_pass("reform", before, samples={"dw": s})
    assert only_chip_ops(after)
    hidden = after["act_hidden"].op
    assert hidden.groups == 4 and hidden.out_channels == 4 * multiplier * 9  # 8 hinges + the constant
    assert int(hidden.fan_in().max()) == 9
    # the reference: the network with HardSwish replaced by the fit itself (a closed form), to float32 rounding
    fit = fit_hinges(functools.partial(FUNCTIONS[o.HardSwish], o.HardSwish()), s, 8)
    reference = fit(s).reshape(len(xs), n) @ fc.astype(np.float64).T
    np.testing.assert_allclose(run64(after, xs)[after.outputs[0]], reference, atol=1e-5 * np.abs(reference).max())


def test_an_approximated_function_of_an_average_pool_of_a_signed_value_stays_grouped() -> None:
    """The pool reads a pair (two terms): the hinges stay grouped, each reading its channel's 4 taps of both
    halves (fan-in 8), and the network equals the one with HardSwish replaced by its fit (closed form)."""
    b = GraphBuilder()
    x = b.add("x", o.Input((3, 6, 6)))
    conv = b.add("conv", o.Conv(rand(4, 3, 3, 3, seed=133, scale=2), rand(4, seed=134), (1, 1), (1, 1, 1, 1)), x)
    y = b.add("act", o.HardSwish(), b.add("pool", o.AvgPool((2, 2), (2, 2)), conv))
    fc = rand(2, 36, seed=135)
    before = b.build([b.add("fc", o.Linear(fc, None), b.add("flat", o.Reshape((36,)), y))])
    xs = images(64, 3, 6, 6)
    s = run64(before, xs, keep=["pool"])["pool"]
    after = run_pass("reform", before, samples={"pool": s})
    assert only_chip_ops(after)
    hidden = after["act_hidden"].op
    assert hidden.groups == 4 and int(hidden.fan_in().max()) == 8
    fit = fit_hinges(functools.partial(FUNCTIONS[o.HardSwish], o.HardSwish()), s, 8)
    reference = fit(s).reshape(len(xs), 36) @ fc.astype(np.float64).T
    np.testing.assert_allclose(run64(after, xs)[after.outputs[0]], reference, atol=1e-5 * np.abs(reference).max())


def test_a_hardtanh_after_a_depthwise_convolution_is_exact_and_stays_depthwise() -> None:
    b = GraphBuilder()
    x = b.add("x", o.Input((3, 5, 5)))
    dw = o.Conv(rand(3, 1, 3, 3, seed=130), rand(3, seed=131), (1, 1), (1, 1, 1, 1), groups=3)
    y = b.add("act", o.Clip(-1.0, 1.0), b.add("dw", dw, x))
    before = b.build([b.add("fc", o.Linear(rand(2, 75, seed=132), None), b.add("flat", o.Reshape((75,)), y))])
    after = check(before, images(4, 3, 5, 5))
    assert after["act"].op.groups == 3 and int(after["act"].op.fan_in().max()) == 9


def test_a_prelu_after_a_depthwise_convolution_stays_depthwise() -> None:
    b = GraphBuilder()
    x = b.add("x", o.Input((3, 5, 5)))
    dw = o.Conv(rand(3, 1, 3, 3, seed=124), rand(3, seed=125), groups=3)
    y = b.add("act", o.PRelu(np.array([0.1, 0.3, 0.2], np.float32).reshape(3, 1, 1)), b.add("dw", dw, x))
    before = b.build([b.add("fc", o.Linear(rand(2, 27, seed=126), None), b.add("flat", o.Reshape((27,)), y))])
    after = check(before, images(4, 3, 5, 5))
    assert after["act"].op.groups == after["act_neg"].op.groups == 3


def test_a_sum_at_the_output_that_is_never_negative_leaves_the_chip_whole() -> None:
    """``x * 8 + x`` on an input >= 0: the summing core's output is >= 0, one term, not a pair: no Readout
    (one took ``y[:C] - y[C:]`` of it, an output of half the size; found by the fuzz suite)."""
    b = GraphBuilder()
    x = b.add("x", o.Input((2,)))
    before = b.build([b.add("add", o.Add(), b.add("scale", o.ScaleShift(np.float32(8.0), np.float32(0.0)), x), x)])
    after = check(before, images(6, 2))
    assert not after.of_type(o.Readout)


def test_the_approximator_knots_fit_a_range_too_narrow_for_its_magnitude() -> None:
    """Calibration values of 1e30 (1e30 + 1 is 1e30): the knot fill ends with `width` distinct knots."""
    from dse.passes.approximator import fit_hinges

    for value in (1e30, -3e38, 0.0):
        fit = fit_hinges(np.tanh, np.full(64, value), 8)
        assert fit.knots.size == 8 and np.unique(fit.knots).size == 8 and np.isfinite(fit.knots).all()
