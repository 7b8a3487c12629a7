"""Routing of the wiring ops: one table, keyed by op type, that every consumer of wiring reads.

A wiring op only moves values along the channel axis (or reshapes them, or moves them between channels and
positions: `DepthToSpace`, `SpaceToDepth`); it computes nothing. Every part of
the compiler needs the same facts about it, in its own units:

- `move(op, xs, lead)`: the op applied to tensors whose channel axis comes after `lead` leading axes (1: the
  batch, as the float and integer executors hold values and codes; 2: batch and time, as the spiking
  simulator holds spike trains);
- `channels(op, ins, in_shapes, out_shape)`: where per-channel vectors go (one entry per channel of each
  input, axis 0; `in_shapes`/`out_shape` are per-sample shapes). It returns the output's vector and a mask of
  the output channels made of input channels whose entries differ (a reshape can put several channels into
  one): tuning routes the value of one code per channel and refuses a mixed channel; equalization routes
  channel identities and pins a mixed channel to scale 1. What mixing means is the caller's decision.
- `homogeneous(op)`: whether the op commutes with a positive per-channel scale, ``op(s x) = s op(x)``. True for
  every op that only moves values or adds zeros; a `Pad` with a non-zero value adds constants that do not
  scale with their channel (equalization must not rescale them; spike trains cannot carry them, the host
  sends their trains).

Adding a wiring op: its dataclass in `dse.ir.ops` (listed in `WIRING_OPS`), its entry here and in
`dse.ir.shapes.SHAPE_RULES`, and the generic wiring rule in each executor's table: `FLOAT_EXEC`
(`dse.sim.float_exec.route`), `INTEGER_EXEC` (`dse.sim.integer.route`), `SPIKING_EXEC` (`dse.sim.spiking.route`),
`dse.passes.equalize.CHANNEL_RULES` (`route`) and `dse.frontends.nir_export.NIR_EXPORT` (`route_channels`, for an
op that routes whole channels). Tuning reads this table directly; `dse.ir.serialize.OP_TYPES` takes every op of
`ALL_OPS`. `tests/sim/test_op_tables.py` names any table that lacks it, and shows it for an op defined in the
test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dse.ir import ops as o

Tensor = torch.Tensor
Shape = tuple[int, ...]
Routed = tuple[np.ndarray, np.ndarray]  # the output's per-channel vector, and which of its channels are mixed


def _moves_only(op: Any) -> bool:
    return True


@dataclass(frozen=True)
class Routing:
    """What every consumer needs to know about one wiring op type (see the module docstring)."""

    move: Callable[[Any, list[Tensor], int], Tensor]
    channels: Callable[[Any, list[np.ndarray], list[Shape], Shape], Routed]
    homogeneous: Callable[[Any], bool] = _moves_only


def _all(lead: int) -> tuple[slice, ...]:
    return (slice(None),) * lead


def unmixed(values: np.ndarray) -> Routed:
    """A routed vector none of whose channels is mixed."""
    return values, np.zeros(len(values), dtype=bool)


def pad_with(x: Tensor, padding: o.Pads, fill: Tensor) -> Tensor:
    """Pad the last two (spatial) axes of `x` with `fill`, which broadcasts against `x` padded (one value per
    channel: shape (1, C, 1, 1); spike trains of the values' codes: (1, T, C, 1, 1))."""
    top, left, bottom, right = padding
    h, w = x.shape[-2:]
    out = fill.expand(*x.shape[:-2], h + top + bottom, w + left + right).clone()
    out[..., top : top + h, left : left + w] = x
    return out


def _pad_move(op: o.Pad, xs: list[Tensor], lead: int) -> Tensor:
    value = torch.as_tensor(op.value, dtype=xs[0].dtype).reshape(*(1,) * lead, -1, 1, 1)
    return pad_with(xs[0], op.padding, value)


def _concat_move(op: o.Concat, xs: list[Tensor], lead: int) -> Tensor:
    if op.copies == 1:
        return torch.cat(xs, dim=op.axis + lead)
    # a population code (axis 0): the inputs' copy i side by side, for each copy in turn
    parts = [x.reshape(*x.shape[:lead], op.copies, -1, *x.shape[lead + 1 :]) for x in xs]
    y = torch.cat(parts, dim=lead + 1)
    return y.reshape(*y.shape[:lead], -1, *y.shape[lead + 2 :])


def _concat_channels(op: o.Concat, ins: list[np.ndarray], in_shapes: list[Shape], out_shape: Shape) -> Routed:
    if op.axis == 0:
        return unmixed(np.concatenate([v.reshape(op.copies, -1) for v in ins], axis=1).reshape(-1))
    # joined along another axis: output channel c holds channel c of every input
    stacked = np.stack(ins)
    return ins[0], ~np.all(stacked == stacked[:1], axis=0)


def _reshape_channels(op: o.Reshape, ins: list[np.ndarray], in_shapes: list[Shape], out_shape: Shape) -> Routed:
    full = np.broadcast_to(ins[0].reshape(-1, *([1] * (len(in_shapes[0]) - 1))), in_shapes[0])
    per = full.reshape(out_shape[0], -1)
    return per[:, 0], ~np.all(per == per[:, :1], axis=1)


def _per_copy(move: Callable[[Any, Tensor], Tensor]) -> Callable[[Any, list[Tensor], int], Tensor]:
    """A routing of an image applied to each of the op's `copies` (copy-major on the channel axis) alike."""
    def routed(op: Any, xs: list[Tensor], lead: int) -> Tensor:
        x = xs[0]
        *head, c, h, w = x.shape
        y = move(op, x.reshape(*head, op.copies, c // op.copies, h, w))
        return y.reshape(*head, -1, *y.shape[-2:])
    return routed


def _copy_channels(op: Any, values: np.ndarray) -> np.ndarray:
    """A per-channel vector as one row per copy (copy-major)."""
    return values.reshape(op.copies, -1)


def _depth_to_space_move(op: o.DepthToSpace, x: Tensor) -> Tensor:
    (bh, bw) = op.block
    *head, c, h, w = x.shape
    phases = x.reshape(*head, bh, bw, c // (bh * bw), h, w)
    # (..., bh, bw, C, H, W) -> (..., C, H, bh, W, bw): phase (i, j) of cell (h, w) lands at (h bh + i, w bw + j)
    n = len(head)
    grid = phases.permute(*range(n), n + 2, n + 3, n, n + 4, n + 1).reshape(*head, c // (bh * bw), h * bh, w * bw)
    return grid[..., : op.size[0], : op.size[1]]


def _depth_to_space_channels(op: o.DepthToSpace, ins: list[np.ndarray], in_shapes: list[Shape],
                             out_shape: Shape) -> Routed:
    # output channel c of a copy interleaves input channel c of every phase block of that copy
    blocks = _copy_channels(op, ins[0]).reshape(op.copies, op.block[0] * op.block[1], -1)
    return blocks[:, 0].reshape(-1), ~np.all(blocks == blocks[:, :1], axis=1).reshape(-1)


def _space_to_depth_move(op: o.SpaceToDepth, x: Tensor) -> Tensor:
    (bh, bw) = op.block
    *head, c, h, w = x.shape
    cells = x.reshape(*head, c, h // bh, bh, w // bw, bw)
    # (..., C, H', bh, W', bw) -> (..., bh, bw, C, H', W'): value (h' bh + i, w' bw + j) lands in phase block (i, j)
    n = len(head)
    blocks = cells.permute(*range(n), n + 2, n + 4, n, n + 1, n + 3)
    return blocks.reshape(*head, bh * bw * c, h // bh, w // bw)


WIRING: dict[type[o.Op], Routing] = {
    o.Slice: Routing(
        move=lambda op, xs, lead: xs[0][(*_all(lead), slice(op.start, op.stop))],
        channels=lambda op, ins, in_shapes, out_shape: unmixed(ins[0][op.start : op.stop]),
    ),
    o.Gather: Routing(
        # index_select, not x[..., index]: a third of the time forward, and half backward (dse/tune trains
        # through the Gather of every split's merge at each step)
        move=lambda op, xs, lead: torch.index_select(xs[0], lead, torch.as_tensor(op.index)),
        channels=lambda op, ins, in_shapes, out_shape: unmixed(ins[0][np.asarray(op.index)]),
    ),
    o.Concat: Routing(
        move=_concat_move,
        channels=_concat_channels,
    ),
    o.Reshape: Routing(
        move=lambda op, xs, lead: xs[0].reshape(*xs[0].shape[:lead], *op.shape),
        channels=_reshape_channels,
    ),
    o.Pad: Routing(
        move=_pad_move,
        channels=lambda op, ins, in_shapes, out_shape: unmixed(ins[0]),
        homogeneous=lambda op: not np.any(np.asarray(op.value) != 0),
    ),
    o.DepthToSpace: Routing(move=_per_copy(_depth_to_space_move), channels=_depth_to_space_channels),
    o.SpaceToDepth: Routing(  # every phase block of a copy holds that copy's channels
        move=_per_copy(_space_to_depth_move),
        channels=lambda op, ins, in_shapes, out_shape: unmixed(
            np.tile(_copy_channels(op, ins[0]), op.block[0] * op.block[1]).reshape(-1)),
    ),
}
