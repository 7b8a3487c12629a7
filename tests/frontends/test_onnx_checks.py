"""The importer's validation and bounds (`dse.frontends.onnx_checks`, `onnx_fold`, `onnx_file`): every op the
importer handles has an entry in `ATTRIBUTE_RULES`; values at the edge of each rule are accepted (and import
to what onnxruntime computes) while values past it are refused in one line naming the node and attribute; the
constant folder folds within its budget and refuses past it; external data is checked against the file
before it is read."""

from __future__ import annotations

import builtins
import signal
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, numpy_helper
from onnx import helper as oh

from dse.errors import ModelError
from dse.frontends import onnx_fold
from dse.frontends.onnx import SUPPORTED_OPS, load_onnx
from dse.frontends.onnx_checks import ATTRIBUTE_RULES
from dse.sim.float_exec import run_float

IMAGE = [1, 2, 6, 6]

def model(nodes: list, inits: dict[str, np.ndarray], in_shape: list[int] = IMAGE, opset: int = 17
          ) -> onnx.ModelProto:
    graph = oh.make_graph(nodes, "m", [oh.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
                          [oh.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, [])],
                          [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", opset)])

def agrees_with_onnxruntime(m: onnx.ModelProto) -> None:
    x = np.random.default_rng(0).uniform(-1, 1, IMAGE).astype(np.float32)
    graph = load_onnx(m)
    ours = run_float(graph, x)[graph.outputs[0]].numpy()
    ref = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(ours.reshape(ref.shape), ref, rtol=1e-5, atol=1e-5)

def conv(**attrs) -> onnx.ModelProto:
    w = np.random.default_rng(1).normal(size=(4, 2, 3, 3)).astype(np.float32)
    return model([oh.make_node("Conv", ["x", "w"], ["y"], **attrs)], {"w": w})

def pool(op: str = "MaxPool", **attrs) -> onnx.ModelProto:
    return model([oh.make_node(op, ["x"], ["y"], **attrs)], {})

def test_every_imported_op_has_rules() -> None:
    assert sorted(set(SUPPORTED_OPS) - set(ATTRIBUTE_RULES)) == []

# (model at the edge of a rule: accepted, model past it: refused, words of the refusal)
EDGES = {
    "conv pads up to the input": (conv(pads=[6, 0, 0, 6]), conv(pads=[7, 0, 0, 0]), ("'Conv#0' (Conv)", "pads")),
    "conv kernel fills the padded input": (conv(dilations=[3, 1], pads=[1, 0, 0, 0]), conv(dilations=[3, 1]),
                                           ("kernel_shape", "dilated extent 7")),
    "conv stride": (conv(strides=[1, 5]), conv(strides=[1, 0]), ("strides", "positive")),
    "maxpool pad below the window": (pool(kernel_shape=[3, 3], pads=[2, 2, 2, 2]),
                                     pool(kernel_shape=[3, 3], pads=[3, 0, 0, 0]), ("pads", "less than the window")),
    "avgpool kernel": (pool("AveragePool", kernel_shape=[6, 1]), pool("AveragePool", kernel_shape=[7, 1]),
                       ("kernel_shape", "larger than the padded input")),
    "conv transpose output_padding below the stride": (
        model([oh.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], output_padding=[1, 1])],
              {"w": np.ones((2, 3, 3, 3), np.float32)}),
        model([oh.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], output_padding=[2, 0])],
              {"w": np.ones((2, 3, 3, 3), np.float32)}),
        ("'ConvTranspose#0' (ConvTranspose)", "output_padding", "less than the strides")),
    "resize scales": (
        model([oh.make_node("Resize", ["x", "", "s"], ["y"], mode="nearest")],
              {"s": np.array([1, 1, 2, 2], np.float32)}),
        model([oh.make_node("Resize", ["x", "", "s"], ["y"], mode="nearest")],
              {"s": np.array([1, 1, 0, 2], np.float32)}),
        ("'Resize#0' (Resize)", "scales", "finite and > 0")),
    "clip bounds": (model([oh.make_node("Clip", ["x", "lo", "hi"], ["y"])], {"lo": np.float32(0.5),
                                                                             "hi": np.float32(0.5)}),
                    model([oh.make_node("Clip", ["x", "lo", "hi"], ["y"])], {"lo": np.float32(0.6),
                                                                             "hi": np.float32(0.5)}),
                    ("Clip", "min 0.6")),
    "batchnorm variance": (
        model([oh.make_node("BatchNormalization", ["x", "g", "b", "m", "v"], ["y"], epsilon=1e-3)],
              {"g": np.ones(2, np.float32), "b": np.zeros(2, np.float32), "m": np.zeros(2, np.float32),
               "v": np.zeros(2, np.float32)}),
        model([oh.make_node("BatchNormalization", ["x", "g", "b", "m", "v"], ["y"], epsilon=0.0)],
              {"g": np.ones(2, np.float32), "b": np.zeros(2, np.float32), "m": np.zeros(2, np.float32),
               "v": np.zeros(2, np.float32)}),
        ("variance", "variance + epsilon > 0")),
}

@pytest.mark.parametrize("case", list(EDGES))
def test_edge_accepted_and_past_it_refused(case: str) -> None:
    good, bad, words = EDGES[case]
    agrees_with_onnxruntime(good)
    with pytest.raises(ModelError) as e:
        load_onnx(bad)
    assert all(w in str(e.value) for w in words) and "\n" not in str(e.value), e.value

def test_a_constant_with_inf_is_refused_naming_it() -> None:
    value = numpy_helper.from_array(np.array([1.0, np.inf], np.float32))
    m = model([oh.make_node("Constant", [], ["c"], value=value, name="scale"),
               oh.make_node("Mul", ["x", "c"], ["y"])], {}, in_shape=[1, 2])
    with pytest.raises(ModelError, match=r"node 'scale' \(Constant\) holds 1 NaN or Inf value"):
        load_onnx(m)

def shape_model(shape: list[int], op: str = "ConstantOfShape") -> onnx.ModelProto:
    nodes = [oh.make_node(op, ["s"], ["c"], value=numpy_helper.from_array(np.array([0.5], np.float32))),
             oh.make_node("Flatten", ["x"], ["f"]), oh.make_node("Add", ["f", "c"], ["y"])]
    return model(nodes, {"s": np.array(shape, np.int64)})

def test_constant_of_shape_folds_within_the_budget_and_not_past_it() -> None:
    agrees_with_onnxruntime(shape_model([1, 72]))
    over = onnx_fold.FOLD_MIN_BYTES // 4 + 1  # float32 values: one more than the budget holds
    with pytest.raises(ModelError, match=r"'ConstantOfShape#0' \(ConstantOfShape\): folding it would make"):
        load_onnx(shape_model([1, over]))

def test_a_slow_fold_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Range of 10**7 values is within the size budget; with a budget of 1 ms its evaluation is stopped."""
    monkeypatch.setattr(onnx_fold, "FOLD_SECONDS", 0.001)
    nodes = [oh.make_node("Range", ["a", "b", "d"], ["r"]), oh.make_node("ReduceSum", ["r"], ["s"], keepdims=1),
             oh.make_node("Mul", ["x", "s"], ["y"])]
    m = model(nodes, {"a": np.float32(0), "b": np.float32(1e7), "d": np.float32(1)}, in_shape=[1, 2])
    with pytest.raises(ModelError, match=r"\(Range\): folding its constant inputs took over"):
        load_onnx(m)

def external(tmp_path: Path, declared: int | None) -> Path:
    w = np.arange(8, dtype=np.float32).reshape(4, 2)
    m = model([oh.make_node("Flatten", ["x"], ["f"]), oh.make_node("Gemm", ["f", "w"], ["y"])], {"w": w},
              in_shape=[1, 4])
    (tmp_path / "w.bin").write_bytes(w.tobytes())
    t = m.graph.initializer[0]
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    t.external_data.add(key="location", value="w.bin")
    if declared is not None:
        t.external_data.add(key="length", value=str(declared))
    onnx.save(m, tmp_path / "m.onnx")
    return tmp_path / "m.onnx"

def test_external_data_sizes_are_checked_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    graph = load_onnx(external(tmp_path, 32))
    assert graph.outputs
    opened: list[str] = []
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: (opened.append(str(f)), real_open(f, *a, **k))[1])
    with pytest.raises(ModelError, match=r"tensor 'w' declares external data length 1099511627776"):
        load_onnx(external(tmp_path, 2**40))
    w = onnx.load(tmp_path / "m.onnx", load_external_data=False).graph.initializer[0]
    w.dims[:] = [2**20, 2]  # no length: the shape's bytes are checked against the file
    del w.external_data[1:]
    onnx.save(onnx.load(tmp_path / "m.onnx", load_external_data=False), tmp_path / "m.onnx")
    bad = onnx.load(tmp_path / "m.onnx", load_external_data=False)
    bad.graph.initializer[0].CopyFrom(w)
    onnx.save(bad, tmp_path / "m.onnx")
    with pytest.raises(ModelError, match=r"runs past the end of w.bin \(32 bytes\)"):
        load_onnx(tmp_path / "m.onnx")
    assert not any(p.endswith("w.bin") for p in opened)


def test_the_fold_timer_keeps_the_callers_timer() -> None:
    """A caller's SIGALRM timer (a test's time limit) is still set, less the time spent, after a fold ran under
    the folder's own timer."""
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: None)
    try:
        signal.setitimer(signal.ITIMER_REAL, 60)
        start = time.monotonic()
        load_onnx(shape_model([1, 72]))  # folds a ConstantOfShape under the folder's 10 s timer
        left = signal.getitimer(signal.ITIMER_REAL)[0]
        assert 0 < left <= 60 - (time.monotonic() - start) + 0.01
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
