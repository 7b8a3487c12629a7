"""The legality check: every way a graph breaks a chip's constraints, as a list of one-line violations."""

from __future__ import annotations

import numpy as np

from dse.hardware.spec import HardwareSpec
from dse.ir import ops as o
from dse.ir.graph import Graph
from dse.ir.wiring import WIRING


def feeds_core(graph: Graph) -> dict[str, bool]:
    """Per node, whether its value reaches a core-op (through wiring only), rather than only the host."""
    feeds: dict[str, bool] = {}
    for node in reversed(graph.nodes):
        feeds[node.name] = any(
            isinstance(u.op, o.CoreOp) or (type(u.op) in WIRING and feeds[u.name])
            for u in graph.consumers(node.name)
        )
    return feeds


def check(graph: Graph, hw: HardwareSpec) -> list[str]:
    """Every violation of `hw`'s constraints in `graph`; empty means the chip can run it."""
    bad: list[str] = []
    quantized = hw.quantized
    feeds = feeds_core(graph)
    for node in graph:
        op, name = node.op, node.name
        if not isinstance(op, o.CHIP_OPS):
            bad.append(f"node {name}: {type(op).__name__} is not a core-op, wiring, or host op")
            continue
        if isinstance(op, o.Input):
            if quantized and (op.code_max is None or op.code_max > hw.input_code_max):
                bad.append(f"input {name}: encoded with codes up to {op.code_max}, the chip takes {hw.input_code_max}")
        if isinstance(op, o.Pad) and np.any(np.asarray(op.value) != 0):
            if not graph.host_input(node.inputs[0]):
                bad.append(f"node {name}: a non-zero pad inside the chip (only the host may pad with a constant)")
        if isinstance(op, o.Readout):
            if name not in graph.outputs:
                bad.append(f"node {name}: a readout that is not a network output")
            if not isinstance(graph[node.inputs[0]].op, o.CoreOp):
                bad.append(f"node {name}: a readout must read a core-op")
        if not isinstance(op, o.CoreOp):
            continue
        fan_in = int(op.fan_in().max())
        if hw.crossbar.rows is not None and fan_in > hw.crossbar.rows:
            bad.append(f"core {name}: fan-in {fan_in} exceeds the crossbar's {hw.crossbar.rows} rows")
        if not quantized:
            continue
        q = op.quant
        if q is None:
            bad.append(f"core {name}: weights are not integer codes")
            continue
        if not np.issubdtype(q.weight_int.dtype, np.integer) or not np.issubdtype(q.bias_int.dtype, np.integer):
            bad.append(f"core {name}: weights or bias are not integers")
        wmax = int(np.abs(q.weight_int).max(initial=0))
        if wmax > hw.weight_max:
            bad.append(f"core {name}: weight code {wmax} needs more than {hw.weights.bits} bits")
        if op.mask is not None and np.any(q.weight_int[~op.mask.astype(bool)] != 0):
            bad.append(f"core {name}: a weight on a pruned synapse")
        if hw.weights.scale == "per_crossbar" and not np.allclose(q.weight_scale, q.weight_scale[0], rtol=0, atol=0):
            bad.append(f"core {name}: one weight scale per column, the chip has one per crossbar")
        limit = hw.code_max(to_core=feeds[name])
        if q.out_max > limit:
            where = "another core" if feeds[name] else "the host"
            bad.append(f"core {name}: emits codes up to {q.out_max} to {where}, the chip carries up to {limit}")
    for out in graph.outputs:
        if isinstance(graph[out].op, o.Input):
            bad.append(f"output {out}: the network input is not computed by the chip")
    return bad
