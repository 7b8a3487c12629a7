"""Behaviour lives in tables keyed by op type: every table covers every op, and the tables agree.

`missing_entries` is the coverage check; a wiring op defined here (`Roll`) shows what adding one takes: one
entry per table makes it equalize, tune and run on every executor as the `Gather` it equals, and each entry
left out is named by the check."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from compiler_helpers import assert_graphs_equal

from dse.errors import ModelError
from dse.frontends.nir_export import NIR_EXPORT, export_nir, route_channels
from dse.hardware.spec import IO, Crossbar, HardwareSpec, Mapping, Neuron, Weights
from dse.ir import ops as o
from dse.ir import serialize
from dse.ir.graph import Graph, GraphBuilder
from dse.ir.shapes import SHAPE_RULES
from dse.ir.wiring import WIRING, Routing, unmixed
from dse.passes.equalize import CHANNEL_RULES, equalize
from dse.passes.equalize import route as equalize_route
from dse.passes.reencode import POPULATION_RULES
from dse.sim import float_exec, integer, spiking
from dse.sim.float_exec import FLOAT_EXEC, LazyForward, run_float
from dse.sim.integer import INTEGER_EXEC, NotIntegerGraph, run_integer
from dse.sim.spiking import SPIKING_EXEC, run_spiking
from dse.tune.multiphase import TuneOptions, tune_graph

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
    o.DepthToSpace: (o.DepthToSpace((2, 1), (11, 6)), [(6, 6, 6)]),
    o.SpaceToDepth: (o.SpaceToDepth((3, 2)), [IMG]),
    o.Conv: (o.Conv(W[:3, :1], None, (2, 2), (1, 1, 1, 1), (2, 1), 3), [IMG]),
    o.Linear: (o.Linear(rng.standard_normal((5, 108)).astype(np.float32), np.ones(5, np.float32)), [(108,)]),
    o.ScaleShift: (o.ScaleShift(np.full((3, 1, 1), 2.0, np.float32), np.zeros((3, 1, 1), np.float32)), [IMG]),
    o.Add: (o.Add(), [IMG, IMG]),
    o.Relu: (o.Relu(), [IMG]),
    o.PRelu: (o.PRelu(np.array([0.1, -0.5, 2.0], np.float32).reshape(3, 1, 1)), [IMG]),
    o.Clip: (o.Clip(0.0, 0.5), [IMG]),
    o.Sigmoid: (o.Sigmoid(), [IMG]),
    o.Tanh: (o.Tanh(), [IMG]),
    o.HardSwish: (o.HardSwish(), [IMG]),
    o.Silu: (o.Silu(), [IMG]),
    o.Gelu: (o.Gelu("tanh"), [IMG]),
    o.Elu: (o.Elu(1.6733, 1.0507), [IMG]),
    o.Softplus: (o.Softplus(), [IMG]),
    o.Mish: (o.Mish(), [IMG]),
    o.Softmax: (o.Softmax(0), [(7,)]),
    o.MaxPool: (o.MaxPool((3, 2), (2, 2), (1, 1, 1, 1), ceil_mode=True), [IMG]),
    o.AvgPool: (o.AvgPool((3, 3), (2, 2), (1, 1, 1, 1), count_include_pad=False), [IMG]),
    o.GlobalAvgPool: (o.GlobalAvgPool(), [IMG]),
    o.Identity: (o.Identity(), [IMG]),
}


def every_op_class() -> set[type[o.Op]]:
    return {v for v in vars(o).values() if isinstance(v, type) and issubclass(v, o.Op) and v is not o.Op}


def graph_of(op: o.Op, in_shapes: list[tuple[int, ...]]) -> Graph:
    b = GraphBuilder()
    if isinstance(op, o.Input):
        return b.build([b.add("x", op)])
    srcs = [b.add("x", o.Input(in_shapes[0]))]
    srcs += [b.add(f"x{i}", o.Slice(0, s[0]), srcs[0]) for i, s in enumerate(in_shapes[1:], 1)]
    return b.build([b.add("op", op, *srcs)])


def round_trips(op: o.Op, in_shapes: list[tuple[int, ...]]) -> bool:
    """Whether a graph holding `op` saves and loads back equal."""
    graph = graph_of(op, in_shapes)
    with tempfile.TemporaryDirectory() as tmp:
        serialize.save_graph(graph, Path(tmp) / "g.npz")
        try:
            loaded, _ = serialize.load_graph(Path(tmp) / "g.npz")
            assert_graphs_equal(loaded, graph, rtol=0)
        except (ModelError, AssertionError):
            return False
    return True


def missing_entries(all_ops=o.ALL_OPS, chip_ops=o.CHIP_OPS, wiring_ops=o.WIRING_OPS, samples=SAMPLES
                    ) -> list[tuple[str, str]]:
    """(table, op type) for every behaviour table that lacks an op type it must cover: every op has a shape, a
    float behaviour and a file form (a round trip of its sample), every chip op an integer, a spiking, an
    equalization, a NIR and a re-encoding rule, and every wiring op a routing (which the executors' wiring rules
    and tuning's per-channel scales read)."""
    tables = {
        "SHAPE_RULES": (SHAPE_RULES, all_ops),
        "FLOAT_EXEC": (FLOAT_EXEC, all_ops),
        "INTEGER_EXEC": (INTEGER_EXEC, chip_ops),
        "SPIKING_EXEC": (SPIKING_EXEC, chip_ops),
        "WIRING": (WIRING, wiring_ops),
        "equalize.CHANNEL_RULES": (CHANNEL_RULES, chip_ops),
        "NIR_EXPORT": (NIR_EXPORT, chip_ops),
        "reencode.POPULATION_RULES": (POPULATION_RULES, chip_ops),
        "SAMPLES": (samples, all_ops),
    }
    missing = [(name, t.__name__) for name, (table, types) in tables.items() for t in types if t not in table]
    return missing + [("serialize", t.__name__) for t in all_ops if t in samples and not round_trips(*samples[t])]


def test_all_ops_lists_every_op_class_once() -> None:
    assert len(o.ALL_OPS) == len(set(o.ALL_OPS))
    assert set(o.ALL_OPS) == every_op_class()
    assert set(o.CHIP_OPS).isdisjoint(o.NETWORK_OPS)
    assert set(WIRING) == set(o.WIRING_OPS)


def test_every_table_covers_every_op() -> None:
    assert missing_entries() == []


@pytest.mark.parametrize("op_type", o.ALL_OPS, ids=lambda t: t.__name__)
def test_shape_rule_matches_the_float_executor(op_type: type[o.Op]) -> None:
    op, in_shapes = SAMPLES[op_type]
    xs = [torch.rand((2, *s)) for s in in_shapes]
    y = FLOAT_EXEC[op_type](op, xs)
    assert tuple(y.shape[1:]) == tuple(SHAPE_RULES[op_type](op, in_shapes))
    assert y.shape[0] == 2 and torch.isfinite(y).all()


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
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(ModelError, match=r"not a dse graph file .*: not an .npz archive \(it begins with text\)"):
        serialize.load_graph(bad)
    np.savez(tmp_path / "other.npz", __graph__=np.frombuffer(b'{"format": "x"}', dtype=np.uint8))
    with pytest.raises(ModelError, match="not a dse graph"):
        serialize.load_graph(tmp_path / "other.npz")


def test_a_file_of_format_1_reads_affine_as_scale_shift(tmp_path: Path) -> None:
    """Files written before the rename name the element-wise ScaleShift `Affine`; they still load."""
    graph = graph_of(*SAMPLES[o.ScaleShift])
    serialize.save_graph(graph, tmp_path / "new.npz")
    with np.load(tmp_path / "new.npz") as data:
        arrays = {k: data[k] for k in data.files}
    doc = json.loads(bytes(arrays.pop("__graph__")).decode())
    doc["format"] = "dse-graph/1"
    doc["nodes"][1]["op"] = "Affine"
    np.savez(tmp_path / "old.npz", __graph__=np.frombuffer(json.dumps(doc).encode(), dtype=np.uint8), **arrays)
    loaded, _ = serialize.load_graph(tmp_path / "old.npz")
    assert_graphs_equal(loaded, graph, rtol=0)
    doc["format"] = serialize.FORMAT  # in a file of today's format, Affine is no op type
    np.savez(tmp_path / "bad.npz", __graph__=np.frombuffer(json.dumps(doc).encode(), dtype=np.uint8), **arrays)
    with pytest.raises(ModelError, match="unknown op type 'Affine'"):
        serialize.load_graph(tmp_path / "bad.npz")


# --- the wiring table: what `move` does to values, `channels` says of per-channel vectors -----------------

ROUTING_CASES = [
    *[SAMPLES[t] for t in o.WIRING_OPS],
    (o.Pad((1, 1, 0, 2)), [IMG]),  # zeros: scales with its channels
    (o.Reshape((3, 6, 6)), [(108,)]),  # features back into channels: each channel is made of 36 features
    (o.Concat(1), [IMG, IMG]),  # along rows: channel c is channel c of both inputs
    (o.Concat(0, copies=2), [(4, 6, 6), (2, 6, 6)]),  # a population code: copy i of each input, copy by copy
    (o.Concat(0, copies=2), [(6,), (4,)]),
]


def channel_ids(in_shapes: list[tuple[int, ...]], lead: tuple[int, ...]) -> tuple[list[torch.Tensor], list[np.ndarray]]:
    """Inputs whose every entry holds its channel's id (ids distinct across inputs), and the ids per channel."""
    xs, ids, first = [], [], 1  # 0 is what a pad adds
    for shape in in_shapes:
        c = np.arange(first, first + shape[0], dtype=np.float64)
        ids.append(c)
        xs.append(torch.as_tensor(c).reshape(-1, *[1] * (len(shape) - 1)).expand(*lead, *shape).clone())
        first += shape[0]
    return xs, ids


@pytest.mark.parametrize("case", range(len(ROUTING_CASES)), ids=lambda i: type(ROUTING_CASES[i][0]).__name__)
def test_channels_say_where_move_puts_each_channel(case: int) -> None:
    op, in_shapes = ROUTING_CASES[case]
    routing = WIRING[type(op)]
    out_shape = SHAPE_RULES[type(op)](op, in_shapes)
    xs, ids = channel_ids(in_shapes, (2,))
    y = routing.move(op, xs, 1)
    assert tuple(y.shape) == (2, *out_shape)
    values, mixed = routing.channels(op, ids, in_shapes, out_shape)
    found = [set(c.tolist()) for c in y.transpose(0, 1).reshape(out_shape[0], -1)]  # the ids in each channel
    if routing.homogeneous(op):  # it moves ids and adds only zeros
        assert [len(f - {0.0}) > 1 for f in found] == mixed.tolist()
        assert [f - {0.0} for f, m in zip(found, mixed, strict=True) if not m] == [{v} for v in values[~mixed]]
    else:  # the sample pad adds constants that are no channel's id
        assert any(f - {0.0} - set(np.concatenate(ids)) for f in found)


@pytest.mark.parametrize("case", range(len(ROUTING_CASES)), ids=lambda i: type(ROUTING_CASES[i][0]).__name__)
def test_moving_trains_moves_every_time_step_alike(case: int) -> None:
    op, in_shapes = ROUTING_CASES[case]
    xs = [torch.rand((2, 5, *s)) for s in in_shapes]
    y = WIRING[type(op)].move(op, xs, 2)
    for t in range(5):
        assert torch.equal(y[:, t], FLOAT_EXEC[type(op)](op, [x[:, t] for x in xs]))


# --- a new wiring op, defined here: one entry per table makes it work, a missing one is named ----------------


@dataclass(frozen=True, eq=False)
class Roll(o.Op):
    """``y[:, c] = x[:, (c - shift) mod C]``: the channels rotated by `shift`."""

    shift: int


ROLL_ENTRIES = {  # the one entry per behaviour table a wiring op needs
    "SHAPE_RULES": (SHAPE_RULES, lambda op, ins: ins[0]),
    "FLOAT_EXEC": (FLOAT_EXEC, float_exec.route),
    "INTEGER_EXEC": (INTEGER_EXEC, integer.route),
    "SPIKING_EXEC": (SPIKING_EXEC, spiking.route),
    "WIRING": (WIRING, Routing(
        move=lambda op, xs, lead: torch.roll(xs[0], op.shift, dims=lead),
        channels=lambda op, ins, in_shapes, out_shape: unmixed(np.roll(ins[0], op.shift)),
    )),
    "equalize.CHANNEL_RULES": (CHANNEL_RULES, equalize_route),
    "NIR_EXPORT": (NIR_EXPORT, route_channels),
    "reencode.POPULATION_RULES": (POPULATION_RULES, lambda p, node, pop_in: node.op),  # never re-encoded here
}
WITH_ROLL = {"all_ops": (*o.ALL_OPS, Roll), "chip_ops": (*o.CHIP_OPS, Roll), "wiring_ops": (*o.WIRING_OPS, Roll),
             "samples": {**SAMPLES, Roll: (Roll(1), [IMG])}}


@pytest.fixture
def roll(monkeypatch: pytest.MonkeyPatch) -> None:
    for table, entry in ROLL_ENTRIES.values():
        monkeypatch.setitem(table, Roll, entry)
    monkeypatch.setitem(serialize.OP_TYPES, "Roll", Roll)


def test_a_new_wiring_op_with_every_entry_is_covered(roll: None) -> None:
    assert missing_entries(**WITH_ROLL) == []


@pytest.mark.parametrize("table", [*ROLL_ENTRIES, "serialize"])
def test_a_new_wiring_op_missing_one_entry_is_named(roll: None, table: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if table == "serialize":
        monkeypatch.delitem(serialize.OP_TYPES, "Roll")
    else:
        monkeypatch.delitem(ROLL_ENTRIES[table][0], Roll)
    assert missing_entries(**WITH_ROLL) == [(table, "Roll")]


def routed(wiring: o.Op) -> Graph:
    """Input (6) -> a dense core (8) -> `wiring` -> a dense core (4)."""
    gen = np.random.default_rng(3)
    b = GraphBuilder()
    x = b.add("x", o.Input((6,)))
    h = b.add("h", o.CoreOp(gen.standard_normal((8, 6, 1, 1)).astype(np.float32),
                            gen.standard_normal(8).astype(np.float32) * 0.1, dense=True), x)
    r = b.add("route", wiring, h)
    w = gen.standard_normal((4, 8, 1, 1)).astype(np.float32) * np.arange(1, 9, dtype=np.float32).reshape(1, 8, 1, 1)
    return b.build([b.add("y", o.CoreOp(w, np.zeros(4, np.float32), dense=True), r)])


RELU_CHIP = HardwareSpec(name="w4", crossbar=Crossbar(256, 256, 4, True), weights=Weights(4, "per_crossbar"),
                         io=IO(4, 4))
SPIKING_CHIP = HardwareSpec(name="snn", crossbar=Crossbar(256, 256, 4, False), weights=Weights(4, "per_crossbar"),
                            io=IO(None, None), neuron=Neuron("if", timesteps=8), mapping=Mapping("expanded"))
FAST = TuneOptions(free_steps=8, range_steps=4, round_steps=2, spike_steps=2, output_spike_steps=2, batch_size=64,
                   equalize=True)


def compiled(graph: Graph, hw: HardwareSpec, x: torch.Tensor) -> Graph:
    graph = equalize(graph)
    return tune_graph(graph, hw, x, LazyForward(graph, x), FAST)


@pytest.mark.parametrize("hw", [RELU_CHIP, SPIKING_CHIP], ids=["relu", "spiking"])
def test_a_new_wiring_op_equalizes_tunes_and_runs_as_the_gather_it_equals(roll: None, hw: HardwareSpec) -> None:
    """Roll(3) is Gather(roll(arange(8), 3)): with its entries registered, every stage gives the same numbers."""
    x = torch.rand((128, 6))
    rolled, gathered = routed(Roll(3)), routed(o.Gather(np.roll(np.arange(8), 3)))
    plain = run_float(routed(o.Slice(0, 8)), x)["y"]
    assert torch.equal(run_float(rolled, x)["y"], run_float(gathered, x)["y"])
    assert not torch.allclose(run_float(rolled, x)["y"], plain)  # the routing matters
    a, b = compiled(rolled, hw, x), compiled(gathered, hw, x)
    for core in ("h", "y"):
        qa, qb = a[core].op.quant, b[core].op.quant
        for f in dataclasses.fields(qa):
            assert np.array_equal(getattr(qa, f.name), getattr(qb, f.name)), (core, f.name)
    if not hw.spiking:
        assert np.array_equal(run_integer(a, x.numpy())[0], run_integer(b, x.numpy())[0])
        return
    (ya, stats_a, _), (yb, stats_b, _) = run_spiking(a, hw.neuron, x.numpy()), run_spiking(b, hw.neuron, x.numpy())
    assert np.array_equal(ya, yb) and stats_a == stats_b
    nir_a, nir_b = export_nir(a, hw), export_nir(b, hw)
    assert nir_a.edges == nir_b.edges
    for name, node in nir_a.nodes.items():
        for key, value in vars(node).items():
            if isinstance(value, np.ndarray):
                assert np.array_equal(value, vars(nir_b.nodes[name])[key]), (name, key)


def test_a_population_code_routes_each_copy_through_a_slice_and_a_concat() -> None:
    """Re-encoding (2 copies, copy-major): a channel Slice becomes the Gather of its channels in every copy, a
    Concat of two population codes keeps the copies apart (copy i of the output is copy i of each input), and the
    cores after them read, per copy, the channels the original read."""
    from dse.passes.reencode import reencode

    gen = np.random.default_rng(0)
    b = GraphBuilder()
    x = b.add("x", o.Input((6,)))
    h = b.add("h", o.CoreOp(gen.standard_normal((8, 6, 1, 1)).astype(np.float32), np.zeros(8, np.float32),
                            dense=True), x)
    s = b.add("s", o.Slice(2, 6), h)
    c = b.add("c", o.Concat(0), s, h)
    y = b.add("y", o.CoreOp(gen.standard_normal((3, 12, 1, 1)).astype(np.float32), np.zeros(3, np.float32),
                            dense=True), c)
    graph = reencode(b.build([y]), HardwareSpec(), k=2)
    assert graph["s"].op.index.tolist() == [2, 3, 4, 5, 10, 11, 12, 13]
    assert graph["c"].op.copies == 2 and graph["y"].op.weight.shape[1] == 24
    ids = torch.arange(16.0).reshape(1, 16)  # h's 2 x 8 outputs, each its own id
    sliced = WIRING[o.Gather].move(graph["s"].op, [ids], 1)
    joined = WIRING[o.Concat].move(graph["c"].op, [sliced, ids], 1)
    assert joined[0].tolist() == [2, 3, 4, 5, *range(8), 10, 11, 12, 13, *range(8, 16)]
