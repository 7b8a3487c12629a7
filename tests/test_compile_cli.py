"""`python -m dse.compile` end to end, in a subprocess: the run folder it writes, and every kind of bad input
ending in one line on stderr, exit status 2, no traceback and no report."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from omegaconf import OmegaConf
from onnx import TensorProto, numpy_helper
from onnx import helper as oh

from dse.data import model_path
from dse.errors import OutputError
from dse.ir import ops as o
from dse.ir.serialize import load_graph

FAST = ["tuning.free_steps=30", "tuning.range_steps=10", "tuning.round_steps=5", "progress=false"]
REPORT_KEYS = {"model", "hardware", "strategy", "tuning", "accuracy_original", "accuracy_compiled",
               "accuracy_delta_pp", "agreement", "resources", "legal", "violations", "compile_seconds"}
RESOURCE_KEYS = {"crossbars", "cells_used", "utilization", "neurons", "synapses"}


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str
    run_dir: Path


def run_cli(args: list[str], run_dir: Path, timeout: float = 300) -> Run:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONWARNINGS": "default"}
    proc = subprocess.run(
        [sys.executable, "-m", "dse.compile", *args, f"hydra.run.dir={run_dir}"],
        capture_output=True, text=True, timeout=timeout, cwd=run_dir.parent, env=env,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr, run_dir)


# --- a successful run ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def good_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return run_cli(["model=mlp_digits", *FAST], tmp_path_factory.mktemp("good") / "run")


def test_a_compile_exits_0_and_prints_a_summary(good_run: Run) -> None:
    assert good_run.returncode == 0, good_run.stderr
    assert "Traceback" not in good_run.stderr and "Warning" not in good_run.stderr, good_run.stderr
    assert "mlp_digits on chip_a" in good_run.stdout and "written to" in good_run.stdout
    assert "delta, 95% interval (pp)" in good_run.stdout


def test_result_files_are_readable_by_others(good_run: Run) -> None:
    import stat

    for name in ["report.json", "layers.csv", "compiled.npz", "config.yaml", "samples.json"]:
        assert stat.S_IMODE((good_run.run_dir / name).stat().st_mode) == 0o644, name  # under umask 022
    assert not [p.name for p in good_run.run_dir.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_report_json_has_every_required_key(good_run: Run) -> None:
    report = json.loads((good_run.run_dir / "report.json").read_text())
    assert REPORT_KEYS <= set(report)
    assert RESOURCE_KEYS <= set(report["resources"])
    assert report["model"] == "mlp_digits" and report["strategy"] == "split" and report["tuning"] == "multiphase"
    assert report["hardware"]["name"] == "chip_a" and report["hardware"]["weights"]["bits"] == 8
    assert report["legal"] is True and report["violations"] == []
    assert 0.9 < report["accuracy_original"] <= 1.0 and 0.9 < report["accuracy_compiled"] <= 1.0
    assert report["accuracy_delta_pp"] == pytest.approx(
        100 * (report["accuracy_original"] - report["accuracy_compiled"]), abs=1e-6)
    low, high = report["accuracy_delta_ci95"]
    assert low <= report["accuracy_delta_pp"] <= high
    assert 0.95 <= report["agreement"] <= 1.0
    assert report["resources"]["crossbars"] >= 3 and 0 < report["resources"]["utilization"] <= 1
    assert report["compile_seconds"] > 0


def test_layers_csv_has_one_row_per_core(good_run: Run) -> None:
    with open(good_run.run_dir / "layers.csv") as f:
        rows = list(csv.DictReader(f))
    graph, _ = load_graph(good_run.run_dir / "compiled.npz")
    cores = [n.name for n in graph if isinstance(n.op, o.CoreOp)]
    assert [r["name"] for r in rows] == cores
    for r in rows:
        assert {"crossbars", "cells_used", "utilization", "neurons", "synapses", "fan_in"} <= set(r)
        assert int(r["fan_in"]) <= 256 and int(r["crossbars"]) >= 1


@pytest.fixture(scope="module")
def spiking_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return run_cli(["model=mlp_digits", "hardware=chip_b", "tuning.spike_steps=5", "tuning.output_spike_steps=5",
                    *FAST], tmp_path_factory.mktemp("spiking") / "run")


@pytest.mark.parametrize("chip", ["chip_a", "chip_b"])
def test_the_cost_is_in_the_report_per_layer_and_in_the_summary(good_run: Run, spiking_run: Run, chip: str) -> None:
    run = {"chip_a": good_run, "chip_b": spiking_run}[chip]
    assert run.returncode == 0, run.stderr
    cost = json.loads((run.run_dir / "report.json").read_text())["cost"]
    components = {"chip_a": {"crossbar", "dac", "adc", "shift_add", "buffer", "noc"},
                  "chip_b": {"synapses", "neurons", "spikes", "noc", "static"}}[chip]
    assert set(cost["energy_pj"]) == {*components, "total"}
    assert cost["energy_pj"]["total"] == pytest.approx(sum(v for k, v in cost["energy_pj"].items() if k != "total"))
    assert cost["latency_ns"] > 0 and cost["area_mm2"]["total"] > 0 and cost["inferences_per_s"] > 0
    assert ("tops_per_w" in cost) is (chip == "chip_a")
    assert set(cost["noc"]) == {"in_order", "partitioned"} and cost["placement"] in cost["noc"]
    with open(run.run_dir / "layers.csv") as f:
        rows = list(csv.DictReader(f))
    assert sum(float(r["energy_pj"]) for r in rows) == pytest.approx(cost["energy_pj"]["total"])
    assert sum(float(r["area_mm2"]) for r in rows) == pytest.approx(cost["area_mm2"]["total"])
    assert all(f"energy_{k}_pj" in rows[0] for k in components)
    for line in ("energy / inference", "latency", "area (mm^2)", "inferences / s"):
        assert line in run.stdout, run.stdout
    assert ("TOPS/W" in run.stdout) is (chip == "chip_a")


def test_the_ideal_chip_has_no_cost(tmp_path: Path) -> None:
    run = run_cli(["model=mlp_digits", "hardware=ideal", *FAST], tmp_path / "run")
    assert run.returncode == 0, run.stderr
    assert "cost" not in json.loads((run.run_dir / "report.json").read_text())
    assert "energy" not in run.stdout


def test_compiled_npz_is_the_integer_network(good_run: Run) -> None:
    from dse.data import load_dataset
    from dse.sim.integer import run_integer

    graph, meta = load_graph(good_run.run_dir / "compiled.npz")
    report = json.loads((good_run.run_dir / "report.json").read_text())
    assert meta["report"]["accuracy_compiled"] == report["accuracy_compiled"]
    data = load_dataset("digits")
    logits, _ = run_integer(graph, data.x_test)
    assert float((logits.argmax(1) == data.y_test).mean()) == report["accuracy_compiled"]


def test_config_yaml_is_the_resolved_config(good_run: Run) -> None:
    cfg = OmegaConf.to_container(OmegaConf.load(good_run.run_dir / "config.yaml"))
    assert cfg["model"]["name"] == "mlp_digits" and cfg["hardware"]["name"] == "chip_a"
    assert cfg["tuning"]["free_steps"] == 30 and cfg["strategy"]["name"] == "split"
    assert "hydra" not in cfg


def test_help_lists_the_imported_ops(tmp_path: Path) -> None:
    run = run_cli(["--help"], tmp_path / "run")
    assert run.returncode == 0 and "Conv" in run.stdout and "hardware=" in run.stdout


# --- bad input ----------------------------------------------------------------------------------------------


def erf_model(path: Path) -> None:
    """A digits-shaped model with an Erf on the data path."""
    x = oh.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])
    y = oh.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])
    inits = [numpy_helper.from_array(np.ones((10, 64), np.float32), "w"),
             numpy_helper.from_array(np.array([-1, 64], np.int64), "shape")]
    nodes = [oh.make_node("Erf", ["x"], ["e"], name="my_erf"), oh.make_node("Reshape", ["e", "shape"], ["f"]),
             oh.make_node("Gemm", ["f", "w"], ["y"], transB=1)]
    onnx.save(oh.make_model(oh.make_graph(nodes, "erf", [x], [y], inits),
                            opset_imports=[oh.make_opsetid("", 17)]), str(path))


def external_outside_model(folder: Path) -> Path:
    """A model whose weight lives in ../secret.bin, outside its own folder."""
    (folder / "secret.bin").write_bytes(np.ones(640, np.float32).tobytes())
    inner = folder / "model"
    inner.mkdir()
    x = oh.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])
    y = oh.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])
    w = numpy_helper.from_array(np.ones((10, 64), np.float32), "w")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../secret.bin"), ("offset", "0"), ("length", "2560")):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    nodes = [oh.make_node("Reshape", ["x", "shape"], ["f"]), oh.make_node("Gemm", ["f", "w"], ["y"], transB=1)]
    graph = oh.make_graph(nodes, "ext", [x], [y], [w, numpy_helper.from_array(np.array([-1, 64], np.int64),
                                                                               "shape")])
    path = inner / "model.onnx"
    path.write_bytes(oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)]).SerializeToString())
    return path


def bad_cases(folder: Path) -> dict[str, tuple[list[str], str]]:
    """The bad inputs of the acceptance list: name -> (overrides, what the one line must say)."""
    (folder / "text.onnx").write_text("this is not a protobuf\n")
    lenet = model_path("lenet_mnist").read_bytes()
    (folder / "truncated.onnx").write_bytes(lenet[: len(lenet) // 2])
    erf_model(folder / "erf.onnx")
    outside = external_outside_model(folder)
    return {
        "missing model file": ([f"model.onnx={folder / 'nope.onnx'}"], r"model file not found: .*nope\.onnx"),
        "not ONNX": ([f"model.onnx={folder / 'text.onnx'}"], r"text\.onnx is not a readable ONNX model"),
        "truncated ONNX": ([f"model.onnx={folder / 'truncated.onnx'}"], r"truncated\.onnx is not a readable ONNX"),
        "unsupported op": ([f"model.onnx={folder / 'erf.onnx'}", "model.dataset=digits"],
                           r"unsupported op Erf at node 'my_erf'"),
        "external data outside": ([f"model.onnx={outside}", "model.dataset=digits"],
                                  r"tensor 'w' refers to external data '\.\./secret\.bin' outside the model's folder"),
        "input does not fit": (["model=mlp_digits", "model.dataset=mnist"],
                               r"model input shape \(1, 8, 8\).*does not fit dataset mnist"),
        "weight bits 0": (["hardware.weights.bits=0"], r"hardware\.weights\.bits must be an integer >= 1 \(got 0\)"),
        "rows 1": (["hardware.crossbar.rows=1"], r"hardware\.crossbar\.rows must be an integer >= 2 \(got 1\)"),
        "unknown neuron": (["hardware.neuron.model=izhikevich"], r"hardware\.neuron\.model.*izhikevich"),
        "no strategy: 5x5 conv on 8 rows, split": (["hardware.crossbar.rows=8", "model.calib_samples=64"],
                                                   r"5x5 taps needs 25 rows.*8 rows"),
        "no strategy: 5x5 conv on 8 rows, prune": (["hardware.crossbar.rows=8", "strategy=prune",
                                                    "model.calib_samples=64"], r"needs 25 rows, more than 8"),
    }


# the case names, known at collection; a test keeps this list and `bad_cases` the same
BAD = ["missing model file", "not ONNX", "truncated ONNX", "unsupported op", "external data outside",
       "input does not fit", "weight bits 0", "rows 1", "unknown neuron", "no strategy: 5x5 conv on 8 rows, split",
       "no strategy: 5x5 conv on 8 rows, prune"]


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Run, str]]:
    folder = tmp_path_factory.mktemp("bad")
    cases = bad_cases(folder)
    with ThreadPoolExecutor(max_workers=3) as pool:  # each run is mostly interpreter start-up
        futures = {name: pool.submit(run_cli, [*args, *FAST], folder / re.sub(r"\W+", "_", name))
                   for name, (args, _) in cases.items()}
        return {name: (f.result(), cases[name][1]) for name, f in futures.items()}


def test_the_bad_case_list_is_complete(tmp_path: Path) -> None:
    assert set(BAD) == set(bad_cases(tmp_path))


def assert_one_line_error(returncode: int, stdout: str, stderr: str, pattern: str) -> None:
    lines = stderr.strip().splitlines()
    assert returncode == 2, (returncode, stderr[-2000:])
    assert "Traceback" not in stderr + stdout
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    assert re.search(pattern, lines[0]), lines[0]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_exit_2_no_traceback_no_report(bad_runs: dict[str, tuple[Run, str]],
                                                             case: str) -> None:
    run, pattern = bad_runs[case]
    assert_one_line_error(run.returncode, run.stdout, run.stderr, pattern)
    assert not (run.run_dir / "report.json").exists()


# more user mistakes, run in-process (the same entry point, without paying an interpreter start each)
MORE = {
    "input bits -1": (["hardware.io.input_bits=-1"], r"hardware\.io\.input_bits must be an integer >= 1"),
    "cell bits 0": (["hardware.crossbar.cell_bits=0"], r"hardware\.crossbar\.cell_bits"),
    "weight bits not a number": (["hardware.weights.bits=eight"], r"hardware\.weights\.bits"),
    "leak above 1": (["hardware.neuron.leak=2"], r"hardware\.neuron\.leak must be in \(0, 1\]"),
    "unknown hardware key": (["+hardware.crossbar.size=4"], r"hardware\.crossbar\.size"),
    "unknown strategy": (["strategy=merge"], r"strategy/merge.*available: prune, split"),
    "unknown model": (["model=alexnet"], r"model/alexnet"),
    "unknown dataset": (["model.dataset=cifar"], r"unknown dataset 'cifar'"),
    "unknown tuning mode": (["tuning.mode=retrain"], r"tuning\.mode must be one of"),
    "unknown output loss": (["tuning.output_loss=ce"], r"tuning\.output_loss must be one of .*\(got 'ce'\)"),
    "an option": (["--fast"], r"unknown option --fast"),
    "an option near a known one": (["--verbos"], r"unknown option --verbos; did you mean --verbose\?"),
    "Hydra's -m": (["-m"], r"-m/--multirun: dse\.compile compiles one configuration; .*python -m dse\.sweep"),
    "Hydra's --info": (["--info"], r"--info is Hydra's; use --help"),
    "an added unknown key": (["+foo.bar=1"], r"unknown config key foo \(valid keys: model, hardware"),
    "a near miss": (["hardware.weight.bits=4"],
                    r"unknown config key hardware\.weight; did you mean hardware\.weights\?"),
    "an added near miss": (["+hardware.cost.adc_8b_pj_per_convertion=1"],
                           r"did you mean hardware\.cost\.adc_8b_pj_per_conversion\?"),
    "a preset near miss": (["hardware=chip_aa"], r"hardware/chip_aa.*did you mean chip_a\?"),
    # bit widths past what the simulators hold exactly: exit 1 (an accumulator past 2**53), an OverflowError
    "64-bit inputs": (["hardware.io.input_bits=64"], r"hardware\.io\.input_bits=64 is more than the 24 bits"),
    "200-bit inputs": (["hardware.io.input_bits=200"], r"hardware\.io\.input_bits=200 is more than the 24 bits"),
    "wide codes on no crossbar": (["model=mlp_digits", "hardware=ideal", "hardware.weights.bits=25",
                                   "hardware.io.input_bits=24", "hardware.io.output_bits=24"],
                                  r"core \S+ of fan-in 64 \(hardware\.crossbar\.rows=null\) with "
                                  r"hardware\.weights\.bits=25 and hardware\.io\.input_bits=24: .* past 2\*\*53"),
    "3 rows cannot merge": (["model=mlp_digits", "hardware.crossbar.rows=3"], r"at least 4 rows.*has 3"),
    "missing file": (["model.onnx=/nonexistent/model.onnx"], r"model file not found"),
    # Path.exists() raises for a name past 255 bytes: an OSError traceback wherever it was first looked at
    "model file name too long": ([f"model.onnx=/tmp/{'m' * 300}.onnx"], r"m{300}\.onnx: File name too long for the"),
    "dataset name too long": ([f"model.dataset=/tmp/{'d' * 300}.npz"], r"d{300}\.npz: File name too long for the"),
    # an interpolation that fails, a group taken out: tracebacks where the value was first read
    "an unset environment variable": (["model.dataset=${oc.env:DSE_TEST_UNSET}"],
                                      r"^error: model\.dataset: .*Environment variable 'DSE_TEST_UNSET' not found"),
    "an interpolation of no key": (["model.name=${foo}"], r"^error: model\.name: Interpolation key 'foo' not found$"),
    "a group taken out": (["~hardware"], r"^error: hardware: Missing mandatory value: hardware$"),
    # the last word on a path wins: an earlier override of it that does not resolve was read anyway (a traceback)
    "an unresolvable override given again": (["hydra.run.dir=${oc.env:DSE_TEST_UNSET}",
                                              "model.dataset=${oc.env:DSE_TEST_UNSET}", "model.dataset=cifar"],
                                             r"^error: unknown dataset 'cifar'"),
    # the cost model's coefficients and the mesh (issue 12's bad input)
    "cost coefficient 0": (["hardware.cost.adc_8b_pj_per_conversion=0"],
                           r"hardware\.cost\.adc_8b_pj_per_conversion must be a positive number \(got 0\.0\)"),
    "cost coefficient negative": (["hardware=chip_b", "hardware.cost.synaptic_event_pj=-23.6"],
                                  r"hardware\.cost\.synaptic_event_pj must be a positive number \(got -23\.6\)"),
    "cost field of the other chip kind": (["hardware.cost.synaptic_event_pj=23.6"],
                                          r"hardware\.cost\.synaptic_event_pj is a cost of spiking chips; chip "
                                          r"chip_a is a pim chip"),
    # one was an OverflowError (2**1999 as a float), the other an energy of Infinity in report.json
    "DAC wider than the inputs": (["hardware.cost.dac_bits=2000"],
                                  r"hardware\.cost\.dac_bits=2000 is wider than the codes it converts "
                                  r"\(hardware\.io\.input_bits=6\)"),
    "cost past float64": (["model=mlp_digits", "hardware.cost.adc_8b_pj_per_conversion=1e308"],
                          r"the chip's energy per inference \(pJ\) is inf, past float64, with "
                          r"hardware\.cost\.adc_8b_pj_per_conversion=1e\+308 the largest coefficient"),
    "unknown cost field": (["hardware.cost.adc_pj=1.56"], r"hardware\.cost\.adc_pj"),
    "mesh too small": (["model=mlp_digits", "hardware.mapping.mesh=[1,2]"],
                       r"the network needs 3 cores but the mesh of 1 x 2 holds 2"),
    "mesh not 2-D": (["hardware.mapping.mesh=[4]"], r"hardware\.mapping\.mesh must be \[width, height\]"),
    # device non-idealities (issue 13's bad input; the fault map's shape: tests/test_device_compile.py)
    "negative variation": (["hardware.device.programming_sigma=-0.05"],
                           r"hardware\.device\.programming_sigma must be >= 0 \(got -0\.05\)"),
    "stuck rate above 1": (["hardware.device.stuck_high=1.5"], r"hardware\.device\.stuck_high is a fraction"),
    "drift time without a drift model": (["hardware.device.drift_seconds=3600"],
                                         r"drift_seconds=3600\.0 needs a drift model"),
    "instances on an ideal device": (["evaluate.instances=20"], r"evaluate\.instances=20 needs a device"),
    # settings no tuner or simulator can use: once a NaN rate ran on, a negative seed was a numpy traceback
    "learning rate NaN": (["tuning.lr=nan"], r"tuning\.lr must be a finite number \(got nan\)"),
    "no rows per step": (["tuning.batch_size=0"], r"tuning\.batch_size must be an integer >= 1 \(got 0\)"),
    "negative tuning seed": (["tuning.seed=-1"], r"tuning\.seed must be an integer >= 0 \(got -1\)"),
    "negative chip seed": (["hardware.device.read_sigma=0.01", "evaluate.seed=-1"],
                           r"evaluate\.seed must be an integer >= 0 \(got -1\)"),
    "approximator of one unit": (["model=mlp_sigmoid_mnist", "strategy.approximator_width=1"],
                                 r"strategy\.approximator_width must be an integer >= 2 \(got 1\)"),
    # settings that change nothing on this chip or with this tuning: they were accepted and ignored
    "I/O bits on a spiking chip": (["hardware=chip_b", "hardware.io.input_bits=4"],
                                   r"hardware\.io\.input_bits=4 on a spiking chip \(hardware\.neuron\.model=if, "
                                   r"values travel as 0\.\.16 spikes\) changes nothing"),
    "time steps on a ReLU chip": (["hardware.neuron.timesteps=8"],
                                  r"hardware\.neuron\.timesteps changes nothing: it acts on if, lif, if_floor"),
    "leak of IF neurons": (["hardware=chip_b", "hardware.neuron.leak=0.5"],
                           r"hardware\.neuron\.leak changes nothing: it acts on lif neurons, and the chip has if"),
    "spike-aware steps on a ReLU chip": (["tuning.spike_steps=30"], r"tuning\.spike_steps changes nothing"),
    "training steps of the rounding baseline": (["tuning=none"],
                                                r"tuning\.free_steps changes nothing with tuning\.mode=none"),
    "chips per check without noise-aware tuning": (["tuning.noise_checks=8"],
                                                   r"tuning\.noise_checks changes nothing without "
                                                   r"tuning\.noise_aware=true$"),
    "end-to-end steps on a ReLU chip": (["tuning.network_steps=10"], r"tuning\.network_steps changes nothing: it "
                                                                     r"acts on if, lif, if_floor neurons"),
    "seed of chips never drawn": (["evaluate.seed=3"], r"evaluate\.seed=3 changes nothing: hardware\.device is ideal"),
    "seed of chips all the same": (["evaluate.seed=3", "hardware.device.drift_model=pcm",
                                    "hardware.device.drift_seconds=100"],
                                   r"evaluate\.seed=3 changes nothing: every chip drawn from hardware\.device is the "
                                   r"same \(no variation, noise or random drift\) and the inputs are not Poisson"),
}


@pytest.mark.parametrize("case", list(MORE))
def test_more_bad_input_in_process(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dse.cli import run_app
    from dse.compile.__main__ import main

    args, pattern = MORE[case]
    code = run_app("compile", main, [*args, *FAST, f"hydra.run.dir={tmp_path / 'run'}"])
    out = capsys.readouterr()
    assert_one_line_error(code, out.out, out.err, pattern)
    assert not (tmp_path / "run" / "report.json").exists()


# the user's data gone wrong: each one line naming the problem, exit status 2, no run folder at all
def data_cases(folder: Path) -> dict[str, tuple[list[str], str]]:
    from PIL import Image

    x = np.zeros((10, 1, 28, 28), np.float32)
    np.savez(folder / "no_x.npz", images=x)
    np.savez(folder / "short_y.npz", x=x, y=np.zeros(9, np.int64))
    np.savez(folder / "label_11.npz", x=x, y=np.arange(10) + 2)
    np.savez(folder / "cifar.npz", x=np.zeros((10, 3, 32, 32), np.float32))
    nan = x.copy()
    nan[3, 0, 5, 5] = np.nan
    np.savez(folder / "nan.npz", x=nan, y=np.zeros(10, np.int64))
    (folder / "empty" / "cat").mkdir(parents=True)
    for name, size in (("a.png", (28, 28)), ("b.png", (30, 28))):
        (folder / "mixed" / "cat").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros(size[::-1], np.uint8)).save(folder / "mixed" / "cat" / name)
    (folder / "mixed" / "dog").mkdir()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(folder / "mixed" / "dog" / "a.png")
    (folder / "user_loader.py").write_text("def load():\n    raise KeyError('images')\n")
    return {
        "npz without x": ([f"model.dataset={folder / 'no_x.npz'}"], r"no_x\.npz holds no array 'x'.*it has: images"),
        "labels do not match samples": ([f"model.dataset={folder / 'short_y.npz'}"],
                                        r"y of .*short_y\.npz has 9 labels for 10 samples"),
        "image folder without images": ([f"model.dataset={folder / 'empty'}"], r"empty holds no images"),
        "images of mixed sizes": ([f"model.dataset={folder / 'mixed'}"],
                                  r"mixed sizes.*a\.png is 28x28, cat/b\.png is 30x28; set model\.preprocess\.resize"),
        "function cannot be imported": (["model.dataset=no_such_loader:load"],
                                        r"cannot import dataset function no_such_loader:load: No module named"),
        "function raises": (["model.dataset=user_loader:load"],
                            r"dataset function user_loader:load raised KeyError: 'images'"),
        "labels beyond the outputs": ([f"model.dataset={folder / 'label_11.npz'}"],
                                      r"labels up to 11 but model lenet_mnist\.onnx has 10 outputs"),
        "samples do not fit the network": ([f"model.dataset={folder / 'cifar.npz'}"],
                                           r"model input shape \(1, 28, 28\).*does not fit.*samples \(3, 32, 32\)"),
        "preprocess on a .npz": ([f"model.dataset={folder / 'cifar.npz'}", "model.preprocess.resize=28"],
                                 r"model\.preprocess applies to an image folder"),
        "no test sample": (["model.test_samples=0"], r"model\.test_samples must be an integer >= 1 \(got 0\)"),
        # not "the original network's outputs hold NaN" (exit 4), which blamed the network
        "a NaN in the data": ([f"model.dataset={folder / 'nan.npz'}"],
                              r"dataset .*nan\.npz: (calibration|test) sample 3 holds NaN or Inf"),
    }


DATA = ["npz without x", "labels do not match samples", "image folder without images", "images of mixed sizes",
        "function cannot be imported", "function raises", "labels beyond the outputs",
        "samples do not fit the network", "preprocess on a .npz", "no test sample", "a NaN in the data"]


def test_the_bad_data_list_is_complete(tmp_path: Path) -> None:
    assert set(DATA) == set(data_cases(tmp_path))


@pytest.mark.parametrize("case", DATA)
def test_bad_data_in_process(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    from dse.cli import run_app
    from dse.compile.__main__ import main

    monkeypatch.syspath_prepend(str(tmp_path))  # user_loader.py, as `python -m` finds it in the working folder
    args, pattern = data_cases(tmp_path)[case]
    code = run_app("compile", main, [*args, *FAST, f"hydra.run.dir={tmp_path / 'run'}"])
    out = capsys.readouterr()
    assert_one_line_error(code, out.out, out.err, pattern)
    assert not (tmp_path / "run").exists()


def test_a_network_of_two_outputs_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The compile measures and tunes one output; a second one was compiled and never checked."""
    from dse.cli import run_app
    from dse.compile.__main__ import main

    x = oh.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])
    ys = [oh.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 10]) for n in ("logits", "probs")]
    nodes = [oh.make_node("Reshape", ["x", "shape"], ["f"]), oh.make_node("Gemm", ["f", "w"], ["logits"], transB=1),
             oh.make_node("Softmax", ["logits"], ["probs"])]
    inits = [numpy_helper.from_array(np.ones((10, 64), np.float32), "w"),
             numpy_helper.from_array(np.array([-1, 64], np.int64), "shape")]
    onnx.save(oh.make_model(oh.make_graph(nodes, "two", [x], ys, inits), opset_imports=[oh.make_opsetid("", 17)]),
              str(tmp_path / "two.onnx"))
    code = run_app("compile", main, [f"model.onnx={tmp_path / 'two.onnx'}", "model.dataset=digits", *FAST,
                                     f"hydra.run.dir={tmp_path / 'run'}"])
    out = capsys.readouterr()
    assert_one_line_error(code, out.out, out.err,
                          r"network 'two' has 2 outputs \('logits', 'probs'\); dse compiles a network of one output")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["../../esc", "a/b", ""])
def test_a_user_models_name_that_is_not_a_folder_name_is_one_line(name: str, tmp_path: Path, monkeypatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """model.name=../../esc wrote the compile to results/compile/../../esc_chip_a_split/, outside results/."""
    from dse.cli import run_app
    from dse.compile.__main__ import main

    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    code = run_app("compile", main, [f"model.onnx={model_path('mlp_digits')}", "model.dataset=digits", *FAST,
                                     f"model.name='{name}'"])
    out = capsys.readouterr()
    assert_one_line_error(code, out.out, out.err, rf"^error: model\.name={name!r} names the run folder")
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_an_opset_newer_than_onnx_knows_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The checker passes opset 30 (onnxruntime refuses it): it was compiled as if its ops meant what they did."""
    from dse.cli import run_app
    from dse.compile.__main__ import main

    newest = onnx.defs.onnx_opset_version()
    x = oh.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])
    y = oh.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])
    nodes = [oh.make_node("Reshape", ["x", "shape"], ["f"]), oh.make_node("Gemm", ["f", "w"], ["y"], transB=1)]
    inits = [numpy_helper.from_array(np.ones((10, 64), np.float32), "w"),
             numpy_helper.from_array(np.array([-1, 64], np.int64), "shape")]
    onnx.save(oh.make_model(oh.make_graph(nodes, "future", [x], [y], inits),
                            opset_imports=[oh.make_opsetid("", newest + 2)]), str(tmp_path / "future.onnx"))
    code = run_app("compile", main, [f"model.onnx={tmp_path / 'future.onnx'}", "model.dataset=digits", *FAST,
                                     f"hydra.run.dir={tmp_path / 'run'}"])
    out = capsys.readouterr()
    assert_one_line_error(code, out.out, out.err, rf"future\.onnx uses opset {newest + 2}; the installed onnx "
                                                  rf".* knows opsets up to {newest}: export it at opset {newest}")
    assert not (tmp_path / "run").exists()


def test_a_run_folder_that_is_a_file_is_one_line_before_any_work(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """It was a NotADirectoryError traceback once the compile had run."""
    from dse.cli import run_app
    from dse.compile.__main__ import main

    (tmp_path / "taken").write_text("a file\n")
    for run_dir, pattern in ((tmp_path / "taken", r"run folder .*taken is a file, not a folder"),
                             (tmp_path / "taken" / "run", r"run folder .*taken/run is under .*taken, a file")):
        code = run_app("compile", main, ["model=mlp_digits", "tuning=none", "progress=false",
                                         f"hydra.run.dir={run_dir}"])
        out = capsys.readouterr()
        assert_one_line_error(code, out.out, out.err, pattern)
    assert (tmp_path / "taken").read_text() == "a file\n"


def test_an_empty_run_folder_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """`hydra.run.dir=` (a shell's ``hydra.run.dir=$OUT`` with OUT unset) wrote every result file of a compile or a
    sweep into the working folder."""
    from dse.cli import run_app
    from dse.compile.__main__ import main
    from dse.sweep import cli

    monkeypatch.chdir(tmp_path)
    code = run_app("compile", main, ["model=mlp_digits", "tuning=none", "progress=false", "hydra.run.dir="])
    out = capsys.readouterr()
    assert_one_line_error(code, out.out, out.err, r"^error: hydra\.run\.dir is empty; name a folder")
    code = cli(["model=mlp_digits", "tuning=none", "search=custom", "hardware.weights.bits=4,8", "runner=local",
                "progress=false", "hydra.run.dir= "])
    out = capsys.readouterr()
    assert_one_line_error(code, out.out, out.err, r"^error: hydra\.run\.dir is empty; name a folder")
    assert list(tmp_path.iterdir()) == []


def test_another_compiles_results_are_never_written_over(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same configuration again writes over its own results; another one is refused before any work, and the
    folder keeps what was computed there."""
    from dse.cli import run_app
    from dse.compile.__main__ import main

    run = [f"hydra.run.dir={tmp_path / 'run'}", "model=mlp_digits", "tuning=none"]
    assert run_app("compile", main, [*run, "progress=false"]) == 0
    report = (tmp_path / "run" / "report.json").read_text()
    assert run_app("compile", main, [*run, "progress=true"]) == 0  # the same settings, shown otherwise
    capsys.readouterr()
    code = run_app("compile", main, [*run, "progress=false", "hardware.weights.bits=4"])
    out = capsys.readouterr()
    assert_one_line_error(code, out.out, out.err,
                          r"run folder .*run holds the results of another compile \(its config\.yaml differs\); "
                          r"choose another hydra\.run\.dir")
    assert json.loads((tmp_path / "run" / "report.json").read_text())["hardware"] == json.loads(report)["hardware"]
    # a sweep's folder: its config.yaml (the search space) and samples.json would have gone
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "study.db").write_bytes(b"")
    code = run_app("compile", main, [f"hydra.run.dir={tmp_path / 'sweep'}", "model=mlp_digits", "tuning=none"])
    out = capsys.readouterr()
    assert_one_line_error(code, out.out, out.err, r"run folder .*sweep holds a sweep \(study\.db\)")
    assert [p.name for p in (tmp_path / "sweep").iterdir()] == ["study.db"]
    # another run's compiled.npz (or layers.csv, ...) put there without its config.yaml was written over
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "compiled.npz").write_bytes(b"another run's")
    code = run_app("compile", main, [f"hydra.run.dir={tmp_path / 'kept'}", "model=mlp_digits", "tuning=none"])
    out = capsys.readouterr()
    assert_one_line_error(code, out.out, out.err, r"run folder .*kept holds the results of another compile \(its "
                                                  r"config\.yaml is missing or unreadable\)")
    assert (tmp_path / "kept" / "compiled.npz").read_bytes() == b"another run's"


def test_a_compile_that_wrote_into_the_named_folder_meanwhile_is_not_written_over(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Two compiles of other configurations named into one folder at once (a shell loop with ``&``) both passed
    the check before any work, both wrote, both exited 0: the first's results were lost under the second's."""
    import dse.compile.__main__ as command
    from dse.cli import run_app

    run = [f"hydra.run.dir={tmp_path / 'run'}", "model=mlp_digits", "tuning=none", "progress=false"]
    real = command.make_run_folder

    def another_compile_finishes_first(run_dir: Path, *, chosen: bool) -> Path:
        monkeypatch.setattr(command, "make_run_folder", real)
        assert run_app("compile", command.main, [*run, "hardware.weights.bits=4"]) == 0
        return real(run_dir, chosen=chosen)

    monkeypatch.setattr(command, "make_run_folder", another_compile_finishes_first)
    code = run_app("compile", command.main, run)  # 8-bit weights: checked, compiled, then the folder is taken
    out = capsys.readouterr()
    assert_one_line_error(code, out.out, out.err,
                          r"run folder .*run holds the results of another compile \(its config\.yaml differs\)")
    assert json.loads((tmp_path / "run" / "report.json").read_text())["hardware"]["weights"]["bits"] == 4


@pytest.mark.parametrize("failure", [OutputError("cannot write layers.csv (No space left on device)"),
                                     KeyboardInterrupt()], ids=["full disk", "Ctrl-C"])
def test_a_compile_whose_writing_fails_leaves_no_half_of_a_run_folder(
        failure: BaseException, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk at layers.csv (exit 2) or Ctrl-C there (130) left config.yaml and compiled.npz without a
    report.json: a folder that a compile of another configuration then refused as another's results."""
    import dse.compile.__main__ as command
    from dse.cli import run_app

    real = command.atomic_write_text

    def fails_at_layers_csv(path: Path, text: str) -> Path:
        if Path(path).name == "layers.csv":
            raise failure
        return real(path, text)

    monkeypatch.setattr(command, "atomic_write_text", fails_at_layers_csv)
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "notes.txt").write_text("mine\n")
    for run_dir in (tmp_path / "run", tmp_path / "theirs"):
        code = run_app("compile", command.main, [f"hydra.run.dir={run_dir}", "model=mlp_digits", "tuning=none",
                                                 "progress=false"])
        out = capsys.readouterr()
        if isinstance(failure, KeyboardInterrupt):
            assert code == 130 and out.err == "interrupted\n"
        else:
            assert_one_line_error(code, out.out, out.err, r"cannot write layers\.csv \(No space left on device\)")
    assert not (tmp_path / "run").exists()
    assert [p.name for p in (tmp_path / "theirs").iterdir()] == ["notes.txt"]


def test_compiles_started_in_the_same_second_never_share_the_default_folder(tmp_path: Path, monkeypatch) -> None:
    """The default folder is named to the second: two compiles of a shell loop (`&`) got the same one, and the last
    to finish wrote over the other's results."""
    from dse.compile.__main__ import main
    from dse.config import compose_config

    monkeypatch.chdir(tmp_path)
    cfgs = [compose_config("compile", ["model=mlp_digits", "tuning=none", "progress=false",
                                       f"hardware.weights.bits={b}", f"hardware.io.input_bits={b}",
                                       f"hardware.io.output_bits={b}"]) for b in (4, 8)]
    default = Path(str(cfgs[0].hydra.run.dir))  # resolved once: the same second for both
    assert default.parts[:2] == ("results", "compile")
    for cfg in cfgs:
        assert main(cfg, default) == 0
    second = default.with_name(default.name + "_2")
    bits = [json.loads((d / "report.json").read_text())["hardware"]["weights"]["bits"] for d in (default, second)]
    assert bits == [4, 8]


@pytest.mark.parametrize("command", ["compile", "sweep"])
def test_a_run_folder_name_too_long_is_one_line_before_any_work(command: str, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A name past the file system's 255 bytes: Path.exists() raised it (OSError, a traceback)."""
    from dse.cli import run_app
    from dse.compile.__main__ import main
    from dse.sweep import cli

    run_dir = tmp_path / ("a" * 300)
    args = ["model=mlp_digits", "tuning=none", "progress=false", f"hydra.run.dir={run_dir}"]
    code = run_app("compile", main, args) if command == "compile" else cli([*args, "search=custom",
                                                                            "hardware.weights.bits=2,4"])
    out = capsys.readouterr()
    assert_one_line_error(code, out.out, out.err, r"run folder .*/a{300} cannot be made \(File name too long\)$")
