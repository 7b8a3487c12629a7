"""The integer-exact simulator against the quantized float path (`dse.sim.float_exec` on a tuned graph).

Every core's output codes must be equal, and so the top-1 predictions. The tuned graphs cover a dense
network (8x8 digits, per-crossbar and per-column weight scales), LeNet on 64x64 crossbars (host padding, the
max-pooling tree, split-and-merge) and a synthetic network with a residual add, a concat, a clip and average
pooling.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dse.compile import compile, load_model, prepare
from dse.data.datasets import Dataset
from dse.hardware.legality import check
from dse.hardware.spec import IO, Crossbar, HardwareSpec, Weights
from dse.ir import ops as o
from dse.ir.graph import Graph, GraphBuilder
from dse.sim.float_exec import run_float
from dse.sim.integer import NotIntegerGraph, run_integer
from dse.tune.options import TuneOptions

SHORT = TuneOptions(free_steps=20, range_steps=10, round_steps=5, round_fractions=(0.5, 1.0), max_rows=20_000)


def chip(bits: int, io_bits: int, rows: int = 256, scale: str = "per_crossbar") -> HardwareSpec:
    return HardwareSpec(name=f"w{bits}io{io_bits}", crossbar=Crossbar(rows, rows), weights=Weights(bits, scale),
                        io=IO(io_bits, io_bits))


def shrink(data: Dataset, train: int, test: int) -> Dataset:
    return dataclasses.replace(data, x_train=data.x_train[:train], y_train=data.y_train[:train],
                               x_test=data.x_test[:test], y_test=data.y_test[:test])


def synthetic_network() -> Graph:
    """Conv/ReLU, a residual add, a concat with a signed branch, Clip(0, 1), average pooling, two dense layers."""
    rng = np.random.default_rng(0)

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)

    b = GraphBuilder()
    x = b.add("x", o.Input((1, 8, 8)))
    c1 = b.add("relu1", o.Relu(), b.add("conv1", o.Conv(w(4, 1, 3, 3), w(4, 1)[:, 0] * 0.1,
                                                        padding=(1, 1, 1, 1)), x))
    c2 = b.add("conv2", o.Conv(w(4, 4, 3, 3), None, padding=(1, 1, 1, 1)), c1)
    res = b.add("res", o.Relu(), b.add("add", o.Add(), c2, c1))
    side = b.add("side", o.Conv(w(2, 4, 1, 1), None), res)
    cat = b.add("cat", o.Concat(0), res, side)
    y = b.add("clip", o.Clip(0.0, 1.0), b.add("conv3", o.Conv(w(4, 6, 3, 3), None, stride=(2, 2)), cat))
    y = b.add("pool", o.AvgPool((3, 3), (3, 3)), y)
    y = b.add("flat", o.Reshape((4,)), y)
    y = b.add("hidden", o.Relu(), b.add("fc1", o.Linear(w(16, 4), w(16, 1)[:, 0]), y))
    return b.build([b.add("logits", o.Linear(w(5, 16), None), y)])


def synthetic_dataset(net: Graph) -> Dataset:
    """Random images labelled by the network itself: accuracy 1.0 before compiling."""
    rng = np.random.default_rng(1)
    x = rng.random((700, 1, 8, 8)).astype(np.float32)
    y = run_float(net, x)[net.outputs[0]].numpy().argmax(1)
    return Dataset("synthetic", x[:500], y[:500], x[500:], y[500:], (1, 8, 8), (0.0, 1.0), 5)


CASES = ["digits_w4", "digits_w3_per_column", "lenet_rows64_w4", "synthetic_w6"]


@pytest.fixture(scope="module")
def compiled() -> dict[str, tuple[Graph, np.ndarray]]:
    digits_graph, digits = load_model("mlp_digits", "digits")
    digits_prep = prepare(digits_graph, digits, name="mlp_digits")
    lenet_graph, mnist = load_model("lenet_mnist", "mnist")
    lenet_prep = prepare(lenet_graph, shrink(mnist, 256, 64), name="lenet_mnist")
    net = synthetic_network()
    synth_prep = prepare(net, synthetic_dataset(net), name="synthetic")
    jobs = {
        "digits_w4": (digits_prep, chip(4, 4), SHORT),
        "digits_w3_per_column": (digits_prep, chip(3, 5, scale="per_column"), SHORT),
        "lenet_rows64_w4": (lenet_prep, chip(4, 4, rows=64), TuneOptions(mode="none")),
        "synthetic_w6": (synth_prep, chip(6, 6, rows=16), SHORT),
    }
    out = {}
    for name, (prep, hw, tuning) in jobs.items():
        result = compile(prep, hw, tuning=tuning)
        assert result.legal, (name, result.violations)
        out[name] = (result.graph, prep.test_x)
    return out


@pytest.mark.parametrize("case", CASES)
def test_integer_codes_equal_the_quantized_float_path(compiled: dict, case: str) -> None:
    graph, x = compiled[case]
    logits_int, codes = run_integer(graph, x, keep="*")
    values = run_float(graph, x, keep="*")
    checked = 0
    for node in graph:
        op = node.op
        if isinstance(op, o.CoreOp):
            scale = op.quant.out_scale
        elif isinstance(op, o.Input):
            scale = op.scale
        else:
            continue
        ratio = values[node.name].double().numpy() / scale
        np.testing.assert_array_equal(np.rint(ratio), codes[node.name], err_msg=f"{case}: node {node.name}")
        assert np.abs(ratio - codes[node.name]).max() < 1e-3, node.name  # the float path sits on the codes
        checked += 1
    assert checked >= 3
    logits_float = values[graph.outputs[0]].double().numpy()
    np.testing.assert_array_equal(logits_int.argmax(1), logits_float.argmax(1))
    np.testing.assert_allclose(logits_int, logits_float, rtol=1e-5, atol=1e-5 * np.abs(logits_float).max())


@pytest.mark.parametrize("case", CASES)
def test_codes_stay_within_the_chip_range(compiled: dict, case: str) -> None:
    graph, x = compiled[case]
    _, codes = run_integer(graph, x, keep="*")
    for node in graph:
        if isinstance(node.op, o.CoreOp):
            c = codes[node.name]
            assert np.array_equal(c, np.rint(c)) and c.min() >= 0 and c.max() <= node.op.quant.out_max, node.name


def test_the_input_tie_encodes_like_the_integer_simulator() -> None:
    """Regression: digits pixels are k/16; at a step of 1/15 the pixel 8/16 is exactly 7.5 codes, and float32
    division put it on the other side of the tie from the float64 simulator (one test image in a hundred)."""
    g = GraphBuilder()
    x = g.add("x", o.Input((3,), scale=1 / 15, code_max=15))
    core = o.CoreOp(np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1), np.zeros(3, np.float32), dense=True,
                    quant=o.CoreQuant(np.eye(3, dtype=np.int64).reshape(3, 3, 1, 1), np.full(3, 1 / 15),
                                      np.zeros(3, np.int64), np.full(3, 1 / 15), 1 / 15, 15))
    graph = g.build([g.add("id", core, x)])
    pixels = np.array([[0.5, 0.25, 0.9375]], np.float32)
    _, codes = run_integer(graph, pixels, keep="*")
    floats = run_float(graph, pixels, keep="*")
    np.testing.assert_array_equal(np.rint(floats["x"].double().numpy() * 15), codes["x"])
    assert check(graph, chip(8, 4)) == []


def test_a_float_core_or_an_unencoded_input_is_not_an_integer_graph() -> None:
    g = GraphBuilder()
    x = g.add("x", o.Input((2,), scale=0.1, code_max=15))
    float_core = g.build([g.add("c", o.CoreOp(np.ones((1, 2, 1, 1), np.float32), np.zeros(1, np.float32),
                                              dense=True), x)])
    with pytest.raises(NotIntegerGraph, match="integer form"):
        run_integer(float_core, np.ones((1, 2)))
    g = GraphBuilder()
    x = g.add("x", o.Input((2,)))
    unencoded = g.build([x, g.add("r", o.Reshape((2,)), x)])
    with pytest.raises(NotIntegerGraph, match="not encoded"):
        run_integer(unencoded, np.ones((1, 2)))


def test_an_accumulator_beyond_exact_float64_integers_is_refused() -> None:
    big = 2**40
    g = GraphBuilder()
    x = g.add("x", o.Input((2,), scale=1.0, code_max=2**14))
    q = o.CoreQuant(np.full((1, 2, 1, 1), big, np.int64), np.ones(1), np.zeros(1, np.int64), np.ones(2), 1.0, 255)
    graph = g.build([g.add("c", o.CoreOp(np.ones((1, 2, 1, 1), np.float32), np.zeros(1, np.float32), dense=True,
                                         quant=q), x)])
    with pytest.raises(NotIntegerGraph, match="exceeds exact"):
        run_integer(graph, np.full((1, 2), 2.0**14))


@pytest.mark.parametrize("code_max, weight", [(15, 7), (2**14 - 1, 2**10)])  # accumulators below / above 2**24
def test_accumulators_are_exact_in_float32_and_float64(code_max: int, weight: int) -> None:
    """A dense core against int64 arithmetic: small accumulators run in float32, large ones in float64, and
    both give exactly the integer result."""
    rng = np.random.default_rng(5)
    w_int = rng.integers(-weight, weight + 1, size=(6, 300)).astype(np.int32)
    bias = rng.integers(-1000, 1000, size=6)
    scale = 1.0 / (300 * weight * code_max)  # maps the accumulator range into 0..255-ish codes
    quant = o.CoreQuant(w_int.reshape(6, 300, 1, 1), np.full(6, scale), bias.astype(np.int64),
                        np.full(300, 1.0), 1.0 / 4096, 2**16)
    b = GraphBuilder()
    x = b.add("x", o.Input((300,), 1.0, code_max))
    core = b.add("core", o.CoreOp(w_int.reshape(6, 300, 1, 1).astype(np.float32), np.zeros(6, np.float32),
                                  dense=True, quant=quant), x)
    graph = b.build([core])
    codes_in = rng.integers(0, code_max + 1, size=(20, 300))
    _, codes = run_integer(graph, codes_in.astype(np.float64), keep=["core"])
    acc = codes_in.astype(np.int64) @ w_int.T.astype(np.int64) + bias
    expected = np.clip(np.round(acc * (scale * 4096)), 0, 2**16)
    np.testing.assert_array_equal(codes["core"], expected)


@pytest.mark.parametrize("out_max", [15, 255, 2**16 - 1])
def test_requantization_next_to_a_rounding_tie_matches_the_integer_simulator(out_max: int) -> None:
    """Each neuron's accumulator times its multiplier lands within 1e-7 (relative) of a rounding tie, on
    either side: float32 alone puts about a fifth of them on the wrong side; the float path must give the
    integer simulator's codes for every one."""
    rng = np.random.default_rng(7)
    n = 400
    acc = rng.integers(1, 4000, size=n)
    tie = rng.integers(0, out_max, size=n) + 0.5
    mult = tie * (1 + rng.choice([-1, 1], size=n) * rng.uniform(1e-9, 1e-7, size=n)) / acc
    quant = o.CoreQuant(np.eye(n, dtype=np.int64).reshape(n, n, 1, 1), mult, np.zeros(n, np.int64),
                        np.ones(n), 1.0, out_max)
    b = GraphBuilder()
    x = b.add("x", o.Input((n,), 1.0, 4000))
    graph = b.build([b.add("core", o.CoreOp(np.eye(n, dtype=np.float32).reshape(n, n, 1, 1), np.zeros(n, np.float32),
                                            dense=True, quant=quant), x)])
    _, codes = run_integer(graph, acc[None].astype(np.float64), keep=["core"])
    floats = run_float(graph, acc[None].astype(np.float32), keep=["core"])["core"].double().numpy()
    np.testing.assert_array_equal(codes["core"], np.clip(np.round(acc * mult), 0, out_max)[None])
    np.testing.assert_array_equal(floats, codes["core"])


def test_a_bias_past_2_24_makes_the_accumulator_float64() -> None:
    """The bias is part of the accumulator: 63 codes x weight 1 + a bias of 2**30 is 2**30 + 63, which float32
    rounds to 2**30 (its integers are 128 apart there), one output code lower at a multiplier of 1/100. The
    bound that chose float32 once left the bias out."""
    bias = 2**30
    quant = o.CoreQuant(np.ones((1, 1, 1, 1), np.int64), np.full(1, 0.01), np.full(1, bias, np.int64), np.ones(1),
                        1.0, 2**24 - 1)
    b = GraphBuilder()
    x = b.add("x", o.Input((1,), 1.0, 63))
    graph = b.build([b.add("core", o.CoreOp(np.ones((1, 1, 1, 1), np.float32), np.zeros(1, np.float32), dense=True,
                                            quant=quant), x)])
    _, codes = run_integer(graph, np.full((1, 1), 63.0), keep=["core"])
    assert codes["core"][0, 0] == round((bias + 63) / 100) == 10737419
