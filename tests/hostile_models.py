"""The bad models issue 17 names, one builder each: a hostile or careless input that must end in one line and a
documented exit status (2, or 4 for outputs that are not finite), never a traceback or a wrong success.

`CASES` maps a case name to (builder, the overrides the compile runs with, the exit status, words the error
line must hold). A builder writes its model (and any side file) into a folder and returns the model's path.
Importable from every test folder (`tests/` is on sys.path: see tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper
from onnx import helper as oh

IMAGE = [1, 1, 28, 28]  # an MNIST image, batch 1
NAN, INF = float("nan"), float("inf")


def save(folder: Path, name: str, nodes: list, inits: dict[str, np.ndarray], *, inputs: list | None = None,
         outputs: list[str] | None = None, in_shape: list[int] = IMAGE, opset: int = 17) -> Path:
    """A one-input model of `nodes`, its initializers `inits`; outputs `outputs` (default: the last node's
    first output). Not checked: a hostile file need not pass the ONNX checker."""
    outs = outputs if outputs is not None else [nodes[-1].output[0]]
    graph = oh.make_graph(nodes, name, inputs or [oh.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
                          [oh.make_tensor_value_info(o, TensorProto.FLOAT, []) for o in outs],
                          [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    path = folder / f"{name}.onnx"
    onnx.save(oh.make_model(graph, opset_imports=[oh.make_opsetid("", opset)]), path)
    return path


def w(*shape: int, value: float = 0.1) -> np.ndarray:
    return np.full(shape, value, np.float32)


def conv(folder: Path, name: str, weight: np.ndarray, bias: np.ndarray | None = None, **attrs) -> Path:
    inits = {"w": weight} | ({"b": bias} if bias is not None else {})
    node = oh.make_node("Conv", ["x", "w", *(["b"] if bias is not None else [])], ["y"], **attrs)
    return save(folder, name, [node], inits)


def mlp(folder: Path, name: str, w1: np.ndarray, in_shape: list[int] = IMAGE, **gemm) -> Path:
    """Flatten -> Gemm(w1, transB) -> Relu -> Gemm to 10 outputs."""
    nodes = [oh.make_node("Flatten", ["x"], ["f"]), oh.make_node("Gemm", ["f", "w1"], ["h"], transB=1, **gemm),
             oh.make_node("Relu", ["h"], ["r"]), oh.make_node("Gemm", ["r", "w2"], ["y"], transB=1)]
    return save(folder, name, nodes, {"w1": w1, "w2": w(10, w1.shape[0])}, in_shape=in_shape)


def nan_weight(folder: Path) -> Path:
    weight = w(4, 1, 3, 3)
    weight[0, 0, 1, 1] = NAN
    return conv(folder, "nan_weight", weight)


def inf_weight(folder: Path) -> Path:
    weight = w(32, 784)
    weight[3, 5] = INF
    return mlp(folder, "inf_weight", weight)


def nan_bias(folder: Path) -> Path:
    return conv(folder, "nan_bias", w(4, 1, 3, 3), np.array([0, NAN, 0, 0], np.float32))


def gemm_alpha_nan(folder: Path) -> Path:
    return mlp(folder, "gemm_alpha_nan", w(32, 784), alpha=NAN)


def divide_by_zero(folder: Path) -> Path:
    """An input normalization ``(x - mean) / std`` whose std is 0."""
    nodes = [oh.make_node("Sub", ["x", "mean"], ["c"]), oh.make_node("Div", ["c", "std"], ["n"]),
             oh.make_node("Conv", ["n", "w"], ["y"])]
    return save(folder, "divide_by_zero", nodes, {"mean": np.float32(0.5), "std": np.float32(0.0),
                                                 "w": w(4, 1, 3, 3)})


def overflow(folder: Path) -> Path:
    """Finite weights whose product overflows float32: every check of the file passes, the outputs are Inf."""
    return mlp(folder, "overflow", w(32, 64, value=3e38), in_shape=[1, 1, 8, 8])


def add_3e38(folder: Path) -> Path:
    """An Add of 3e38 after a Gemm whose bias is 3e38: the import folds it into the bias, past float32 (numpy's
    overflow warning, before the outputs were refused as Inf)."""
    nodes = [oh.make_node("Flatten", ["x"], ["f"]), oh.make_node("Gemm", ["f", "w1", "b1"], ["h"], transB=1),
             oh.make_node("Add", ["h", "c"], ["a"]), oh.make_node("Relu", ["a"], ["r"]),
             oh.make_node("Gemm", ["r", "w2"], ["y"], transB=1)]
    return save(folder, "add_3e38", nodes, {"w1": w(32, 64), "b1": w(32, value=3e38), "c": w(32, value=3e38),
                                            "w2": w(10, 32)}, in_shape=[1, 1, 8, 8])


def add_3e38_constants(folder: Path) -> Path:
    """3e38 + 3e38 of two constants: folding them overflows (numpy's warning from the reference evaluator)."""
    nodes = [oh.make_node("Add", ["c", "c"], ["cc"]), oh.make_node("Flatten", ["x"], ["f"]),
             oh.make_node("Gemm", ["f", "w1"], ["h"], transB=1), oh.make_node("Add", ["h", "cc"], ["a"]),
             oh.make_node("Relu", ["a"], ["r"]), oh.make_node("Gemm", ["r", "w2"], ["y"], transB=1)]
    return save(folder, "add_3e38_constants", nodes, {"w1": w(32, 64), "c": w(32, value=3e38), "w2": w(10, 32)},
                in_shape=[1, 1, 8, 8])


def batchnorm_scale_past_float32(folder: Path) -> Path:
    """A BatchNormalization whose scale, gamma / sqrt(var + eps), is 3e38 / sqrt(1e-5): past float32."""
    nodes = [oh.make_node("BatchNormalization", ["x", "g", "b", "m", "v"], ["n"]),
             oh.make_node("Flatten", ["n"], ["f"]), oh.make_node("Gemm", ["f", "w2"], ["y"], transB=1)]
    return save(folder, "batchnorm_scale_past_float32", nodes,
                {"g": w(1, value=3e38), "b": w(1, value=0.0), "m": w(1, value=0.0), "v": w(1, value=0.0),
                 "w2": w(10, 64)}, in_shape=[1, 1, 8, 8])


def tiny_weights_big_bias(folder: Path) -> Path:
    """Weights of 1e-20 beside biases of +-1: the bias is 8e23 weight steps, which the cast to int64 wrapped into
    -2**63, and the compile succeeded with every logit wrong (logits_rel_error 1.0)."""
    nodes = [oh.make_node("Flatten", ["x"], ["f"]), oh.make_node("Gemm", ["f", "w1", "b1"], ["h"], transB=1),
             oh.make_node("Relu", ["h"], ["r"]), oh.make_node("Gemm", ["r", "w2"], ["y"], transB=1)]
    bias = np.where(np.arange(32) % 2, 1.0, -1.0).astype(np.float32)
    return save(folder, "tiny_weights_big_bias", nodes, {"w1": w(32, 64, value=1e-20), "b1": bias, "w2": w(10, 32)},
                in_shape=[1, 1, 8, 8])


def conv_attr(name: str, weight_shape: tuple[int, ...] = (4, 1, 3, 3), **attrs) -> Callable[[Path], Path]:
    return lambda folder: conv(folder, name, w(*weight_shape), **attrs)


def maxpool_kernel_0(folder: Path) -> Path:
    return save(folder, "maxpool_kernel_0", [oh.make_node("MaxPool", ["x"], ["y"], kernel_shape=[0, 0])], {})


def no_outputs(folder: Path) -> Path:
    return save(folder, "no_outputs", [oh.make_node("Relu", ["x"], ["y"])], {}, outputs=[])


def output_is_input(folder: Path) -> Path:
    return save(folder, "output_is_input", [oh.make_node("Relu", ["x"], ["y"])], {}, outputs=["x"])


def batchnorm_negative_variance(folder: Path) -> Path:
    nodes = [oh.make_node("Conv", ["x", "w"], ["c"]),
             oh.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["y"])]
    return save(folder, "batchnorm_negative_variance", nodes,
                {"w": w(2, 1, 3, 3), "g": w(2, value=1), "b": w(2, value=0), "m": w(2, value=0),
                 "v": np.array([1.0, -1.0], np.float32)})


def clip_min_above_max(folder: Path) -> Path:
    nodes = [oh.make_node("Conv", ["x", "w"], ["c"]), oh.make_node("Clip", ["c", "lo", "hi"], ["y"])]
    return save(folder, "clip_min_above_max", nodes, {"w": w(2, 1, 3, 3), "lo": np.float32(1), "hi": np.float32(0)})


def external_length_2_40(folder: Path) -> Path:
    """A weight whose external data claims 2**40 bytes of a 64-byte file."""
    (folder / "w.bin").write_bytes(bytes(64))
    path = conv(folder, "external_length_2_40", w(4, 1, 3, 3))
    model = onnx.load(path)
    t = model.graph.initializer[0]
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "w.bin"), ("offset", "0"), ("length", str(2**40))):
        t.external_data.add(key=key, value=value)
    onnx.save(model, path)
    return path


def _loop_model(folder: Path, name: str, trip_count: str) -> Path:
    """A Loop of constants only (trip count `trip_count`, or none: ``while true``), added to the data."""
    body = oh.make_graph(
        [oh.make_node("Identity", ["cond_in"], ["cond_out"]), oh.make_node("Add", ["v_in", "one"], ["v_out"])],
        "body", [oh.make_tensor_value_info("i", TensorProto.INT64, []),
                 oh.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
                 oh.make_tensor_value_info("v_in", TensorProto.FLOAT, [1])],
        [oh.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         oh.make_tensor_value_info("v_out", TensorProto.FLOAT, [1])],
        [numpy_helper.from_array(np.array([1.0], np.float32), "one")])
    nodes = [oh.make_node("Loop", [trip_count, "cond", "v0"], ["v"], body=body), oh.make_node("Add", ["x", "v"], ["y"])]
    return save(folder, name, nodes, {"m": np.array(10**12, np.int64), "cond": np.array(True), "v0": w(1, value=0)})


def loop_10_12(folder: Path) -> Path:
    return _loop_model(folder, "loop_10_12", "m")


def loop_forever(folder: Path) -> Path:
    return _loop_model(folder, "loop_forever", "")


def constant_of_shape_6_4_gb(folder: Path) -> Path:
    nodes = [oh.make_node("ConstantOfShape", ["shape"], ["big"],
                          value=numpy_helper.from_array(np.array([1.0], np.float32))),
             oh.make_node("Flatten", ["x"], ["f"]), oh.make_node("Add", ["f", "big"], ["y"])]
    return save(folder, "constant_of_shape_6_4_gb", nodes, {"shape": np.array([1, 1_600_000_000], np.int64)})


def wide_mlp(folder: Path) -> Path:
    """64 -> 200,000 -> 10 (the issue's 2,000,000 makes a 600 MB file; the estimate grows with the width)."""
    return mlp(folder, "wide_mlp", w(200_000, 64, value=0.01), in_shape=[1, 1, 8, 8])


def wide_conv(folder: Path) -> Path:
    """A 2,048-channel convolution of MNIST images (its calibration values alone are ~60 GB)."""
    nodes = [oh.make_node("Conv", ["x", "w"], ["c"]), oh.make_node("Relu", ["c"], ["r"]),
             oh.make_node("GlobalAveragePool", ["r"], ["p"]), oh.make_node("Flatten", ["p"], ["f"]),
             oh.make_node("Gemm", ["f", "w2"], ["y"], transB=1)]
    return save(folder, "wide_conv", nodes, {"w": w(2048, 1, 3, 3), "w2": w(10, 2048)})


def upsampling(name: str, op: str, inputs: list[str], inits: dict[str, np.ndarray], **attrs) -> Callable[[Path], Path]:
    """An upsampling or block move (`op`) of the MNIST image with hostile attributes or constants, read by a
    convolution."""
    nodes = [oh.make_node(op, ["x", *inputs], ["u"], **attrs), oh.make_node("Conv", ["u", "w"], ["y"])]
    return lambda folder: save(folder, name, nodes, {**inits, "w": w(4, 1, 3, 3)})


def add_int64(folder: Path) -> Path:
    """Add of the float image and an int64 constant: ONNX's Add takes one type (onnxruntime refuses the model)."""
    nodes = [oh.make_node("Add", ["x", "c"], ["a"]), oh.make_node("Conv", ["a", "w"], ["y"])]
    return save(folder, "add_int64", nodes, {"c": np.ones((1, 28, 28), np.int64), "w": w(4, 1, 3, 3)})


def constant_float16_weight(folder: Path) -> Path:
    """The float16 weight as a Constant node (the TorchScript exporter writes constants so)."""
    weight = oh.make_tensor("k", TensorProto.FLOAT16, [4, 1, 3, 3], np.full(36, 0.1, np.float16).view(np.uint16))
    nodes = [oh.make_node("Constant", [], ["k"], value=weight), oh.make_node("Conv", ["x", "k"], ["y"])]
    return save(folder, "constant_float16_weight", nodes, {})


def complex_bias(folder: Path) -> Path:
    """Its cast to float32 dropped the imaginary part, printing numpy's ComplexWarning beside the compile."""
    nodes = [oh.make_node("Conv", ["x", "w"], ["c"]), oh.make_node("BatchNormalization", ["c", "s", "b", "m", "v"],
                                                                   ["y"])]
    ones = np.ones(4, np.float32)
    return save(folder, "complex_bias", nodes, {"w": w(4, 1, 3, 3), "s": ones, "b": ones.astype(np.complex64),
                                                "m": ones, "v": ones})


def float16_weight(op: str) -> Callable[[Path], Path]:
    """A float16 initializer feeding the float32 image's `op` (ONNX binds both to one type: onnxruntime refuses the
    model as invalid)."""
    def build(folder: Path) -> Path:
        name = f"{op.lower()}_float16_weight"
        if op == "Conv":
            return conv(folder, name, w(4, 1, 3, 3).astype(np.float16))
        if op == "Gemm":
            return mlp(folder, name, w(32, 784).astype(np.float16))
        nodes = [oh.make_node("Flatten", ["x"], ["f"]), oh.make_node("MatMul", ["f", "w"], ["y"])]
        return save(folder, name, nodes, {"w": w(784, 10).astype(np.float16)})
    return build


def empty_file(folder: Path) -> Path:
    path = folder / "empty_file.onnx"
    path.write_bytes(b"")
    return path


def no_graph(folder: Path) -> Path:
    """Bytes that parse as a protobuf message (field 1, ir_version 7) but hold no model."""
    path = folder / "no_graph.onnx"
    path.write_bytes(b"\x08\x07")
    return path


def compiled_npz(folder: Path) -> Path:
    """A compile's compiled.npz given as the model (protobuf said "Wire format was corrupt")."""
    path = folder / "compiled.npz"
    np.savez(path, __graph__=np.frombuffer(b"{}", np.uint8))
    return path


def report_json(folder: Path) -> Path:
    """A compile's report.json given as the model: onnx parses a .json as its JSON form, and the error listed
    every field of a ModelProto (about 360 characters)."""
    path = folder / "report.json"
    path.write_text('{"model": "lenet_mnist", "metrics": {"accuracy": 0.98}}\n')
    return path


# name -> (builder, overrides, exit status, words the one error line holds)
CASES: dict[str, tuple[Callable[[Path], Path], tuple[str, ...], int, tuple[str, ...]]] = {
    "nan_weight": (nan_weight, (), 2, ("initializer 'w'", "NaN")),
    "inf_weight": (inf_weight, (), 2, ("initializer 'w1'", "Inf")),
    "nan_bias": (nan_bias, (), 2, ("initializer 'b'", "NaN")),
    "gemm_alpha_nan": (gemm_alpha_nan, (), 2, ("Gemm", "alpha", "not finite")),
    "divide_by_zero": (divide_by_zero, (), 2, ("Div", "division by zero")),
    "overflow": (overflow, ("model.dataset=digits",), 4, ("original network's outputs", "Inf")),
    "tiny_weights_big_bias": (tiny_weights_big_bias, ("model.dataset=digits",), 2, ("bias", "past 2**53")),
    "add_3e38": (add_3e38, ("model.dataset=digits",), 4, ("original network's outputs", "Inf")),
    "add_3e38_constants": (add_3e38_constants, ("model.dataset=digits",), 2, ("Add", "NaN or Inf")),
    "batchnorm_scale_past_float32": (batchnorm_scale_past_float32, ("model.dataset=digits",), 4,
                                     ("original network's outputs", "NaN or Inf")),
    "conv_stride_negative": (conv_attr("conv_stride_negative", strides=[-1, 1]), (), 2, ("Conv", "strides")),
    "conv_dilation_0": (conv_attr("conv_dilation_0", dilations=[0, 1]), (), 2, ("Conv", "dilations")),
    "conv_dilation_negative": (conv_attr("conv_dilation_negative", dilations=[1, -2]), (), 2, ("dilations",)),
    "conv_kernel_over_input": (conv_attr("conv_kernel_over_input", (4, 1, 30, 30)), (), 2, ("kernel_shape",)),
    "conv_pads_1000": (conv_attr("conv_pads_1000", pads=[1000] * 4), (), 2, ("Conv", "pads")),
    "conv_0_out_channels": (conv_attr("conv_0_out_channels", (0, 1, 3, 3)), (), 2, ("0 output channels",)),
    "maxpool_kernel_0": (maxpool_kernel_0, (), 2, ("MaxPool", "kernel_shape")),
    "no_outputs": (no_outputs, (), 2, ("no outputs",)),
    "output_is_input": (output_is_input, (), 2, ("output 'x'", "nothing is computed")),
    "batchnorm_negative_variance": (batchnorm_negative_variance, (), 2, ("BatchNormalization", "variance")),
    "clip_min_above_max": (clip_min_above_max, (), 2, ("Clip", "min", "max")),
    "external_length_2_40": (external_length_2_40, (), 2, ("tensor 'w'", "length")),
    "loop_10_12": (loop_10_12, (), 2, ("Loop", "iterations")),
    "loop_forever": (loop_forever, (), 2, ("Loop", "took over")),
    "constant_of_shape_6_4_gb": (constant_of_shape_6_4_gb, (), 2, ("ConstantOfShape", "MiB", "budget")),
    "resize_scales_nan": (upsampling("resize_scales_nan", "Resize", ["", "s"],
                                     {"s": np.array([1, 1, NAN, 2], np.float32)}, mode="nearest"), (), 2,
                          ("initializer 's'", "NaN")),
    "resize_scale_1e30": (upsampling("resize_scale_1e30", "Resize", ["", "s"],
                                     {"s": np.array([1, 1, 1e30, 1e30], np.float32)}, mode="nearest"), (), 2,
                          ("Resize", "over 2**31 values")),
    "conv_transpose_stride_0": (upsampling("conv_transpose_stride_0", "ConvTranspose", ["t"],
                                           {"t": w(1, 1, 3, 3)}, strides=[0, 2]), (), 2,
                                ("ConvTranspose", "strides")),
    "conv_transpose_pads_1000": (upsampling("conv_transpose_pads_1000", "ConvTranspose", ["t"],
                                            {"t": w(1, 1, 3, 3)}, strides=[2, 2], pads=[1000] * 4), (), 2,
                                 ("ConvTranspose", "pads")),
    "depth_to_space_blocksize_0": (upsampling("depth_to_space_blocksize_0", "DepthToSpace", [], {}, blocksize=0),
                                   (), 2, ("DepthToSpace", "blocksize")),
    "space_to_depth_blocksize_3": (upsampling("space_to_depth_blocksize_3", "SpaceToDepth", [], {}, blocksize=3),
                                   (), 2, ("SpaceToDepth", "blocksize 3")),
    **{f"{op.lower()}_float16_weight": (float16_weight(op), (), 2,
                                        (f"({op})", f"initializer '{w}' is FLOAT16", "data input is FLOAT"))
       for op, w in (("Conv", "w"), ("Gemm", "w1"), ("MatMul", "w"))},
    "gemm_int64_weight": (lambda folder: mlp(folder, "gemm_int64_weight", np.ones((32, 784), np.int64)), (), 2,
                          ("(Gemm)", "initializer 'w1' is INT64", "data input is FLOAT")),
    "add_int64": (add_int64, (), 2, ("(Add)", "initializer 'c' is INT64", "data input is FLOAT")),
    "constant_float16_weight": (constant_float16_weight, (), 2,
                                ("(Conv)", "Constant 'k' is FLOAT16", "data input is FLOAT")),
    "clip_float16_bound": (lambda folder: save(folder, "clip_float16_bound", [
        oh.make_node("Clip", ["x", "lo", "hi"], ["c"]), oh.make_node("Conv", ["c", "w"], ["y"])],
        {"lo": np.float16(0), "hi": np.float16(6), "w": w(4, 1, 3, 3)}), (), 2,
        ("(Clip)", "initializer 'lo' is FLOAT16", "data input is FLOAT")),
    "complex_bias": (complex_bias, (), 2, ("initializer 'b' is COMPLEX64", "real numbers")),
    "empty_file": (empty_file, (), 2, ("empty_file.onnx is empty (0 bytes)", "not an ONNX model")),
    "compiled_npz": (compiled_npz, (), 2, ("compiled.npz is a zip archive", "not an ONNX model")),
    "no_graph": (no_graph, (), 2, ("no_graph.onnx holds no ONNX model (no graph)",)),
    "report_json": (report_json, (), 2, ("report.json is JSON text (such as a compile's report.json), not an ONNX "
                                         "model",)),
    "wide_mlp": (wide_mlp, ("model.dataset=digits", "compile.max_memory_gb=2"), 2,
                 ("estimated peak memory", "compile.max_memory_gb=2")),
    "wide_conv": (wide_conv, ("compile.max_memory_gb=8",), 2, ("estimated peak memory", "compile.max_memory_gb=8")),
}
