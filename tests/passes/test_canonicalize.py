"""canonicalize: each rule on a `before` graph gives the `expected` graph, and changes no output."""

from __future__ import annotations

import numpy as np
import pytest
from compiler_helpers import F32, assert_graphs_equal, assert_same_function, images, rand, run64, run_pass

from dse.ir import ops as o
from dse.ir.graph import Graph, GraphBuilder


def canon(g: Graph) -> Graph:
    return run_pass("canonicalize", g)


def conv(out_c: int, in_c: int, k: int, seed: int, **kw) -> o.Conv:
    return o.Conv(rand(out_c, in_c, k, k, seed=seed), rand(out_c, seed=seed + 100), **kw)


def check(before: Graph, expected: Graph, x: np.ndarray, *, names: bool = True) -> Graph:
    after = canon(before)
    assert_graphs_equal(after, expected, names=names)
    assert_same_function(before, after, x)
    return after


# --- BatchNorm (a ScaleShift after a Conv/Linear) folds into the producer ---------------------------------------


def test_batchnorm_folds_into_conv() -> None:
    c = conv(3, 2, 3, seed=1)
    scale, shift = (rand(3, 1, 1, seed=2) ** 2 + 0.5), rand(3, 1, 1, seed=3)
    b = GraphBuilder()
    x = b.add("x", o.Input((2, 6, 6)))
    y = b.add("conv", c, x)
    y = b.add("bn", o.ScaleShift(scale, shift), y)
    before = b.build([b.add("relu", o.Relu(), y)])

    s = scale.reshape(3).astype(np.float64)
    e = GraphBuilder()
    x = e.add("x", o.Input((2, 6, 6)))
    y = e.add("conv", o.Conv((c.weight * s[:, None, None, None]).astype(F32),
                             (c.bias * s + shift.reshape(3)).astype(F32)), x)
    expected = e.build([e.add("relu", o.Relu(), y)])
    check(before, expected, images(4, 2, 6, 6))


def test_batchnorm_folds_into_linear_without_bias() -> None:
    w = rand(5, 7, seed=4)
    scale, shift = rand(5, seed=5), rand(5, seed=6)
    b = GraphBuilder()
    x = b.add("x", o.Input((7,)))
    y = b.add("fc", o.Linear(w, None), x)
    before = b.build([b.add("bn", o.ScaleShift(scale, shift), y)])

    e = GraphBuilder()
    x = e.add("x", o.Input((7,)))
    expected = e.build([e.add("fc", o.Linear((w * scale[:, None]).astype(F32), shift), x)])
    after = check(before, expected, images(4, 7))
    assert after.outputs == ("fc",)  # the output moves to the producer


def test_batchnorm_stays_when_the_conv_has_another_reader() -> None:
    """Folding into a producer read twice would change the other reader's value."""
    b = GraphBuilder()
    x = b.add("x", o.Input((2, 5, 5)))
    y = b.add("conv", conv(2, 2, 1, seed=7), x)
    bn = b.add("bn", o.ScaleShift(rand(2, 1, 1, seed=8), rand(2, 1, 1, seed=9)), y)
    r1 = b.add("r1", o.Relu(), bn)
    r2 = b.add("r2", o.Relu(), y)
    before = b.build([b.add("sum", o.Add(), r1, r2)])
    after = canon(before)
    assert_graphs_equal(after, before)
    assert_same_function(before, after, images(3, 2, 5, 5))


def test_two_affines_merge_then_fold() -> None:
    b = GraphBuilder()
    x = b.add("x", o.Input((4,)))
    y = b.add("fc", o.Linear(rand(3, 4, seed=10), rand(3, seed=11)), x)
    y = b.add("mul", o.ScaleShift(np.full(3, 2.0, F32), np.zeros(3, F32)), y)
    y = b.add("add", o.ScaleShift(np.ones(3, F32), np.full(3, 0.5, F32)), y)
    before = b.build([b.add("relu", o.Relu(), y)])
    after = canon(before)
    assert [type(n.op) for n in after] == [o.Input, o.Linear, o.Relu]
    assert_same_function(before, after, images(5, 4))


# --- input normalization folds into the consumers; a padded conv gets the host Pad --------------------------


def normalized_conv(mean: np.ndarray, std: np.ndarray, padding: o.Pads, channels: int = 1) -> Graph:
    c = conv(4, channels, 3, seed=12, padding=padding)
    shape = (channels, 1, 1)
    b = GraphBuilder()
    x = b.add("x", o.Input((channels, 7, 7)))
    n = b.add("norm", o.ScaleShift((1.0 / std).reshape(shape).astype(F32), (-mean / std).reshape(shape).astype(F32)), x)
    y = b.add("conv", c, n)
    return b.build([b.add("relu", o.Relu(), y)])


def test_input_normalization_on_a_padded_conv_moves_the_padding_to_the_host() -> None:
    """(x - m) / s padded with 0 equals x padded with m, then normalized: the host pads with the raw value."""
    mean, std = np.array([0.1307]), np.array([0.3081])
    before = normalized_conv(mean, std, (1, 1, 1, 1))
    c: o.Conv = before["conv"].op
    w = c.weight.astype(np.float64)
    scale, shift = 1.0 / std[0], -mean[0] / std[0]

    e = GraphBuilder()
    x = e.add("x", o.Input((1, 7, 7)))
    p = e.add("conv_pad", o.Pad((1, 1, 1, 1), (float(np.float32(-shift / scale)),)), x)
    y = e.add("conv", o.Conv((w * scale).astype(F32), (c.bias + shift * w.sum(axis=(1, 2, 3))).astype(F32)), p)
    expected = e.build([e.add("relu", o.Relu(), y)])
    after = check(before, expected, images(4, 1, 7, 7))
    np.testing.assert_allclose(after["conv_pad"].op.value, mean, rtol=1e-6)  # the raw value of a normalized 0


def test_per_channel_input_normalization_pads_each_channel_with_its_mean() -> None:
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    before = normalized_conv(mean, std, (1, 0, 2, 1), channels=3)
    after = canon(before)
    assert [type(n.op) for n in after] == [o.Input, o.Pad, o.Conv, o.Relu]
    pad = after.of_type(o.Pad)[0].op
    assert pad.padding == (1, 0, 2, 1)
    np.testing.assert_allclose(pad.value, mean, rtol=1e-6)
    assert after.of_type(o.Conv)[0].op.padding == (0, 0, 0, 0)
    assert_same_function(before, after, images(4, 3, 7, 7))


def test_input_normalization_on_an_unpadded_conv_needs_no_pad() -> None:
    before = normalized_conv(np.array([0.5]), np.array([0.25]), (0, 0, 0, 0))
    after = canon(before)
    assert [type(n.op) for n in after] == [o.Input, o.Conv, o.Relu]
    assert_same_function(before, after, images(4, 1, 7, 7))


def test_input_normalization_commutes_past_flatten_into_a_linear() -> None:
    """The MLP case: (x - m) / s, Flatten, Gemm."""
    b = GraphBuilder()
    x = b.add("x", o.Input((1, 3, 3)))
    n = b.add("norm", o.ScaleShift(np.array([[[1 / 0.3081]]], F32), np.array([[[-0.1307 / 0.3081]]], F32)), x)
    f = b.add("flat", o.Reshape((9,)), n)
    before = b.build([b.add("fc", o.Linear(rand(4, 9, seed=13), rand(4, seed=14)), f)])
    after = canon(before)
    assert [type(n.op) for n in after] == [o.Input, o.Reshape, o.Linear]
    assert_same_function(before, after, images(6, 1, 3, 3))


# --- dropped ops ----------------------------------------------------------------------------------------------


def test_identity_is_dropped() -> None:
    w, bias = rand(3, 4, seed=15), rand(3, seed=16)
    b = GraphBuilder()
    x = b.add("x", o.Input((4,)))
    y = b.add("fc", o.Linear(w, bias), x)
    y = b.add("dropout", o.Identity(), y)
    before = b.build([b.add("relu", o.Relu(), y)])

    e = GraphBuilder()
    x = e.add("x", o.Input((4,)))
    y = e.add("fc", o.Linear(w, bias), x)
    expected = e.build([e.add("relu", o.Relu(), y)])
    check(before, expected, images(4, 4))


def test_final_softmax_is_dropped_and_argmax_unchanged() -> None:
    w, bias = rand(5, 4, seed=17), rand(5, seed=18)
    b = GraphBuilder()
    x = b.add("x", o.Input((4,)))
    y = b.add("fc", o.Linear(w, bias), x)
    before = b.build([b.add("softmax", o.Softmax(0), y)])

    e = GraphBuilder()
    x = e.add("x", o.Input((4,)))
    expected = e.build([e.add("fc", o.Linear(w, bias), x)])
    after = canon(before)
    assert_graphs_equal(after, expected)
    xs = images(50, 4)
    np.testing.assert_array_equal(run64(after, xs)["fc"].argmax(1), run64(before, xs)["softmax"].argmax(1))


def test_inner_softmax_is_kept() -> None:
    b = GraphBuilder()
    x = b.add("x", o.Input((4,)))
    y = b.add("softmax", o.Softmax(0), x)
    before = b.build([b.add("fc", o.Linear(rand(2, 4, seed=19), None), y)])
    assert_graphs_equal(canon(before), before)


# --- MaxPool then Relu becomes Relu then MaxPool ----------------------------------------------------------------


@pytest.mark.parametrize("padding", [(0, 0, 0, 0), (1, 1, 1, 1)])
def test_maxpool_relu_swap(padding: o.Pads) -> None:
    c = conv(3, 1, 3, seed=20)
    pool = o.MaxPool((3, 3), (2, 2), padding)
    b = GraphBuilder()
    x = b.add("x", o.Input((1, 9, 9)))
    y = b.add("conv", c, x)
    y = b.add("pool", pool, y)
    before = b.build([b.add("relu", o.Relu(), y)])

    e = GraphBuilder()
    x = e.add("x", o.Input((1, 9, 9)))
    y = e.add("conv", c, x)
    y = e.add("relu", o.Relu(), y)
    expected = e.build([e.add("pool", pool, y)])
    check(before, expected, images(4, 1, 9, 9), names=False)


def test_maxpool_read_twice_is_not_swapped() -> None:
    b = GraphBuilder()
    x = b.add("x", o.Input((1, 6, 6)))
    y = b.add("conv", conv(2, 1, 3, seed=21), x)
    p = b.add("pool", o.MaxPool((2, 2), (2, 2)), y)
    r = b.add("relu", o.Relu(), p)
    before = b.build([b.add("sum", o.Add(), r, p)])
    assert_graphs_equal(canon(before), before)


def test_canonicalize_is_idempotent_on_a_whole_network() -> None:
    b = GraphBuilder()
    x = b.add("x", o.Input((1, 8, 8)))
    y = b.add("norm", o.ScaleShift(np.array([[[2.0]]], F32), np.array([[[-0.5]]], F32)), x)
    y = b.add("conv", conv(4, 1, 3, seed=22, padding=(1, 1, 1, 1)), y)
    y = b.add("bn", o.ScaleShift(rand(4, 1, 1, seed=23) + 2, rand(4, 1, 1, seed=24)), y)
    y = b.add("pool", o.MaxPool((2, 2), (2, 2)), y)
    y = b.add("relu", o.Relu(), y)
    y = b.add("drop", o.Identity(), y)
    y = b.add("flat", o.Reshape((64,)), y)
    y = b.add("fc", o.Linear(rand(10, 64, seed=25), rand(10, seed=26)), y)
    before = b.build([b.add("prob", o.Softmax(0), y)])
    once = canon(before)
    assert_graphs_equal(canon(once), once)
    assert [type(n.op) for n in once] == [o.Input, o.Pad, o.Conv, o.Relu, o.MaxPool, o.Reshape, o.Linear]
    xs = images(8, 1, 8, 8)
    np.testing.assert_allclose(run64(once, xs)["fc"], run64(before, xs, keep=["fc"])["fc"], rtol=1e-5, atol=1e-5)


def test_a_signals_normalization_on_a_padded_conv_moves_the_padding_to_the_host() -> None:
    """A (C, L) signal's 1-D convolution reads its (C, 1, L) view: the host pads that view with the raw value."""
    b = GraphBuilder()
    x = b.add("x", o.Input((3, 9)))
    y = b.add("norm", o.ScaleShift(np.float32(1 / 0.3), np.float32(-0.1 / 0.3)), x)
    y = b.add("x_2d", o.Reshape((3, 1, 9)), y)
    before = b.build([b.add("conv", o.Conv(rand(4, 3, 1, 3, seed=15), rand(4, seed=16), padding=(0, 1, 0, 2)), y)])
    after = canon(before)
    assert [type(n.op) for n in after] == [o.Input, o.Reshape, o.Pad, o.Conv]
    assert after.of_type(o.Pad)[0].op.padding == (0, 1, 0, 2)
    np.testing.assert_allclose(after.of_type(o.Pad)[0].op.value, 0.1, rtol=1e-6)
    assert_same_function(before, after, rand(3, 3, 9, seed=17))


# --- a zero Pad folds into the convolution or pooling that reads it --------------------------------------------


def padded(reader: o.Op, pads: o.Pads, *, relu: bool = True, in_shape=(2, 7, 6)) -> Graph:
    """x -> Conv -> [Relu] -> Pad(pads) -> reader."""
    b = GraphBuilder()
    y = b.add("c", conv(in_shape[0], in_shape[0], 1, seed=7), b.add("x", o.Input(in_shape)))
    y = b.add("pad", o.Pad(pads), b.add("r", o.Relu(), y) if relu else y)
    return b.build([b.add("reader", reader, y)])


FOLDS = {  # reader, pads -> the reader's padding after the fold (and AvgPool's count_include_pad)
    "conv_asymmetric": (conv(3, 2, 3, seed=8, stride=(2, 2), padding=(1, 0, 0, 1)), (0, 1, 1, 0), (1, 1, 1, 1)),
    "grouped_conv": (o.Conv(rand(4, 1, 3, 3, seed=9), None, (2, 2), groups=2), (0, 0, 1, 1), (0, 0, 1, 1)),
    "avgpool_unpadded": (o.AvgPool((3, 3), (2, 2)), (1, 1, 1, 1), (1, 1, 1, 1)),
    "avgpool_counting_its_pads": (o.AvgPool((3, 3), (2, 2), (1, 0, 0, 1), count_include_pad=True), (0, 1, 1, 0),
                                  (1, 1, 1, 1)),
    "maxpool_after_relu": (o.MaxPool((3, 3), (2, 2)), (0, 0, 1, 1), (0, 0, 1, 1)),
}


@pytest.mark.parametrize(("reader", "pads", "folded"), FOLDS.values(), ids=FOLDS.keys())
def test_zero_pad_folds_into_its_reader(reader: o.Op, pads: o.Pads, folded: o.Pads) -> None:
    before = padded(reader, pads)
    after = canon(before)
    assert not after.of_type(o.Pad) and after["reader"].inputs == ("r",)
    assert after["reader"].op.padding == folded
    if isinstance(reader, o.AvgPool):
        assert after["reader"].op.count_include_pad  # the zeros were data: the divisor counts them
    assert_same_function(before, after, rand(3, 2, 7, 6, seed=10))


STAYS = {  # the fold would change the value: the Pad stays (and becomes wiring in reform)
    "avgpool_not_counting_its_pads": (o.AvgPool((3, 3), (1, 1), (1, 1, 1, 1)), (0, 0, 1, 1), True),
    "maxpool_of_a_signed_value": (o.MaxPool((2, 2), (2, 2)), (1, 1, 1, 1), False),
    "maxpool_window_only_on_pads": (o.MaxPool((2, 2), (2, 2)), (2, 0, 0, 0), True),
    "maxpool_ceil_window_moves": (o.MaxPool((2, 2), (2, 2), ceil_mode=True), (0, 0, 1, 1), True),
    "relu_reader": (o.Relu(), (1, 1, 1, 1), True),
}


@pytest.mark.parametrize(("reader", "pads", "relu"), STAYS.values(), ids=STAYS.keys())
def test_zero_pad_that_would_change_its_reader_stays(reader: o.Op, pads: o.Pads, relu: bool) -> None:
    before = padded(reader, pads, relu=relu)
    after = canon(before)
    assert len(after.of_type(o.Pad)) == 1
    assert_same_function(before, after, rand(3, 2, 7, 6, seed=11))


def test_zero_pad_read_by_two_convolutions_folds_into_both() -> None:
    b = GraphBuilder()
    y = b.add("pad", o.Pad((1, 0, 1, 0)), b.add("x", o.Input((2, 5, 5))))
    before = b.build([b.add("a", conv(3, 2, 3, seed=12), y),
                      b.add("b", conv(3, 2, 1, seed=13, padding=(0, 1, 0, 1)), y)])
    after = canon(before)
    assert not after.of_type(o.Pad)
    assert after["a"].op.padding == (1, 0, 1, 0) and after["b"].op.padding == (1, 1, 1, 1)
    assert_same_function(before, after, rand(3, 2, 5, 5, seed=14))
