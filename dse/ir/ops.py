"""Op dataclasses of the IR.

Every tensor is batched: axis 0 is the batch, and every shape stored in an op leaves the batch out (the
per-sample shape). Image tensors are (N, C, H, W); vectors are (N, F).

Two families live here. The *network ops* are what the ONNX importer produces (Conv, Linear, Relu, ...).
The *chip ops* are what a compiled network may contain: `CoreOp` (the only thing that computes), wiring that
only routes values between cores (`Reshape`, `Slice`, `Gather`, `Concat`, `Pad`, `DepthToSpace`, `SpaceToDepth`: their
routing is
`dse.ir.wiring.WIRING`), and the host's encoder (`Input`) and decoder (`Readout`). Behaviour lives in tables
keyed by op type (`dse.ir.shapes`, `dse.ir.wiring`, `dse.sim.float_exec`, ...), not in methods, so that a test
can check every op is covered by every table (tests/sim/test_op_tables.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Pads = tuple[int, int, int, int]  # top, left, bottom, right


@dataclass(frozen=True, eq=False)
class Op:
    """Base class of all ops."""


# --- host side -------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Input(Op):
    """The network input, per-sample `shape`.

    On a chip, the host encodes the input as unsigned codes: ``code = clamp(round(x / scale), 0, code_max)``
    (``2**bits - 1`` for a DAC of `bits` bits, `T` for a spike count over `T` time steps). `code_max` is None
    for a float input (no encoding).
    """

    shape: tuple[int, ...]
    scale: float = 1.0
    code_max: int | None = None
    population: int = 1  # > 1: the host sends that many thermometer copies of each channel (see CoreOp)


@dataclass(frozen=True, eq=False)
class Readout(Op):
    """Host-side decoding of a differential output: ``y = x[:, :C] - x[:, C:]``.

    A chip whose only neuron is a ReLU cannot emit a negative value, so a signed output `s` leaves the chip as
    the pair ``relu(s), relu(-s)`` stacked on axis 1, and the host subtracts them. When the output is carried by
    a population code of `population` copies (copy-major on axis 1), the host first sums the copies.
    """

    population: int = 1


# --- network ops (from the importer) -----------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Conv(Op):
    """``y[n, o] = sum_{i, u, v} W[o, i, u, v] * pad(x)[n, g(o)*I/g + i, s*h + d*u, s*w + d*v] + b[o]``."""

    weight: np.ndarray  # (O, I / groups, kh, kw)
    bias: np.ndarray | None
    stride: tuple[int, int] = (1, 1)
    padding: Pads = (0, 0, 0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    # (O, I / groups, kh, kw) the synapses that exist, the weight 0 elsewhere (a transposed convolution's phases,
    # `DepthToSpace`: each output block reads its own taps of a kernel shared by all), which the chip does not map;
    # None: all
    mask: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class Linear(Op):
    """``y = x @ W.T + b`` on (N, F) inputs; W is (O, F)."""

    weight: np.ndarray
    bias: np.ndarray | None


@dataclass(frozen=True, eq=False)
class ScaleShift(Op):
    """``y = x * scale + shift``, element-wise, both broadcast against the per-sample shape (BatchNorm, Mul/Add/
    Sub/Div by constants, input normalization). Not NIR's Affine, which is ``W x + b`` (a `Linear`). Files
    written before the rename call it Affine (`dse.ir.serialize` reads both)."""

    scale: np.ndarray
    shift: np.ndarray


@dataclass(frozen=True, eq=False)
class Add(Op):
    """``y = x0 + x1 (+ ...)``: the element-wise sum of two or more tensors of equal shape (residual add)."""


@dataclass(frozen=True, eq=False)
class Relu(Op):
    """``y = max(x, 0)``."""


@dataclass(frozen=True, eq=False)
class PRelu(Op):
    """``y = x if x >= 0 else slope * x``, `slope` broadcast against the per-sample shape (ONNX PRelu, and
    LeakyRelu with one scalar slope)."""

    slope: np.ndarray


@dataclass(frozen=True, eq=False)
class Clip(Op):
    """``y = min(max(x, lo), hi)``; either bound may be None (unbounded)."""

    lo: float | None
    hi: float | None


@dataclass(frozen=True, eq=False)
class Sigmoid(Op):
    """``y = 1 / (1 + exp(-x))``."""


@dataclass(frozen=True, eq=False)
class Tanh(Op):
    """``y = tanh(x)``."""


@dataclass(frozen=True, eq=False)
class HardSwish(Op):
    """``y = x * min(max(x / 6 + 1/2, 0), 1)``: 0 below -3, x above 3, quadratic between (MobileNetV3)."""


@dataclass(frozen=True, eq=False)
class Silu(Op):
    """``y = x * sigmoid(x)`` (SiLU, Swish: EfficientNet, YOLO)."""


@dataclass(frozen=True, eq=False)
class Gelu(Op):
    """``y = x * Phi(x)``, Phi the standard normal's distribution function (GELU: BERT, ViT, ConvNeXt);
    `approximate` ``"tanh"``: Phi(x) as ``(1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))) / 2``, as ONNX's Gelu."""

    approximate: str = "none"


@dataclass(frozen=True, eq=False)
class Elu(Op):
    """``y = gamma * (x if x > 0 else alpha * (exp(x) - 1))``: ELU (gamma 1), and SELU (Klambauer et al., 2017:
    alpha 1.6733, gamma 1.0507, ONNX's defaults for Selu)."""

    alpha: float = 1.0
    gamma: float = 1.0


@dataclass(frozen=True, eq=False)
class Softplus(Op):
    """``y = log(1 + exp(x))``."""


@dataclass(frozen=True, eq=False)
class Mish(Op):
    """``y = x * tanh(softplus(x))`` (Misra, 2019; YOLOv4)."""


@dataclass(frozen=True, eq=False)
class Softmax(Op):
    """``y = exp(x) / sum(exp(x))`` along per-sample `axis`; with `log`, its logarithm (LogSoftmax,
    ``x - log(sum(exp(x)))``)."""

    axis: int = 0
    log: bool = False


@dataclass(frozen=True, eq=False)
class MaxPool(Op):
    """``y[n, c, h, w] = max_{u, v} pad_{-inf}(x)[n, c, s*h + d*u, s*w + d*v]`` (`d` the dilation)."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: Pads = (0, 0, 0, 0)
    ceil_mode: bool = False
    dilation: tuple[int, int] = (1, 1)


@dataclass(frozen=True, eq=False)
class AvgPool(Op):
    """``y[n, c, h, w] = mean_{u, v} pad_0(x)[n, c, s*h + d*u, s*w + d*v]`` (`d` the dilation); the divisor
    counts the padding only when `count_include_pad`, and never the taps of a `ceil_mode` window that fall
    beyond the padding."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: Pads = (0, 0, 0, 0)
    count_include_pad: bool = False
    ceil_mode: bool = False
    dilation: tuple[int, int] = (1, 1)


@dataclass(frozen=True, eq=False)
class GlobalAvgPool(Op):
    """``y[n, c, 1, 1] = mean_{h, w} x[n, c, h, w]``."""


@dataclass(frozen=True, eq=False)
class Identity(Op):
    """``y = x`` (ONNX Identity and Dropout at inference)."""


# --- wiring (free on a chip: it only routes values) ---------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Reshape(Op):
    """``y = x.reshape(N, *shape)`` in row-major order (Flatten, Reshape)."""

    shape: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class Slice(Op):
    """``y = x[:, start:stop]``: a contiguous range of axis 1 (channels or features)."""

    start: int
    stop: int


@dataclass(frozen=True, eq=False)
class Gather(Op):
    """``y = x[:, index]``: channels (or features) of axis 1 picked by `index`, in any order, any number of
    times. It routes each neuron's output to the crossbar rows that read it, e.g. all partial sums of one
    output next to each other, so that a merge is a grouped core-op (a few rows per neuron) rather than a
    dense, mostly-zero matrix."""

    index: np.ndarray  # int64 (C_out,)


@dataclass(frozen=True, eq=False)
class Pad(Op):
    """``y = pad(x, padding, value)`` on the two spatial axes. A non-zero `value` is only legal on the host's
    input (it comes from folding an input normalization into a padded convolution)."""

    padding: Pads
    value: tuple[float, ...] = (0.0,)  # one value for all channels, or one per channel


@dataclass(frozen=True, eq=False)
class DepthToSpace(Op):
    """``y[c, h, w] = x[((h % bh) * bw + w % bw) * C + c, h // bh, w // bw]`` for ``h < size[0]``, ``w < size[1]``:
    the input's ``bh * bw`` blocks of C channels (phase-major, ONNX DepthToSpace's DCR order) interleaved on a
    grid `block` times finer, cropped to `size` (at most ``(bh * H, bw * W)``). Each output value is one input
    value: it only routes. Nearest-neighbour upsampling is this op reading a Gather that copies every channel
    ``bh * bw`` times; a transposed convolution is the stride**2 sub-pixel convolutions of one Conv (its phases,
    stacked as channel blocks) read by this op (see `dse.frontends.onnx`). With `copies` k > 1 (a population code,
    `dse.passes.reencode`) its input is k such stacks and its output k such grids, each copy routed alike."""

    block: tuple[int, int]
    size: tuple[int, int]
    copies: int = 1


@dataclass(frozen=True, eq=False)
class SpaceToDepth(Op):
    """``y[(i * bw + j) * C + c, h, w] = x[c, h * bh + i, w * bw + j]``: each ``bh x bw`` cell of the input's grid
    becomes ``bh * bw`` channel blocks of C (phase-major, ONNX SpaceToDepth's order), the inverse of
    `DepthToSpace` without its crop; H and W are multiples of the block. It only routes (PixelUnshuffle is this op
    and a Gather of its channels). With `copies` k > 1 (a population code) its input is k images and its output k
    stacks of blocks, each copy routed alike."""

    block: tuple[int, int]
    copies: int = 1


@dataclass(frozen=True, eq=False)
class Concat(Op):
    """``y = concatenate(inputs, per-sample axis)``. With `copies` k > 1 (a population code, axis 0) each input is k
    copies of its channels (copy-major) and so is the output: copy i of the output is copy i of every input,
    concatenated."""

    axis: int = 0
    copies: int = 1


# --- the chip primitive ----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CoreQuant:
    """Integer form of a core-op, what the chip really holds.

    The core reads input codes ``c_in`` (their value is ``in_scale[c] * c_in``), computes the integer
    accumulator ``acc = conv(c_in, weight_int) + bias_int`` and its neurons emit
    ``c_out = clamp(round(acc * weight_scale / out_scale), 0, out_max)``, whose value is
    ``out_scale * c_out``. The weights act on codes, so inputs of different scales (a merge of partial
    sums, a residual add) need no rescaling: the ratio lives in the integer weights. `weight_scale` is per
    output channel (equal across a layer when the chip's scale is per crossbar). `out_max` is ``2**b - 1``
    for a ReLU neuron behind a `b`-bit ADC, and `T` for a spiking neuron counting spikes over `T` steps (its
    threshold is ``out_scale / weight_scale``, its bias current per step ``bias_int / T``).
    """

    weight_int: np.ndarray  # integers (the smallest type that holds the chip's codes), shape of CoreOp.weight
    weight_scale: np.ndarray  # (O,)
    bias_int: np.ndarray  # int64 (O,), in accumulator units
    in_scale: np.ndarray  # (C_in,): the value of one input code, per input channel
    out_scale: float
    out_max: int
    # (slices, columns, O) int16: the spare column of its crossbar each physical column is read from, -1 its own
    # cells (`dse.sim.spares`; set by `fault_correct` on a chip with spare columns; None: no repair)
    spare_of: np.ndarray | None = None

    @property
    def out_bits(self) -> int:
        """Bits that hold one output code."""
        return int(self.out_max).bit_length()


@dataclass(frozen=True, eq=False)
class CoreOp(Op):
    """A core-op, the only op a chip computes: ``y = f(conv(x, W) + b)``.

    `f` is the chip's neuron; in float it is ``relu``. A fully connected core-op takes (N, F) inputs and has
    ``kernel == (1, 1)``; a convolutional one takes (N, C, H, W) and is one core-op per output position
    (fan-in ``k*k*C/groups``). `mask` (same shape as `weight`) marks the synapses that exist; None means all.
    `quant` is set once the op is in integer form; then it, not `weight`/`bias`, defines the op.
    `fixed` marks a core whose weights are exact small integers acting on codes of one scale (the ReLU
    max-pooling tree): it is exact on any chip, so tuning keeps it as it is.
    `population` > 1: the output channels are that many copies (copy-major) of ``O / population`` neurons whose
    thresholds are staggered by one full code range each (a thermometer population code): copy i emits
    ``clamp(y - i * out_max * step, 0, out_max * step)``, so the copies sum to y over a range `population`
    times wider at the same step. Consumers read every copy with the same weight (the decoder folded in).
    """

    weight: np.ndarray  # (O, I / groups, kh, kw)
    bias: np.ndarray  # (O,)
    stride: tuple[int, int] = (1, 1)
    padding: Pads = (0, 0, 0, 0)
    groups: int = 1
    dense: bool = False
    mask: np.ndarray | None = None
    quant: CoreQuant | None = None
    fixed: bool = False
    population: int = 1

    @property
    def out_channels(self) -> int:
        return int(self.weight.shape[0])

    @property
    def kernel(self) -> tuple[int, int]:
        return int(self.weight.shape[2]), int(self.weight.shape[3])

    def synapse_mask(self) -> np.ndarray:
        """Boolean (O, I/g, kh, kw): which synapses exist (mask, else non-zero weights count as all)."""
        if self.mask is not None:
            return self.mask.astype(bool)
        return np.ones(self.weight.shape, dtype=bool)

    def fan_in(self) -> np.ndarray:
        """Per output channel, how many inputs (crossbar rows) the neuron reads."""
        if self.mask is None:
            return np.full(self.out_channels, int(np.prod(self.weight.shape[1:])))
        return self.synapse_mask().reshape(self.out_channels, -1).sum(axis=1)


NETWORK_OPS: tuple[type[Op], ...] = (
    Conv, Linear, ScaleShift, Add, Relu, PRelu, Clip, Sigmoid, Tanh, HardSwish, Silu, Gelu, Elu, Softplus, Mish,
    Softmax, MaxPool, AvgPool, GlobalAvgPool, Identity,
)
WIRING_OPS: tuple[type[Op], ...] = (Reshape, Slice, Gather, Concat, Pad, DepthToSpace, SpaceToDepth)
CHIP_OPS: tuple[type[Op], ...] = (Input, Readout, CoreOp, *WIRING_OPS)
ALL_OPS: tuple[type[Op], ...] = (*CHIP_OPS, *NETWORK_OPS)
