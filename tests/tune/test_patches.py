"""Training rows of a block whose core reads the block's input through a grouped 1x1 kernel (a residual
Add's merge): the rows path computes what the feature-map path does, at the sampled positions."""

from __future__ import annotations

import numpy as np
import torch

from dse.ir import ops as o
from dse.ir.graph import Node
from dse.tune.patches import patch_geometry, sample_patches
from dse.tune.qcore import QCore


def _core(kernel: int, groups: int, c_in: int = 8, c_out: int = 4, seed: int = 0) -> o.CoreOp:
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(c_out, c_in // groups, kernel, kernel)).astype(np.float32)
    pad = kernel // 2
    return o.CoreOp(w, rng.normal(size=c_out).astype(np.float32), padding=(pad,) * 4, groups=groups)


def test_a_grouped_1x1_core_on_the_input_trains_on_rows_a_depthwise_3x3_does_not() -> None:
    assert patch_geometry([Node("merge", _core(1, 4), ("x",))], ["x"]) == ((1, 1), (1, 1), (0, 0, 0, 0), False)
    assert patch_geometry([Node("dw", _core(3, 8, c_out=8), ("x",))], ["x"]) is None


def test_rows_of_a_grouped_1x1_core_equal_its_feature_map_at_the_sampled_positions() -> None:
    op = _core(1, 4)
    x = torch.rand(3, 8, 5, 6)
    maps = QCore(op, torch.ones(8), out_max=15, wmax=7, per_column=False)
    rows = QCore(op, torch.ones(8), out_max=15, wmax=7, per_column=False, patch=True)
    with torch.no_grad():
        target = maps(x)  # (3, 4, 5, 6): sample_patches returns it at the rows' positions
        geometry = patch_geometry([Node("merge", op, ("x",))], ["x"])
        patches, at_rows, taps = sample_patches(x, target, geometry, 40, torch.Generator().manual_seed(0))
        assert taps == 1 and patches.shape == (40, 8)
        torch.testing.assert_close(rows(patches[:]), at_rows)


def test_sampled_patches_are_the_unfolded_columns_at_the_sampled_positions(monkeypatch) -> None:
    """Rows gathered from the input equal `F.unfold`'s columns of the padded input (padding, strides, a
    rectangular kernel), whichever rows are read first, and dividing them before or after they are gathered is
    the same."""
    import torch.nn.functional as F

    from dse.tune.patches import PatchGeometry, PatchRows

    monkeypatch.setattr(PatchRows, "BLOCK", 16)  # several blocks of rows
    for kernel, stride, padding in [((3, 3), (1, 1), (1, 1, 1, 1)), ((2, 3), (2, 1), (0, 1, 2, 0)),
                                    ((5, 5), (1, 1), (0, 0, 0, 0))]:
        x = torch.rand(9, 3, 9, 11)
        top, left, bottom, right = padding
        cols = F.unfold(F.pad(x, (left, right, top, bottom)), kernel, stride=stride)  # (n, fan-in, positions)
        out_h = (9 + top + bottom - kernel[0]) // stride[0] + 1
        out_w = (11 + left + right - kernel[1]) // stride[1] + 1
        target = torch.rand(9, 2, out_h, out_w)
        rows, at_rows, taps = sample_patches(x, target, PatchGeometry(kernel, stride, padding, False), 50,
                                             torch.Generator().manual_seed(1))
        pick = torch.randperm(9 * out_h * out_w, generator=torch.Generator().manual_seed(1))[:50]
        img, pos = pick // (out_h * out_w), pick % (out_h * out_w)
        assert taps == kernel[0] * kernel[1]
        expected = cols[img, :, pos]
        assert torch.equal(rows[20:35], expected[20:35]) and torch.equal(rows[:], expected)
        assert torch.equal(at_rows, target.reshape(9, 2, -1)[img, :, pos])
        divisor = torch.rand(expected.shape[1]) + 0.5
        late, _, _ = sample_patches(x, target, PatchGeometry(kernel, stride, padding, False), 50,
                                    torch.Generator().manual_seed(1))
        late[:10]  # one block gathered before the division, the others after it
        assert torch.equal(late.div_(divisor)[:], expected / divisor)
