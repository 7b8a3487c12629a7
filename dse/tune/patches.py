"""Training rows for a block: input patches at sampled (image, position) pairs, with their targets."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from dse.ir import ops as o
from dse.ir.graph import Node

Tensor = torch.Tensor


class PatchGeometry(NamedTuple):
    """How a block reads its input patch: the kernel geometry every core reading the input shares."""

    kernel: tuple[int, int]  # (height, width) in input positions
    stride: tuple[int, int]  # (vertical, horizontal) in input positions
    padding: tuple[int, int, int, int]  # (top, left, bottom, right) in input positions
    dense: bool  # a dense core: a row is the whole input vector (no patches)

    @property
    def taps(self) -> int:
        """Patch columns per input channel."""
        return self.kernel[0] * self.kernel[1]


def patch_geometry(block: list[Node], ext: list[str]) -> PatchGeometry | None:
    """If the whole block is a function of one input patch per output position, its kernel geometry.

    A split block (partial-sum cores on channel slices of one input, a 1x1 merge) and a plain core-op are;
    then training can sample (image, position) pairs as rows of a matrix instead of running whole feature
    maps, which is what makes tuning fast. A grouped core that reads the input with a larger kernel (a
    depthwise op) keeps the feature-map path; a grouped 1x1 core is a grouped matrix product on the rows,
    behind the partial sums (a split's merge) or on the input itself (a residual Add's merge, which on the
    feature-map path ran every calibration image of a 56x56x1024 input through each training step).
    """
    if len(ext) != 1:
        return None
    reads_ext = {ext[0]} | {n.name for n in block if isinstance(n.op, o.Slice) and n.inputs[0] == ext[0]}
    geometry = set()
    for n in block:
        if isinstance(n.op, o.CoreOp):
            if n.inputs[0] in reads_ext:
                pointwise = n.op.kernel == (1, 1) and n.op.stride == (1, 1) and not any(n.op.padding)
                if n.op.groups != 1 and not pointwise:
                    return None
                geometry.add(PatchGeometry(n.op.kernel, n.op.stride, n.op.padding, n.op.dense))
            elif not (n.op.dense or (n.op.kernel == (1, 1) and n.op.stride == (1, 1) and not any(n.op.padding))):
                return None
        elif not isinstance(n.op, (o.Slice, o.Concat, o.Gather)) or (
                isinstance(n.op, o.Gather) and n.inputs[0] in reads_ext):
            return None
    return geometry.pop() if len(geometry) == 1 else None


def sample_patches(x: Tensor, target: Tensor, geometry: PatchGeometry, max_rows: int, gen: torch.Generator,
                   chunk_floats: int) -> tuple[Tensor, Tensor, int]:
    """Rows of (input patch, target vector) at random (image, position) pairs, in random order; also the taps per
    channel. Each row is gathered straight from the (padded) input, in `F.unfold`'s column order (channel,
    then kernel row, then kernel column): unfolding every image to keep a few of its positions cost most of
    the time (LeNet's first layer: 200,000 of 3.1 million patches). A few images are padded at a time."""
    if geometry.dense:
        return x, target, 1
    n, out_c = target.shape[:2]
    out_w = target.shape[3]
    positions = target.shape[2] * out_w
    total = n * positions
    pick = torch.randperm(total, generator=gen)[: min(max_rows, total)]  # random order: a step takes a slice
    img, pos = pick // positions, pick % positions
    (kh, kw), (sh, sw), (top, left, bottom, right) = geometry.kernel, geometry.stride, geometry.padding
    channels, height, width = x.shape[1], x.shape[2] + top + bottom, x.shape[3] + left + right  # padded
    # a column's offset from its patch's top left corner in an image; a row's corner
    taps = (torch.arange(kh)[:, None] * width + torch.arange(kw)).reshape(-1)
    offsets = (torch.arange(channels)[:, None] * (height * width) + taps).reshape(-1)
    corner = (pos // out_w) * (sh * width) + (pos % out_w) * sw
    chunk = max(1, min(256, chunk_floats // max(channels * height * width, 1)))  # images padded at once
    rows = torch.empty((len(img), len(offsets)), dtype=x.dtype)  # filled in place: no second copy of the rows
    order = torch.argsort(img, stable=True)
    bounds = torch.searchsorted(img[order], torch.arange(0, n + chunk, chunk)).tolist()
    for i, lo in enumerate(range(0, n, chunk)):
        sel = order[bounds[i] : bounds[i + 1]]
        if not len(sel):
            continue
        flat = F.pad(x[lo : lo + chunk], (left, right, top, bottom)).reshape(-1)
        start = (img[sel] - lo) * (channels * height * width) + corner[sel]
        rows.index_copy_(0, sel, flat[start[:, None] + offsets])
    t = target.reshape(n, out_c, positions)[img, :, pos]
    return rows, t, geometry.taps
