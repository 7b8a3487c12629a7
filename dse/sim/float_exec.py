"""Float executor: runs any graph (network ops and chip ops) in torch.

A quantized core-op runs here in real values with its integer weights and codes (``value = scale * code``):
this is the "quantized float path" the integer-exact simulator (`dse.sim.integer`) must agree with.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F

from dse.ir import ops as o
from dse.ir.graph import Graph
from dse.ir.shapes import SHAPE_RULES, infer_shapes
from dse.ir.wiring import WIRING
from dse.sim.threads import conv_macs, op_threads

Tensor = torch.Tensor


def _t(a: np.ndarray | None, like: Tensor) -> Tensor | None:
    return None if a is None else torch.as_tensor(np.asarray(a), dtype=like.dtype)


def _pad(x: Tensor, padding: o.Pads, value: float = 0.0) -> Tensor:
    top, left, bottom, right = padding
    if not any(padding):
        return x
    return F.pad(x, (left, right, top, bottom), value=value)


def grouped_linear(x: Tensor, weight: Tensor, bias: Tensor | None, groups: int) -> Tensor:
    """``x @ W.T + b`` for (N, F) rows and a grouped weight (O, F / groups): group g's outputs read only
    features g*F/g .. (g+1)*F/g (a merge core: each neuron reads its own few partial sums)."""
    w = weight.reshape(weight.shape[0], -1)
    if groups == 1:
        return F.linear(x, w, bias)
    out_c, in_g = w.shape
    y = torch.einsum("ngi,goi->ngo", x.reshape(x.shape[0], groups, in_g), w.reshape(groups, out_c // groups, in_g))
    y = y.reshape(x.shape[0], out_c)
    return y if bias is None else y + bias


def _pair_half(weight: Tensor, groups: int) -> Tensor | None:
    """The first half of a weight that is ``[w; -w]`` (a signed pair: partial sums of a split, a signed
    output), else None. Not for a weight in training: its second half would get no gradient."""
    out_c = weight.shape[0]
    if groups != 1 or out_c % 2 or weight.requires_grad:
        return None
    half = weight[: out_c // 2]
    return half if torch.equal(weight[out_c // 2 :], -half) else None


def conv_core(x: Tensor, weight: Tensor, bias: Tensor | None, op: o.CoreOp | o.Conv, *,
              integral: bool = False) -> Tensor:
    """The linear part of a (core-)op: convolution, or a matrix product for a dense core-op, on the threads
    its size earns (`dse.sim.threads`). `integral`: `x` and `weight` hold integers (codes, spike trains or
    counts, integer weights), whose products and sums are exact in any order (`dse.sim.integer`), so a grouped
    core whose kernel tiles its input runs as a batched matrix product (`_tiled_grouped`), the same values."""
    with op_threads(conv_macs(x.shape, weight.shape, getattr(op, "stride", (1, 1)))):
        y = _tiled_grouped(x, weight, op) if integral else None
        if y is None:
            return _linear_part(x, weight, bias, op)
        return y if bias is None else y + bias.reshape(-1, 1, 1)


def _tiled_grouped(x: Tensor, weight: Tensor, op: o.CoreOp | o.Conv) -> Tensor | None:
    """A grouped core-op whose kernel tiles its input (stride = kernel, no padding; a max-pooling tree's
    levels, a split's 1x1 merges) as one batched matrix product of each group's weights (O/g, I/g x kh x kw) with
    its tiles; None for any other op, or one of a single output per group (there the product was slower than the
    convolution). On chip_b's max-pooling trees over spike trains (2,048 rows of maps, one thread) oneDNN's grouped
    convolution took about as long on 6x28x28 maps and 1.4 to 4.7 times as long on the smaller ones (16x10x10,
    2x2 kernel: 37 against 14 ms; micro-benchmarks, noisy); the chip_b compile of lenet_mnist, medians
    of three seeds on an idle machine, 19.1 CPU s with it and 17.5 with this (tune 13.5 -> 12.8 s, evaluate 2.8 ->
    2.5 s), the same compiled network bit for bit. The sums run in another order, so only integer operands give
    the same values (`conv_core`'s `integral`)."""
    groups, (out_c, in_g, kh, kw) = op.groups, weight.shape
    if (not isinstance(op, o.CoreOp) or op.dense or groups == 1 or out_c // groups < 2 or x.dim() != 4
            or (kh, kw) != tuple(op.stride) or any(op.padding)):
        return None
    n, _, h, w = x.shape
    rows, cols = h // kh, w // kw
    if (kh, kw) == (1, 1):
        tiles = x.reshape(n, groups, in_g, rows * cols)
    else:  # (n, groups, in_g x kh x kw, rows x cols): the weight's order of taps
        tiles = x[:, :, : rows * kh, : cols * kw].reshape(n, groups, in_g, rows, kh, cols, kw)
        tiles = tiles.permute(0, 1, 2, 4, 6, 3, 5).reshape(n, groups, in_g * kh * kw, rows * cols)
    y = torch.matmul(weight.reshape(groups, out_c // groups, in_g * kh * kw), tiles)
    return y.reshape(n, out_c, rows, cols)


def _linear_part(x: Tensor, weight: Tensor, bias: Tensor | None, op: o.CoreOp | o.Conv) -> Tensor:
    """`conv_core`'s product. A signed pair is one product, negated for its second half (exact: negation does
    not round)."""
    half = _pair_half(weight, op.groups)
    if half is not None:
        y = _linear_part(x, half, None, op)
        y = torch.cat([y, -y], dim=1)
        return y if bias is None else y + (bias if y.dim() == 2 else bias.reshape(-1, 1, 1))
    if isinstance(op, o.CoreOp) and op.dense:
        return grouped_linear(x, weight, bias, op.groups)
    dilation = op.dilation if isinstance(op, o.Conv) else (1, 1)
    top, left, bottom, right = op.padding
    if top == bottom and left == right:  # the convolution pads by itself (no padded copy of the input)
        return F.conv2d(x, weight, bias, stride=op.stride, padding=(top, left), dilation=dilation, groups=op.groups)
    return F.conv2d(_pad(x, op.padding), weight, bias, stride=op.stride, dilation=dilation, groups=op.groups)


def _core(op: o.CoreOp, xs: list[Tensor]) -> Tensor:
    x = xs[0]
    if op.quant is None:
        w = _t(op.weight if op.mask is None else op.weight * op.mask, x)
        return torch.relu(conv_core(x, w, _t(op.bias, x), op))
    return core_output(op, core_accumulator(op, x))


def core_accumulator(op: o.CoreOp, x: Tensor) -> Tensor:
    """A quantized core's integer accumulator (bias included) on real input `x`: it does not depend on the
    core's output step (``op.quant.out_scale``)."""
    q = op.quant
    in_scale = _t(q.in_scale, x)
    codes = (x / (in_scale if op.dense else in_scale.reshape(-1, 1, 1))).round_()
    return conv_core(codes, _t(q.weight_int, x), _t(q.bias_int, x), op, integral=True)


OUTPUT_CHUNK = 2**18  # values of an accumulator turned into codes at once: they stay in the CPU's cache


def core_output(op: o.CoreOp, acc: Tensor) -> Tensor:
    """A quantized core's output (real values) from its accumulator.

    The integer simulator rounds ``acc * weight_scale / out_scale`` in float64; in float32 a product within
    float32's error of a rounding tie can land on the tie's other side, so those few are redone in float64
    (all of them in float64 would cost a third of the baseline's time on ResNet-50: the outputs are large).
    The eight element-wise passes run `OUTPUT_CHUNK` values at a time (a quarter faster on VGG-16's 224x224
    maps than each pass over the whole map; the same values).
    """
    q = op.quant
    mult = torch.as_tensor(q.weight_scale / q.out_scale, dtype=torch.float64).reshape(-1).expand(acc.shape[1])
    threshold = 0.5 - 2**-21 * (q.out_max + 1)
    if not acc.is_contiguous():  # rows would be a copy in another memory layout, and a later sum over the
        # output would add in another order: the same values, other last bits of a loss
        return _codes(acc, mult.reshape(-1, *([1] * (acc.dim() - 2))), threshold, q)
    # (rows, values): one row per (sample, channel) of a map, per value of a vector; each row's multiplier
    rows = acc.reshape(acc.shape[0] * acc.shape[1], -1)
    row_mult = mult.repeat(acc.shape[0])
    out = torch.empty_like(rows)
    step = max(1, OUTPUT_CHUNK // rows.shape[1])
    for lo in range(0, rows.shape[0], step):
        out[lo : lo + step] = _codes(rows[lo : lo + step], row_mult[lo : lo + step, None], threshold, q)
    return out.reshape(acc.shape)


def _codes(acc: Tensor, mult: Tensor, threshold: float, q: o.CoreQuant) -> Tensor:
    """`core_output` on `acc`, with its float64 multipliers `mult` broadcast to it (per row, or per channel)."""
    y = acc * mult.to(acc.dtype)
    codes = torch.round(y)
    # float32 errs by < 2**-23 * |y| (mult cast, product); above out_max + 1 the clamp decides anyway
    near = y.sub_(codes).abs_() > threshold
    if near.any():
        codes[near] = torch.round(acc[near].double() * mult.expand(acc.shape)[near]).to(codes.dtype)
    return codes.clamp_(0, q.out_max).mul_(q.out_scale)


def input_codes(op: o.Input, x: Tensor) -> Tensor:
    """The host's encoding of real inputs as codes; with a population, thermometer copies (copy-major)."""
    if op.code_max is None:
        raise ValueError("the input has no encoding")
    # encode in float64 as the integer simulator does: in float32, x / scale can land on the other side of a
    # rounding tie (a digits pixel of 8/16 at a step of 1/15 is exactly 7.5 codes)
    codes = torch.clamp(torch.round(x.double() / op.scale), 0, op.code_max * op.population)
    if op.population > 1:
        codes = torch.cat([torch.clamp(codes - i * op.code_max, 0, op.code_max) for i in range(op.population)], 1)
    return codes


def _input(op: o.Input, xs: list[Tensor]) -> Tensor:
    x = xs[0]
    if op.code_max is None:
        return x
    return input_codes(op, x).to(x.dtype) * op.scale


def decode_population(x: Tensor, population: int) -> Tensor:
    """Sum the copies of a population code (copy-major on axis 1)."""
    if population == 1:
        return x
    return x.reshape(x.shape[0], population, x.shape[1] // population, *x.shape[2:]).sum(dim=1)


def _readout(op: o.Readout, xs: list[Tensor]) -> Tensor:
    x = decode_population(xs[0], op.population)
    c = x.shape[1] // 2
    return x[:, :c] - x[:, c:]


def route(op: o.Op, xs: list[Tensor]) -> Tensor:
    """A wiring op on values (batch first): its routing (`dse.ir.wiring`)."""
    return WIRING[type(op)].move(op, xs, 1)


def _conv(op: o.Conv, xs: list[Tensor]) -> Tensor:
    return conv_core(xs[0], _t(op.weight, xs[0]), _t(op.bias, xs[0]), op)


def _crop_pool(op: o.MaxPool | o.AvgPool, x: Tensor, y: Tensor) -> Tensor:
    """Drop a last window that starts inside the right/bottom padding.

    torch sees the already padded input, so with `ceil_mode` it may start a last window in the padding;
    ONNX and the shape rule drop such a window.
    """
    if not op.ceil_mode:
        return y
    _, h, w = SHAPE_RULES[type(op)](op, [tuple(x.shape[1:])])
    return y[..., :h, :w]


def _maxpool(op: o.MaxPool, xs: list[Tensor]) -> Tensor:
    x = _pad(xs[0], op.padding, value=float("-inf"))
    y = F.max_pool2d(x, op.kernel, op.stride, dilation=op.dilation, ceil_mode=op.ceil_mode)
    return _crop_pool(op, xs[0], y)


def _dilated_avgpool(op: o.AvgPool, x: Tensor) -> Tensor:
    """Average pooling with a dilated window (torch's avg_pool2d has no dilation): the sum over the taps is a
    depthwise convolution with a dilated kernel of ones, and so is the divisor, over a map of the taps that
    count (the input, plus the padding when `count_include_pad`; never the overhang of a `ceil_mode` window)."""
    _, h_out, w_out = SHAPE_RULES[type(op)](op, [tuple(x.shape[1:])])
    top, left, bottom, right = op.padding
    over_h, over_w = (  # zeros past the bottom/right padding, so that the last (ceil_mode) window fits
        max(0, (out - 1) * s + (k - 1) * d + 1 - (size + p0 + p1))
        for out, size, k, s, d, p0, p1 in zip((h_out, w_out), x.shape[2:], op.kernel, op.stride, op.dilation,
                                              (top, left), (bottom, right), strict=True)
    )
    ones = torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype)
    taps = F.pad(ones, (left, right, top, bottom), value=1.0 if op.count_include_pad else 0.0)
    taps = F.pad(taps, (0, over_w, 0, over_h))
    kernel = torch.ones((1, 1, *op.kernel), dtype=x.dtype)
    padded = F.pad(x, (left, right + over_w, top, bottom + over_h))
    sums = F.conv2d(padded, kernel.expand(x.shape[1], 1, *op.kernel), stride=op.stride, dilation=op.dilation,
                    groups=x.shape[1])
    counts = F.conv2d(taps, kernel, stride=op.stride, dilation=op.dilation)
    return (sums / counts)[..., :h_out, :w_out]


def _avgpool(op: o.AvgPool, xs: list[Tensor]) -> Tensor:
    x = xs[0]
    if op.dilation != (1, 1):
        return _dilated_avgpool(op, x)
    if op.count_include_pad:
        y = F.avg_pool2d(_pad(x, op.padding), op.kernel, op.stride, ceil_mode=op.ceil_mode)
        return _crop_pool(op, x, y)
    ones = torch.ones_like(x[:1, :1])
    sums = F.avg_pool2d(_pad(x, op.padding), op.kernel, op.stride, ceil_mode=op.ceil_mode, divisor_override=1)
    counts = F.avg_pool2d(_pad(ones, op.padding), op.kernel, op.stride, ceil_mode=op.ceil_mode, divisor_override=1)
    return _crop_pool(op, x, sums / counts)


def _clip(op: o.Clip, xs: list[Tensor]) -> Tensor:
    if op.lo is None and op.hi is None:  # torch.clamp refuses two missing bounds
        return xs[0]
    return torch.clamp(xs[0], op.lo, op.hi)


def _scale_shift(op: o.ScaleShift, xs: list[Tensor]) -> Tensor:
    return xs[0] * _t(op.scale, xs[0]) + _t(op.shift, xs[0])


FLOAT_EXEC: dict[type[o.Op], Callable[[o.Op, list[Tensor]], Tensor]] = {
    o.Input: _input,
    o.Readout: _readout,
    o.CoreOp: _core,
    **dict.fromkeys((o.Reshape, o.Slice, o.Gather, o.Concat, o.Pad, o.DepthToSpace, o.SpaceToDepth),
                     route),
    o.Conv: _conv,
    o.Linear: lambda op, xs: F.linear(xs[0], _t(op.weight, xs[0]), _t(op.bias, xs[0])),
    o.ScaleShift: _scale_shift,
    o.Add: lambda op, xs: sum(xs[1:], xs[0]),
    o.Relu: lambda op, xs: torch.relu(xs[0]),
    o.PRelu: lambda op, xs: torch.where(xs[0] >= 0, xs[0], xs[0] * _t(op.slope, xs[0])),
    o.Clip: _clip,
    o.Sigmoid: lambda op, xs: torch.sigmoid(xs[0]),
    o.Tanh: lambda op, xs: torch.tanh(xs[0]),
    o.HardSwish: lambda op, xs: torch.nn.functional.hardswish(xs[0]),
    o.Silu: lambda op, xs: torch.nn.functional.silu(xs[0]),
    o.Gelu: lambda op, xs: torch.nn.functional.gelu(xs[0], approximate=op.approximate),
    o.Elu: lambda op, xs: op.gamma * torch.nn.functional.elu(xs[0], alpha=op.alpha),
    o.Softplus: lambda op, xs: torch.nn.functional.softplus(xs[0]),
    o.Mish: lambda op, xs: torch.nn.functional.mish(xs[0]),
    o.Softmax: lambda op, xs: (torch.log_softmax if op.log else torch.softmax)(xs[0], dim=op.axis + 1),
    o.MaxPool: _maxpool,
    o.AvgPool: _avgpool,
    o.GlobalAvgPool: lambda op, xs: xs[0].mean(dim=(2, 3), keepdim=True),
    o.Identity: lambda op, xs: xs[0],
}


@torch.no_grad()
def run_float(
    graph: Graph,
    x: np.ndarray | Tensor,
    *,
    keep: Iterable[str] | None = None,
    batch_size: int = 1000,
    dtype: torch.dtype = torch.float32,
) -> dict[str, Tensor]:
    """Run `graph` on the batch `x`; return the outputs, plus the nodes named in `keep` ('*' keeps all)."""
    keep_set = set(graph.outputs) | (set(n.name for n in graph) if keep == "*" else set(keep or ()))
    if not isinstance(x, Tensor):
        x = np.asarray(x)
        x = torch.as_tensor(x if x.flags.writeable else x.copy())
    x = x.to(dtype)
    parts: dict[str, list[Tensor]] = {k: [] for k in keep_set}
    last_use = {}
    for i, node in enumerate(graph):
        for src in node.inputs:
            last_use[src] = i
    for start in range(0, max(len(x), 1), batch_size):
        values: dict[str, Tensor] = {}
        for i, node in enumerate(graph):
            xs = [values[s] for s in node.inputs] if node.inputs else [x[start : start + batch_size]]
            values[node.name] = FLOAT_EXEC[type(node.op)](node.op, xs)
            for src in node.inputs:  # free what no later node reads, unless kept
                if last_use[src] == i and src not in keep_set:
                    values.pop(src, None)  # pop: a node may read the same input twice (Concat(x, x))
        for k in keep_set:
            parts[k].append(values[k])
    return {k: torch.cat(v) for k, v in parts.items()}


def run_logits(graph: Graph, x: np.ndarray | Tensor, **kw) -> np.ndarray:
    """The first output of `graph` as a numpy array."""
    return run_float(graph, x, **kw)[graph.outputs[0]].numpy()


LAZY_CHUNK_FLOATS = 2**26  # a node's output larger than this (256 MB) is computed a few images at a time


class LazyForward:
    """The values of `graph`'s nodes on the batch `x`, computed on demand in topological order.

    Tuning asks for the exact network's activations block after block, in graph order; holding all of them at
    once is what does not fit for an ImageNet-size network (ResNet-50: about 100 MB per image). This runs the
    graph only as far as asked and keeps only the values a later node still reads, plus the last one served.
    Asking for a value already dropped reruns the graph from the start (correct, only slower).

    A node whose output over all images exceeds `LAZY_CHUNK_FLOATS` values runs a few images at a time into
    its output (torch's convolution of 64 images of 224x224 holds several times its output in temporaries).
    The chunk depends only on the node's size, not on any memory bound, so the values are the same in every
    run (a convolution sums in an order that depends on the batch: chunking at all may move them by float32
    rounding).
    """

    def __init__(self, graph: Graph, x: np.ndarray | Tensor, dtype: torch.dtype = torch.float32) -> None:
        self.graph = graph
        self.x = torch.as_tensor(np.array(x) if isinstance(x, np.ndarray) and not x.flags.writeable else x).to(dtype)
        self.last_use = {src: i for i, node in enumerate(graph) for src in node.inputs}
        self.position = {node.name: i for i, node in enumerate(graph)}
        self.sizes = {k: int(np.prod(v)) for k, v in infer_shapes(graph).items()}
        self._restart()

    def _run(self, node, xs: list[Tensor]) -> Tensor:
        fn, n = FLOAT_EXEC[type(node.op)], len(self.x)
        rows = max(1, LAZY_CHUNK_FLOATS // max(self.sizes[node.name], 1))
        if rows >= n:
            return fn(node.op, xs)
        out = None
        for lo in range(0, n, rows):
            y = fn(node.op, [x[lo : lo + rows] for x in xs])
            if out is None:
                out = torch.empty((n, *y.shape[1:]), dtype=y.dtype)
            out[lo : lo + rows] = y
        return out

    def _restart(self) -> None:
        self.values: dict[str, Tensor] = {}
        self.next = 0
        self.served: tuple[str, Tensor] | None = None

    @torch.no_grad()
    def __call__(self, name: str) -> Tensor:
        if self.served is not None and self.served[0] == name:
            return self.served[1]
        if name not in self.values and self.position[name] < self.next:
            self._restart()
        while name not in self.values:
            i, node = self.next, self.graph.nodes[self.next]
            xs = [self.values[s] for s in node.inputs] if node.inputs else [self.x]
            self.values[node.name] = self._run(node, xs)
            for src in set(node.inputs):
                if self.last_use[src] == i and src != name:
                    del self.values[src]
            self.next += 1
        value = self.values[name]
        if self.last_use.get(name, -1) < self.next:  # no later node reads it: only `served` holds it now
            del self.values[name]
        self.served = (name, value)
        return value

