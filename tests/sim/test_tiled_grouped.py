"""`conv_core(..., integral=True)`: a grouped core whose kernel tiles its input runs as a batched matrix product
(`_tiled_grouped`); on integer operands it equals the convolution bit for bit, and every other op keeps the
convolution."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from dse.ir import ops as o
from dse.sim.float_exec import _tiled_grouped, conv_core


def core(out_c: int, in_g: int, k: tuple[int, int], groups: int, stride: tuple[int, int] | None = None,
         padding: tuple[int, int, int, int] = (0, 0, 0, 0), seed: int = 0) -> o.CoreOp:
    w = np.random.default_rng(seed).integers(-7, 8, (out_c, in_g, *k)).astype(np.float32)
    return o.CoreOp(w, np.zeros(out_c, np.float32), stride or k, padding, groups, False)


@settings(max_examples=80, deadline=None)
@given(groups=st.integers(1, 6), out_g=st.integers(2, 5), in_g=st.integers(1, 4), kh=st.integers(1, 3),
       kw=st.integers(1, 3), h=st.integers(1, 12), w=st.integers(1, 12), n=st.integers(1, 5),
       spikes=st.booleans(), seed=st.integers(0, 99))
def test_on_integers_it_equals_the_convolution_bit_for_bit(groups, out_g, in_g, kh, kw, h, w, n, spikes, seed):
    op = core(groups * out_g, in_g, (kh, kw), groups, seed=seed)
    rng = np.random.default_rng(seed + 1)
    x = rng.integers(0, 2 if spikes else 256, (n, groups * in_g, h + kh - 1, w + kw - 1)).astype(np.float32)
    x, weight = torch.from_numpy(x), torch.from_numpy(op.weight)
    bias = torch.from_numpy(rng.integers(-50, 50, groups * out_g).astype(np.float32))
    got = conv_core(x, weight, bias, op, integral=True)  # the input's last rows/columns may not fill a tile
    want = F.conv2d(x, weight, bias, stride=op.stride, groups=groups)
    assert got.shape == want.shape and torch.equal(got, want)
    assert (_tiled_grouped(x, weight, op) is None) == (groups == 1)


@pytest.mark.parametrize("op", [
    core(8, 2, (2, 2), 4, stride=(1, 1)),  # overlapping windows
    core(8, 2, (2, 2), 4, padding=(1, 1, 1, 1)),  # padded
    core(4, 2, (2, 2), 4),  # one output per group
    core(8, 8, (2, 2), 1),  # not grouped
])
def test_other_ops_keep_the_convolution(op):
    x = torch.ones(2, op.weight.shape[1] * op.groups, 6, 6)
    assert _tiled_grouped(x, torch.from_numpy(op.weight), op) is None
