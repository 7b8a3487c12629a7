"""Integer-exact simulator: runs a compiled graph the way the chip does, on integer codes.

Inputs are encoded to codes by the host, cores accumulate integer weights times integer codes (in float32 where
no accumulator can reach 2**24, else float64, which holds every integer below 2**53; the bound is checked per
core), neurons turn the accumulator into an output code, wiring moves codes, and the host decodes the outputs.
It must agree with the quantized float path of `dse.sim.float_exec` (checked by `dse.sim.evaluate`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np
import torch

from dse.hardware.spec import EXACT_FLOAT32, EXACT_FLOAT64
from dse.ir import ops as o
from dse.ir.graph import Graph
from dse.ir.wiring import WIRING
from dse.sim.float_exec import FLOAT_EXEC, conv_core, input_codes

EXACT_LIMIT = float(EXACT_FLOAT64)  # float64 holds every integer below this exactly
EXACT_LIMIT_F32 = float(EXACT_FLOAT32)  # float32 every integer below this: 2-4x faster convolutions where it does


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
    bound = float(codes.max()) * row_sum + float(np.abs(q.bias_int).max(initial=0))  # codes are >= 0
    if bound >= EXACT_LIMIT:
        raise NotIntegerGraph(f"accumulator bound {bound:.3g} exceeds exact float64 integers")
    dtype = torch.float32 if bound < EXACT_LIMIT_F32 else torch.float64
    w = torch.as_tensor(w_int).to(dtype)
    acc = conv_core(codes.to(dtype), w, torch.as_tensor(q.bias_int).to(dtype), op, integral=True)
    mult = torch.as_tensor(q.weight_scale / q.out_scale, dtype=torch.float64)
    mult = mult if op.dense else mult.reshape(-1, 1, 1)
    return torch.clamp(torch.round(acc.double() * mult), 0, q.out_max).float()


IntegerRule = Callable[[o.Op, list[torch.Tensor], list[float]], tuple[torch.Tensor, float]]
"""A chip op on codes: (op, its inputs' codes, the value of one code of each) -> (its codes, the value of one of
them). The input node is given the real inputs and no step."""


def _input(op: o.Input, xs: list[torch.Tensor], steps: list[float]) -> tuple[torch.Tensor, float]:
    if op.code_max is None:
        raise NotIntegerGraph("the input is not encoded")
    return input_codes(op, xs[0]).float(), op.scale


def _core(op: o.CoreOp, codes: list[torch.Tensor], steps: list[float]) -> tuple[torch.Tensor, float]:
    return _core_codes(op, codes[0]), op.quant.out_scale


def _readout(op: o.Readout, codes: list[torch.Tensor], steps: list[float]) -> tuple[torch.Tensor, float]:
    return FLOAT_EXEC[o.Readout](op, codes), steps[0]  # sums and differences of codes stay exact


def _pad(op: o.Pad, codes: list[torch.Tensor], steps: list[float]) -> tuple[torch.Tensor, float]:
    """The pad value in codes of the padded value's step (the host's pad of the input: the code nearest to it)."""
    code_op = o.Pad(op.padding, tuple(float(np.rint(v / steps[0])) for v in op.value))
    return WIRING[o.Pad].move(code_op, codes, 1), steps[0]


def route(op: o.Op, codes: list[torch.Tensor], steps: list[float]) -> tuple[torch.Tensor, float]:
    """A wiring op moves codes; one step for the whole value is enough to decode it (the first input's)."""
    return WIRING[type(op)].move(op, codes, 1), steps[0]


INTEGER_EXEC: dict[type[o.Op], IntegerRule] = {
    o.Input: _input,
    o.CoreOp: _core,
    o.Readout: _readout,
    **dict.fromkeys((o.Reshape, o.Slice, o.Gather, o.Concat, o.DepthToSpace, o.SpaceToDepth), route),
    o.Pad: _pad,  # the pad value, in codes
}


@torch.no_grad()
def run_integer(graph: Graph, x: np.ndarray, *, keep: Iterable[str] | str = (), batch_size: int = 500,
                table: Mapping[type[o.Op], IntegerRule] = INTEGER_EXEC) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Run the compiled graph on the real-valued inputs `x`.

    Returns the first output decoded to real values, and the codes of the nodes named in `keep` ('*': every
    node). Codes are held as float32 (every code is a small integer). `table`: the rules (another chip's:
    `dse.sim.montecarlo` runs N drawn chip instances at once with its own).
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
            rule = table.get(type(node.op))
            if rule is None:
                raise NotIntegerGraph(f"node {node.name!r}: {type(node.op).__name__} is not a chip op")
            ins = [codes[s] for s in node.inputs] if node.inputs else [xb]
            codes[node.name], scales[node.name] = rule(node.op, ins, [scales[s] for s in node.inputs])
            for src in node.inputs:
                if last_use[src] == i and src != out_name and src not in keep_set:
                    codes.pop(src, None)  # pop: a node may read the same input twice
        outs.append((codes[out_name].double() * scales[out_name]).numpy())
        for k in keep_set:
            codes_all[k].append(codes[k].numpy())
    return np.concatenate(outs), {k: np.concatenate(v) for k, v in codes_all.items()}
