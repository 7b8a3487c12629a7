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


def wired_scales(op: o.Op, inputs: Sequence[str], scales: Mapping[str, Tensor],
                 shapes: Mapping[str, tuple[int, ...]]) -> Tensor:
    """The scales of wiring `op`'s output, from those of its inputs (named `inputs`), routed by `WIRING`; a
    channel that mixes inputs of different scales cannot be encoded."""
    in_shapes = [shapes[s] for s in inputs]
    out_shape = SHAPE_RULES[type(op)](op, in_shapes)
    routed, mixed = WIRING[type(op)].channels(op, [scales[s].numpy() for s in inputs], in_shapes, out_shape)
    if mixed.any():
        raise ConfigError(f"a {type(op).__name__} mixes channels of different scales; the compiler cannot encode it")
    return torch.from_numpy(np.array(routed))  # a copy: a routed view may be read-only


def weight_in_scale(op: o.CoreOp, in_scale: Tensor) -> Tensor:
    """in_scale of the input channel each weight entry reads, shaped to broadcast against the weight."""
    out_c, in_g = op.weight.shape[:2]
    per_group = out_c // op.groups
    idx = (torch.arange(out_c) // per_group)[:, None] * in_g + torch.arange(in_g)[None, :]
    return in_scale[idx][:, :, None, None]
