"""Scales: the value of one code, per channel of a tensor, carried through wiring and onto weights."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from dse.errors import ConfigError
from dse.ir import ops as o

Tensor = torch.Tensor


def _channel_scales(op: o.Op, ins: list[Tensor], in_shapes: list[tuple[int, ...]]) -> Tensor:
    if isinstance(op, (o.Pad,)):
        return ins[0]
    if isinstance(op, o.Slice):
        return ins[0][op.start : op.stop]
    if isinstance(op, o.Gather):
        return ins[0][torch.as_tensor(op.index)]
    if isinstance(op, o.Concat):
        return torch.cat(ins)
    if isinstance(op, o.Reshape):
        full = ins[0].reshape(-1, *([1] * (len(in_shapes[0]) - 1))).expand(in_shapes[0]).reshape(op.shape)
        per = full.reshape(op.shape[0], -1)
        if not torch.all(per == per[:, :1]):
            raise ConfigError("a reshape mixes channels of different scales; the compiler cannot encode it")
        return per[:, 0].contiguous()
    raise TypeError(f"no scale rule for {type(op).__name__}")


def wired_scales(op: o.Op, inputs: Sequence[str], scales: Mapping[str, Tensor],
                 shapes: Mapping[str, tuple[int, ...]]) -> Tensor:
    """The scales of wiring `op`'s output, from those of its inputs (named `inputs`)."""
    return _channel_scales(op, [scales[s] for s in inputs], [shapes[s] for s in inputs])


def weight_in_scale(op: o.CoreOp, in_scale: Tensor) -> Tensor:
    """in_scale of the input channel each weight entry reads, shaped to broadcast against the weight."""
    out_c, in_g = op.weight.shape[:2]
    per_group = out_c // op.groups
    idx = (torch.arange(out_c) // per_group)[:, None] * in_g + torch.arange(in_g)[None, :]
    return in_scale[idx][:, :, None, None]
