"""Trained digits networks with nearest-neighbour upsampling, a transposed convolution, channels-last permutes,
PixelShuffle and PixelUnshuffle (`bench/digits_upsampling.py`), exported by torch: the import computes what
onnxruntime computes, and the compiled network (chip_a, no tuning) keeps the original's answers. The
TorchScript exports (opset 17) run by default; the dynamo exports (opset 18, 2-3 s each after a first of about
8 s) are marked slow."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from compiler_helpers import core_ops

from dse.frontends.onnx import load_onnx
from dse.hardware.spec import HardwareSpec
from dse.ir import ops as o
from dse.passes import run_pipeline
from dse.sim.float_exec import run_logits

torch = pytest.importorskip("torch")
from bench.digits_upsampling import NETS, export, train  # noqa: E402 (needs torch)

# the op each net brings, as the imported graph holds it
WIRING = {"upsample": (o.DepthToSpace,), "deconv": (o.DepthToSpace,), "channels_last": (o.Gather,),
          "pixel_shuffle": (o.DepthToSpace, o.SpaceToDepth), "reflect_pad": (o.Gather,)}


@pytest.fixture(scope="module")
def trained() -> dict[str, tuple]:
    return {name: train(name, epochs=5) for name in NETS}


def imported(name: str, trained: dict, folder: Path, **kw) -> tuple:
    model, (x_train, y_train, x_test, y_test) = trained[name]
    path = folder / f"{name}.onnx"
    export(model, NETS[name][1], str(path), **kw)
    graph = load_onnx(path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(run_logits(graph, x_test), sess.run(None, {"x": x_test})[0], rtol=1e-4, atol=1e-4)
    return graph, (x_train, y_train, x_test, y_test)


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")
@pytest.mark.parametrize("dynamo", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["op17", "dynamo18"])
@pytest.mark.parametrize("name", NETS)
def test_export_imports_exactly(name: str, dynamo: bool, trained: dict, tmp_path: Path) -> None:
    graph, _ = imported(name, trained, tmp_path, opset=18 if dynamo else 17, dynamo=dynamo)
    assert all(graph.of_type(op) for op in WIRING[name])
    chip = run_pipeline(graph, HardwareSpec(), ["canonicalize", "reform"])  # the ideal chip's exact form
    x = trained[name][1][2][:50]
    np.testing.assert_allclose(run_logits(chip, x), run_logits(graph, x), rtol=1e-4, atol=1e-4)
    if name == "channels_last":  # the permute before the Linear folded into its weights: one Gather left, the input's
        assert len(chip.of_type(o.Gather)) == 1


def test_transposed_convolution_maps_each_weight_once(trained: dict, tmp_path: Path) -> None:
    """The 4x4 stride-2 transposed convolution: 4 phases of 2x2 taps each, so each of its 4 x 8 neurons reads 2 x
    2 x 16 rows (not the 3 x 3 x 16 of the phases' shared window), and its masked synapses are its 16 x 8 x 16
    weights, each once."""
    graph, _ = imported("deconv", trained, tmp_path)
    chip = run_pipeline(graph, HardwareSpec(), ["canonicalize", "reform"])
    (up,) = [op for op in core_ops(chip) if op.weight.shape[:2] == (32, 16)]
    assert up.fan_in().tolist() == [2 * 2 * 16] * 32
    assert int(up.synapse_mask().sum()) == 16 * 8 * 4 * 4


@pytest.mark.parametrize("name", NETS)
def test_trained_net_compiles_for_chip_a(name: str, trained: dict, tmp_path: Path) -> None:
    """Prepared on 256 of the training images and compiled (no tuning): legal, and the chip answers as the
    original on nearly every test image."""
    from dse.compile import compile, prepare
    from dse.config import compose_config, hardware_from
    from dse.data import load_dataset
    from dse.tune.options import TuneOptions

    graph, (x_train, y_train, x_test, y_test) = imported(name, trained, tmp_path)
    data = dataclasses.replace(load_dataset("mnist"), x_train=x_train[:256], y_train=y_train[:256], x_test=x_test,
                               y_test=y_test, input_shape=NETS[name][1])
    prepared = prepare(graph, data, name=name)
    result = compile(prepared, hardware_from(compose_config("compile", ["hardware=chip_a"]).hardware),
                     tuning=TuneOptions(mode="none"))
    assert result.legal, result.violations
    assert result.report.metrics.agreement >= 0.95


@pytest.mark.parametrize("name", ["pixel_shuffle", "upsample", "deconv"])
def test_population_code_through_routing(name: str, trained: dict, tmp_path: Path) -> None:
    """Re-encoding (2 copies per value) routes every copy alike through the DepthToSpace and SpaceToDepth, and
    through the U-Nets' Concat of the skip with the upsampled map: legal, the integer chip computes what the
    quantized graph does, and it answers as the original."""
    from dse.compile import compile, prepare
    from dse.config import compose_config, hardware_from
    from dse.data import load_dataset
    from dse.tune.options import TuneOptions

    graph, (x_train, y_train, x_test, y_test) = imported(name, trained, tmp_path)
    data = dataclasses.replace(load_dataset("mnist"), x_train=x_train[:256], y_train=y_train[:256], x_test=x_test,
                               y_test=y_test, input_shape=NETS[name][1])
    result = compile(prepare(graph, data, name=name),
                     hardware_from(compose_config("compile", ["hardware=chip_a"]).hardware),
                     tuning=TuneOptions(mode="none"), reencode_k=2)
    assert result.legal, result.violations
    routed = [n.op for n in result.graph if isinstance(n.op, (o.DepthToSpace, o.SpaceToDepth))]
    assert routed and all(op.copies == 2 for op in routed)
    if name != "pixel_shuffle":
        assert any(n.op.copies == 2 for n in result.graph.of_type(o.Concat))
    assert result.report.verify.integer_vs_quantized_agreement == 1.0
    assert result.report.metrics.agreement >= 0.95


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")
@pytest.mark.parametrize("opset", [11, 17])
def test_interpolate_to_a_size_computed_from_the_input(opset: int, tmp_path: Path) -> None:
    """``F.interpolate(x, size=(2 H, 12))``: TorchScript writes Resize's `sizes` from the input's Shape (its batch
    entry is the importer's stand-in for the free batch), here factors 2 and 3."""
    class Up(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(2, 3, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(torch.nn.functional.interpolate(x, size=(x.shape[2] * 2, 12), mode="nearest"))

    torch.manual_seed(0)
    path = tmp_path / "up.onnx"
    torch.onnx.export(Up().eval(), (torch.zeros(1, 2, 5, 4),), str(path), input_names=["x"], opset_version=opset,
                      dynamo=False, dynamic_axes={"x": {0: "N"}})
    graph = load_onnx(path)
    x = np.random.default_rng(0).random((3, 2, 5, 4)).astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(run_logits(graph, x), sess.run(None, {"x": x})[0], rtol=1e-5, atol=1e-5)
    assert graph.of_type(o.DepthToSpace)[0].op.block == (2, 3)
