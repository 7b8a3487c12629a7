"""Trained digits networks with nearest-neighbour and bilinear upsampling, a transposed convolution (2-D,
grouped, 1-D), channels-last permutes, PixelShuffle and PixelUnshuffle (`bench/digits_upsampling.py`), exported
by torch: the import computes what onnxruntime computes, and the compiled network (chip_a, no tuning) keeps the
original's answers. The TorchScript exports (opset 17) run by default; the dynamo exports (opset 18, 2-3 s each
after a first of about 8 s) are marked slow. Each net is trained when a test first asks for it; the nets added
with bilinear upsampling and the grouped and 1-D transposed convolutions (`LATER`) are checked by default with
their seeded initial weights (exactness and legality need no training: each saves 5 to 10 s of it), and trained
in the slow tests."""

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
          "pixel_shuffle": (o.DepthToSpace, o.SpaceToDepth), "bilinear": (o.SpaceToDepth, o.DepthToSpace),
          "bilinear_corners": (o.SpaceToDepth, o.DepthToSpace), "grouped_deconv": (o.DepthToSpace, o.Gather),
          "deconv1d": (o.DepthToSpace,), "reflect_pad": (o.Gather,)}


LATER = ("bilinear", "bilinear_corners", "grouped_deconv", "deconv1d", "reflect_pad")


class _Trained(dict):
    """Each net trained (5 epochs, or 0 for `LATER`'s: its seeded initial weights) on first use."""

    def __missing__(self, name: str) -> tuple:
        self[name] = train(name.removesuffix("@trained"), epochs=0 if name in LATER else 5)
        return self[name]


@pytest.fixture(scope="module")
def trained() -> dict[str, tuple]:
    return _Trained()


def imported(name: str, trained: dict, folder: Path, **kw) -> tuple:
    model, (x_train, y_train, x_test, y_test) = trained[name]
    path = folder / f"{name.removesuffix('@trained')}.onnx"
    export(model, NETS[name.removesuffix("@trained")][1], str(path), **kw)
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


def test_grouped_transposed_convolution_keeps_its_mask(trained: dict, tmp_path: Path) -> None:
    """A 4x4 stride-2 transposed convolution of 4 groups (16 -> 8 channels): its phase convolution stays grouped
    and keeps its taps' mask through reform, so each of its 4 groups x 4 phases x 2 neurons reads 2 x 2 taps of its
    group's 4 channels, and its synapses are its 16 x 2 x 4 x 4 weights, each once."""
    graph, _ = imported("grouped_deconv", trained, tmp_path)
    chip = run_pipeline(graph, HardwareSpec(), ["canonicalize", "reform"])
    (up,) = [op for op in core_ops(chip) if op.groups == 4]
    assert up.fan_in().tolist() == [2 * 2 * 4] * 32
    assert int(up.synapse_mask().sum()) == 16 * 2 * 4 * 4


@pytest.mark.parametrize("name", ["bilinear", "bilinear_corners"])
def test_bilinear_upsampling_is_a_grouped_core_per_axis(name: str, trained: dict, tmp_path: Path) -> None:
    """x2 bilinear upsampling of 8 channels of 4x4: one core per axis, a group per channel, each neuron reading
    the one or two inputs it weighs (8 channels x 8 outputs per axis)."""
    graph, _ = imported(name, trained, tmp_path)
    chip = run_pipeline(graph, HardwareSpec(), ["canonicalize", "reform"])
    ups = [n.op for n in chip if isinstance(n.op, o.CoreOp) and n.name.startswith("Resize")]
    assert len(ups) == 2
    for up in ups:
        assert up.groups == 8 and up.out_channels == 8 * 8 and up.kernel == (1, 1) and up.fan_in().max() <= 2


@pytest.mark.parametrize("name", LATER)
def test_net_compiles_exactly_on_ideal_and_legally_on_chip_a(name: str, trained: dict, tmp_path: Path) -> None:
    """The nets of `LATER` (seeded initial weights), prepared on 64 of the training images and compiled (no
    tuning): the ideal chip answers as the original on every test image, and chip_a's network is legal."""
    from dse.compile import compile, prepare
    from dse.config import compose_config, hardware_from
    from dse.data import load_dataset
    from dse.tune.options import TuneOptions

    graph, (x_train, y_train, x_test, y_test) = imported(name, trained, tmp_path)
    data = dataclasses.replace(load_dataset("mnist"), x_train=x_train[:64], y_train=y_train[:64], x_test=x_test[:100],
                               y_test=y_test[:100], input_shape=NETS[name][1])
    prepared = prepare(graph, data, name=name)
    for chip in ("ideal", "chip_a"):
        result = compile(prepared, hardware_from(compose_config("compile", [f"hardware={chip}"]).hardware),
                         tuning=TuneOptions(mode="none"))
        assert result.legal, result.violations
        if chip == "ideal":
            assert result.report.metrics.agreement == 1.0


@pytest.mark.parametrize("name", [*(n for n in NETS if n not in LATER),
                                  *(pytest.param(f"{n}@trained", marks=pytest.mark.slow) for n in LATER)])
def test_trained_net_compiles_for_chip_a(name: str, trained: dict, tmp_path: Path) -> None:
    """Prepared on 256 of the training images and compiled (no tuning): legal, and the chip answers as the
    original on nearly every test image."""
    from dse.compile import compile, prepare
    from dse.config import compose_config, hardware_from
    from dse.data import load_dataset
    from dse.tune.options import TuneOptions

    graph, (x_train, y_train, x_test, y_test) = imported(name, trained, tmp_path)
    data = dataclasses.replace(load_dataset("mnist"), x_train=x_train[:256], y_train=y_train[:256], x_test=x_test,
                               y_test=y_test, input_shape=NETS[name.removesuffix("@trained")][1])
    prepared = prepare(graph, data, name=name.removesuffix("@trained"))
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
