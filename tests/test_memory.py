"""The memory bound (compile.max_memory_gb): a run that cannot fit is refused before it starts, and a tight
bound makes every batch smaller without changing a number of the result."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

from dse.compile import check_memory, compile, load_model, prepare
from dse.compile.memory import CHUNK_COPIES, EVAL_COPIES, FLOAT, GB, plan_memory
from dse.errors import ResourceError
from dse.hardware.spec import IO, Crossbar, HardwareSpec, Weights
from dse.ir import ops as o
from dse.tune.options import TuneOptions

SHORT = TuneOptions(free_steps=20, range_steps=5, round_steps=3)
CHIP = HardwareSpec(name="small", crossbar=Crossbar(64, 64, 4, True), weights=Weights(4), io=IO(4, 4))


@pytest.mark.parametrize("bound, pattern", [
    ("0.5", r"^error: estimated peak memory \d+\.\d+ GB exceeds the bound compile\.max_memory_gb=0\.5 GB "
            r"\(largest part: \w+"),
    # below the runtime's own: its parts read "teacher 0.00 GB"
    ("0.001", r"^error: compile\.max_memory_gb=0\.001 GB is below what the runtime holds before any network "
              r"\(0\.40 GB: the interpreter, torch and onnx\); raise the bound$"),
    ("0", r"^error: compile\.max_memory_gb must be > 0 and finite \(got 0"),
    ("inf", r"^error: compile\.max_memory_gb must be > 0 and finite \(got inf\)$"),  # was an OverflowError
])
def test_a_run_that_cannot_fit_is_refused_before_it_starts(bound: str, pattern: str, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from dse.cli import run_app
    from dse.compile.__main__ import main

    code = run_app("compile", main, [f"compile.max_memory_gb={bound}", "progress=false",
                                     f"hydra.run.dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and re.search(pattern, err[0]), err
    assert not (tmp_path / "run").exists()


def test_the_estimate_grows_with_the_calibration_images_and_the_tuning_rows() -> None:
    graph, data = load_model("lenet_mnist", "mnist")
    small = check_memory(graph, data, calib_samples=100)  # what prepare holds: no tuning rows, no training
    large = check_memory(graph, data, calib_samples=1000)
    assert large.parts["calibration"] == 10 * small.parts["calibration"] > 0
    assert large.parts["tuning_rows"] == large.parts["training"] == 0
    rows = check_memory(graph, data, calib_samples=1000, tuning=TuneOptions(max_rows=1_000_000))
    few = check_memory(graph, data, calib_samples=1000, tuning=TuneOptions(max_rows=1_000))
    assert rows.estimate > few.estimate >= large.estimate
    # the teacher's values a chunk at a time: all 1000 images' largest value at once (below LAZY_CHUNK_FLOATS)
    assert "teacher" not in large.parts
    assert few.parts["teacher"] == 10 * check_memory(graph, data, calib_samples=100, tuning=SHORT).parts["teacher"] > 0
    with pytest.raises(ResourceError, match=r"largest part: \w+ [\d.]+ GB (at node '.*'|\(the teacher's values).*"
                                            r"model\.calib_samples"):
        check_memory(graph, data, calib_samples=1000, tuning=SHORT, max_memory_gb=few.estimate / 2 / GB)


def test_a_tight_bound_makes_batches_smaller_and_changes_no_number() -> None:
    """Blocks run over the calibration data, the float runs and the chip evaluation go a few images at a
    time under a tight bound. The chip's network and its outputs stay the same to the bit (tuning works on
    codes, whose sums are exact, and on the teacher's values over all calibration images at once); the float
    runs of the original network agree to float32 rounding (torch's convolution and matrix kernels sum in an
    order that depends on the batch size: lenet's logits move by up to 2e-6 between batches of 8 and 1000)."""
    graph, data = load_model("lenet_mnist", "mnist")
    data = data.select(test_samples=300)  # batches of ~5 test images: 60 of them say what 200 would
    for tuning in (SHORT, TuneOptions(mode="none")):
        default = plan_memory(graph, calib_samples=200, test_samples=len(data.x_test), tuning=tuning,
                              max_memory_gb=None)
        fixed = default.estimate - default.parts["chunk"]
        values = default.sample_floats // EVAL_COPIES  # the network's values per sample
        tight_gb = (fixed + 5 * CHUNK_COPIES * values * FLOAT) / GB  # chunks of about 5 samples
        results = []
        for bound in (None, tight_gb):
            prepared = prepare(graph, data, name="lenet", calib_samples=200, max_memory_gb=bound)
            results.append((prepared, compile(prepared, CHIP, tuning=tuning, max_memory_gb=bound)))
        (p_default, r_default), (p_tight, r_tight) = results
        tight, default = r_tight.report.memory.as_dict(), r_default.report.memory.as_dict()
        # lenet's first block holds about 3500 values x its cores per image: a few chunks for 200 images
        assert tight["chunk_floats"] < 100 * 3500 < default["chunk_floats"]
        for batch in ("eval_batch", "forward_batch"):
            assert tight[batch] < default[batch] == len(data.x_test), batch
        np.testing.assert_allclose(p_tight.original_test_logits, p_default.original_test_logits, rtol=0, atol=1e-5)
        for a, b in zip(r_tight.graph, r_default.graph, strict=True):
            if isinstance(a.op, o.CoreOp):
                np.testing.assert_array_equal(a.op.quant.weight_int, b.op.quant.weight_int)
                np.testing.assert_array_equal(a.op.quant.bias_int, b.op.quant.bias_int)
                assert a.op.quant.out_scale == b.op.quant.out_scale
        # (`verify` differs: it checks the first batch, whose size is what the bound changes)
        for key in ("accuracy_original", "accuracy_compiled", "agreement"):
            assert getattr(r_tight.report.metrics, key) == getattr(r_default.report.metrics, key), key
        tight_m, default_m = r_tight.report.metrics, r_default.report.metrics
        assert tight_m.logits_rel_error == pytest.approx(default_m.logits_rel_error, rel=1e-5)


def test_a_network_of_large_weights_peaks_after_tuning_and_is_refused_for_it(tmp_path) -> None:
    """Few values and many weights: the cost step after tuning holds the weights in all their forms, more than
    tuning holds with its smallest chunks; a bound between the two refuses the run, naming that step."""
    from hostile_models import mlp

    graph, data = load_model(mlp(tmp_path, "wide", np.full((20_000, 784), 0.01, np.float32)), "mnist")
    plan = check_memory(graph, data, calib_samples=10)
    bound = 0.98 * plan.cost
    smallest_chunk = CHUNK_COPIES * 4 * 20_000 * FLOAT  # four of the largest value, one sample at a time
    assert sum(v for k, v in plan.parts.items() if k != "chunk") + smallest_chunk < bound
    with pytest.raises(ResourceError, match=r"largest part: the (evaluation|cost step) after tuning, \d+\.\d+ GB"):
        check_memory(graph, data, calib_samples=10, max_memory_gb=bound / GB)


@pytest.mark.parametrize("overrides, named", [
    (["hardware=chip_b", "hardware.neuron.timesteps=100000000"], r"hardware\.neuron\.timesteps=100000000"),
    (["hardware.mapping.mesh=[100000,100000]"], r"hardware\.mapping\.mesh=\[100000, 100000\]"),
    (["hardware.mapping.cores_per_chip=10000000000"], r"hardware\.mapping\.cores_per_chip=10000000000"),
    (["strategy.reencode_k=1000"], r"strategy\.reencode_k=1000"),
    (["strategy.readout_k=100000"], r"strategy\.readout_k=100000"),
    (["hardware.device.read_sigma=0.01", "evaluate.instances=100000"], r"evaluate\.instances=100000"),
])
def test_what_the_chip_or_the_strategy_multiplies_is_in_the_estimate(overrides: list[str], named: str,
                                                                     tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Each once ran into a traceback (an allocation of terabytes), an out-of-memory kill or a long run: now the
    estimate counts it and the run is refused before any work, naming the setting."""
    from dse.cli import run_app
    from dse.compile.__main__ import main

    code = run_app("compile", main, ["model=mlp_digits", *overrides, "compile.max_memory_gb=8", "progress=false",
                                     f"hydra.run.dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert re.search(rf"^error: estimated peak memory [\d.]+ GB exceeds the bound .*{named}.*, or lower ", err[0]), err
    assert not (tmp_path / "run").exists()


def test_the_neutral_chip_work_leaves_the_plan_as_it_was() -> None:
    """A chip of ReLU neurons, no population, no mesh: the plan of the graph alone (chip_a compiles no slower)."""
    from dse.compile.memory import ChipWork

    graph, data = load_model("lenet_mnist", "mnist")
    alone = check_memory(graph, data, calib_samples=200, tuning=SHORT)
    assert check_memory(graph, data, calib_samples=200, tuning=SHORT, work=ChipWork.of(CHIP)) == alone
    spiking = ChipWork.of(HardwareSpec(name="s", weights=Weights(4), io=IO(None, None),
                                       neuron=dataclasses.replace(HardwareSpec().neuron, model="if", timesteps=16)))
    wide = check_memory(graph, data, calib_samples=200, tuning=SHORT, work=spiking)
    assert wide.parts["spike_trains"] > 0 and wide.eval_batch == alone.eval_batch
