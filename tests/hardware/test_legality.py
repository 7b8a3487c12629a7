"""legality.check: a legal graph has no violation; each broken rule gives exactly the one violation naming it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest

from dse.hardware.legality import check
from dse.hardware.spec import IO, Crossbar, HardwareSpec, Weights
from dse.ir import ops as o
from dse.ir.graph import Graph, GraphBuilder

HW = HardwareSpec(name="t", crossbar=Crossbar(8, 256, 4, True), weights=Weights(4, "per_crossbar"), io=IO(4, 6))
IN_SCALE = 0.1


def quant(out: int, fan_in: int, *, out_max: int, scale: float = 0.5, weights: np.ndarray | None = None
          ) -> o.CoreQuant:
    w = np.arange(out * fan_in).reshape(out, fan_in, 1, 1) % 15 - 7 if weights is None else weights
    return o.CoreQuant(w.astype(np.int64), np.full(out, scale), np.zeros(out, np.int64), np.full(fan_in, IN_SCALE),
                       1.0, out_max)


def core(out: int, fan_in: int, *, out_max: int, **kw: object) -> o.CoreOp:
    q = kw.pop("quant", None) or quant(out, fan_in, out_max=out_max)
    return o.CoreOp(np.ones((out, fan_in, 1, 1), np.float32), np.zeros(out, np.float32), dense=True, quant=q,
                    **kw)  # type: ignore[arg-type]


def legal_graph() -> Graph:
    """input (4-bit codes) -> hidden core (8 inputs, 4-bit codes to a core) -> signed pair (6-bit to the host)."""
    b = GraphBuilder()
    x = b.add("x", o.Input((8,), IN_SCALE, 15))
    h = b.add("hidden", core(6, 8, out_max=15), x)
    y = b.add("logits", core(4, 6, out_max=63), h)
    return b.build([b.add("readout", o.Readout(), y)])


def test_the_legal_graph_is_legal() -> None:
    assert check(legal_graph(), HW) == []


def replace_op(g: Graph, name: str, **changes: object) -> Graph:
    return g.replace_nodes(
        n if n.name != name else dataclasses.replace(n, op=dataclasses.replace(n.op, **changes)) for n in g
    )


def replace_quant(g: Graph, name: str, **changes: object) -> Graph:
    return replace_op(g, name, quant=dataclasses.replace(g[name].op.quant, **changes))


def network_op_inside(g: Graph) -> Graph:
    b = GraphBuilder()
    x = b.add("x", o.Input((8,), IN_SCALE, 15))
    h = b.add("hidden", core(6, 8, out_max=15), x)
    return b.build([b.add("relu", o.Relu(), h)])


def pad_inside(g: Graph) -> Graph:
    b = GraphBuilder()
    x = b.add("x", o.Input((1, 4, 4), IN_SCALE, 15))
    c = b.add("conv", o.CoreOp(np.ones((2, 1, 1, 1), np.float32), np.zeros(2, np.float32),
                               quant=quant(2, 1, out_max=15, weights=np.ones((2, 1, 1, 1)))), x)
    p = b.add("pad", o.Pad((1, 1, 1, 1), (0.3,)), c)
    return b.build([b.add("conv2", o.CoreOp(np.ones((1, 2, 1, 1), np.float32), np.zeros(1, np.float32),
                                            quant=quant(1, 2, out_max=63, weights=np.ones((1, 2, 1, 1)))), p)])


def readout_not_output(g: Graph) -> Graph:
    b = GraphBuilder()
    x = b.add("x", o.Input((8,), IN_SCALE, 15))
    y = b.add("logits", core(4, 8, out_max=63), x)
    r = b.add("readout", o.Readout(), y)
    return b.build([y, b.add("flat", o.Reshape((2,)), r)])


def readout_of_wiring(g: Graph) -> Graph:
    b = GraphBuilder()
    x = b.add("x", o.Input((8,), IN_SCALE, 15))
    y = b.add("logits", core(4, 8, out_max=63), x)
    return b.build([b.add("readout", o.Readout(), b.add("slice", o.Slice(0, 4), y))])


def output_is_input(g: Graph) -> Graph:
    return g.replace_nodes(g.nodes, outputs=("x", *g.outputs))


def pruned_synapse_used(g: Graph) -> Graph:
    mask = np.ones((6, 8, 1, 1), bool)
    mask[0, 0] = False  # the weight code there is -7, not 0
    return replace_op(g, "hidden", mask=mask)


def too_wide(g: Graph) -> Graph:
    """A hidden core reading 9 inputs on an 8-row crossbar."""
    b = GraphBuilder()
    x = b.add("x", o.Input((9,), IN_SCALE, 15))
    h = b.add("hidden", core(6, 9, out_max=15), x)
    y = b.add("logits", core(4, 6, out_max=63), h)
    return b.build([b.add("readout", o.Readout(), y)])


CASES: dict[str, tuple[Callable[[Graph], Graph], str]] = {
    "network op": (network_op_inside, "node relu: Relu is not a core-op"),
    "input not encoded": (lambda g: replace_op(g, "x", code_max=None), "input x: encoded with codes up to None"),
    "input codes too wide": (lambda g: replace_op(g, "x", code_max=63), "the chip takes 15"),
    "pad inside the chip": (pad_inside, "node pad: a non-zero pad inside the chip"),
    "readout not an output": (readout_not_output, "node readout: a readout that is not a network output"),
    "readout of wiring": (readout_of_wiring, "node readout: a readout must read a core-op"),
    "fan-in over rows": (too_wide, "core hidden: fan-in 9 exceeds the crossbar's 8 rows"),
    "float core": (lambda g: replace_op(g, "hidden", quant=None), "core hidden: weights are not integer codes"),
    "float codes": (lambda g: replace_quant(g, "hidden", weight_int=g["hidden"].op.quant.weight_int.astype(float)),
                    "core hidden: weights or bias are not integers"),
    "weight too wide": (lambda g: replace_quant(g, "hidden", weight_int=g["hidden"].op.quant.weight_int * 2),
                        "core hidden: weight code 14 needs more than 4 bits"),
    "pruned synapse used": (pruned_synapse_used, "core hidden: a weight on a pruned synapse"),
    "per-column scale": (lambda g: replace_quant(g, "hidden", weight_scale=np.linspace(0.1, 0.6, 6)),
                         "core hidden: one weight scale per column, the chip has one per crossbar"),
    "codes too wide for a core": (lambda g: replace_quant(g, "hidden", out_max=63),
                                  "core hidden: emits codes up to 63 to another core, the chip carries up to 15"),
    "codes too wide for the host": (lambda g: replace_quant(g, "logits", out_max=255),
                                    "core logits: emits codes up to 255 to the host, the chip carries up to 63"),
    "output is the input": (output_is_input, "output x: the network input is not computed by the chip"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_violation_is_caught_and_named(case: str) -> None:
    make, expected = CASES[case]
    violations = check(make(legal_graph()), HW)
    assert len(violations) == 1, violations
    assert expected in violations[0]


def test_per_column_scales_are_legal_on_a_per_column_chip() -> None:
    g = CASES["per-column scale"][0](legal_graph())
    assert check(g, dataclasses.replace(HW, weights=Weights(4, "per_column"))) == []


def test_the_ideal_chip_checks_only_structure() -> None:
    ideal = HardwareSpec(name="ideal", crossbar=Crossbar(None, None), weights=Weights(None), io=IO(None, None))
    assert check(replace_op(legal_graph(), "hidden", quant=None), ideal) == []
    assert check(network_op_inside(legal_graph()), ideal) == ["node relu: Relu is not a core-op, wiring, or host op"]


def test_every_violation_is_listed_not_only_the_first() -> None:
    g = replace_quant(replace_op(legal_graph(), "x", code_max=63), "logits", out_max=255)
    assert len(check(g, HW)) == 2
