"""Scales: the value of one code, per channel of a tensor, carried through wiring and onto weights."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from dse.errors import ConfigError
from dse.ir import ops as o
from dse.ir.shapes import SHAPE_RULES
from dse.ir.wiring import WIRING

Tensor = torch.Tensor


def _channel_scales(op: o.Op, ins: list[Tensor], in_shapes: list[tuple[int, ...]]) -> Tensor:
    out_shape = SHAPE_RULES[type(op)](op, in_shapes)
    scales, mixed = WIRING[type(op)].channels(op, [s.numpy() for s in ins], in_shapes, out_shape)
    if mixed.any():
        raise ConfigError(f"a {type(op).__name__} mixes channels of different scales; the compiler cannot encode it")
    return torch.from_numpy(np.array(scales))  # a copy: a routed view may be read-only


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
