"""Test helper: a compiled spiking network replayed in SANA-FE (a GPL neuromorphic simulator, test-only extra).

Every neuron of the compiled graph becomes a SANA-FE `input` neuron that replays the spike train dse's spiking
simulator gave it (shifted by one step per core layer: a spike reaches the next layer one step later, as on the
chip), connected through zero-weight synapses wherever dse has a live (non-zero) synapse. SANA-FE then counts,
independently of dse, the synaptic events, neuron updates, spikes, messages and their hops on the mesh, and
charges them with the same per-event coefficients. The host's input trains are replayed by copies of the input
neurons placed in a second core of every consumer's tile, with zero cost: the host's traffic is not mesh traffic
in dse's model.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import sanafe
import torch
import torch.nn.functional as F

from dse.cost.model import SpikingCost
from dse.cost.placement import Mesh, wired_labels
from dse.cost.resources import LayerResources, core_assignment
from dse.hardware.spec import HardwareSpec
from dse.ir import ops as o
from dse.ir.graph import Graph
from dse.ir.shapes import infer_shapes
from dse.sim.spiking import core_trains, encode, pad_trains, wire

SLOTS = 512  # soma units per core: one per replayed neuron (a SANA-FE input unit holds one spike train)


def spike_trains(graph: Graph, hw: HardwareSpec, x: np.ndarray) -> dict[str, torch.Tensor]:
    """(T, *shape) trains of every node for one sample, as `run_spiking` computes them."""
    trains: dict[str, torch.Tensor] = {}
    scales: dict[str, float] = {}
    for node in graph:
        op, ins = node.op, [trains[s] for s in node.inputs]
        if isinstance(op, o.Input):
            values = torch.tensor(np.array(x[None]), dtype=torch.float32)
            codes = torch.clamp(torch.round(values / op.scale), 0, op.code_max)
            trains[node.name], scales[node.name] = encode(codes, hw.neuron.timesteps, hw.neuron.encoding), op.scale
        elif isinstance(op, o.Pad):
            scales[node.name] = scales[node.inputs[0]]
            trains[node.name] = pad_trains(ins[0], op, scales[node.name], hw.neuron)
        elif isinstance(op, o.CoreOp):
            trains[node.name], scales[node.name] = core_trains(op, ins[0], hw.neuron), op.quant.out_scale
        elif isinstance(op, o.Readout):
            continue
        else:
            trains[node.name], scales[node.name] = wire(op, ins), scales[node.inputs[0]]
    return {k: v[0] for k, v in trains.items()}


def synapses(op: o.CoreOp, in_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(output neuron, input element) of every live synapse, outputs and inputs flattened per sample."""
    live = (op.quant.weight_int != 0).reshape(op.out_channels, -1)
    index = torch.arange(int(np.prod(in_shape)), dtype=torch.float64).reshape(1, *in_shape)
    if op.dense:
        unf = index.reshape(op.groups, -1, 1)
    else:
        top, left, bottom, right = op.padding
        unf = F.unfold(F.pad(index, (left, right, top, bottom), value=-1.0), op.kernel, stride=op.stride)
        unf = unf.reshape(op.groups, live.shape[1], -1)
    positions = unf.shape[2]
    out, k = np.nonzero(live)
    elems = unf.numpy()[out // (op.out_channels // op.groups), k]  # (live synapses, positions)
    dst = out[:, None] * positions + np.arange(positions)[None]
    keep = elems >= 0
    return dst[keep], elems[keep].astype(np.int64)


def _arch_yaml(mesh: Mesh, c: SpikingCost) -> str:
    """A mesh of tiles, one per dse core, with dse's coefficients (SANA-FE takes joules and seconds)."""
    pj, ns = 1e-12, 1e-9
    x_hop, y_hop = c.hop_x_pj_per_spike * pj, c.hop_y_pj_per_spike * pj
    hops = (f"energy_north_hop: {y_hop}\n        energy_south_hop: {y_hop}\n"
            f"        energy_east_hop: {x_hop}\n        energy_west_hop: {x_hop}\n")
    soma = ("model: input\n                energy_access_neuron: {e}\n                latency_access_neuron: {t}\n"
            "                energy_update_neuron: 0.0\n                latency_update_neuron: 0.0\n"
            "                energy_spike_out: {s}\n                latency_spike_out: {u}\n")
    replay = soma.format(e=c.neuron_update_pj * pj, t=c.neuron_update_ns * ns, s=c.spike_pj * pj, u=c.spike_ns * ns)
    host = soma.format(e=0.0, t=0.0, s=0.0, u=0.0)
    return f"""architecture:
  name: dse_chip_b
  attributes:
    width: {mesh.width}
    height: {mesh.height}
    link_buffer_size: 16
    sync_model: fixed
    latency_sync: {c.barrier_ns * ns}
  tile:
    - name: tile[0..{mesh.size - 1}]
      attributes:
        {hops}        latency_north_hop: 0.0
        latency_south_hop: 0.0
        latency_east_hop: 0.0
        latency_west_hop: 0.0
      core:
        - name: core[0..1]
          attributes:
            buffer_position: soma
            max_neurons_supported: {SLOTS}
          axon_in:
            - name: axon_in
              attributes: {{energy_message_in: 0.0, latency_message_in: 0.0}}
          synapse:
            - name: synapse
              attributes:
                model: current_based
                energy_process_spike: {c.synaptic_event_pj * pj}
                latency_process_spike: {c.synaptic_event_ns * ns}
          dendrite:
            - name: dendrite
              attributes: {{model: accumulator, energy_update: 0.0, latency_update: 0.0}}
          soma:
            - name: replay[0..{SLOTS - 1}]
              attributes:
                {replay}            - name: host[0..{SLOTS - 1}]
              attributes:
                {host}          axon_out:
            - name: axon_out
              attributes: {{energy_message_out: 0.0, latency_message_out: 0.0}}
"""


def run_sanafe(graph: Graph, hw: HardwareSpec, layers: list[LayerResources], coeffs: SpikingCost, mesh: Mesh,
               xy: np.ndarray, x: np.ndarray, depth: int) -> dict:
    """Replay one sample of `x` in SANA-FE on the placement `xy`; SANA-FE's result dict."""
    shapes, trains = infer_shapes(graph), spike_trains(graph, hw, x)
    steps = hw.neuron.timesteps
    total = steps + depth - 1
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "arch.yaml"
        path.write_text(_arch_yaml(mesh, coeffs))
        arch = sanafe.load_arch(str(path))
    net = sanafe.Network()
    offsets, start, level = {}, 0, {}
    for lr in layers:
        offsets[lr.name], start = start, start + int(np.prod(shapes[lr.name]))
    neuron_ids = wired_labels(graph, {lr.name: np.arange(int(np.prod(shapes[lr.name]))).reshape(shapes[lr.name])
                                      + offsets[lr.name] for lr in layers})
    core_base, cores = {}, 0
    for lr in layers:
        core_base[lr.name], cores = cores, cores + lr.crossbars
    tile_of_core = xy[:, 0] * mesh.height + xy[:, 1]
    used = np.zeros((mesh.size, 2), dtype=np.int64)  # soma slots taken per tile and core

    def place(neuron, tile: int, core: int, kind: str, train: np.ndarray, delay: int) -> None:
        spikes = [False] * total
        for t in np.flatnonzero(train):
            spikes[int(t) + delay] = True
        neuron.set_attributes(soma_hw_name=f"{kind}[{used[tile, core]}]", model_attributes={"spikes": spikes})
        used[tile, core] += 1
        neuron.map_to_core(arch.tiles[int(tile)].cores[core])

    groups, layer_of = {}, {}
    for lr in layers:  # levels: a core layer's spikes leave one step after its inputs'
        node = graph[lr.name]
        src = neuron_ids[node.inputs[0]][0].numpy().reshape(-1)
        feeding = {layer_of[int(s)] for s in np.unique(src[src >= 0])} if (src >= 0).any() else set()
        level[lr.name] = 1 + max((level[f] for f in feeding), default=0)
        n = int(np.prod(shapes[lr.name]))
        layer_of.update(dict.fromkeys(range(offsets[lr.name], offsets[lr.name] + n), lr.name))
        groups[lr.name] = net.create_neuron_group(lr.name, n, {})
        core = core_assignment(node.op, shapes[lr.name], hw).reshape(-1) + core_base[lr.name]
        layer_trains = trains[lr.name].reshape(steps, -1).numpy()
        for i in range(n):
            place(groups[lr.name][i], tile_of_core[core[i]], 0, "replay", layer_trains[:, i], level[lr.name] - 1)
    for lr in layers:
        node = graph[lr.name]
        in_shape = shapes[node.inputs[0]]
        dst, elem = synapses(node.op, in_shape)
        src = neuron_ids[node.inputs[0]][0].numpy().reshape(-1).astype(np.int64)[elem]
        core = (core_assignment(node.op, shapes[lr.name], hw).reshape(-1) + core_base[lr.name])[dst]
        host = src < 0
        if host.any():  # one copy of each host value per consumer core, in that core's tile
            pairs, inverse = np.unique(np.stack([core[host], elem[host]], 1), axis=0, return_inverse=True)
            group = net.create_neuron_group(f"host_{lr.name}", len(pairs), {})
            in_trains = trains[node.inputs[0]].reshape(steps, -1).numpy()
            for i, (k, e) in enumerate(pairs):
                place(group[i], tile_of_core[k], 1, "host", in_trains[:, e], level[lr.name] - 1)
            group.connect_neurons_sparse(groups[lr.name], {"weight": [0.0] * int(host.sum())},
                                         list(zip(inverse.ravel().tolist(), dst[host].tolist(), strict=True)))
        for name in {layer_of[int(s)] for s in np.unique(src[~host])}:
            pick = ~host & np.isin(src, np.arange(offsets[name], offsets[name] + len(groups[name])))
            groups[name].connect_neurons_sparse(groups[lr.name], {"weight": [0.0] * int(pick.sum())},
                                                list(zip((src[pick] - offsets[name]).tolist(), dst[pick].tolist(),
                                                         strict=True)))
    chip = sanafe.SpikingChip(arch)
    chip.load(net)
    return chip.sim(total)
