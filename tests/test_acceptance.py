"""Issue 2's acceptance table, measured on lenet_mnist and its 1,000 held-out test images, issue 13's chip_b row,
and issue 11's rows for the embedded MobileNet-style and 1-D convolutional models, run as the command line a user
types (slow).

Every chip is composed from `dse/conf/` with the same overrides a user types, then compiled through the library's
front door. Each test prints its figures (run with ``-s`` to see them):

    .venv/bin/python -m pytest -m slow tests/test_acceptance.py -s
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from functools import cache
from pathlib import Path

import pytest

from dse.compile import CompileResult, Prepared, compile, load_model, prepare
from dse.config import compose_config, hardware_from, tuning_from

pytestmark = pytest.mark.slow

W4IO4 = ["hardware.weights.bits=4", "hardware.io.input_bits=4", "hardware.io.output_bits=4"]
W2IO4 = ["hardware.weights.bits=2", "hardware.io.input_bits=4", "hardware.io.output_bits=4"]
XBAR64 = ["hardware.crossbar.rows=64", "hardware.crossbar.cols=64"]
ROWS: dict[str, list[str]] = {
    "ideal": ["hardware=ideal"],
    "chip_a": [],
    "chip_a w4 io4": W4IO4,
    "chip_a w2 io4": W2IO4,
    "chip_a 64x64 split": [*XBAR64, "strategy=split"],
    "chip_a 64x64 prune": [*XBAR64, "strategy=prune"],
    "chip_a w4 io4 tuning=none": [*W4IO4, "tuning=none"],
}


@cache
def prepared(model: str) -> Prepared:
    cfg = compose_config("compile", [f"model={model}"])
    graph, data = load_model(cfg.model.name, cfg.model.dataset)
    return prepare(graph, data, name=model)


@cache
def compiled(row: str, model: str = "lenet_mnist") -> CompileResult:
    cfg = compose_config("compile", [f"model={model}", *ROWS[row]])
    return compile(prepared(model), hardware_from(cfg.hardware), strategy=cfg.strategy.name,
                   tuning=tuning_from(cfg.tuning))


def figures(row: str, result: CompileResult) -> dict:
    r = result.report.to_dict()
    out = {
        "row": row, "model": r["model"], "legal": r["legal"], "accuracy_original": r["accuracy_original"],
        "accuracy_compiled": r["accuracy_compiled"], "accuracy_delta_pp": r["accuracy_delta_pp"],
        "agreement": r["agreement"], "logits_rel_error": r["logits_rel_error"],
        "crossbars": r["resources"]["crossbars"], "compile_seconds": round(r["compile_seconds"], 2),
        "test_samples": r["test_samples"],
    }
    print("ACCEPTANCE " + json.dumps(out))
    return out


def test_ideal_equals_the_original() -> None:
    f = figures("ideal", compiled("ideal"))
    assert f["test_samples"] == 1000
    assert f["legal"] and f["agreement"] == 1.0
    assert f["logits_rel_error"] < 1e-4


def test_chip_a() -> None:
    f = figures("chip_a", compiled("chip_a"))
    assert f["legal"] and f["accuracy_delta_pp"] <= 0.2


def test_chip_a_4_bit_weights_4_bit_io() -> None:
    f = figures("chip_a w4 io4", compiled("chip_a w4 io4"))
    assert f["legal"] and f["accuracy_delta_pp"] <= 0.5


def test_chip_a_2_bit_weights_4_bit_io() -> None:
    f = figures("chip_a w2 io4", compiled("chip_a w2 io4"))
    assert f["legal"] and f["accuracy_delta_pp"] <= 1.5


def test_chip_a_64x64_split() -> None:
    f = figures("chip_a 64x64 split", compiled("chip_a 64x64 split"))
    assert f["legal"] and f["accuracy_delta_pp"] <= 0.3


def test_chip_a_64x64_prune_uses_fewer_crossbars_than_split() -> None:
    prune = figures("chip_a 64x64 prune", compiled("chip_a 64x64 prune"))
    split = compiled("chip_a 64x64 split").report.resources.crossbars
    assert prune["legal"]
    assert prune["crossbars"] < split
    assert isinstance(prune["accuracy_delta_pp"], float)  # reported; no bound in the table


def test_tuning_cuts_the_naive_error_to_a_third() -> None:
    naive = figures("chip_a w4 io4 tuning=none", compiled("chip_a w4 io4 tuning=none"))
    tuned = compiled("chip_a w4 io4").report.metrics.accuracy_delta_pp
    assert naive["legal"]
    assert tuned <= naive["accuracy_delta_pp"] / 3


def test_compile_time_of_chip_a_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """<= 30 s on 2 cores. `compile_seconds` (wall) covers fit_crossbar and tuning, the work a sweep repeats per
    chip; preparing the model (import, canonicalize, reform, teachers) is measured apart.

    This machine is shared, so the wall time also measures everyone else's load. Tuning runs on one thread
    (the caller's), so the calling thread's CPU time over the same span is what the compile costs on a core of
    its own; that is the figure asserted, and both are printed.
    """
    import dse.passes.verify as verify

    cpu_at_check: list[float] = []
    real_check = verify.legality_check

    def check(graph, hw):  # the "check" step, the first after tuning: the end of `compile_seconds`
        cpu_at_check.append(time.thread_time())
        return real_check(graph, hw)

    monkeypatch.setattr(verify, "legality_check", check)
    cfg = compose_config("compile", ["model=lenet_mnist"])
    prep, hw, tuning = prepared("lenet_mnist"), hardware_from(cfg.hardware), tuning_from(cfg.tuning)
    cpu_start = time.thread_time()
    result = compile(prep, hw, strategy=cfg.strategy.name, tuning=tuning)
    assert cpu_at_check, "the check step no longer follows tuning; update this measurement"
    cpu = cpu_at_check[0] - cpu_start
    wall = result.report.compile_seconds
    print("ACCEPTANCE " + json.dumps({
        "row": "compile time, chip_a defaults", "cpus": os.cpu_count(), "wall_seconds": round(wall, 2),
        "cpu_seconds_calling_thread": round(cpu, 2), "prepare_seconds": round(result.report.prepare_seconds, 2),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }))
    assert result.legal
    assert cpu <= 30


def test_embedded_cnn3_on_chip_a() -> None:
    """The 3-conv/2-FC CNN (input normalization in the graph, conv3 fan-in 288 > 256 rows) for chip_a."""
    result = compiled("chip_a", "cnn3_mnist")
    f = figures("cnn3_mnist chip_a", result)
    assert f["legal"] and f["accuracy_delta_pp"] <= 0.5
    assert any(n.name.endswith("_partials") for n in result.graph)  # conv3 was split and merged


# ------------------------------------------------------------------ issue 11: embedded workloads like real ones


@cache
def cli_report(*overrides: str) -> dict:
    """report.json of `python -m dse.compile OVERRIDES`, the exact command issue 11's acceptance names."""
    run_dir = Path(tempfile.mkdtemp(prefix="dse-acceptance-"))
    proc = subprocess.run([sys.executable, "-m", "dse.compile", *overrides, f"hydra.run.dir={run_dir}"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode in (0, 3), proc.stderr[-2000:]  # 3: compiled but not legal (asserted by the caller)
    report = json.loads((run_dir / "report.json").read_text())
    print("ACCEPTANCE " + json.dumps({
        "overrides": overrides, "legal": report["legal"], "accuracy_original": report["accuracy_original"],
        "accuracy_compiled": report["accuracy_compiled"], "accuracy_delta_pp": report["accuracy_delta_pp"],
        "crossbars": report["resources"]["crossbars"], "compile_seconds": round(report["compile_seconds"], 1),
        "prepare_seconds": round(report["prepare_seconds"], 1)}))
    return report


def test_mobilenet_on_chip_a() -> None:
    """Depthwise-separable convs, ReLU6, explicit stride-2 Pads and a HardSwish, TorchScript-exported."""
    tuned = cli_report("model=mobilenet_mnist", "hardware=chip_a")
    naive = cli_report("model=mobilenet_mnist", "hardware=chip_a", "tuning=none")
    assert tuned["legal"] and tuned["accuracy_delta_pp"] <= 0.5
    assert naive["legal"] and isinstance(naive["accuracy_delta_pp"], float)  # reported; no bound in the table


def test_conv1d_on_chip_a() -> None:
    r = cli_report("model=conv1d_mnist", "hardware=chip_a")
    assert r["legal"] and r["accuracy_delta_pp"] <= 0.5


def test_conv1d_on_chip_b() -> None:
    r = cli_report("model=conv1d_mnist", "hardware=chip_b")
    assert r["legal"] and r["accuracy_delta_pp"] <= 1.5


def test_noise_aware_tuning_reduces_chip_bs_loss_to_threshold_mismatch() -> None:
    """Issue 13's row: chip_b at 10 % threshold mismatch, 20 drawn chips (the same for both: `evaluate.seed=0`);
    noise-aware tuning (with its end-to-end phase, dse/tune/network.py) loses less on them than plain tuning
    (measured: 0.725 against 0.42 pp; over 3 tuning seeds x 2 chip draws 0.746 against 0.526)."""
    chips = ("hardware=chip_b", "hardware.device.threshold_mismatch=0.1", "evaluate.instances=20", "progress=false")
    plain, aware = (cli_report(*chips, f"tuning.noise_aware={a}")["device"] for a in ("false", "true"))
    print("ACCEPTANCE " + json.dumps({"plain": plain["accuracy_delta_pp_mean"], "noise_aware":
                                      aware["accuracy_delta_pp_mean"], "std": [plain["accuracy_delta_pp_std"],
                                                                               aware["accuracy_delta_pp_std"]]}))
    assert aware["accuracy_delta_pp_mean"] < 0.8 * plain["accuracy_delta_pp_mean"]


def test_a_deep_residual_network_on_chip_b_wants_32_time_steps(tmp_path: Path) -> None:
    """docs/models.md: the ResNet-18-style digits network (17 convolutions) loses 7.6 pp on chip_b at its 16
    time steps and nothing at 32 (measured: 98.99 % at 32, the original's 98.99 %; 91.44 % at 16). The row
    asserted is the one at 32 (one image of 397 is 0.25 pp); the one at 16 only has to lose more."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "bench"))
    from digits_architectures import main as write_nets

    write_nets(tmp_path, 10, ["resnet18"])
    net = [f"model.onnx={tmp_path / 'resnet18.onnx'}", f"model.dataset={tmp_path / 'resnet18.npz'}",
           "hardware=chip_b", "progress=false"]
    at_32 = cli_report(*net, "hardware.neuron.timesteps=32")
    at_16 = cli_report(*net)
    assert at_32["legal"] and at_32["accuracy_delta_pp"] <= 1.0
    assert at_16["legal"] and at_16["accuracy_delta_pp"] > at_32["accuracy_delta_pp"] + 1.0
