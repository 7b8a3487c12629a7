"""Behaviour lives in tables keyed by op type: every table covers every op, and the tables agree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from compiler_helpers import assert_graphs_equal

from dse.ir import ops as o
from dse.ir import serialize
from dse.ir.graph import Graph, GraphBuilder
from dse.ir.shapes import SHAPE_RULES
from dse.sim.float_exec import FLOAT_EXEC
from dse.sim.integer import NotIntegerGraph, run_integer

rng = np.random.default_rng(0)
W = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
QUANT = o.CoreQuant(np.rint(W * 10).astype(np.int64), np.full(4, 0.1), np.arange(4, dtype=np.int64), np.full(3, 0.5),
                    0.25, 255)
IMG = (3, 6, 6)

# one instance of every op type, with the per-sample shapes of its inputs
SAMPLES: dict[type[o.Op], tuple[o.Op, list[tuple[int, ...]]]] = {
    o.Input: (o.Input(IMG, 0.1, 15), [IMG]),
    o.Readout: (o.Readout(), [(6, 2, 2)]),
    o.CoreOp: (o.CoreOp(W, np.ones(4, np.float32), (2, 1), (1, 0, 1, 2), 1, False, W > 0, QUANT, False), [IMG]),
    o.Reshape: (o.Reshape((108,)), [IMG]),
    o.Slice: (o.Slice(1, 3), [IMG]),
    o.Gather: (o.Gather(np.array([2, 0, 0, 1])), [IMG]),
    o.Concat: (o.Concat(0), [IMG, (2, 6, 6)]),
    o.Pad: (o.Pad((1, 0, 2, 1), (0.5, 0.0, 0.25)), [IMG]),
    o.Conv: (o.Conv(W[:3, :1], None, (2, 2), (1, 1, 1, 1), (2, 1), 3), [IMG]),
    o.Linear: (o.Linear(rng.standard_normal((5, 108)).astype(np.float32), np.ones(5, np.float32)), [(108,)]),
    o.Affine: (o.Affine(np.full((3, 1, 1), 2.0, np.float32), np.zeros((3, 1, 1), np.float32)), [IMG]),
    o.Add: (o.Add(), [IMG, IMG]),
    o.Relu: (o.Relu(), [IMG]),
    o.PRelu: (o.PRelu(np.array([0.1, -0.5, 2.0], np.float32).reshape(3, 1, 1)), [IMG]),
    o.Clip: (o.Clip(0.0, 0.5), [IMG]),
    o.Sigmoid: (o.Sigmoid(), [IMG]),
    o.Tanh: (o.Tanh(), [IMG]),
    o.HardSwish: (o.HardSwish(), [IMG]),
    o.Silu: (o.Silu(), [IMG]),
    o.Softmax: (o.Softmax(0), [(7,)]),
    o.MaxPool: (o.MaxPool((3, 2), (2, 2), (1, 1, 1, 1), ceil_mode=True), [IMG]),
    o.AvgPool: (o.AvgPool((3, 3), (2, 2), (1, 1, 1, 1), count_include_pad=False), [IMG]),
    o.GlobalAvgPool: (o.GlobalAvgPool(), [IMG]),
    o.Identity: (o.Identity(), [IMG]),
}


def every_op_class() -> set[type[o.Op]]:
    return {v for v in vars(o).values() if isinstance(v, type) and issubclass(v, o.Op) and v is not o.Op}


def test_all_ops_lists_every_op_class_once() -> None:
    assert len(o.ALL_OPS) == len(set(o.ALL_OPS))
    assert set(o.ALL_OPS) == every_op_class()
    assert set(o.CHIP_OPS).isdisjoint(o.NETWORK_OPS)


@pytest.mark.parametrize("table", ["SHAPE_RULES", "FLOAT_EXEC", "serialize", "SAMPLES"])
def test_every_table_covers_every_op(table: str) -> None:
    keys = {"SHAPE_RULES": set(SHAPE_RULES), "FLOAT_EXEC": set(FLOAT_EXEC),
            "serialize": set(serialize._OPS.values()), "SAMPLES": set(SAMPLES)}[table]
    missing = {cls.__name__ for cls in set(o.ALL_OPS) - keys}
    assert not missing, f"{table} lacks {sorted(missing)}"


@pytest.mark.parametrize("op_type", o.ALL_OPS, ids=lambda t: t.__name__)
def test_shape_rule_matches_the_float_executor(op_type: type[o.Op]) -> None:
    op, in_shapes = SAMPLES[op_type]
    xs = [torch.rand((2, *s)) for s in in_shapes]
    y = FLOAT_EXEC[op_type](op, xs)
    assert tuple(y.shape[1:]) == tuple(SHAPE_RULES[op_type](op, in_shapes))
    assert y.shape[0] == 2 and torch.isfinite(y).all()


def graph_of(op: o.Op, in_shapes: list[tuple[int, ...]]) -> Graph:
    b = GraphBuilder()
    if isinstance(op, o.Input):
        return b.build([b.add("x", op)])
    srcs = [b.add("x", o.Input(in_shapes[0]))]
    srcs += [b.add(f"x{i}", o.Slice(0, s[0]), srcs[0]) for i, s in enumerate(in_shapes[1:], 1)]
    return b.build([b.add("op", op, *srcs)])


@pytest.mark.parametrize("op_type", o.ALL_OPS, ids=lambda t: t.__name__)
def test_serialize_round_trips_every_op(op_type: type[o.Op], tmp_path: Path) -> None:
    graph = graph_of(*SAMPLES[op_type])
    path = tmp_path / "g.npz"
    serialize.save_graph(graph, path, meta={"op": op_type.__name__})
    loaded, meta = serialize.load_graph(path)
    assert meta == {"op": op_type.__name__}
    assert_graphs_equal(loaded, graph, rtol=0)
    if isinstance(graph["op" if "op" in graph else "x"].op, o.CoreOp):
        q = loaded["op"].op.quant
        assert q.weight_int.dtype == np.int64 and q.out_max == 255


@pytest.mark.parametrize("op_type", o.NETWORK_OPS, ids=lambda t: t.__name__)
def test_the_integer_simulator_refuses_network_ops(op_type: type[o.Op]) -> None:
    op, in_shapes = SAMPLES[op_type]
    b = GraphBuilder()
    x = b.add("x", o.Input(in_shapes[0], 0.1, 15))
    graph = b.build([b.add("op", op, *([x] * len(in_shapes)))])
    with pytest.raises(NotIntegerGraph, match="not a chip op"):
        run_integer(graph, np.zeros((1, *in_shapes[0])))


def test_loading_a_file_that_is_not_a_graph_is_a_model_error(tmp_path: Path) -> None:
    from dse.errors import ModelError

    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(ModelError, match="cannot read"):
        serialize.load_graph(bad)
    np.savez(tmp_path / "other.npz", __graph__=np.frombuffer(b'{"format": "x"}', dtype=np.uint8))
    with pytest.raises(ModelError, match="not a dse graph"):
        serialize.load_graph(tmp_path / "other.npz")
