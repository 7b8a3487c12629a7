"""A 3-conv/2-FC MNIST CNN written in ordinary torch code, exported with `torch.onnx.export` (normalization
inside the graph, conv3 fan-in 3*3*32 = 288 > 256 rows), imported and compiled.

Fast: the committed cnn3 weights in a freshly defined module, exported by the TorchScript exporter (Constant
and Flatten nodes, unlike the committed files); it imports exactly and compiles exactly for the ideal chip.
Slow: the same for chip_a (delta <= 0.5 pp), with the committed weights and with a briefly trained model.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dse.compile import compile, load_model, prepare
from dse.config import compose_config, hardware_from
from dse.data import load_dataset
from dse.data.train_models import load_trained
from dse.frontends.onnx import load_onnx
from dse.ir import ops as o
from dse.sim.float_exec import run_logits


class MnistCnn(nn.Module):
    """(x - 0.1307) / 0.3081; three conv3x3 (16, 32, 64) + ReLU + maxpool 2; FC 576 -> 64 -> 10."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = nn.Linear(576, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - 0.1307) / 0.3081
        for conv in (self.conv1, self.conv2, self.conv3):
            x = nn.functional.max_pool2d(torch.relu(conv(x)), 2)
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))


def export(model: nn.Module, path: Path, *, dynamo: bool = False) -> Path:
    model.eval()
    example = (torch.zeros(1, 1, 28, 28),)
    if dynamo:
        torch.onnx.export(model, example, str(path), input_names=["input"], output_names=["logits"],
                          dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True)
    else:
        torch.onnx.export(model, example, str(path), input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}}, dynamo=False)
    return path


def committed_weights() -> MnistCnn:
    model = MnistCnn()
    model.load_state_dict(load_trained("cnn3_mnist").state_dict())  # same parameter names, same layout
    return model.eval()


def test_fresh_export_imports_exactly_and_compiles_exactly_for_ideal(tmp_path: Path) -> None:
    model = committed_weights()
    graph = load_onnx(export(model, tmp_path / "cnn.onnx"))
    data = load_dataset("mnist")
    x = np.array(data.x_test[:64])
    with torch.no_grad():
        reference = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_logits(graph, x), reference, rtol=1e-4, atol=1e-4)

    small = dataclasses.replace(data, x_train=data.x_train[:128], y_train=data.y_train[:128],
                                x_test=data.x_test[:200], y_test=data.y_test[:200])
    prep = prepare(graph, small, name="fresh_cnn")
    assert not prep.exact.of_type(o.Pad) or all(  # the normalization folded: the host pads with the raw mean
        np.allclose(n.op.value, 0.1307, atol=1e-6) for n in prep.exact.of_type(o.Pad))
    ideal = compile(prep, hardware_from(compose_config("compile", ["hardware=ideal"]).hardware))
    assert ideal.legal and ideal.report.metrics.agreement == 1.0 and ideal.report.metrics.logits_rel_error < 1e-4
    conv_fan_in = max(int(n.op.fan_in().max()) for n in prep.exact.of_type(o.CoreOp) if not n.op.dense)
    assert conv_fan_in == 288  # conv3 (and fc1, 576): more than chip_a's 256 rows, chip_a needs split-and-merge


def compile_for_chip_a(path: Path, label: str) -> dict:
    graph, data = load_model(str(path), "mnist")
    result = compile(prepare(graph, data, name=label), hardware_from(compose_config("compile", []).hardware))
    r = result.report.to_dict()
    figures = {"row": label, "legal": r["legal"], "accuracy_original": r["accuracy_original"],
               "accuracy_compiled": r["accuracy_compiled"], "accuracy_delta_pp": r["accuracy_delta_pp"],
               "crossbars": r["resources"]["crossbars"], "compile_seconds": round(r["compile_seconds"], 2)}
    print("ACCEPTANCE " + json.dumps(figures))
    return figures


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.export's own deprecation notice
def test_fresh_export_of_the_committed_weights_on_chip_a(tmp_path: Path) -> None:
    f = compile_for_chip_a(export(committed_weights(), tmp_path / "cnn.onnx", dynamo=True), "fresh cnn3 weights")
    assert f["legal"] and f["accuracy_delta_pp"] <= 0.5


@pytest.mark.slow
def test_a_briefly_trained_fresh_cnn_on_chip_a(tmp_path: Path) -> None:
    """Trained from scratch for 3 epochs (Adam, batch 64) on the 4,000 train images, then exported."""
    torch.manual_seed(0)
    model = MnistCnn()
    data = load_dataset("mnist")
    x, y = torch.from_numpy(np.array(data.x_train)), torch.from_numpy(np.array(data.y_train))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(3):
        for idx in torch.randperm(len(y), generator=gen).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    f = compile_for_chip_a(export(model, tmp_path / "trained.onnx"), "fresh cnn trained 3 epochs")
    assert f["accuracy_original"] > 0.9  # a real model, not noise
    assert f["legal"] and f["accuracy_delta_pp"] <= 0.5
