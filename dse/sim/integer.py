"""Integer-exact simulator: runs a compiled graph the way the chip does, on integer codes.

Inputs are encoded to codes by the host, cores accumulate integer weights times integer codes (float64 holds
every integer below 2**53 exactly, and the check below proves the accumulators stay there), neurons turn the
accumulator into an output code, wiring moves codes, and the host decodes the outputs. It must agree with the
quantized float path of `dse.sim.float_exec` (see `dse.sim.verify`).
"""

from __future__ import annotations

import numpy as np
import torch

from dse.ir import ops as o
from dse.ir.graph import Graph
from dse.sim.float_exec import FLOAT_EXEC, conv_core, input_codes, pad_values

EXACT_LIMIT = 2.0**53


class NotIntegerGraph(ValueError):
    """The graph holds a core-op without integer form or an unencoded input."""


def _core_codes(op: o.CoreOp, codes: torch.Tensor) -> torch.Tensor:
    q = op.quant
    if q is None:
        raise NotIntegerGraph("a core-op has no integer form")
    w = torch.as_tensor(q.weight_int, dtype=torch.float64)
    acc = conv_core(codes, w, torch.as_tensor(q.bias_int, dtype=torch.float64), op)
    bound = float(codes.abs().max()) * float(w.abs().reshape(w.shape[0], -1).sum(1).max()) + float(
        np.abs(q.bias_int).max(initial=0)
    )
    if bound >= EXACT_LIMIT:
        raise NotIntegerGraph(f"accumulator bound {bound:.3g} exceeds exact float64 integers")
    mult = torch.as_tensor(q.weight_scale / q.out_scale, dtype=torch.float64)
    mult = mult if op.dense else mult.reshape(-1, 1, 1)
    return torch.clamp(torch.round(acc * mult), 0, q.out_max)


@torch.no_grad()
def run_integer(graph: Graph, x: np.ndarray, *, keep_codes: bool = False, batch_size: int = 500
                ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Run the compiled graph on the real-valued inputs `x`.

    Returns the first output decoded to real values, and (if `keep_codes`) every node's codes.
    """
    outs: list[np.ndarray] = []
    codes_all: dict[str, list[np.ndarray]] = {}
    out_name = graph.outputs[0]
    # Free each node's codes after its last reader (unless every node's codes are wanted): float64 codes of
    # every node of a large graph do not fit in memory (ResNet-50 after split: ~0.8 GB per image).
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
                codes[node.name] = input_codes(op, xb)
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
            if not keep_codes:
                for src in node.inputs:
                    if last_use[src] == i and src != out_name:
                        codes.pop(src, None)  # pop: a node may read the same input twice
        outs.append((codes[out_name] * scales[out_name]).numpy())
        if keep_codes:
            for k, v in codes.items():
                codes_all.setdefault(k, []).append(v.numpy())
    return np.concatenate(outs), {k: np.concatenate(v) for k, v in codes_all.items()}
