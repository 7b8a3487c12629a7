"""Property: on random small networks, canonicalize, reform and split change no output (float64, rtol 1e-6).

The networks mix what the importer produces: input normalization, convolutions (padded, strided, dilated,
depthwise), BatchNorm, ReLU, Clip, max and average pooling, residual adds, channel concats, Identity, global
average pooling, flatten, dense layers and a final Softmax. Inputs are >= 0, as a chip's host sends them.
"""

from __future__ import annotations

import numpy as np
from compiler_helpers import F32, assert_close, core_ops, float_chip, max_fan_in, only_chip_ops, run64, run_pass
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dse.ir import ops as o
from dse.ir.graph import Graph, GraphBuilder
from dse.ir.shapes import infer_shapes


class NetBuilder:
    """Draws one random network; `draw` is hypothesis's, the weights come from a seeded numpy generator."""

    def __init__(self, draw: st.DrawFn) -> None:
        self.draw = draw
        self.rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
        self.b = GraphBuilder()
        self.shapes: dict[str, tuple[int, ...]] = {}

    def add(self, base: str, op: o.Op, *inputs: str) -> str:
        name = self.b.add(base, op, *inputs)
        g = self.b.build([name])
        self.shapes[name] = infer_shapes(g)[name]
        return name

    def weights(self, *shape: int) -> np.ndarray:
        return (self.rng.standard_normal(shape) / np.sqrt(max(np.prod(shape[1:]), 1))).astype(F32)

    def conv(self, x: str, out_c: int, *, same: bool = False, groups: int = 1) -> str:
        c, h, w = self.shapes[x]
        k = self.draw(st.sampled_from([1, 3])) if same else self.draw(st.integers(1, min(3, h, w)))
        dilation = (1, 1)
        if not same and k == 2 and min(h, w) >= 3 and self.draw(st.booleans()):
            dilation = (2, 2)
        pad = k // 2 if same else self.draw(st.integers(0, k // 2))
        stride = 1 if same else self.draw(st.sampled_from([1, 1, 2]))
        op = o.Conv(self.weights(out_c, c // groups, k, k), self.weights(out_c, 1)[:, 0],
                    (stride, stride), (pad, pad, pad, pad), dilation, groups)
        return self.add("conv", op, x)

    def batchnorm(self, x: str) -> str:
        c = self.shapes[x][0]
        scale = (self.rng.random((c, 1, 1)) + 0.5).astype(F32)
        return self.add("bn", o.ScaleShift(scale, self.rng.standard_normal((c, 1, 1)).astype(F32) * 0.1), x)

    def activation(self, x: str) -> tuple[str, bool]:
        """Returns the node and whether its value is a ReLU output (what max pooling needs)."""
        kind = self.draw(st.sampled_from(["relu", "relu", "clip", "clip_hi"]))
        if kind == "relu":
            return self.add("relu", o.Relu(), x), True
        hi = float(self.draw(st.sampled_from([0.5, 1.0, 6.0])))
        return self.add("clip", o.Clip(0.0 if kind == "clip" else None, hi), x), False

    def pool(self, x: str, relu_output: bool) -> str:
        c, h, w = self.shapes[x]
        if min(h, w) < 2:
            return x
        kind = self.draw(st.sampled_from(["none", "max", "avg"] if relu_output else ["none", "avg"]))
        if kind == "max":
            k = self.draw(st.integers(2, min(3, h, w)))
            pad = self.draw(st.integers(0, k // 2))
            return self.add("maxpool", o.MaxPool((k, k), (2, 2), (pad, pad, pad, pad)), x)
        if kind == "avg":
            return self.add("avgpool", o.AvgPool((2, 2), (2, 2)), x)
        return x

    def block(self, x: str) -> str:
        kind = self.draw(st.sampled_from(["plain", "plain", "residual", "concat", "depthwise"]))
        c = self.shapes[x][0]
        if kind == "residual":
            y = self.add("relu", o.Relu(), self.conv(x, c, same=True))
            y = self.conv(y, c, same=True)
            if self.draw(st.booleans()):
                y = self.batchnorm(y)
            return self.add("relu", o.Relu(), self.add("add", o.Add(), y, x))
        if kind == "concat":
            a = self.add("relu", o.Relu(), self.conv(x, self.draw(st.integers(1, 3)), same=True))
            b = self.conv(x, self.draw(st.integers(1, 3)), same=True)  # one signed branch
            return self.add("concat", o.Concat(0), a, b)
        if kind == "depthwise":
            return self.add("relu", o.Relu(), self.conv(x, c, same=True, groups=c))
        y = self.conv(x, self.draw(st.integers(1, 4)))
        if self.draw(st.booleans()):
            y = self.batchnorm(y)
        y, relu_output = self.activation(y)
        if self.draw(st.booleans()):
            y = self.add("dropout", o.Identity(), y)
        return self.pool(y, relu_output)

    def build(self) -> tuple[Graph, str]:
        """The network and the name of the node whose value is the logits (before a final Softmax)."""
        c, h = self.draw(st.integers(1, 3)), self.draw(st.integers(4, 8))
        x = self.add("x", o.Input((c, h, h)))
        if self.draw(st.booleans()):
            mean = self.rng.random((c, 1, 1)).astype(F32) * 0.5
            std = (self.rng.random((c, 1, 1)) * 0.5 + 0.2).astype(F32)
            x = self.add("norm", o.ScaleShift((1 / std).astype(F32), (-mean / std).astype(F32)), x)
        for _ in range(self.draw(st.integers(1, 2))):
            x = self.block(x)
        c, h, w = self.shapes[x]
        if self.draw(st.booleans()):
            x = self.add("gap", o.GlobalAvgPool(), x)
            h = w = 1
        x = self.add("flatten", o.Reshape((c * h * w,)), x)
        if self.draw(st.booleans()):
            hidden = self.draw(st.integers(2, 8))
            x = self.add("fc", o.Linear(self.weights(hidden, c * h * w), self.weights(hidden, 1)[:, 0]), x)
            x = self.add("relu", o.Relu(), x)
        logits = self.add("logits", o.Linear(self.weights(3, self.shapes[x][0]), self.weights(3, 1)[:, 0]), x)
        out = self.add("softmax", o.Softmax(0), logits) if self.draw(st.booleans()) else logits
        return self.b.build([out]), logits


@st.composite
def networks(draw: st.DrawFn) -> tuple[Graph, str, int]:
    net, logits = NetBuilder(draw).build()
    return net, logits, draw(st.integers(0, 40))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks())
def test_canonicalize_reform_split_change_no_output(case: tuple[Graph, str, int]) -> None:
    net, logits, extra_rows = case
    x = np.random.default_rng(1).random((6, *net.input.op.shape))
    reference = run64(net, x, keep=[logits])[logits]

    canonical = run_pass("canonicalize", net)
    assert_close(run64(canonical, x)[canonical.outputs[0]], reference)

    exact = run_pass("reform", canonical)
    assert only_chip_ops(exact)
    assert_close(run64(exact, x)[exact.outputs[0]], reference)

    # a crossbar just big enough for the widest kernel window, so that most layers must split
    taps = max(int(op.synapse_mask().reshape(op.out_channels, op.weight.shape[1], -1).sum(axis=2).max())
               for op in core_ops(exact))
    rows = max(taps, 4) + extra_rows  # a merge tree needs 4 rows to shrink (test_fit_crossbar)
    split = run_pass("fit_crossbar", exact, float_chip(rows=rows), strategy="split")
    assert max_fan_in(split) <= rows
    assert_close(run64(split, x)[split.outputs[0]], reference)
