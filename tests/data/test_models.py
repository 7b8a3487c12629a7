"""The committed default models: self-contained ONNX files that reach their recorded accuracy under
onnxruntime, and whose weights load back into torch exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from dse.data import MODELS_DIR, load_dataset, model_path
from dse.data.train_models import (
    MODEL_NAMES,
    OPSET,
    RECIPES,
    _random_shift,
    build_model,
    export_module,
    export_onnx,
    load_trained,
    onnx_accuracy,
    onnx_logits,
    read_metadata,
    train,
)
from dse.errors import DataError, ModelError
from dse.frontends.onnx import load_onnx
from dse.passes.canonicalize import canonicalize
from dse.sim.float_exec import run_logits

# Lowest acceptable held-out accuracy; the committed files sit 1 to 3 points above these.
FLOORS = {"lenet_mnist": 0.97, "mlp_mnist": 0.95, "mlp_digits": 0.95, "cnn3_mnist": 0.97, "resnet_mnist": 0.97,
          "mlp_sigmoid_mnist": 0.95, "mobilenet_mnist": 0.96, "conv1d_mnist": 0.96}
# The only op types each exporter should emit for these models (the importer's contract). The TorchScript
# exporter writes constants as Constant nodes, flatten as Flatten and a ZeroPad2d's pads as a shape sub-graph.
ALLOWED_OPS = {
    "dynamo": {"Sub", "Div", "Conv", "Relu", "MaxPool", "Reshape", "Gemm"},
    "torchscript": {"Sub", "Div", "Conv", "Relu", "MaxPool", "Flatten", "Gemm", "Constant",
                    "ConstantOfShape", "Concat", "Reshape", "Slice", "Transpose", "Cast"},
}
# Ops a model exists to exercise: they must be in its file (BatchNorm not folded away by the exporter).
REQUIRED_OPS = {"resnet_mnist": {"BatchNormalization", "Add", "GlobalAveragePool"}, "mlp_sigmoid_mnist": {"Sigmoid"},
                "mobilenet_mnist": {"Pad", "Clip", "HardSwish", "BatchNormalization", "GlobalAveragePool"},
                "conv1d_mnist": {"BatchNormalization", "GlobalAveragePool"}}


def test_floors_cover_every_model() -> None:
    assert set(FLOORS) == set(MODEL_NAMES) == set(RECIPES)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_file_is_small_self_contained_and_valid(name: str) -> None:
    path = model_path(name)
    assert path.is_file(), f"missing {path}; run python -m dse.data.train_models"
    assert path.stat().st_size < 1_000_000
    proto = onnx.load(str(path), load_external_data=False)
    assert all(t.data_location == onnx.TensorProto.DEFAULT for t in proto.graph.initializer)
    assert not list(MODELS_DIR.glob("*.data"))
    onnx.checker.check_model(proto, full_check=True)
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", OPSET)]
    assert [i.name for i in proto.graph.input] == ["input"]
    assert [o.name for o in proto.graph.output] == ["logits"]
    ops = {n.op_type for n in proto.graph.node}
    required = REQUIRED_OPS.get(name, set())
    allowed = ALLOWED_OPS[RECIPES[name].exporter]
    assert ops <= allowed | required, ops - allowed - required
    assert required <= ops, required - ops
    # no initializers posing as graph inputs (and from the dynamo exporter no Constant nodes either)
    initializers = {t.name for t in proto.graph.initializer}
    assert not initializers & {i.name for i in proto.graph.input}


def test_embedded_workloads_have_the_layers_they_stand_for() -> None:
    """mobilenet_mnist: depthwise convs (groups = channels), each stride-2 conv behind a Pad and with no
    padding of its own; conv1d_mnist: every Conv and MaxPool is 1-D, on a (batch, 28, 28) input."""
    def attrs(node: onnx.NodeProto) -> dict:
        return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}

    nodes = onnx.load(str(model_path("mobilenet_mnist"))).graph.node
    producer = {out: n for n in nodes for out in n.output}
    convs = [n for n in nodes if n.op_type == "Conv"]
    assert sum(attrs(n).get("group", 1) > 1 for n in convs) == 3
    strided = [n for n in convs if attrs(n)["strides"] == [2, 2]]
    assert len(strided) == 2
    for conv in strided:
        assert producer[conv.input[0]].op_type == "Pad" and attrs(conv)["pads"] == [0, 0, 0, 0]

    proto = onnx.load(str(model_path("conv1d_mnist")))
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 28, 28]
    spatial = [n for n in proto.graph.node if n.op_type in ("Conv", "MaxPool")]
    assert len(spatial) == 5 and all(len(attrs(n)["kernel_shape"]) == 1 for n in spatial)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_accuracy_matches_metadata_and_floor(name: str) -> None:
    path = model_path(name)
    meta = read_metadata(path)
    assert meta["dataset"] == RECIPES[name].dataset
    ds = load_dataset(meta["dataset"])
    acc = onnx_accuracy(path, ds)
    # one test image of slack: another CPU's rounding may flip a near-tie
    assert acc == pytest.approx(float(meta["test_accuracy"]), abs=1.5 / len(ds.y_test))
    assert acc >= FLOORS[name]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_load_trained_reproduces_onnxruntime(name: str) -> None:
    ds = load_dataset(RECIPES[name].dataset)
    x = ds.x_test[:200]
    expected = onnx_logits(model_path(name), x)
    model = load_trained(name)
    assert not model.training
    with torch.no_grad():
        got = model(torch.from_numpy(np.array(x))).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_importer_and_float_executor_match_onnxruntime(name: str) -> None:
    """The compiler's view of each committed model (import, then the float executor) is the model."""
    ds = load_dataset(RECIPES[name].dataset)
    expected = onnx_logits(model_path(name), ds.x_test)
    graph = load_onnx(model_path(name))
    np.testing.assert_allclose(run_logits(graph, ds.x_test), expected, rtol=1e-4, atol=1e-5)


def test_residual_model_graph_has_branches() -> None:
    """resnet_mnist: every BatchNorm is its own node, and the residual Adds read two computed tensors."""
    graph = load_onnx(model_path("resnet_mnist"))
    counts = graph.op_counts()
    assert counts["Add"] == 3 and counts["GlobalAvgPool"] == 1 and counts["Conv"] == 9
    # 9 BatchNorms + the normalization's Sub and Div: the folding is the compiler's job, not the exporter's
    assert counts["ScaleShift"] == 11
    assert all(len(n.inputs) == 2 for n in graph if type(n.op).__name__ == "Add")


def test_export_keeps_batchnorm_and_round_trips(tmp_path: Path) -> None:
    """The exporter would fold BatchNorm into the convolutions under the convs' names; export_onnx keeps it,
    so the weights load back into torch exactly (running statistics included)."""
    torch.manual_seed(1)
    model = build_model("resnet_mnist")
    with torch.no_grad():  # distinct, non-trivial statistics (identical initializers would be deduplicated)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
    path = export_onnx(model, "resnet_mnist", tmp_path / "resnet_mnist.onnx", metadata={"dataset": "mnist"})
    proto = onnx.load(str(path))
    assert sum(n.op_type == "BatchNormalization" for n in proto.graph.node) == 9
    x = torch.from_numpy(np.array(load_dataset("mnist").x_test[:8]))
    with torch.no_grad():
        np.testing.assert_allclose(load_trained("resnet_mnist", path)(x).numpy(), model(x).numpy(),
                                   rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(onnx_logits(path, x.numpy()), model(x).detach().numpy(), rtol=1e-4, atol=1e-5)


def test_batch_dimension_is_free() -> None:
    """One sample or a whole split: the exported batch dimension is symbolic."""
    path = model_path("lenet_mnist")
    x = load_dataset("mnist").x_test[:3]
    batched = onnx_logits(path, x)
    single = np.concatenate([onnx_logits(path, x[i : i + 1]) for i in range(3)])
    np.testing.assert_allclose(batched, single, rtol=1e-5, atol=1e-5)


def test_unknown_model_raises() -> None:
    with pytest.raises(DataError, match="lenet_mnist"):
        build_model("resnet50")


def test_load_trained_refuses_a_foreign_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no trained model"):
        load_trained("mlp_digits", tmp_path / "absent.onnx")
    # a file of another architecture: names or shapes differ, refused rather than half-loaded
    with pytest.raises(ModelError):
        load_trained("mlp_digits", model_path("mlp_mnist"))


def test_random_shift_translates_each_sample_within_bounds() -> None:
    x = torch.zeros(64, 1, 9, 9)
    x[:, 0, 4, 4] = 1.0
    out = _random_shift(x, 2, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and torch.all(out.sum(dim=(1, 2, 3)) == 1.0)
    rows, cols = out[:, 0].nonzero()[:, 1], out[:, 0].nonzero()[:, 2]
    assert rows.min() >= 2 and rows.max() <= 6 and cols.min() >= 2 and cols.max() <= 6
    assert len({(int(r), int(c)) for r, c in zip(rows, cols, strict=True)}) > 10  # per-sample offsets
    assert torch.equal(_random_shift(x, 0, torch.Generator()), x)


@pytest.mark.slow
def test_training_is_deterministic_and_reaches_the_floor(tmp_path: Path) -> None:
    a = train("mlp_digits", seed=0)
    b = train("mlp_digits", seed=0)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    path = export_onnx(a, "mlp_digits", tmp_path / "mlp_digits.onnx", metadata={"dataset": "digits"})
    assert onnx_accuracy(path, load_dataset("digits")) >= FLOORS["mlp_digits"]
    reloaded = load_trained("mlp_digits", path)
    x = torch.from_numpy(np.array(load_dataset("digits").x_test))
    with torch.no_grad():
        np.testing.assert_allclose(reloaded(x).numpy(), a(x).numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_retraining_from_trained_weights_keeps_accuracy() -> None:
    """The benchmark's use: fine-tune starting from the committed weights (a short run)."""
    ds = load_dataset("mnist")
    model = train("lenet_mnist", epochs=1, model=load_trained("lenet_mnist"))
    with torch.no_grad():
        acc = float((model(torch.from_numpy(np.array(ds.x_test))).argmax(1).numpy() == ds.y_test).mean())
    assert acc >= FLOORS["lenet_mnist"] - 0.01


@pytest.mark.parametrize("name", ["mobilenet_mnist", "conv1d_mnist"])
def test_both_exporters_import_to_the_same_graph(name: str, tmp_path: Path) -> None:
    """The committed TorchScript export (Pad sub-graph, Constant nodes, Flatten) and a dynamo export of the same
    weights (the exporter's optimizer folds the Pad into the Conv) canonicalize to the same graph, and both
    compute what onnxruntime computes on the committed file."""
    data = load_dataset(RECIPES[name].dataset)
    dynamo = export_module(load_trained(name), data.input_shape, tmp_path / f"{name}.onnx", exporter="dynamo")
    graphs = [canonicalize(load_onnx(path)) for path in (model_path(name), dynamo)]
    assert graphs[0].op_counts() == graphs[1].op_counts()
    x = data.x_test[:200]
    expected = onnx_logits(model_path(name), x)
    for graph in graphs:
        np.testing.assert_allclose(run_logits(graph, x), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["mobilenet_mnist", "conv1d_mnist"])
def test_torchscript_export_is_reproducible(name: str, tmp_path: Path) -> None:
    """Re-exporting the committed weights writes the committed graph byte for byte: the file is what the
    script makes (Pad sub-graph, Clip bounds and BatchNorm included), and load_trained reads all of it."""
    path = export_onnx(load_trained(name), name, tmp_path / f"{name}.onnx")
    again, committed = (onnx.load(str(p)).graph.SerializeToString() for p in (path, model_path(name)))
    assert again == committed


@pytest.mark.parametrize(("args", "message"), [
    (["--epochs", "0"], "--epochs must be an integer >= 1"),
    (["--epochs", "-1"], "--epochs must be an integer >= 1"),
    (["--seed", "-1"], "--seed must be an integer >= 0"),
    (["--seed", str(2**64)], "--seed must be below 2**64"),
])
def test_train_models_refuses_bad_arguments_before_training(tmp_path: Path, capsys, args: list[str],
                                                            message: str) -> None:
    """0 epochs exported the untrained initialization (11 % accuracy) as a trained model, exit 0."""
    from dse.data.train_models import main

    assert main(["--only", "mlp_digits", "--out-dir", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not list(tmp_path.iterdir())


def test_train_models_refuses_an_out_dir_that_takes_no_file(tmp_path: Path, capsys) -> None:
    """It trained, then died with a FileExistsError traceback (exit 1) at the export."""
    from dse.data.train_models import main

    a_file = tmp_path / "models"
    a_file.write_text("")
    assert main(["--only", "mlp_digits", "--out-dir", str(a_file / "sub")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --out-dir {a_file / 'sub'} is under {a_file}, a file, not a folder\n"


def test_train_models_refuses_an_out_dir_whose_readme_it_did_not_write(tmp_path: Path, capsys) -> None:
    """`--out-dir .` in a project trained, then wrote the models' table over the project's README.md."""
    from dse.data.train_models import main

    (tmp_path / "README.md").write_text("# My project\n")
    assert main(["--only", "mlp_digits", "--out-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (f"error: --out-dir {tmp_path} holds a README.md that this script did not "
                                       "write (it writes one there, the models' table); choose another folder\n")
    assert (tmp_path / "README.md").read_text() == "# My project\n"


def test_the_readme_names_the_seed_the_models_were_trained_with(tmp_path: Path) -> None:
    """It said "seed 0" whatever --seed was."""
    from dse.data.train_models import _set_metadata, write_readme

    for name, seed in (("mlp_digits", "7"), ("mlp_mnist", "7")):
        proto = onnx.load(str(model_path(name)))
        _set_metadata(proto, {"seed": seed})
        onnx.save_model(proto, str(tmp_path / f"{name}.onnx"))
    assert "cross-entropy loss, seed 7, one torch thread." in write_readme(tmp_path).read_text()
    proto = onnx.load(str(tmp_path / "mlp_mnist.onnx"))
    _set_metadata(proto, {"seed": "3"})
    onnx.save_model(proto, str(tmp_path / "mlp_mnist.onnx"))
    assert "seeds 3 (mlp_mnist), 7 (mlp_digits)" in write_readme(tmp_path).read_text()


def test_an_export_that_fails_leaves_the_model_that_was_there(tmp_path: Path, monkeypatch) -> None:
    """train_and_export wrote the ONNX file in place, then measured it: a failed or killed export (or an accuracy
    check that fails) left half a file, or one that had not passed, where the trained model was."""
    import dse.data.train_models as tm

    before = model_path("mlp_digits").read_bytes()
    (tmp_path / "mlp_digits.onnx").write_bytes(before)

    def dies_mid_write(model, name, path, metadata=None):
        path.write_bytes(before[:100])  # the exporter is killed mid-write
        raise ModelError("the exporter died")

    monkeypatch.setattr(tm, "train", lambda name, epochs, seed: build_model(name))  # no training: fast
    monkeypatch.setattr(tm, "load_dataset", lambda name: None)
    monkeypatch.setattr(tm, "export_onnx", dies_mid_write)
    with pytest.raises(ModelError, match="the exporter died"):
        tm.train_and_export("mlp_digits", models_dir=tmp_path)
    assert (tmp_path / "mlp_digits.onnx").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["mlp_digits.onnx"]  # no temporary file left
