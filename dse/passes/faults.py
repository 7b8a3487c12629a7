"""The "fault_correct" step: compile for one known chip (`hardware.device.fault_map`, its stuck cells).

The chip programs each weight that has a stuck cell with the free cells' levels nearest to it
(`dse.sim.device_noise.program_levels`: a stuck-high cell in one column of a differential pair is taken back by
the other column). What is left, ``e = achieved - intended`` on those weights, moves each output by ``e . x``;
this step takes it back by least squares on the column's healthy weights and its bias, over the core's
calibration inputs: ``min E[((e + d) . [x, 1])^2]`` over ``d`` on the healthy weights and the bias, rounded to
integers (the weights clipped to the chip's range). Max-pooling cores (+-1 weights) are left as programmed.
On a chip with spare columns, the columns whose stuck cells do the most harm are first moved onto them
(`dse.passes.spare_repair`, max-pooling cores too); the correction then works on the cells the chip computes
with (a repaired column's from its spare, `dse.sim.spares.chip_cells`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from dse.cost.resources import crossbar_of
from dse.hardware.spec import HardwareSpec
from dse.ir import ops as o
from dse.ir.graph import Graph, GraphBuilder
from dse.passes.registry import register_step
from dse.passes.spare_repair import RIDGE, repair
from dse.passes.state import CompileState
from dse.passes.verify import fault_map
from dse.sim.device_noise import OK, CellLayout, program_levels
from dse.sim.integer import run_integer
from dse.sim.spares import chip_fault_map, spare_key
from dse.tune.scales import weight_in_scale

CALIB_SAMPLES = 512  # calibration samples whose core inputs give each core's input moments


@register_step("fault_correct")
def fault_correct(state: CompileState) -> None:
    """Repair onto spare columns where the chip has them (`dse.passes.spare_repair`), then correct every core
    that has a stuck cell the chip cannot program around exactly."""
    faults = fault_map(state)
    data = state.need_data("fault_correct")
    layout = CellLayout.of(state.hw)
    graph = state.graph
    spare_count = state.hw.crossbar.spare_columns
    cores = [n for n in graph.of_type(o.CoreOp) if (faults[n.name] != OK).any() and (spare_count or not n.op.fixed)]
    feeds = sorted({n.inputs[0] for n in cores})
    _, codes = run_integer(graph, data.calib_x[:CALIB_SAMPLES].numpy(), keep=feeds)
    moments = {n.name: _moments(n.op, codes[n.inputs[0]]) for n in cores}
    if spare_count:
        graph = _with_ops(graph, _repaired(graph, state.hw, faults, cores, moments, layout))
    cells = chip_fault_map(graph, state.hw, faults)
    replaced = {n.name: _corrected(n.op, layout, cells[n.name], moments[n.name])
                for n in graph.of_type(o.CoreOp) if n.name in moments and not n.op.fixed}
    state.graph = _with_ops(graph, replaced)


def _repaired(graph: Graph, hw: HardwareSpec, faults: dict[str, np.ndarray], cores: list, moments: dict,
              layout: CellLayout) -> dict[str, o.CoreOp]:
    """The cores whose columns are moved onto spares, with their repairs recorded (`CoreQuant.spare_of`)."""
    out = {}
    for n in cores:
        spares = faults[spare_key(n.name)][:, : hw.crossbar.spare_columns]  # a map may hold more: the first
        spare_of = repair(n.op, layout, faults[n.name], spares, crossbar_of(n.op, hw), moments[n.name])
        if spare_of is not None:
            out[n.name] = dataclasses.replace(n.op, quant=dataclasses.replace(n.op.quant, spare_of=spare_of))
    return out


def _with_ops(graph: Graph, replaced: dict[str, o.CoreOp]) -> Graph:
    b = GraphBuilder.from_graph(graph)
    for name, op in replaced.items():
        b.replace(name, op)
    return b.build(graph.outputs)


def _moments(op: o.CoreOp, x: np.ndarray) -> np.ndarray:
    """E[[p, 1] [p, 1]^T] over the rows p the core reads (a sample, or a conv patch at one position), (F+1)^2,
    per group: (groups, F+1, F+1) with F the fan-in of one group."""
    t = torch.as_tensor(x, dtype=torch.float64)
    if op.dense:
        rows = t.reshape(len(t), -1)
    else:
        top, left, bottom, right = op.padding
        t = F.pad(t, (left, right, top, bottom))
        rows = F.unfold(t, op.kernel, stride=op.stride).transpose(1, 2).reshape(-1, t.shape[1] * np.prod(op.kernel))
    g = op.groups
    rows = rows.reshape(len(rows), g, -1)
    rows = torch.cat([rows, torch.ones(len(rows), g, 1, dtype=rows.dtype)], dim=2)
    return torch.einsum("ngi,ngj->gij", rows, rows).numpy() / len(rows)


def _corrected(op: o.CoreOp, layout: CellLayout, faults: np.ndarray, moments: np.ndarray) -> o.CoreOp:
    """`op` with its healthy weights and bias moved to take back its stuck cells' residual error."""
    q = op.quant
    w = np.asarray(q.weight_int, np.int64)
    gain = layout.gain(w)
    achieved = layout.weight(program_levels(layout, w * gain, faults).astype(np.float64)) / gain
    out_c = w.shape[0]
    err = (achieved - w).reshape(out_c, -1)
    healthy = ~(faults != OK).any(axis=(0, 1)).reshape(out_c, -1)
    if op.mask is not None:
        healthy &= op.mask.reshape(out_c, -1).astype(bool)
    per_group = out_c // op.groups
    w_new, bias = w.reshape(out_c, -1).copy(), np.asarray(q.bias_int, np.int64).copy()
    wmax = layout.wmax
    for j in np.flatnonzero(np.abs(err).sum(axis=1) > 0):
        m = moments[j // per_group]
        free = np.append(healthy[j], True)  # the healthy weights and the bias
        e = np.append(err[j], 0.0)
        a = m[np.ix_(free, free)]
        a = a + RIDGE * np.trace(a) / len(a) * np.eye(len(a))
        d = np.linalg.solve(a, -m[np.ix_(free, ~free)] @ e[~free])
        w_new[j, free[:-1]] = np.clip(np.rint(w_new[j, free[:-1]] + d[:-1]), -wmax, wmax)
        bias[j] += int(np.rint(d[-1]))
    w_new = w_new.reshape(w.shape).astype(np.asarray(q.weight_int).dtype)
    quant = dataclasses.replace(q, weight_int=w_new, bias_int=bias)
    # the float weights and bias follow the integers, as `QCore.quantized` writes them
    in_scale = weight_in_scale(op, torch.as_tensor(q.in_scale)).numpy()
    weight = (w_new * (q.weight_scale.reshape(-1, 1, 1, 1) / in_scale)).astype(np.float32)
    return dataclasses.replace(op, weight=weight, bias=(bias * q.weight_scale).astype(np.float32), quant=quant)
