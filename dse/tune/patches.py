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
    channel. The patches of a few images are unfolded at a time (about `chunk_floats` values)."""
    kernel, stride, padding = geometry.kernel, geometry.stride, geometry.padding
    if geometry.dense:
        return x, target, 1
    top, left, bottom, right = padding
    n, out_c = target.shape[:2]
    positions = target.shape[2] * target.shape[3]
    total = n * positions
    pick = torch.randperm(total, generator=gen)[: min(max_rows, total)]  # random order: a step takes a slice
    img, pos = pick // positions, pick % positions
    # unfold a few images at a time: one 224x224 image of 64 channels and a 3x3 kernel is 115 MB of patches
    fan_in = x.shape[1] * kernel[0] * kernel[1]
    chunk = max(1, min(256, chunk_floats // max(fan_in * positions, 1)))
    rows = torch.empty((len(img), fan_in), dtype=x.dtype)  # filled in place: no second copy of the rows
    # read image by image (the unfolded patches stay in cache), write each row to its random place
    order = torch.argsort(img, stable=True)
    by_img = img[order]
    bounds = torch.searchsorted(by_img, torch.arange(0, n + chunk, chunk)).tolist()
    for i, lo in enumerate(range(0, n, chunk)):
        sel = order[bounds[i] : bounds[i + 1]]
        if not len(sel):
            continue
        cols = F.unfold(F.pad(x[lo : lo + chunk], (left, right, top, bottom)), kernel, stride=stride)  # (b, F, L)
        rows.index_copy_(0, sel, cols[img[sel] - lo, :, pos[sel]])
    t = target.reshape(n, out_c, positions)[img, :, pos]
    return rows, t, geometry.taps
