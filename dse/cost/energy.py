"""Energy, latency and area of a compiled network, per layer and in total, from its compiled graph, its resources
and (spiking chips) its measured activity. docs/cost.md gives every formula and its sources.

PIM (per core-op layer; S = ceil(input_bits / dac_bits) bit slices, V = positions a time-multiplexed crossbar
visits (1 when expanded or dense), reads = crossbars x V x S):
  crossbar = reads x rows x cols x E_cell          dac = reads x rows x E_dac
  adc = conversions x E_adc(output_bits)           shift_add = conversions x E_sa,
        conversions = outputs x positions x columns_per_weight x S (the columns that hold neurons)
  buffer = positions x (receptive field x input_bits + outputs x output_bits) x E_bit
  noc = routed hops x edge bits x E_bit_hop
  latency of a layer = V x S x t_slice; layers pipelined: an inference takes the longest path of layer times and
  a new one starts every max(layer time).
  Area counts a crossbar's cols + spare_columns physical columns (cells, ADCs); a repaired column is read in
  place of its own, so reads and conversions count cols.
Spiking (per layer, per inference; T time steps):
  synapses = events x E_event   neurons = neurons x L x E_update   spikes = spikes x E_spike
  noc = east-west hops x E_hop_x + north-south hops x E_hop_y   static = cores x P_static x latency
  L = T + depth - 1 steps (one step of synaptic delay per core layer), every neuron updated every step. A time
  step lasts barrier + the busiest core's work in it: neurons x t_update every step, plus, in the T steps of the
  layer's window (from its level in the graph on), (events x t_event + spikes x t_spike) / T, over its cores;
  latency = the sum over the L steps; one inference at a time. Area: cores x rows x (cols + spare_columns) x
  synapse area.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dse.cost.model import CostModel, PimCost, SpikingCost, chip_kind
from dse.cost.placement import PLACEMENTS, Routes, Traffic, build_mesh, core_traffic, place
from dse.cost.resources import LayerResources, depth
from dse.errors import ConfigError
from dse.hardware.spec import HardwareSpec
from dse.ir import ops as o
from dse.ir.graph import Graph
from dse.ir.shapes import infer_shapes
from dse.sim.spiking import SpikeStats

PIM_ENERGY = ("crossbar", "dac", "adc", "shift_add", "buffer", "noc")
PIM_AREA = ("crossbar", "dac", "adc", "shift_add", "buffer", "router")
SPIKING_ENERGY = ("synapses", "neurons", "spikes", "noc", "static")
SPIKING_AREA = ("cores",)
ENERGY = {"pim": PIM_ENERGY, "spiking": SPIKING_ENERGY}  # the energy components of each chip kind, in order
AREA = {"pim": PIM_AREA, "spiking": SPIKING_AREA}


@dataclass(frozen=True)
class LayerCost:
    name: str
    energy_pj: dict[str, float]  # per inference, by component
    latency_ns: float  # PIM: the layer's time per inference; spiking: one of its cores' work per inference
    area_mm2: dict[str, float]
    ops: float  # 2 x multiply-accumulates of the layer per inference

    def row(self) -> dict[str, float]:
        """Flat columns for layers.csv."""
        out = {"energy_pj": sum(self.energy_pj.values()), "latency_ns": self.latency_ns,
               "area_mm2": sum(self.area_mm2.values())}
        out.update({f"energy_{k}_pj": v for k, v in self.energy_pj.items()})
        out.update({f"area_{k}_mm2": v for k, v in self.area_mm2.items()})
        return {k: float(v) for k, v in out.items()}


@dataclass(frozen=True)
class NetworkCost:
    kind: str  # pim or spiking
    layers: list[LayerCost]
    latency_ns: float
    inferences_per_s: float
    noc: dict[str, dict[str, float]]  # per placement: hops, chip crossings, chips, NoC energy
    placement: str  # the placement whose NoC energy the totals hold (the one with fewer hops)
    extra: dict[str, float] = field(default_factory=dict)  # spiking: latency_steps, step_ns_max

    def energy_pj(self) -> dict[str, float]:
        out = {k: float(sum(x.energy_pj[k] for x in self.layers)) for k in self.layers[0].energy_pj}
        out["total"] = sum(out.values())
        return out

    def area_mm2(self) -> dict[str, float]:
        out = {k: float(sum(x.area_mm2[k] for x in self.layers)) for k in self.layers[0].area_mm2}
        out["total"] = sum(out.values())
        return out

    def tops_per_w(self) -> float | None:
        """Operations (2 x MACs) per pJ = TOPS/W; None on a spiking chip (its work is events, not MACs)."""
        if self.kind == "spiking":
            return None
        return float(sum(x.ops for x in self.layers) / self.energy_pj()["total"])

    def to_dict(self) -> dict[str, Any]:
        return {"energy_pj": self.energy_pj(), "latency_ns": self.latency_ns, "area_mm2": self.area_mm2(),
                "inferences_per_s": self.inferences_per_s, "tops_per_w": self.tops_per_w(),
                "placement": self.placement, "noc": self.noc, **self.extra}

    def layer_rows(self) -> list[dict[str, float]]:
        return [x.row() for x in self.layers]


def _macs(lr: LayerResources, hw: HardwareSpec) -> float:
    """Synapses times the positions a time-multiplexed crossbar visits (expanded layers count them already)."""
    return lr.synapses * (lr.positions if hw.mapping.reuse == "time_multiplexed" else 1)


def _pim_layer(lr: LayerResources, op: o.CoreOp, in_values: int, hw: HardwareSpec, c: PimCost, routes: Routes,
               index: int) -> LayerCost:
    rows, cols = hw.crossbar.rows, hw.crossbar.cols
    slices = math.ceil(hw.io.input_bits / c.dac_bits)
    visits = lr.positions if hw.mapping.reuse == "time_multiplexed" else 1
    reads = lr.crossbars * visits * slices
    conversions = lr.fan_out * lr.positions * hw.columns_per_weight * slices
    receptive = int(np.prod(op.weight.shape[1:])) * op.groups
    hops = routes.hops_x[index] + routes.hops_y[index]
    physical = cols + hw.crossbar.spare_columns  # the spares' cells and converters take area, not reads
    adcs = lr.crossbars * math.ceil(physical / c.columns_per_adc)
    energy = {
        "crossbar": reads * rows * cols * c.crossbar_fj_per_cell_read * 1e-3,
        "dac": reads * rows * c.dac_pj_per_activation(),
        "adc": conversions * c.adc_pj_per_conversion(hw.io.output_bits),
        "shift_add": conversions * c.shift_add_pj_per_op,
        "buffer": lr.positions * (receptive * hw.io.input_bits + lr.fan_out * hw.io.output_bits)
        * c.buffer_pj_per_bit,
        "noc": hops * hw.edge_bits(to_core=True) * c.noc_pj_per_bit_hop,
    }
    area_um2 = {
        "crossbar": lr.crossbars * rows * physical * c.crossbar_um2_per_cell,
        "dac": lr.crossbars * rows * c.dac_um2(),
        "adc": adcs * c.adc_um2(hw.io.output_bits),
        "shift_add": adcs * c.shift_add_um2,
        "buffer": in_values * hw.io.input_bits / 8 / 1024 * c.buffer_mm2_per_kb * 1e6,
        "router": lr.crossbars * c.router_um2_per_core,
    }
    return LayerCost(lr.name, energy, visits * slices * c.slice_ns(), {k: v * 1e-6 for k, v in area_um2.items()},
                     2.0 * _macs(lr, hw))


def _longest_path_ns(graph: Graph, layer_ns: dict[str, float]) -> float:
    t: dict[str, float] = {}
    for node in graph:
        t[node.name] = max((t[s] for s in node.inputs), default=0.0) + layer_ns.get(node.name, 0.0)
    return max(t[out] for out in graph.outputs)


def _pim_cost(graph: Graph, hw: HardwareSpec, c: PimCost, layers: list[LayerResources], routes: Routes
              ) -> tuple[list[LayerCost], float, float, dict[str, float]]:
    shapes = infer_shapes(graph)
    rows = [_pim_layer(lr, graph[lr.name].op, int(np.prod(shapes[graph[lr.name].inputs[0]])), hw, c, routes, i)
            for i, lr in enumerate(layers)]
    stage = {x.name: x.latency_ns for x in rows}
    latency = _longest_path_ns(graph, stage)
    return rows, latency, 1e9 / max(stage.values()), {}


def _core_levels(graph: Graph) -> dict[str, int]:
    """Per core-op, the core-ops on the longest path from the input to it, itself included (1: the first layer)."""
    level: dict[str, int] = {}
    for node in graph:
        level[node.name] = max((level[s] for s in node.inputs), default=0) + isinstance(node.op, o.CoreOp)
    return level


def _spiking_cost(graph: Graph, hw: HardwareSpec, c: SpikingCost, layers: list[LayerResources], stats: SpikeStats,
                  routes: Routes) -> tuple[list[LayerCost], float, float, dict[str, float]]:
    steps, per = hw.neuron.timesteps, stats.samples
    latency_steps = steps + depth(graph) - 1  # one step of synaptic delay per core layer
    level = _core_levels(graph)
    # per time step, ns one core of a layer works: its neurons' updates (every step), and in the T steps of its
    # window (from its level on) its share of the window's synaptic events and spikes
    update = np.array([stats.neurons[lr.name] * c.neuron_update_ns / lr.crossbars for lr in layers])
    window = np.array([(stats.events[lr.name] * c.synaptic_event_ns + stats.spikes[lr.name] * c.spike_ns)
                       / per / steps / lr.crossbars for lr in layers])
    first = np.array([level[lr.name] - 1 for lr in layers])
    step = np.arange(latency_steps)[:, None]
    active = (step >= first[None]) & (step < first[None] + steps)
    step_ns = c.barrier_ns + (update[None] + active * window[None]).max(axis=1)  # the busiest core sets the pace
    latency = float(step_ns.sum())
    rows = []
    for i, lr in enumerate(layers):
        energy = {
            "synapses": stats.events[lr.name] / per * c.synaptic_event_pj,
            "neurons": stats.neurons[lr.name] * latency_steps * c.neuron_update_pj,
            "spikes": stats.spikes[lr.name] / per * c.spike_pj,
            "noc": routes.hops_x[i] * c.hop_x_pj_per_spike + routes.hops_y[i] * c.hop_y_pj_per_spike,
            "static": lr.crossbars * c.static_mw_per_core * latency,  # mW x ns = pJ
        }
        physical = hw.crossbar.cols + hw.crossbar.spare_columns
        area = {"cores": lr.crossbars * hw.crossbar.rows * physical * c.synapse_um2 * 1e-6}
        busy = update[i] * latency_steps + window[i] * steps
        rows.append(LayerCost(lr.name, energy, float(busy), area, 2.0 * _macs(lr, hw)))
    return rows, latency, 1e9 / latency, {"latency_steps": latency_steps, "step_ns_max": float(step_ns.max())}


def _noc_summary(routes: Routes, hw: HardwareSpec, c: CostModel) -> dict[str, float]:
    if isinstance(c, PimCost):
        energy = routes.hops * hw.edge_bits(to_core=True) * c.noc_pj_per_bit_hop
    else:
        energy = float(routes.hops_x.sum() * c.hop_x_pj_per_spike + routes.hops_y.sum() * c.hop_y_pj_per_spike)
    return {"hops": routes.hops, "hops_x": float(routes.hops_x.sum()), "hops_y": float(routes.hops_y.sum()),
            "chip_crossings": routes.chip_crossings, "chips": routes.chips, "noc_energy_pj": float(energy)}


def network_cost(graph: Graph, hw: HardwareSpec, coeffs: CostModel, layers: list[LayerResources],
                 stats: SpikeStats | None = None, *, mesh: tuple[int, int] | None = None, seed: int = 0,
                 traffic: Traffic | None = None) -> NetworkCost:
    """The cost of compiled `graph` on chip `hw`: `layers` from `layer_resources(graph, hw)`, `stats` the spiking
    simulator's activity (`evaluate_chip(...).stats`, required on a spiking chip), `mesh` (width, height) in
    cores or None for the smallest that holds the network (`hw.mapping.cores_per_chip` cores a chip). Both
    placements are routed; the totals charge the one with fewer hops."""
    kind = chip_kind(hw)
    if not isinstance(coeffs, {"pim": PimCost, "spiking": SpikingCost}[kind]):
        raise ConfigError(f"chip {hw.name} is a {kind} chip but its cost model is {type(coeffs).__name__}")
    if hw.crossbar.rows is None or hw.crossbar.cols is None:
        raise ConfigError(f"a cost model needs hardware.crossbar.rows and cols (chip {hw.name} has none)")
    traffic = traffic or core_traffic(graph, hw, layers, stats)
    grid = build_mesh(traffic.cores, hw.mapping.cores_per_chip, *(mesh or (None, None)))
    routed = {p: place(traffic, grid, p, seed) for p in PLACEMENTS}
    best = min(PLACEMENTS, key=lambda p: routed[p].hops)
    if kind == "pim":
        rows, latency, rate, extra = _pim_cost(graph, hw, coeffs, layers, routed[best])
    else:
        rows, latency, rate, extra = _spiking_cost(graph, hw, coeffs, layers, stats, routed[best])
    noc = {p: _noc_summary(r, hw, coeffs) for p, r in routed.items()}
    return NetworkCost(kind, rows, latency, rate, noc, best, extra)
