"""Training rows for a block: input patches at sampled (image, position) pairs, with their targets."""

from __future__ import annotations

from typing import NamedTuple

import torch

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


def sample_patches(x: Tensor, target: Tensor, geometry: PatchGeometry, max_rows: int, gen: torch.Generator
                   ) -> tuple[Tensor | PatchRows, Tensor, int]:
    """Rows of (input patch, target vector) at random (image, position) pairs, in random order; also the taps per
    channel. The patch rows are a `PatchRows`: gathered from the input as tuning first reads them."""
    if geometry.dense:
        return x, target, 1
    n, out_c = target.shape[:2]
    positions = target.shape[2] * target.shape[3]
    total = n * positions
    pick = torch.randperm(total, generator=gen)[: min(max_rows, total)]  # random order: a step takes a slice
    img, pos = pick // positions, pick % positions
    t = target.reshape(n, out_c, positions)[img, :, pos]
    return PatchRows(x, img, pos, target.shape[3], geometry), t, geometry.taps


class PatchRows:
    """The input patches at sampled (image, position) pairs as rows (N, channels x taps) in `F.unfold`'s column
    order (channel, then kernel row, then kernel column), each gathered straight from the input (a padding
    position reads 0) when a slice first reads it, `BLOCK` rows at a time.

    A block reads its first rows (held out, and the head its output steps are chosen on) and then steps through
    the rest; a big block's small steps end long before they reach most of `tuning.max_rows` (VGG-16's 3x3
    layers: some 9,000 of 200,000 rows of up to 4,608 values), and gathering all of them was a tenth of its
    tuning time. The rows are the same values whenever they are gathered, and `div_` (the inputs turned into
    codes) divides every row, gathered or not, by the same divisor: what tuning computes is unchanged."""

    BLOCK = 1024

    def __init__(self, x: Tensor, img: Tensor, pos: Tensor, out_w: int, geometry: PatchGeometry) -> None:
        (kh, kw), (sh, sw), (top, left, _, _) = geometry.kernel, geometry.stride, geometry.padding
        self.x = x.reshape(-1)
        self.channels, self.height, self.width = x.shape[1:]
        # a row's top left corner in its (unpadded) image; a column's kernel offsets
        self.row_y = (pos // out_w) * sh - top
        self.row_x = (pos % out_w) * sw - left
        self.col_y = torch.arange(kh).repeat_interleave(kw).repeat(self.channels)
        self.col_x = torch.arange(kw).repeat(kh * self.channels)
        self.padded = any(geometry.padding)
        # a value's place in the flat input: its row's image and corner plus its column's channel and offset
        # (in the padding it points at another value, which the mask replaces by 0)
        self.row_base = img * (self.channels * self.height * self.width) + self.row_y * self.width + self.row_x
        self.col_base = (torch.arange(self.channels).repeat_interleave(kh * kw) * (self.height * self.width)
                         + self.col_y * self.width + self.col_x)
        # pages of the rows are written (and so take memory) only where a block is gathered
        self.data = torch.empty((len(img), len(self.col_base)), dtype=x.dtype)
        self.gathered = [False] * -(-len(img) // self.BLOCK)
        self.divisors: list[Tensor] = []  # `div_`'s, in order: gathered rows are divided by each in turn

    def __len__(self) -> int:
        return self.data.shape[0]

    @property
    def shape(self) -> torch.Size:
        return self.data.shape

    def dim(self) -> int:
        return 2

    def __getitem__(self, rows: slice) -> Tensor:
        lo, hi, step = rows.indices(len(self))
        if step != 1:
            raise IndexError("patch rows are read in slices of consecutive rows")
        for b in range(lo // self.BLOCK, -(-hi // self.BLOCK)):
            if not self.gathered[b]:
                self._gather(b)
        return self.data[lo:hi]

    def div_(self, divisor: Tensor) -> PatchRows:
        """Every row divided by `divisor` (per column), in place: those gathered now, the others as gathered."""
        for b in (b for b, done in enumerate(self.gathered) if done):
            self.data[b * self.BLOCK : (b + 1) * self.BLOCK].div_(divisor)
        self.divisors.append(divisor)
        return self

    def _gather(self, block: int) -> None:
        sel = slice(block * self.BLOCK, (block + 1) * self.BLOCK)
        index = self.row_base[sel, None] + self.col_base
        if self.padded:
            y = self.row_y[sel, None] + self.col_y
            x = self.row_x[sel, None] + self.col_x
            inside = (y >= 0) & (y < self.height) & (x >= 0) & (x < self.width)
            values = self.x[index.where(inside, 0)].masked_fill_(~inside, 0.0)
        else:
            values = self.x[index]
        for divisor in self.divisors:
            values.div_(divisor)
        self.data[sel] = values
        self.gathered[block] = True
