"""fit_crossbar: `split` (split-and-merge, exact in float) and `prune` (fan-in within rows, fewer crossbars)."""

from __future__ import annotations

import numpy as np
import pytest
from compiler_helpers import (
    F32,
    assert_graphs_equal,
    assert_same_function,
    core_ops,
    float_chip,
    images,
    max_fan_in,
    rand,
    run_pass,
)

from dse.cost.resources import layer_resources
from dse.errors import ConstraintError
from dse.hardware.spec import IO, Crossbar, HardwareSpec, Weights
from dse.ir import ops as o
from dse.ir.graph import Graph, GraphBuilder
from dse.passes.fit_crossbar import channel_chunks


def fit(g: Graph, rows: int, strategy: str = "split") -> Graph:
    return run_pass("fit_crossbar", g, float_chip(rows=rows), strategy=strategy)


def dense_net(fan_in: int, out: int, seed: int = 0, signed_output: bool = False) -> Graph:
    """x -> one dense core-op (a ReLU layer, or a signed pair read by the host)."""
    w, b = rand(out, fan_in, seed=seed), rand(out, seed=seed + 1)
    if signed_output:
        w, b = np.concatenate([w, -w]), np.concatenate([b, -b])
    g = GraphBuilder()
    x = g.add("x", o.Input((fan_in,)))
    y = g.add("fc", o.CoreOp(w.reshape(*w.shape, 1, 1), b, dense=True), x)
    if signed_output:
        y = g.add("fc_readout", o.Readout(), y)
    return g.build([y])


def conv_net(in_c: int, out_c: int, k: int, hw: int = 7, seed: int = 0, **kw) -> Graph:
    g = GraphBuilder()
    x = g.add("x", o.Input((in_c, hw, hw)))
    groups = int(kw.get("groups", 1))
    y = g.add("conv", o.CoreOp(rand(out_c, in_c // groups, k, k, seed=seed), rand(out_c, seed=seed + 1), **kw), x)
    return g.build([y])


def core_depth(g: Graph) -> int:
    depth: dict[str, int] = {}
    for n in g:
        depth[n.name] = max((depth[s] for s in n.inputs), default=0) + isinstance(n.op, o.CoreOp)
    return max(depth[x] for x in g.outputs)


# --- split ---------------------------------------------------------------------------------------------------


def test_split_expected_graph() -> None:
    """6 inputs on 4 rows: two partial cores emit (relu(s_g), relu(-s_g)); a Gather routes each output's four
    sums next to each other; the merge, one group of 4 rows per neuron, adds them, + bias, ReLU."""
    before = dense_net(6, 2, seed=1)
    w = before["fc"].op.weight[:, :, 0, 0]
    bias = before["fc"].op.bias

    def part(cols: slice) -> o.CoreOp:
        wg = w[:, cols]
        return o.CoreOp(np.concatenate([wg, -wg])[:, :, None, None], np.zeros(4, F32), dense=True)

    merge = np.tile(np.array([1.0, -1.0, 1.0, -1.0], F32), (2, 1))  # pos, neg of partial 1, then of partial 2
    e = GraphBuilder()
    x = e.add("x", o.Input((6,)))
    p1 = e.add("fc_part", part(slice(0, 4)), e.add("fc_in", o.Slice(0, 4), x, block="fc"), block="fc")
    p2 = e.add("fc_part", part(slice(4, 6)), e.add("fc_in", o.Slice(4, 6), x, block="fc"), block="fc")
    cat = e.add("fc_partials", o.Concat(0), p1, p2, block="fc")
    route = e.add("fc_route", o.Gather(np.array([0, 2, 4, 6, 1, 3, 5, 7])), cat, block="fc")
    expected = e.build([e.add("fc", o.CoreOp(merge[:, :, None, None], bias, groups=2, dense=True), route, block="fc")])
    after = fit(before, rows=4)
    assert_graphs_equal(after, expected)
    assert {n.block for n in after if n.name != "x"} == {"fc"}  # tuned as one block
    assert_same_function(before, after, images(16, 6))


@pytest.mark.parametrize("rows", [4, 8, 16, 50, 99])
def test_split_dense_is_exact_and_fits(rows: int) -> None:
    before = dense_net(100, 6, seed=2)
    after = fit(before, rows)
    assert max_fan_in(after) <= rows
    assert_same_function(before, after, images(32, 100))
    assert "fc" in after and after.outputs == ("fc",)  # the merge keeps the original core's name


def test_split_builds_a_merge_tree_when_the_merge_is_too_wide() -> None:
    """100 inputs on 8 rows: 13 groups, whose merge reads 2 x 13 = 26 > 8 partial sums: merged again."""
    before = dense_net(100, 3, seed=3)
    after = fit(before, rows=8)
    assert max_fan_in(after) <= 8
    assert core_depth(after) >= 3  # partial sums, at least one inner merge, the final merge
    assert_same_function(before, after, images(32, 100))
    once = fit(before, rows=26)  # 4 groups of 26, merge of 8: one level
    assert core_depth(once) == 2


def test_split_of_a_wide_conv_keeps_geometry_in_the_partials() -> None:
    """3x3 over 8 channels is fan-in 72; on 20 rows each partial takes 2 channels (18 rows)."""
    before = conv_net(8, 5, 3, stride=(2, 2), padding=(1, 0, 1, 2))
    after = fit(before, rows=20)
    parts = [op for op in core_ops(after) if op.kernel == (3, 3)]
    assert len(parts) == 4
    assert all(op.stride == (2, 2) and op.padding == (1, 0, 1, 2) for op in parts)
    merge = after["conv"].op
    assert merge.kernel == (1, 1) and int(merge.fan_in().max()) == 8
    assert max_fan_in(after) <= 20
    assert_same_function(before, after, images(4, 8, 7, 7))


def test_split_of_a_signed_pair_shares_its_partial_sums() -> None:
    """Outputs [s; -s] need the partial sums of s only once."""
    before = dense_net(40, 5, seed=4, signed_output=True)
    after = fit(before, rows=16)
    parts = [n.op for n in after if isinstance(n.op, o.CoreOp) and n.name != "fc"]
    assert len(parts) == 3 and all(op.out_channels == 2 * 5 for op in parts)  # (s_g, -s_g) of 5, not of 10
    assert after["fc"].op.out_channels == 10
    assert max_fan_in(after) <= 16
    assert_same_function(before, after, images(16, 40))


def test_a_core_that_fits_is_left_alone() -> None:
    before = conv_net(4, 6, 3)
    assert_graphs_equal(fit(before, rows=36), before)
    assert_graphs_equal(fit(before, rows=36, strategy="prune"), before)


def test_split_depthwise_core_reads_one_channel_per_neuron() -> None:
    """A depthwise core's fan-in is its window, whatever the channel count."""
    before = conv_net(30, 30, 3, groups=30)
    assert_graphs_equal(fit(before, rows=9), before)


@pytest.mark.parametrize("strategy", ["split", "prune"])
def test_a_kernel_larger_than_the_crossbar_cannot_be_met(strategy: str) -> None:
    before = conv_net(2, 4, 5)  # one channel of a 5x5 kernel needs 25 rows
    with pytest.raises(ConstraintError, match="25 rows"):
        fit(before, rows=8, strategy=strategy)


def test_channel_chunks_cover_every_channel_once_within_rows() -> None:
    mask = np.random.default_rng(0).random((6, 20, 3, 3)) < 0.6
    chunks = channel_chunks(mask.shape, mask, rows=20)
    assert chunks[0][0] == 0 and chunks[-1][1] == 20
    assert all(a < b for a, b in chunks) and all(chunks[i][1] == chunks[i + 1][0] for i in range(len(chunks) - 1))
    per_channel = mask.sum(axis=(2, 3))
    assert all(per_channel[:, a:b].sum(axis=1).max() <= 20 for a, b in chunks)


# --- prune ---------------------------------------------------------------------------------------------------


def chip(rows: int, cols: int) -> HardwareSpec:
    return HardwareSpec(name="t", crossbar=Crossbar(rows=rows, cols=cols, cell_bits=4, differential=True),
                        weights=Weights(bits=8), io=IO(8, 8))


def crossbars(g: Graph, hw: HardwareSpec) -> int:
    return sum(layer.crossbars for layer in layer_resources(g, hw))


@pytest.mark.parametrize("rows", [16, 64])
def test_prune_fits_the_rows_with_fewer_crossbars_than_split(rows: int) -> None:
    before = dense_net(200, 40, seed=5)
    pruned = fit(before, rows, "prune")
    split = fit(before, rows, "split")
    assert max_fan_in(pruned) <= rows
    assert len(pruned) == len(before)  # no extra core, no extra layer
    hw = chip(rows, 64)
    assert crossbars(pruned, hw) < crossbars(split, hw)


def test_prune_keeps_the_most_important_inputs_of_each_crossbar() -> None:
    """Neurons sharing a crossbar (16 logical columns: 64 columns / 4 per 8-bit differential weight on 4-bit
    cells) keep the same input rows, the ones with the largest summed |weight|; the rest of the weights are 0."""
    before = dense_net(50, 20, seed=6)
    w = before["fc"].op.weight[:, :, 0, 0]
    hw = chip(10, 64)
    assert hw.logical_cols == 16
    after = run_pass("fit_crossbar", before, hw, strategy="prune")
    op = after["fc"].op
    assert op.mask is not None and int(op.fan_in().max()) == 10
    m = op.mask[:, :, 0, 0]
    np.testing.assert_array_equal(op.weight[:, :, 0, 0][~m], 0)
    np.testing.assert_allclose(op.weight[:, :, 0, 0][m], w[m])
    for block in (slice(0, 16), slice(16, 20)):
        assert (m[block] == m[block.start]).all()  # one row set per crossbar
        best = np.argsort(-np.abs(w[block]).sum(axis=0), kind="stable")[:10]
        assert set(np.flatnonzero(m[block.start])) == set(best)
    assert crossbars(after, hw) == 2  # 20 neurons at 16 per crossbar, 10 rows each


def test_prune_of_a_conv_masks_whole_channels() -> None:
    before = conv_net(8, 4, 3)  # fan-in 72
    op = fit(before, rows=30, strategy="prune")["conv"].op
    assert int(op.fan_in().max()) <= 30
    per_channel = op.mask.reshape(4, 8, 9)
    assert np.all(per_channel.all(axis=2) | ~per_channel.any(axis=2))  # a channel is kept whole or dropped
    assert int(per_channel.any(axis=2).sum(axis=1).max()) == 3  # 3 channels x 9 taps = 27 <= 30


@pytest.mark.parametrize("rows", [2, 3])
def test_split_on_fewer_than_four_rows_cannot_merge_and_says_so(rows: int) -> None:
    """A merge reads a pair per group: on 2 or 3 rows a merge tree never shrinks (it used to recurse forever)."""
    before = dense_net(10, 2, seed=7)
    with pytest.raises(ConstraintError, match=rf"at least 4 rows.*has {rows}"):
        fit(before, rows=rows)
    pruned = fit(before, rows=rows, strategy="prune")  # pruning has no merge: it still fits
    assert max_fan_in(pruned) <= rows


def test_prune_of_a_grouped_conv_stays_grouped() -> None:
    """2 groups of 8 input channels, 3x3 (fan-in 72) on 30 rows: each group's neurons keep 3 of their own
    group's channels (27 rows); the op keeps its groups (no dense form of mostly zeros)."""
    before = conv_net(16, 4, 3, groups=2)
    op = fit(before, rows=30, strategy="prune")["conv"].op
    assert op.groups == 2 and op.weight.shape == (4, 8, 3, 3)
    assert int(op.fan_in().max()) == 27
    w = before["conv"].op.weight
    for g in range(2):  # the group's most important channels, by summed |weight| of its neurons
        block = slice(2 * g, 2 * g + 2)
        best = np.argsort(-np.abs(w[block]).sum(axis=(0, 2, 3)), kind="stable")[:3]
        assert set(np.flatnonzero(op.mask[2 * g].any(axis=(1, 2)))) == set(best)
