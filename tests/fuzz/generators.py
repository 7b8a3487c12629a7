"""Fuzz inputs: a structure-aware generator of small ONNX models (hypothesis strategies over shapes,
attributes, values and wiring) and a byte-level mutator of the committed models.

The generator builds a chain of ops from `OPS` on a data input (an image, a signal or a vector), each
reading the previous value or, for the ops of two inputs, an earlier one. Attributes are drawn mostly from
the values real networks use and sometimes from the hostile ones (0, negative, huge, NaN); weights are
seeded random arrays into which a NaN, an Inf or a huge value is sometimes written.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from hypothesis import strategies as st
from onnx import TensorProto, numpy_helper
from onnx import helper as oh

MODELS = sorted((Path(__file__).resolve().parents[2] / "dse" / "data" / "models").glob("*.onnx"))
SPECIAL = (float("nan"), float("inf"), -float("inf"), 3e38, 0.0)


class _Builder:
    """The model under construction: its nodes, initializers and the values made so far (name, shape)."""

    def __init__(self, draw: Callable, shape: tuple[int, ...]) -> None:
        self.draw, self.nodes, self.inits = draw, [], []
        self.values: list[tuple[str, tuple[int, ...]]] = [("x", (1, *shape))]

    def small(self, lo: int, hi: int, hostile: tuple[int, ...] = (0, -1, 1000)) -> int:
        """Mostly an integer in [lo, hi], sometimes a hostile one."""
        return self.draw(st.one_of(st.integers(lo, hi), st.sampled_from(hostile))
                         if self.draw(st.integers(0, 9)) == 0 else st.integers(lo, hi))

    def tensor(self, shape: tuple[int, ...], scale: float = 0.5, positive: bool = False) -> str:
        rng = np.random.default_rng(self.draw(st.integers(0, 2**32 - 1)))
        a = rng.normal(0.0, scale, shape).astype(np.float32)
        if positive:
            a = np.abs(a) + 0.1
        if a.size and self.draw(st.integers(0, 14)) == 0:
            a.reshape(-1)[rng.integers(a.size)] = self.draw(st.sampled_from(SPECIAL))
        name = f"c{len(self.inits)}"
        self.inits.append(numpy_helper.from_array(a, name))
        return name

    def const(self, value: np.ndarray) -> str:
        name = f"c{len(self.inits)}"
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def add(self, op: str, inputs: list[str], shape: tuple[int, ...], **attrs) -> None:
        out = f"v{len(self.nodes)}"
        self.nodes.append(oh.make_node(op, inputs, [out], name=f"{op.lower()}{len(self.nodes)}", **attrs))
        self.values.append((out, shape))

    @property
    def last(self) -> tuple[str, tuple[int, ...]]:
        return self.values[-1]


def _window(b: _Builder, rank: int) -> dict:
    n = rank - 2
    return {"strides": [b.small(1, 2, (0, -1)) for _ in range(n)],
            "pads": [b.small(0, 1, (-1, 1000)) for _ in range(2 * n)],
            **({"dilations": [b.small(1, 2, (0, -1)) for _ in range(n)]} if b.draw(st.booleans()) else {})}


def _conv(b: _Builder) -> None:
    x, shape = b.last
    if len(shape) < 3:
        return _gemm(b)
    c, n = shape[1], len(shape) - 2
    group = b.draw(st.sampled_from([1, 1, c, 2]))
    out = b.small(1, 6, (0,)) * (group if group > 0 else 1)
    kernel = [b.small(1, 3, (0, 40)) for _ in range(n)]
    w = b.tensor((out, max(c // max(group, 1), 1), *kernel))
    bias = [b.tensor((out,))] if b.draw(st.booleans()) else []
    b.add("Conv", [x, w, *bias], (1, out, *shape[2:]), group=group, **_window(b, len(shape)))


def _pool(b: _Builder) -> None:
    x, shape = b.last
    if len(shape) < 3:
        return _unary(b)
    op = b.draw(st.sampled_from(["MaxPool", "AveragePool"]))
    kernel = [b.small(1, 3, (0, -1, 50)) for _ in range(len(shape) - 2)]
    extra = {"count_include_pad": b.draw(st.integers(0, 1))} if op == "AveragePool" else {}
    b.add(op, [x], shape, kernel_shape=kernel, ceil_mode=b.draw(st.integers(0, 1)), **_window(b, len(shape)),
          **extra)


def _unary(b: _Builder) -> None:
    x, shape = b.last
    op = b.draw(st.sampled_from(["Relu", "Sigmoid", "Tanh", "HardSwish", "LeakyRelu", "HardSigmoid", "Identity",
                                 "Softmax", "Elu", "Selu", "Softplus"]))
    attrs = {}
    if op == "LeakyRelu":
        attrs = {"alpha": b.draw(st.sampled_from([0.01, 0.2, float("nan")]))}
    if op == "Elu":
        attrs = {"alpha": b.draw(st.sampled_from([1.0, 0.5, float("inf")]))}
    if op == "Selu":
        attrs = {"gamma": b.draw(st.sampled_from([1.0507, -1.0]))}
    if op == "HardSigmoid":
        attrs = {"alpha": b.draw(st.sampled_from([0.2, 1 / 6, float("inf")])), "beta": 0.5}
    if op == "Softmax":
        attrs = {"axis": b.draw(st.integers(-len(shape) - 1, len(shape)))}
    b.add(op, [x], shape, **attrs)


def _clip(b: _Builder) -> None:
    x, shape = b.last
    lo, hi = b.draw(st.sampled_from([(0.0, 6.0), (-1.0, 1.0), (1.0, 0.0), (float("nan"), 1.0), (0.0, 0.0)]))
    b.add("Clip", [x, b.const(np.float32(lo)), b.const(np.float32(hi))], shape)


def _batchnorm(b: _Builder) -> None:
    x, shape = b.last
    c = shape[1] if len(shape) > 1 else 1
    if b.draw(st.integers(0, 9)) == 0:
        c += 1  # parameters that do not fit the channels
    var = b.tensor((c,), positive=True)
    if b.draw(st.integers(0, 9)) == 0:
        var = b.const(-np.ones(c, np.float32))
    b.add("BatchNormalization", [x, b.tensor((c,)), b.tensor((c,)), b.tensor((c,)), var], shape,
          epsilon=b.draw(st.sampled_from([1e-5, 0.0, -1.0])))


def _arith(b: _Builder) -> None:
    x, shape = b.last
    op = b.draw(st.sampled_from(["Add", "Sub", "Mul", "Div"]))
    cshape = b.draw(st.sampled_from([(), (shape[1],) + (1,) * (len(shape) - 2) if len(shape) > 1 else (), shape[1:],
                                     (7, 5)]))
    c = b.tensor(cshape, positive=op == "Div") if b.draw(st.integers(0, 9)) else b.const(np.zeros(cshape, np.float32))
    b.add(op, [x, c] if b.draw(st.integers(0, 4)) else [c, x], shape)


def _join(b: _Builder) -> None:
    """Two values made so far, added, summed or concatenated (their shapes may not fit)."""
    (x, shape), (y, _) = b.last, b.draw(st.sampled_from(b.values))
    op = b.draw(st.sampled_from(["Add", "Sum", "Concat"]))
    if op == "Concat":
        axis = b.draw(st.integers(-len(shape), len(shape) - 1))
        b.add(op, [x, y], shape[:1] + (shape[1] * 2,) + shape[2:] if len(shape) > 1 else shape, axis=axis)
    else:
        b.add(op, [x, y], shape)


def _pad(b: _Builder) -> None:
    x, shape = b.last
    pads = [0, 0] + [b.small(0, 2, (-1, 1000)) for _ in shape[2:]]
    pads = pads + [0, 0] + [b.small(0, 2, (-1,)) for _ in shape[2:]]
    grow = [p + q for p, q in zip(pads[: len(shape)], pads[len(shape):], strict=True)]
    mode = b.draw(st.sampled_from(["constant", "constant", "reflect", "edge"]))  # wrap is opset 19
    b.add("Pad", [x, b.const(np.array(pads, np.int64))], tuple(max(1, d + g) for d, g in zip(shape, grow, strict=True)),
          mode=mode)


def _gemm(b: _Builder) -> None:
    x, shape = b.last
    if len(shape) > 2:
        b.add("Flatten", [x], (1, int(np.prod(shape[1:]))), axis=b.draw(st.sampled_from([1, 1, 0, 5])))
        x, shape = b.last
    features = shape[-1] if b.draw(st.integers(0, 9)) else shape[-1] + 1
    out = b.small(1, 8, (0,))
    w = b.tensor((out, features))
    b.add("Gemm", [x, w, b.tensor((out,))], (1, out), transB=1,
          alpha=b.draw(st.sampled_from([1.0, 1.0, 0.5, float("nan")])))


def _global_pool(b: _Builder) -> None:
    x, shape = b.last
    if len(shape) < 3:
        return _unary(b)
    b.add("GlobalAveragePool", [x], shape[:2] + (1,) * (len(shape) - 2))


def _reshape(b: _Builder) -> None:
    x, shape = b.last
    size = int(np.prod(shape[1:]))
    target = b.draw(st.sampled_from([[1, -1], [1, size], [-1, size], [1, size, 1], [0, -1], [2, -1], [1, -1, -1]]))
    b.add("Reshape", [x, b.const(np.array(target, np.int64))], (1, size))


def _resize(b: _Builder) -> None:
    """Upsampling: mostly nearest by integer factors in the modes exporters write (wiring on the chip), often
    linear (bilinear: torch's half_pixel and align_corners, and the other modes), sometimes cubic, a fraction, a
    shrink or a map that does not repeat each pixel."""
    x, shape = b.last
    if len(shape) < 3:
        return _unary(b)
    factors = [b.draw(st.sampled_from([1, 2, 2, 3])) if b.draw(st.integers(0, 5)) else
               b.draw(st.sampled_from([1.5, 0.5])) for _ in shape[2:]]
    # torch's map (both exporters), ONNX's default, or any pair (most do not repeat each pixel: refused)
    coords, nearest = b.draw(st.sampled_from([("asymmetric", "floor"), ("half_pixel", "round_prefer_floor")])) \
        if b.draw(st.integers(0, 3)) else (
        b.draw(st.sampled_from(["asymmetric", "half_pixel", "align_corners", "tf_half_pixel_for_nn",
                                "pytorch_half_pixel"])),
        b.draw(st.sampled_from(["floor", "round_prefer_floor", "round_prefer_ceil", "ceil"])))
    mode = b.draw(st.sampled_from(["nearest"] * 6 + ["linear"] * 3 + ["cubic"]))
    if mode == "linear" and b.draw(st.booleans()):  # as torch writes nn.Upsample(mode="bilinear")
        coords = b.draw(st.sampled_from(["half_pixel", "align_corners"]))
    scales = b.const(np.array([1, 1, *factors], np.float32))
    out = tuple(max(1, int(np.floor(d * f))) for d, f in zip(shape[2:], factors, strict=True))
    b.add("Resize", [x, "", scales], (*shape[:2], *out), mode=mode, coordinate_transformation_mode=coords,
          nearest_mode=nearest)


def _conv_transpose(b: _Builder) -> None:
    """A transposed convolution (a decoder's upsampling), 1-D (of a signal) or 2-D: strides, pads,
    output_padding, dilations, groups (depthwise, or 2 where the channels split in two)."""
    x, shape = b.last
    if len(shape) < 3:
        return _gemm(b)
    c, n = shape[1], len(shape) - 2
    group = b.draw(st.sampled_from([1, 1, c, 2 if c % 2 == 0 else 1]))
    out = b.small(1, 4, (0,)) * group
    strides = [b.small(1, 2, (0, -1, 3)) for _ in range(n)]
    # mostly a kernel of at least the stride (every output phase has a tap), padded as decoders pad it
    kernel = [b.small(max(s, 1), max(s, 1) * 2, (0, 40, 1)) for s in strides]
    pads = [max(0, (k - s) // 2) for k, s in zip(kernel, strides, strict=True)] * 2 if b.draw(st.integers(0, 3)) \
        else [b.small(0, 1, (-1, 1000)) for _ in range(2 * n)]
    extra = {"output_padding": [b.draw(st.integers(0, max(s - 1, 0))) for s in strides]} \
        if b.draw(st.booleans()) else {}
    if b.draw(st.integers(0, 5)) == 0:
        extra["dilations"] = [b.small(1, 2, (0,)) for _ in range(n)]
    w = b.tensor((c, max(out // max(group, 1), 1), *kernel))
    bias = [b.tensor((out,))] if b.draw(st.booleans()) else []
    # ONNX: stride (in - 1) + output_padding + (kernel - 1) dilation + 1 - the two pads
    size = [s * (d - 1) + op + (k - 1) * dil + 1 - a - z for s, d, op, k, dil, a, z in zip(
        strides, shape[2:], extra.get("output_padding", [0] * n), kernel, extra.get("dilations", [1] * n),
        pads[:n], pads[n:], strict=True)]
    b.add("ConvTranspose", [x, w, *bias], (1, out, *(max(1, v) for v in size)), group=group, strides=strides,
          pads=pads, **extra)


def _block_move(b: _Builder) -> None:
    """DepthToSpace after a 1x1 convolution to block**2 times the channels (a sub-pixel convolution), or
    SpaceToDepth; either as the op (DCR or CRD) or as the Reshape/Transpose/Reshape chain torch writes for
    PixelUnshuffle; the block sometimes fits no axis."""
    x, shape = b.last
    if len(shape) != 4:
        return _unary(b)
    block = b.draw(st.sampled_from([2, 2, 3, 1])) if b.draw(st.integers(0, 9)) else b.draw(st.sampled_from([0, 5]))
    _, c, h, w = shape
    if b.draw(st.booleans()):  # to space: make block**2 * m channels first
        m = b.small(1, 3, (0,))
        b.add("Conv", [x, b.tensor((block * block * m, c, 1, 1))], (1, block * block * m, h, w))
        x = b.last[0]
        b.add("DepthToSpace", [x], (1, m, h * block, w * block), blocksize=block,
              mode=b.draw(st.sampled_from(["DCR", "CRD"])))
    elif b.draw(st.booleans()):
        b.add("SpaceToDepth", [x], (1, c * block * block, max(1, h // max(block, 1)), max(1, w // max(block, 1))),
              blocksize=block)
    else:  # nn.PixelUnshuffle as both torch exporters write it
        cells = (max(1, h // max(block, 1)), max(1, w // max(block, 1)))
        b.add("Reshape", [x, b.const(np.array([-1, c, cells[0], block, cells[1], block], np.int64))],
              (1, c, cells[0], block, cells[1], block))
        b.add("Transpose", [b.last[0]], (1, c, block, block, *cells), perm=[0, 1, 3, 5, 2, 4])
        b.add("Reshape", [b.last[0], b.const(np.array([-1, c * block * block, *cells], np.int64))],
              (1, c * block * block, *cells))


def _transpose(b: _Builder) -> None:
    """A Transpose of any value: of the graph's input (channels-last data), before a Flatten, or elsewhere."""
    x, shape = b.last
    perm = [0, *b.draw(st.permutations(range(1, len(shape))))] if b.draw(st.integers(0, 9)) else \
        b.draw(st.permutations(range(len(shape))))
    b.add("Transpose", [x], tuple(shape[p] for p in perm), perm=perm)


OPS: dict[str, Callable[[_Builder], None]] = {
    "Conv": _conv, "Pool": _pool, "Unary": _unary, "Clip": _clip, "BatchNormalization": _batchnorm,
    "Arith": _arith, "Join": _join, "Pad": _pad, "Gemm": _gemm, "GlobalAveragePool": _global_pool,
    "Reshape": _reshape, "Resize": _resize, "ConvTranspose": _conv_transpose, "BlockMove": _block_move,
    "Transpose": _transpose,
}


@st.composite
def onnx_models(draw: Callable) -> onnx.ModelProto:
    """A small ONNX model: a data input and a chain of 1 to 6 ops from `OPS`; channels-last data (N, H, W, C) is
    transposed to NCHW first."""
    kind = draw(st.sampled_from(["image", "image", "signal", "vector", "channels_last"]))
    if kind in ("image", "channels_last"):
        shape = (draw(st.integers(1, 3)), draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    elif kind == "signal":
        shape = (draw(st.integers(1, 3)), draw(st.integers(1, 12)))
    else:
        shape = (draw(st.integers(1, 12)),)
    if kind == "channels_last":
        shape = (*shape[1:], shape[0])
    b = _Builder(draw, shape)
    if kind == "channels_last":
        b.add("Transpose", ["x"], (1, shape[2], *shape[:2]), perm=[0, 3, 1, 2])
    for _ in range(draw(st.integers(1, 6))):
        OPS[draw(st.sampled_from(sorted(OPS)))](b)
    graph = oh.make_graph(b.nodes, "fuzz", [oh.make_tensor_value_info("x", TensorProto.FLOAT, [1, *shape])],
                          [oh.make_tensor_value_info(b.last[0], TensorProto.FLOAT, [])], b.inits)
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", draw(st.sampled_from([13, 17, 18])))])


def mutate_bytes(data: bytes, rng: np.random.Generator) -> bytes:
    """`data` with 1 to 8 byte-level edits: a byte flipped, set to 0x00/0xff/0x7f/0x80, a run deleted,
    duplicated or truncated away."""
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 9))):
        if not out:
            break
        i = int(rng.integers(len(out)))
        kind = int(rng.integers(6))
        if kind == 0:
            out[i] ^= 1 << int(rng.integers(8))
        elif kind == 1:
            out[i] = int(rng.choice([0x00, 0xFF, 0x7F, 0x80]))
        elif kind == 2:
            del out[i : i + int(rng.integers(1, 16))]
        elif kind == 3:
            out[i:i] = out[i : i + int(rng.integers(1, 16))]
        elif kind == 4:
            del out[i:]
        else:
            out[i] = int(rng.integers(256))
    return bytes(out)
