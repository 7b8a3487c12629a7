"""canonicalize's rules one at a time: each rule, applied once at one node of a `before` graph, gives the
`expected` graph and changes no output; where its condition does not hold it leaves the graph alone. Every
rule of `RULES` has a case."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from compiler_helpers import F32, assert_graphs_equal, assert_same_function, images, out64, rand

from dse.ir import ops as o
from dse.ir.graph import Graph, GraphBuilder
from dse.passes import canonicalize as c


@dataclass(frozen=True)
class Case:
    rule: c.Rule
    at: str  # the node the rule is applied at
    before: Callable[[], Graph]
    expected: Callable[[], Graph] | None  # None: the rule does not fire
    shape: tuple[int, ...]  # per-sample input shape
    argmax_only: bool = False  # the rewrite keeps the top-1 class, not the values (a final Softmax)


def chain(shape: tuple[int, ...], *layers: tuple[str, o.Op]) -> Graph:
    """x -> layer -> layer ..., the last one the output."""
    b = GraphBuilder()
    y = b.add("x", o.Input(shape))
    for name, op in layers:
        y = b.add(name, op, y)
    return b.build([y])


CONV = o.Conv(rand(3, 2, 3, 3, seed=1), rand(3, seed=2))
PADDED = o.Conv(rand(3, 2, 3, 3, seed=1), rand(3, seed=2), padding=(1, 1, 1, 1))
FC = o.Linear(rand(4, 18, seed=3), rand(4, seed=4))
SCALE, SHIFT = rand(3, 1, 1, seed=5) ** 2 + 0.5, rand(3, 1, 1, seed=6)
NORM = o.ScaleShift(np.full((2, 1, 1), 2.0, F32), np.full((2, 1, 1), -0.5, F32))
POOL = o.MaxPool((2, 2), (2, 2))
UNIT = o.ScaleShift(np.ones((3, 1, 1), F32), np.zeros((3, 1, 1), F32))


def folded_bn() -> o.Conv:
    s = SCALE.reshape(3).astype(np.float64)
    return o.Conv((CONV.weight * s[:, None, None, None]).astype(F32), (CONV.bias * s + SHIFT.reshape(3)).astype(F32))


def folded_norm(conv: o.Conv, padding: o.Pads = (0, 0, 0, 0)) -> o.Conv:
    w = conv.weight.astype(np.float64)
    return o.Conv((w * 2.0).astype(F32), (conv.bias + (w * -0.5).sum(axis=(1, 2, 3))).astype(F32), padding=padding)


def host_padded_norm() -> Graph:
    b = GraphBuilder()
    x = b.add("x", o.Input((2, 5, 5)))
    p = b.add("conv_pad", o.Pad((1, 1, 1, 1), (0.25, 0.25)), x)
    return b.build([b.add("conv", folded_norm(PADDED), p)])


def scale_shift_after_reshape() -> Graph:
    scale, shift = rand(2, 3, 3, seed=7), rand(2, 3, 3, seed=8)
    return chain((2, 3, 3), ("norm", o.ScaleShift(scale, shift)), ("flat", o.Reshape((18,))), ("fc", FC))


def branches(pooled: bool, wiring: Callable[[GraphBuilder, str, str, str], str]) -> Graph:
    """Two ReLU branches of one input, routed together by `wiring` (a Concat, a shuffle) and max-pooled; with
    `pooled`, each branch pooled and then routed (the rule keeps the MaxPool's name for the routing's last op,
    and names each new MaxPool after its input)."""
    b = GraphBuilder()
    x = b.add("x", o.Input((2, 6, 6)))
    a = b.add("a", o.Relu(), b.add("ca", o.Conv(rand(2, 2, 1, 1, seed=11), rand(2, seed=12)), x))
    c = b.add("c", o.Relu(), b.add("cc", o.Conv(rand(3, 2, 1, 1, seed=13), rand(3, seed=14)), x))
    if pooled:
        return b.build([wiring(b, b.add("a_pool", POOL, a), b.add("c_pool", POOL, c), "pool")])
    return b.build([b.add("pool", POOL, wiring(b, a, c, "cat"))])


def concat(b: GraphBuilder, a: str, c: str, last: str) -> str:
    return b.add(last, o.Concat(0), a, c)


def shuffle(b: GraphBuilder, a: str, c: str, last: str) -> str:
    """The channels of Concat(a, c) as three Slices concatenated again in another order."""
    cat = b.add("cat", o.Concat(0), a, c)
    parts = [b.add(f"s{k}", o.Slice(lo, hi), cat) for k, (lo, hi) in enumerate([(3, 5), (0, 1), (1, 3)])]
    return b.add(last, o.Concat(0), *parts)


ROWS_DOT = o.Conv(rand(8, 1, 1, 3, seed=9), None, groups=4)  # x @ W on 4 rows of 3: 8 outputs, each a channel
ROW_BIAS = rand(2, seed=10)  # the bias of nn.Linear on the last axis: varies within a channel of (2, 2, 2)


def linear_on_last_axis() -> Graph:
    return chain((4, 1, 3), ("dot", ROWS_DOT), ("rows", o.Reshape((2, 2, 2))),
                 ("bias", o.ScaleShift(np.ones(2, F32), ROW_BIAS)), ("relu", o.Relu()))


D2S = o.DepthToSpace((2, 2), (11, 12))  # 12 channels = 4 phase blocks of 3, onto a 2x finer grid, cropped
S2D = o.SpaceToDepth((2, 2))  # (3, 4, 4) -> 4 phase blocks of 3 channels, (12, 2, 2)
PHASES = o.Conv(rand(12, 2, 2, 2, seed=9), rand(12, seed=10), padding=(1, 1, 1, 1))  # (12, 6, 6) from (2, 5, 5)
PERM = o.Gather(np.array([3, 0, 4, 1, 5, 2]))  # a Transpose of (2, 3) features: (3, 2)


def gathered_linear(fc: o.Linear) -> Graph:
    return chain((2, 3), ("flat", o.Reshape((6,))), ("perm", PERM), ("fc", fc))


CASES = [
    Case(c.pointwise_above_routing, "d2s",  # a ConvTranspose's BatchNorm, per channel: repeated per phase block
         lambda: chain((2, 5, 5), ("conv", PHASES), ("d2s", D2S), ("bn", o.ScaleShift(SCALE, SHIFT))),
         lambda: chain((2, 5, 5), ("conv", PHASES), ("d2s", o.ScaleShift(*(np.tile(v.reshape(3), 4).reshape(12, 1, 1)
                                                                            for v in (SCALE, SHIFT)))),
                       ("bn", D2S)), (2, 5, 5)),
    Case(c.pointwise_above_routing, "d2s",
         lambda: chain((2, 5, 5), ("conv", PHASES), ("d2s", D2S), ("relu", o.Relu())),
         lambda: chain((2, 5, 5), ("conv", PHASES), ("d2s", o.Relu()), ("relu", D2S)), (2, 5, 5)),
    Case(c.pointwise_above_routing, "d2s",  # a scale that varies within a channel stays
         lambda: chain((2, 5, 5), ("conv", PHASES), ("d2s", D2S),
                       ("s", o.ScaleShift(rand(3, 11, 12, seed=11), np.zeros((3, 1, 1), F32)))), None, (2, 5, 5)),
    Case(c.pointwise_above_routing, "s2d",  # a PixelUnshuffle's BatchNorm, the same in every phase block
         lambda: chain((3, 4, 4), ("s2d", S2D), ("bn", o.ScaleShift(*(np.tile(v.reshape(3), 4).reshape(12, 1, 1)
                                                                      for v in (SCALE, SHIFT))))),
         lambda: chain((3, 4, 4), ("s2d", o.ScaleShift(SCALE, SHIFT)), ("bn", S2D)), (3, 4, 4)),
    Case(c.pointwise_above_routing, "s2d",  # a scale that differs between phase blocks stays
         lambda: chain((3, 4, 4), ("s2d", S2D), ("s", o.ScaleShift(np.arange(1, 13, dtype=F32).reshape(12, 1, 1),
                                                                    np.zeros((12, 1, 1), F32)))), None, (3, 4, 4)),
    Case(c.pointwise_above_routing, "copies",  # an upsampling's copies of each channel: the scale routed back
         lambda: chain((3, 4, 4), ("copies", o.Gather(np.tile(np.arange(3), 4))), ("bn", o.ScaleShift(
             np.tile(SCALE.reshape(3), 4).reshape(12, 1, 1), np.tile(SHIFT.reshape(3), 4).reshape(12, 1, 1)))),
         lambda: chain((3, 4, 4), ("copies", o.ScaleShift(SCALE, SHIFT)),
                       ("bn", o.Gather(np.tile(np.arange(3), 4)))), (3, 4, 4)),
    Case(c.pointwise_above_routing, "copies",  # copies of one channel scaled differently: no scale routes back
         lambda: chain((3, 4, 4), ("copies", o.Gather(np.array([0, 0, 1, 2]))),
                       ("bn", o.ScaleShift(np.arange(1, 5, dtype=F32).reshape(4, 1, 1), np.zeros((4, 1, 1), F32)))),
         None, (3, 4, 4)),
    Case(c.fold_gather_into_linears, "perm", lambda: gathered_linear(o.Linear(rand(4, 6, seed=12), rand(4, seed=13))),
         lambda: chain((2, 3), ("flat", o.Reshape((6,))),
                       ("fc", o.Linear(rand(4, 6, seed=12)[:, np.argsort(PERM.index)], rand(4, seed=13)))), (2, 3)),
    Case(c.fold_gather_into_linears, "copies",  # read by a ReLU: stays
         lambda: chain((3, 4, 4), ("copies", o.Gather(np.tile(np.arange(3), 4))), ("relu", o.Relu())), None,
         (3, 4, 4)),
    Case(c.drop_identity, "id", lambda: chain((2, 5, 5), ("id", o.Identity()), ("conv", CONV)),
         lambda: chain((2, 5, 5), ("conv", CONV)), (2, 5, 5)),
    Case(c.drop_output_softmax, "sm", lambda: chain((18,), ("fc", FC), ("sm", o.Softmax(0))),
         lambda: chain((18,), ("fc", FC)), (18,), argmax_only=True),
    Case(c.drop_output_softmax, "sm", lambda: chain((18,), ("sm", o.Softmax(0)), ("fc", FC)), None, (18,)),
    Case(c.relu_before_max_pool, "pool", lambda: chain((2, 6, 6), ("pool", POOL), ("relu", o.Relu())),
         lambda: chain((2, 6, 6), ("pool", o.Relu()), ("relu", POOL)), (2, 6, 6)),
    Case(c.relu_before_max_pool, "pool", lambda: chain((2, 6, 6), ("pool", POOL), ("conv", CONV)), None, (2, 6, 6)),
    Case(c.max_pool_below_wiring, "pool", lambda: branches(False, concat), lambda: branches(True, concat), (2, 6, 6)),
    Case(c.max_pool_below_wiring, "pool", lambda: chain((2, 6, 6), ("relu", o.Relu()), ("s", o.Slice(0, 1)),
                                                        ("pool", POOL)), None, (2, 6, 6)),  # one source: stays
    Case(c.fold_zero_pad, "pad", lambda: chain((2, 5, 5), ("pad", o.Pad((1, 1, 1, 1), (0.0, 0.0))), ("conv", CONV)),
         lambda: chain((2, 5, 5), ("conv", PADDED)), (2, 5, 5)),
    Case(c.fold_zero_pad, "pad",  # a max-pool pads with -inf: zeros are the same only on values >= 0
         lambda: chain((2, 6, 6), ("pad", o.Pad((1, 1, 1, 1), (0.0, 0.0))), ("pool", POOL)), None, (2, 6, 6)),
    Case(c.drop_unit_scale_shift, "one",
         lambda: chain((3, 4, 4), ("relu", o.Relu()), ("one", UNIT), ("pool", POOL)),
         lambda: chain((3, 4, 4), ("relu", o.Relu()), ("pool", POOL)), (3, 4, 4)),
    Case(c.drop_unit_scale_shift, "one",  # a shift, however small, is kept
         lambda: chain((3, 4, 4), ("one", o.ScaleShift(np.ones((3, 1, 1), F32), np.full((3, 1, 1), 1e-7, F32))),
                       ("pool", POOL)), None, (3, 4, 4)),
    Case(c.drop_unit_scale_shift, "one",  # it broadcasts a (1,) value to (4,): not the identity
         lambda: chain((1,), ("one", o.ScaleShift(np.ones(4, F32), np.zeros(4, F32))),
                       ("fc", o.Linear(rand(2, 4), None))), None, (1,)),
    Case(c.merge_scale_shifts, "a1",
         lambda: chain((3, 4, 4), ("a1", o.ScaleShift(SCALE, SHIFT)), ("a2", o.ScaleShift(SCALE, SHIFT))),
         lambda: chain((3, 4, 4), ("a2", o.ScaleShift((SCALE.astype(np.float64) ** 2).astype(F32),
                                                  (SHIFT * SCALE.astype(np.float64) + SHIFT).astype(F32)))),
         (3, 4, 4)),
    Case(c.scale_shift_past_reshape, "norm", scale_shift_after_reshape,
         lambda: chain((2, 3, 3), ("flat", o.Reshape((18,))),
                       ("norm", o.ScaleShift(rand(2, 3, 3, seed=7).reshape(18), rand(2, 3, 3, seed=8).reshape(18))),
                       ("fc", FC)), (2, 3, 3)),
    Case(c.fold_scale_shift_into_producer, "bn",
         lambda: chain((2, 5, 5), ("conv", CONV), ("bn", o.ScaleShift(SCALE, SHIFT))),
         lambda: chain((2, 5, 5), ("conv", folded_bn())), (2, 5, 5)),
    Case(c.fold_scale_shift_into_producer, "bias", linear_on_last_axis,  # through the Reshape: per channel there
         lambda: chain((4, 1, 3), ("dot", o.Conv(ROWS_DOT.weight, np.tile(ROW_BIAS, 4), groups=4)),
                       ("rows", o.Reshape((2, 2, 2))), ("relu", o.Relu())), (4, 1, 3)),
    Case(c.fold_scale_shift_into_producer, "bn",  # the ScaleShift follows no Conv/Linear
         lambda: chain((3, 5, 5), ("relu", o.Relu()), ("bn", o.ScaleShift(SCALE, SHIFT))), None, (3, 5, 5)),
    Case(c.fold_scale_shift_into_consumers, "norm", lambda: chain((2, 5, 5), ("norm", NORM), ("conv", CONV)),
         lambda: chain((2, 5, 5), ("conv", folded_norm(CONV))), (2, 5, 5)),
    Case(c.fold_scale_shift_into_consumers, "norm", lambda: chain((2, 5, 5), ("norm", NORM), ("conv", PADDED)),
         host_padded_norm, (2, 5, 5)),
    Case(c.fold_scale_shift_into_consumers, "norm",  # inside the network a padded conv's zeros cannot move to the host
         lambda: chain((2, 5, 5), ("relu", o.Relu()), ("norm", NORM), ("conv", PADDED)), None, (2, 5, 5)),
]


@pytest.mark.parametrize("case", CASES, ids=lambda k: f"{k.rule.__name__}-{'fires' if k.expected else 'stays'}")
def test_a_rule_at_one_node(case: Case) -> None:
    before = case.before()
    b = GraphBuilder.from_graph(before)
    fired = case.rule(b, b[case.at])
    assert fired is (case.expected is not None)
    b.prune_dead()
    after = b.build()
    assert_graphs_equal(after, case.expected() if case.expected else before)
    x = images(16, *case.shape)
    if case.argmax_only:
        np.testing.assert_array_equal(out64(after, x).argmax(1), out64(before, x).argmax(1))
    else:
        assert_same_function(before, after, x)


def test_every_rule_has_a_case_that_fires_and_the_table_holds_only_rules() -> None:
    fired = {case.rule for case in CASES if case.expected is not None}
    for op_type, rules in c.RULES.items():
        assert issubclass(op_type, o.Op)
        for rule in rules:
            assert rule in fired, f"{rule.__name__} has no before/expected case"
    assert fired == {rule for rules in c.RULES.values() for rule in rules}


def test_a_max_pool_of_a_shuffle_pools_each_source_once() -> None:
    """The rule, applied until it stops, leaves one MaxPool per source however many slices route them."""
    before = branches(False, shuffle)
    after = c.canonicalize(before)
    pools = after.of_type(o.MaxPool)
    assert sorted(after[p.inputs[0]].name for p in pools) == ["a", "c"]
    assert_same_function(before, after, images(16, 2, 6, 6))


def test_graph_builder_edits_keep_readers_and_outputs() -> None:
    g = chain((2, 5, 5), ("a", o.Relu()), ("b", o.Identity()), ("c", o.Relu()))
    b = GraphBuilder.from_graph(g)
    b.bypass("b")
    assert [n.name for n in b.readers("a")] == ["c"] and b.outputs == ["c"]
    pad = b.insert_before("c", "a", o.Pad((1, 1, 1, 1), (0.0, 0.0)), "a")
    assert pad == "a_1" and b.names() == ["x", "a", "a_1", "c"] and b.shape(pad) == (2, 7, 7)
    b.replace("c", o.Relu(), (pad,))
    assert b.shape("c") == (2, 7, 7) and [n.name for n in b.readers("a")] == ["a_1"]
    b.bypass("c")
    assert b.outputs == ["a_1"]
    b.move_after("a_1", "a")
    assert b.build().outputs == ("a_1",)
