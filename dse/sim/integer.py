"""Integer-exact simulator: runs a compiled graph the way the chip does, on integer codes.

Inputs are encoded to codes by the host, cores accumulate integer weights times integer codes (in float32 where
no accumulator can reach 2**24, else float64, which holds every integer below 2**53; the bound is checked per
core), neurons turn the accumulator into an output code, wiring moves codes, and the host decodes the outputs.
It must agree with the quantized float path of `dse.sim.float_exec` (checked by `dse.sim.evaluate`).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from dse.ir import ops as o
from dse.ir.graph import Graph
from dse.sim.float_exec import FLOAT_EXEC, conv_core, input_codes, pad_values

EXACT_LIMIT = 2.0**53  # float64 holds every integer below this exactly
EXACT_LIMIT_F32 = 2.0**24  # and float32 every integer below this: 2-4x faster convolutions where it suffices


class NotIntegerGraph(ValueError):
    """The graph holds a core-op without integer form or an unencoded input."""


def _core_codes(op: o.CoreOp, codes: torch.Tensor) -> torch.Tensor:
    """A core's output codes. The accumulator runs in float32 when no partial sum can reach 2**24 (every
    product and every sum, in any order, is then an integer float32 holds exactly), else in float64."""
    q = op.quant
    if q is None:
        raise NotIntegerGraph("a core-op has no integer form")
    w_int = np.asarray(q.weight_int)
    row_sum = float(np.abs(w_int.reshape(w_int.shape[0], -1)).sum(axis=1, dtype=np.int64).max(initial=0))
    bound = float(codes.max()) * row_sum  # codes are >= 0 + float(np.abs(q.bias_int).max(initial=0))
    if bound >= EXACT_LIMIT:
        raise NotIntegerGraph(f"accumulator bound {bound:.3g} exceeds exact float64 integers")
    dtype = torch.float32 if bound < EXACT_LIMIT_F32 else torch.float64
    w = torch.as_tensor(w_int).to(dtype)
    acc = conv_core(codes.to(dtype), w, torch.as_tensor(q.bias_int).to(dtype), op)
    mult = torch.as_tensor(q.weight_scale / q.out_scale, dtype=torch.float64)
    mult = mult if op.dense else mult.reshape(-1, 1, 1)
    return torch.clamp(torch.round(acc.double() * mult), 0, q.out_max).float()


@torch.no_grad()
def run_integer(graph: Graph, x: np.ndarray, *, keep: Iterable[str] | str = (), batch_size: int = 500
                ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Run the compiled graph on the real-valued inputs `x`.

    Returns the first output decoded to real values, and the codes of the nodes named in `keep` ('*': every
    node). Codes are held as float32 (every code is a small integer).
    """
    outs: list[np.ndarray] = []
    keep_set = {n.name for n in graph} if keep == "*" else set(keep)
    codes_all: dict[str, list[np.ndarray]] = {k: [] for k in keep_set}
    out_name = graph.outputs[0]
    # Free each node's codes after its last reader unless kept: the codes of every node of a large graph do
    # not fit in memory (ResNet-50 after split: ~0.4 GB per image).
    last_use = {src: i for i, node in enumerate(graph) for src in node.inputs}
    for start in range(0, len(x), batch_size):
        xb = torch.from_numpy(np.array(x[start : start + batch_size], dtype=np.float64))  # a copy: x may be read-only
        codes: dict[str, torch.Tensor] = {}
        scales: dict[str, float] = {}
        for i, node in enumerate(graph):
            op = node.op
            ins = [codes[s] for s in node.inputs]
            if isinstance(op, o.Input):
                if op.code_max is None:
                    raise NotIntegerGraph("the input is not encoded")
                codes[node.name] = input_codes(op, xb).float()
                scales[node.name] = op.scale
            elif isinstance(op, o.Pad):
                step = scales[node.inputs[0]]
                code_op = o.Pad(op.padding, tuple(float(np.rint(v / step)) for v in op.value))
                codes[node.name] = pad_values(ins[0], code_op)
                scales[node.name] = step
            elif isinstance(op, o.CoreOp):
                codes[node.name] = _core_codes(op, ins[0])
                scales[node.name] = op.quant.out_scale
            elif isinstance(op, o.Readout):
                codes[node.name] = FLOAT_EXEC[o.Readout](op, ins)  # sums and differences of codes stay exact
                scales[node.name] = scales[node.inputs[0]]
            elif isinstance(op, o.Slice):
                codes[node.name] = ins[0][:, op.start : op.stop]
            elif isinstance(op, o.Gather):
                codes[node.name] = ins[0][:, torch.as_tensor(op.index)]
            elif isinstance(op, o.Concat):
                codes[node.name] = torch.cat(ins, dim=op.axis + 1)
            elif isinstance(op, o.Reshape):
                codes[node.name] = ins[0].reshape(ins[0].shape[0], *op.shape)
            else:
                raise NotIntegerGraph(f"node {node.name!r}: {type(op).__name__} is not a chip op")
            if node.name not in scales and node.inputs:
                scales[node.name] = scales[node.inputs[0]]  # wiring: a single-scale view is enough to decode
            for src in node.inputs:
                if last_use[src] == i and src != out_name and src not in keep_set:
                    codes.pop(src, None)  # pop: a node may read the same input twice
        outs.append((codes[out_name].double() * scales[out_name]).numpy())
        for k in keep_set:
            codes_all[k].append(codes[k].numpy())
    return np.concatenate(outs), {k: np.concatenate(v) for k, v in codes_all.items()}
