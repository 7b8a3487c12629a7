"""Tuning on mlp_digits (small and fast): legal integer weights within range, better than rounding, and an
integer graph that survives serialization."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from dse.compile import CompileResult, Prepared, compile, prepare
from dse.errors import ConfigError
from dse.hardware.legality import check
from dse.hardware.spec import IO, Crossbar, HardwareSpec, Weights
from dse.ir import ops as o
from dse.ir.serialize import load_graph, save_graph
from dse.sim.integer import run_integer
from dse.tune import TuneOptions, check_quantizable

# the logits' values are compared here: their block matches them (the default, `kd`, matches the class
# probabilities instead; tests/tune/test_output_loss.py)
TUNED = TuneOptions(free_steps=60, range_steps=20, round_steps=10, output_loss="mse")
NAIVE = TuneOptions(mode="none")


def chip(weight_bits: int, io_bits: int = 4, scale: str = "per_crossbar") -> HardwareSpec:
    return HardwareSpec(name=f"w{weight_bits}", crossbar=Crossbar(256, 256, 4, True),
                        weights=Weights(weight_bits, scale), io=IO(io_bits, io_bits))


@pytest.fixture(scope="module")
def results(prepared: Prepared) -> dict[str, CompileResult]:
    return {
        "tuned4": compile(prepared, chip(4), tuning=TUNED),
        "naive4": compile(prepared, chip(4), tuning=NAIVE),
        "tuned2": compile(prepared, chip(2), tuning=TUNED),
        "naive2": compile(prepared, chip(2), tuning=NAIVE),
    }


@pytest.mark.parametrize("case", ["tuned4", "naive4", "tuned2", "naive2"])
def test_every_weight_is_an_integer_code_within_range(results: dict[str, CompileResult], case: str) -> None:
    result = results[case]
    hw = chip(4 if case.endswith("4") else 2)
    assert result.legal, result.violations
    assert check(result.graph, hw) == []
    cores = [n.op for n in result.graph if isinstance(n.op, o.CoreOp)]
    assert cores and all(op.quant is not None for op in cores)
    for op in cores:
        q = op.quant
        assert np.issubdtype(q.weight_int.dtype, np.integer) and q.bias_int.dtype == np.int64
        assert np.abs(q.weight_int).max() <= hw.weight_max  # 7 at 4 bits, 1 (ternary) at 2 bits
        assert np.all(q.weight_scale == q.weight_scale[0])  # one scale per crossbar
        assert q.out_max <= 15
    assert result.graph.input.op.code_max == 15


def test_two_bit_weights_are_ternary(results: dict[str, CompileResult]) -> None:
    values = set()
    for n in results["tuned2"].graph:
        if isinstance(n.op, o.CoreOp):
            values |= set(np.unique(n.op.quant.weight_int).tolist())
    assert values <= {-1, 0, 1} and len(values) == 3


def test_tuning_beats_rounding_at_4_bits(results: dict[str, CompileResult]) -> None:
    tuned, naive = results["tuned4"].report.metrics, results["naive4"].report.metrics
    assert tuned.logits_rel_error < naive.logits_rel_error
    assert tuned.accuracy_delta_pp <= naive.accuracy_delta_pp
    assert tuned.agreement >= naive.agreement


def test_tuning_beats_rounding_by_far_at_2_bits(results: dict[str, CompileResult]) -> None:
    """Ternary weights with max-abs steps lose most of the network; tuning keeps it."""
    tuned, naive = results["tuned2"].report.metrics, results["naive2"].report.metrics
    assert naive.accuracy_delta_pp > 20
    assert tuned.accuracy_delta_pp < naive.accuracy_delta_pp / 3
    assert tuned.logits_rel_error < naive.logits_rel_error / 2


def test_every_block_reports_its_phases(results: dict[str, CompileResult]) -> None:
    blocks = results["tuned4"].blocks
    assert [b.name for b in blocks] == [n.name for n in results["tuned4"].graph if isinstance(n.op, o.CoreOp)]
    for b in blocks:
        assert {"init", "free", "range", "final"} <= set(b.losses)
        assert all(np.isfinite(v) and v >= 0 for v in b.losses.values())


def test_the_integer_graph_round_trips_through_serialize(results: dict[str, CompileResult], prepared: Prepared,
                                                         tmp_path: Path) -> None:
    result = results["tuned4"]
    path = tmp_path / "compiled.npz"
    save_graph(result.graph, path, meta={"report": {"accuracy_compiled": result.report.metrics.accuracy_compiled}})
    loaded, meta = load_graph(path)
    assert meta["report"]["accuracy_compiled"] == result.report.metrics.accuracy_compiled
    assert check(loaded, chip(4)) == []
    before, codes_before = run_integer(result.graph, prepared.test_x, keep="*")
    after, codes_after = run_integer(loaded, prepared.test_x, keep="*")
    np.testing.assert_array_equal(after, before)
    for name, codes in codes_before.items():
        np.testing.assert_array_equal(codes_after[name], codes)
    accuracy = float((after.argmax(1) == prepared.test_y).mean())
    assert accuracy == result.report.metrics.accuracy_compiled


def test_tuning_is_deterministic(prepared: Prepared, results: dict[str, CompileResult]) -> None:
    again = compile(prepared, chip(4), tuning=TUNED)
    for a, b in zip(again.graph, results["tuned4"].graph, strict=True):
        if isinstance(a.op, o.CoreOp):
            np.testing.assert_array_equal(a.op.quant.weight_int, b.op.quant.weight_int)


def test_per_column_scales_are_used_when_the_chip_has_them(prepared: Prepared) -> None:
    result = compile(prepared, chip(4, scale="per_column"), tuning=NAIVE)
    assert result.legal
    scales = [n.op.quant.weight_scale for n in result.graph if isinstance(n.op, o.CoreOp)]
    assert any(len(np.unique(s)) > 1 for s in scales)


def test_the_ideal_chip_is_not_tuned(prepared: Prepared) -> None:
    ideal = HardwareSpec(name="ideal", crossbar=Crossbar(None, None), weights=Weights(None), io=IO(None, None))
    result = compile(prepared, ideal)
    assert result.legal and result.report.metrics.agreement == 1.0
    assert result.report.metrics.logits_rel_error < 1e-5
    assert all(n.op.quant is None for n in result.graph if isinstance(n.op, o.CoreOp))


def test_bad_tuning_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="tuning.mode"):
        TuneOptions(mode="retrain")
    with pytest.raises(ConfigError, match="all set or all null"):
        check_quantizable(HardwareSpec(weights=Weights(4), io=IO(None, 8)))


def test_evaluation_in_batches_equals_one_batch(prepared: Prepared, results: dict[str, CompileResult]) -> None:
    """Batches bound the memory of the evaluation (every core's values of two graphs); they change nothing."""
    from dse.sim.evaluate import evaluate_chip

    compiled = results["tuned4"].graph
    whole = evaluate_chip(prepared.exact, compiled, chip(4), prepared.test_x)
    parts = evaluate_chip(prepared.exact, compiled, chip(4), prepared.test_x, batch_size=7)
    np.testing.assert_array_equal(parts.logits, whole.logits)
    assert whole.verify["verified_samples"] == len(prepared.test_x) and parts.verify["verified_samples"] == 7
    assert whole.verify["integer_vs_quantized_agreement"] == parts.verify["integer_vs_quantized_agreement"] == 1.0
    errors, batched = whole.layer_errors(), parts.layer_errors()
    assert errors.keys() == batched.keys() and errors
    for name, err in errors.items():
        assert batched[name] == pytest.approx(err, rel=1e-6, abs=1e-12)  # float32 sums per batch
    reported = {row["name"]: row["error_vs_original"] for row in results["tuned4"].layers}
    assert all(reported[k] == pytest.approx(v) for k, v in errors.items() if k in reported)


def test_a_tied_signed_pair_computes_what_two_tensors_do() -> None:
    """A big signed pair [s; -s] trains one tensor for both halves: same outputs, and its integer form is
    again an exact pair (the chip holds both columns)."""
    import torch

    from dse.tune.qcore import QCore

    rng = np.random.default_rng(3)
    w = rng.standard_normal((5, 7, 1, 1)).astype(np.float32)
    op = o.CoreOp(np.concatenate([w, -w]), rng.standard_normal(10).astype(np.float32), dense=True)
    in_scale = torch.full((7,), 0.1)
    tied = QCore(op, in_scale, 15, 7, per_column=True, tie_above=0)
    free = QCore(op, in_scale, 15, 7, per_column=True)
    assert tied.tied and not free.tied and tied.weight.shape[0] == 5
    x = torch.rand(32, 7)
    for core in (tied, free):
        core.init_scale(torch.relu(core.pre(x)))
    torch.testing.assert_close(tied(x), free(x))
    tied.to_code_domain()
    tied.round_more(1.0)
    q = tied.quantized("tied").quant
    np.testing.assert_array_equal(q.weight_int[5:], -q.weight_int[:5])
    np.testing.assert_array_equal(q.weight_scale[5:], q.weight_scale[:5])
    assert np.abs(q.weight_int).max() <= 7


def test_a_population_code_through_split_and_merge(prepared: Prepared) -> None:
    """Re-encoding (k copies per value) on crossbars so small that every layer is split: each merge is a
    grouped core whose copies read their own routed partial sums; it compiles legal and exact."""
    hw = HardwareSpec(name="small", crossbar=Crossbar(32, 256, 4, True), weights=Weights(4), io=IO(2, 2))
    result = compile(prepared, hw, tuning=TUNED, reencode_k=2)
    assert result.legal, result.violations[:3]
    merges = [n.op for n in result.graph if isinstance(n.op, o.CoreOp) and n.op.population == 2 and n.op.groups > 1]
    assert merges, "no population merge was made"
    assert result.report.verify.integer_vs_quantized_agreement == 1.0
    assert result.report.metrics.accuracy_delta_pp < 50  # it computes the network, not noise


def test_a_population_code_of_a_1d_network_through_its_image_and_the_hosts_pad() -> None:
    """conv1d_mnist re-encoded (k = 2): its (C, L) input is computed on as the (C, 1, L) image (a Reshape that
    keeps the channel axis first) and the host pads it with the normalized zero's code, copy by copy. Refused
    ("keeps no channel axis"), then a traceback in tuning, before."""
    from dse.compile import load_model
    from dse.config import compose_config, hardware_from

    graph, data = load_model("conv1d_mnist", "mnist_rows")
    prepared = prepare(graph, data.select(calib_samples=64, test_samples=100), name="conv1d")
    result = compile(prepared, hardware_from(compose_config("compile", ["hardware=chip_a"]).hardware),
                     tuning=TuneOptions(mode="none"), reencode_k=2)
    assert result.legal, result.violations[:3]
    assert result.report.verify.integer_vs_quantized_agreement == 1.0
    (host,) = [n for n in result.graph if isinstance(n.op, o.Input)]
    assert host.op.population == 2


def test_a_population_code_through_a_reshape_that_moves_rows_into_the_channels() -> None:
    """A token-mixing layer (``W @ x``: each 8x8 digit's rows as 8 channels of 8 positions, a 1x1 convolution)
    re-encoded (k = 2): the Reshape from the (1, 8, 8) input to the (8, 1, 8) image moves rows into the channels,
    and the copies, the slowest axis of the row-major layout, move with their values. Refused ("keeps no
    channel axis") before."""
    import onnx
    from onnx import helper as oh
    from onnx import numpy_helper

    from dse.data.datasets import Dataset
    from dse.frontends.onnx import load_onnx

    rng = np.random.default_rng(0)
    inits = {"s": np.array([-1, 8, 8], np.int64), "W": rng.standard_normal((16, 8)).astype(np.float32),
             "B": rng.standard_normal((128, 10)).astype(np.float32) / 8}
    nodes = [oh.make_node("Reshape", ["x", "s"], ["r"]), oh.make_node("MatMul", ["W", "r"], ["m"]),
             oh.make_node("Relu", ["m"], ["a"]), oh.make_node("Flatten", ["a"], ["f"]),
             oh.make_node("Gemm", ["f", "B"], ["y"])]
    f32 = onnx.TensorProto.FLOAT
    graph = oh.make_graph(nodes, "token_mixing", [oh.make_tensor_value_info("x", f32, ["N", 1, 8, 8])],
                          [oh.make_tensor_value_info("y", f32, ["N", 10])],
                          initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])
    x = rng.random((128, 1, 8, 8)).astype(np.float32)  # random 8x8 images (the digits' scikit-learn import is slow)
    data = Dataset("random", x[:64], None, x[64:], None, (1, 8, 8), (0.0, 1.0), None)
    prepared = prepare(load_onnx(model), data, name="mixing")
    hw = HardwareSpec(name="chip_a", crossbar=Crossbar(256, 256, 4, True), weights=Weights(8), io=IO(6, 8))
    result = compile(prepared, hw, tuning=NAIVE, reencode_k=2)
    assert result.legal, result.violations[:3]
    assert result.report.verify.integer_vs_quantized_agreement == 1.0
    assert result.report.metrics.agreement >= 0.9  # it computes the network, not noise
    (host,) = [n for n in result.graph if isinstance(n.op, o.Input)]
    assert host.op.population == 2


def test_a_block_never_leaves_tuning_worse_than_its_rounded_start(prepared: Prepared) -> None:
    """Learning rates a thousand times too large wreck every training step; each phase then keeps its start
    (its lowest held-out loss) and each block ends as its start rounded, exactly what no training gives
    (`floor_factor=0`: every phase runs, none is skipped for a start near its floor)."""
    untrained = compile(prepared, chip(4), tuning=TuneOptions(free_steps=0, range_steps=0, round_steps=0))
    wrecked = compile(prepared, chip(4), tuning=TuneOptions(free_steps=20, range_steps=5, round_steps=3, lr=3.0,
                                                            grid_lr=30.0, floor_factor=0.0))
    for b in wrecked.blocks:
        assert not b.losses["tuned"] < b.losses["rounded_start"], b
    for a, b in zip(untrained.graph, wrecked.graph, strict=True):
        if isinstance(a.op, o.CoreOp):
            np.testing.assert_array_equal(a.op.quant.weight_int, b.op.quant.weight_int)
            np.testing.assert_array_equal(a.op.quant.bias_int, b.op.quant.bias_int)
    assert wrecked.report.metrics.accuracy_compiled == untrained.report.metrics.accuracy_compiled


def test_weights_train_only_where_the_calibration_data_determine_them(prepared: Prepared) -> None:
    """16 calibration images x 64 outputs cannot fit 64 x 64 weights: the weights are rounded as they start,
    only biases and steps are tuned (and the block still ends no worse than rounding)."""
    few = prepare(prepared.original, prepared.dataset, name="mlp_digits", calib_samples=16)
    tuned = compile(few, chip(4), tuning=TUNED)
    untrained = compile(few, chip(4), tuning=TuneOptions(free_steps=0, range_steps=0, round_steps=0))
    for a, b in zip(untrained.graph, tuned.graph, strict=True):
        if isinstance(a.op, o.CoreOp):
            np.testing.assert_array_equal(a.op.quant.weight_int, b.op.quant.weight_int)
    assert all(b.losses["final"] <= 1.5 * untrained_b.losses["final"] + 1e-6
               for b, untrained_b in zip(tuned.blocks, untrained.blocks, strict=True))


def test_the_baseline_maps_each_cores_largest_output_to_its_largest_code(prepared: Prepared) -> None:
    """tuning=none: on the calibration data the chip computes, every core (partial sums and merges of a
    split included) reaches its largest code and never more: its step is its largest output."""
    hw = HardwareSpec(name="small", crossbar=Crossbar(32, 256, 4, True), weights=Weights(4), io=IO(4, 4))
    result = compile(prepared, hw, tuning=NAIVE)
    _, codes = run_integer(result.graph, prepared.calib_x.numpy(), keep="*")
    cores = [n for n in result.graph if isinstance(n.op, o.CoreOp)]
    assert sum(n.op.groups > 1 for n in cores) >= 2  # merges: the first two layers are split
    for n in cores:
        assert codes[n.name].max() == n.op.quant.out_max, n.name


@pytest.mark.parametrize("io", [IO(None, None), IO(None, 4), IO(4, None)])
def test_reencoding_values_that_are_not_quantized_is_refused(io: IO) -> None:
    """A population code staggers its copies by the code range; a chip whose I/O is not quantized (the ideal
    chip) has none: refused naming the null bits (was a reshape error in the evaluation, a traceback); so is a
    population readout without output bits (each copy carried the whole value: logits k times too large)."""
    from dse.errors import ConstraintError
    from dse.ir.graph import GraphBuilder
    from dse.passes.reencode import reencode

    b = GraphBuilder()
    x = b.add("x", o.Input((4,)))
    graph = b.build([b.add("y", o.CoreOp(np.ones((2, 4, 1, 1), np.float32), np.zeros(2, np.float32)), x)])
    hw = HardwareSpec(name="no_io_bits", crossbar=Crossbar(256, 256, 4, True), weights=Weights(8), io=io)
    null = " and ".join(f"hardware.io.{f}_bits" for f, v in (("input", io.input_bits), ("output", io.output_bits))
                        if v is None)
    with pytest.raises(ConstraintError, match=f"strategy.reencode_k > 1: {null} null"):
        reencode(graph, hw, k=2)
    assert reencode(graph, hw, k=1) is graph
    if io.output_bits is None:  # the host summed k whole copies: logits k times too large
        with pytest.raises(ConstraintError, match="strategy.readout_k > 1: hardware.io.output_bits null"):
            reencode(graph, hw, k=1, readout_k=2)


def test_a_block_whose_rounding_costs_little_is_not_rounded_by_training(prepared: Prepared) -> None:
    """At 8-bit weights and 4-bit I/O, rounding two of mlp_digits' three blocks costs less than `floor_factor` of
    what their float weights reach after the free phase: their range and rounding phases are skipped, and the
    chip gets their rounded starts. With `floor_factor=0` every phase runs. At 2-bit weights the rule decides
    as it reads, whatever it decides."""
    short = TuneOptions(free_steps=20, range_steps=10, round_steps=10, round_fractions=(0.5, 1.0))
    untrained = compile(prepared, chip(8), tuning=TuneOptions(free_steps=0, range_steps=0, round_steps=0,
                                                              floor_factor=0.0))
    for floor_factor, bits in ((1.1, 8), (0.0, 8), (1.1, 2)):
        result = compile(prepared, chip(bits), tuning=dataclasses.replace(short, floor_factor=floor_factor))
        for b in result.blocks:
            rounded = b.losses["rounded_start"]
            skip = rounded <= floor_factor * max(b.losses["floor"], b.losses.get("free", 0.0))
            assert ("range" not in b.steps) == skip, (floor_factor, bits, b)
        skipped = {b.name for b in result.blocks if "range" not in b.steps}
        if bits == 8:
            assert len(skipped) == (2 if floor_factor else 0), result.blocks
        for a, n in zip(untrained.graph, result.graph, strict=True):  # a skipped block is its rounded start
            if bits == 8 and isinstance(a.op, o.CoreOp) and n.block_name in skipped:
                np.testing.assert_array_equal(a.op.quant.weight_int, n.op.quant.weight_int)
