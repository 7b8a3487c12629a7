"""Traffic between cores, the mesh, XY routing, and the two placements."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
from cost_graphs import PIM_CHIP, SPIKING_CHIP, two_dense

from dse.cost.placement import (
    Mesh,
    Traffic,
    build_mesh,
    chip_shape,
    core_traffic,
    place,
    place_in_order,
    route,
)
from dse.cost.resources import core_assignment, layer_resources
from dse.errors import ConfigError
from dse.hardware.spec import Crossbar
from dse.ir import ops as o
from dse.ir.graph import Graph, GraphBuilder
from dse.ir.shapes import infer_shapes
from dse.sim.spiking import SpikeStats

SMALL_EXPANDED = dataclasses.replace(SPIKING_CHIP, crossbar=Crossbar(32, 32, 4, False))  # tiles of few positions


def test_traffic_follows_the_wiring() -> None:
    """fc1 has 64 neurons on two crossbars of 32; fc2 reads all of them, or only the first 32 through a Slice."""
    graph = two_dense(hidden=64)
    layers = layer_resources(graph, PIM_CHIP)
    assert [x.crossbars for x in layers] == [2, 1]
    full = core_traffic(graph, PIM_CHIP, layers).matrix.toarray()
    assert full.tolist() == [[0, 0, 32], [0, 0, 32], [0, 0, 0]]  # values a core sends another per inference
    sliced = two_dense(hidden=64, sliced=32)
    part = core_traffic(sliced, PIM_CHIP, layer_resources(sliced, PIM_CHIP)).matrix.toarray()
    assert part.tolist() == [[0, 0, 32], [0, 0, 0], [0, 0, 0]]


def test_spiking_traffic_is_the_measured_spikes_spread_over_the_neurons() -> None:
    graph = two_dense(hidden=64, out_max=4)
    layers = layer_resources(graph, SPIKING_CHIP)
    stats = SpikeStats(spikes={"fc1": 640.0, "fc2": 10.0}, events={"fc1": 1.0, "fc2": 1.0},
                       neurons={"fc1": 64, "fc2": 10}, samples=10)
    traffic = core_traffic(graph, SPIKING_CHIP, layers, stats)
    assert traffic.matrix.toarray()[0, -1] == pytest.approx(64.0)  # 64 spikes an inference, each read by fc2
    assert traffic.matrix.sum() == pytest.approx(64.0)


def test_xy_routing_counts_each_dimension_and_the_chip_boundaries() -> None:
    """Core 0 at (0, 0) sends 5 to core 1 at (3, 2) and 2 to core 2 at (1, 0); chips of 2 x 2."""
    matrix = sp.csr_matrix(np.array([[0, 5, 2], [0, 0, 0], [0, 0, 0]], dtype=float))
    traffic = Traffic(matrix, np.array([0, 1, 1]), ("a", "b"))
    mesh = Mesh(4, 4, 2, 2)
    routes = route(traffic, mesh, np.array([[0, 0], [3, 2], [1, 0]]), "test")
    assert routes.hops_x.tolist() == [5 * 3 + 2 * 1, 0]  # charged to the sending layer
    assert routes.hops_y.tolist() == [5 * 2, 0]
    assert routes.hops == 27
    assert routes.chip_crossings == 5 * (1 + 1)  # chip (0, 0) to chip (1, 1)
    assert routes.chips == 2


def test_chips_and_the_in_order_placement() -> None:
    assert chip_shape(16) == (4, 4) and chip_shape(128) == (16, 8) and chip_shape(6) == (3, 2)
    mesh = build_mesh(40, 16)  # 3 chips of 4 x 4 in a 2 x 2 grid of chips
    assert mesh == Mesh(8, 8, 4, 4)
    xy = place_in_order(40, mesh)
    assert xy[:5].tolist() == [[0, 0], [1, 0], [2, 0], [3, 0], [0, 1]]
    assert xy[16].tolist() == [4, 0] and xy[32].tolist() == [0, 4]
    assert build_mesh(5) == Mesh(3, 2, 3, 2)  # one chip, the squarest grid that holds the cores
    assert build_mesh(40, 16, 12, 4) == Mesh(12, 4, 4, 4)


def test_a_mesh_too_small_names_both_sizes() -> None:
    with pytest.raises(ConfigError, match="the network needs 100 cores but the mesh of 8 x 8 holds 64"):
        build_mesh(100, 16, 8, 8)
    with pytest.raises(ConfigError, match="not a whole number of chips of 4 x 4"):
        build_mesh(10, 16, 6, 4)


def test_the_partitioned_placement_keeps_clusters_together() -> None:
    """64 cores in 4 cliques whose members are interleaved in graph order (core i in clique i % 4), on one 8 x 8
    chip: in order, every clique spans the chip; partitioned, each clique takes a 4 x 4 quarter."""
    n = 64
    clique = np.arange(n) % 4
    matrix = sp.csr_matrix((clique[:, None] == clique[None]) & ~np.eye(n, dtype=bool), dtype=float)
    traffic = Traffic(matrix, np.zeros(n, dtype=np.int64), ("all",))
    mesh = build_mesh(n, 64)
    in_order, parted = place(traffic, mesh, "in_order"), place(traffic, mesh, "partitioned")
    assert sorted(map(tuple, parted.xy)) == sorted(map(tuple, in_order.xy))  # the same cells, each once
    for c in range(4):  # each clique in one quarter of the chip
        quarter = parted.xy[clique == c] // 4
        assert (quarter == quarter[0]).all()
    assert parted.hops < 0.7 * in_order.hops
    assert place(traffic, mesh, "partitioned").hops == parted.hops  # deterministic


def test_an_unknown_placement_is_refused() -> None:
    traffic = Traffic(sp.csr_matrix((1, 1)), np.zeros(1, dtype=np.int64), ("a",))
    with pytest.raises(ConfigError, match="placement must be one of in_order, partitioned"):
        place(traffic, build_mesh(1), "random")


def test_the_totals_charge_the_placement_with_fewer_hops() -> None:
    from dse.cost.energy import network_cost
    from dse.cost.model import PimCost

    graph = two_dense(hidden=64)
    hw = dataclasses.replace(PIM_CHIP, mapping=dataclasses.replace(PIM_CHIP.mapping, cores_per_chip=4))
    cost = network_cost(graph, hw, PimCost(), layer_resources(graph, hw))
    assert set(cost.noc) == {"in_order", "partitioned"}
    assert cost.noc[cost.placement]["hops"] == min(x["hops"] for x in cost.noc.values())
    assert cost.energy_pj()["noc"] == pytest.approx(cost.noc[cost.placement]["noc_energy_pj"])


def _conv_graph(in_c: int, out_c: int, k: int, size: int, groups: int = 1, masked: bool = False) -> Graph:
    weight = np.ones((out_c, in_c // groups, k, k), dtype=np.float32)
    mask = (np.random.default_rng(0).random(weight.shape) < 0.5) if masked else None
    b = GraphBuilder()
    x = b.add("input", o.Input((in_c, size, size)))
    op = o.CoreOp(weight, np.zeros(out_c, np.float32), groups=groups, mask=mask)
    return b.build([b.add("conv", op, x)])


@pytest.mark.parametrize("chip", [PIM_CHIP, SPIKING_CHIP, SMALL_EXPANDED], ids=["time_multiplexed", "expanded",
                                                                             "expanded_small"])
@pytest.mark.parametrize(("in_c", "out_c", "k", "size", "groups", "masked"),
                         [(3, 16, 3, 12, 1, False), (8, 8, 3, 14, 8, False), (8, 16, 3, 14, 8, False),
                          (4, 6, 3, 10, 1, True)])
def test_core_assignment_gives_the_counted_crossbars(chip, in_c, out_c, k, size, groups, masked) -> None:
    graph = _conv_graph(in_c, out_c, k, size, groups, masked)
    [layer] = layer_resources(graph, chip)
    node = graph["conv"]
    owner = core_assignment(node.op, infer_shapes(graph)["conv"], chip)
    assert sorted(np.unique(owner)) == list(range(layer.crossbars))
    # a crossbar holds at most its logical columns of neurons: channels when it serves every position in turn
    neurons = owner[:, 0, 0] if chip.mapping.reuse == "time_multiplexed" else owner.ravel()
    assert np.bincount(neurons).max() <= chip.logical_cols


@pytest.mark.parametrize("seed", range(6))
def test_a_cores_reads_are_the_inputs_its_outputs_depend_on(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A core's reads (a transposed product on the groups it has outputs in) against autograd: an input is read by
    a core when the sum of that core's outputs has a gradient through a live synapse there. Convolutions with
    groups, strides, asymmetric padding and masks, dense cores, random ownership; with several groups, a core may
    have outputs in only some of them."""
    import torch

    from dse.cost.placement import _Geometry
    from dse.sim.float_exec import conv_core

    rng = np.random.default_rng(seed)
    groups = int(rng.choice([1, 2, 4]))
    c_in, out_c = 2 * groups * int(rng.integers(1, 3)), 2 * groups * int(rng.integers(1, 3))
    dense = seed % 3 == 2
    k = (1, 1) if dense else (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    weight = rng.normal(size=(out_c, c_in // groups, *k)).astype(np.float32)
    mask = rng.random(weight.shape) < 0.6
    stride = (1, 1) if dense else (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    padding = (0, 0, 0, 0) if dense else tuple(int(p) for p in rng.integers(0, 2, size=4))
    op = o.CoreOp(weight * mask, np.zeros(out_c, np.float32), stride=stride, padding=padding, groups=groups,
                  mask=mask.astype(np.float32), dense=dense)
    in_shape = (c_in,) if dense else (c_in, 7, 6)
    x = torch.zeros((1, *in_shape))
    out_shape = tuple(conv_core(x, torch.as_tensor(mask, dtype=torch.float32), None, op).shape[1:])
    owner = rng.integers(0, 4, size=out_shape)
    if seed % 2:  # cores that serve a set of channels (a merge core's: a group) at every position or at a tile of them
        by_channel = np.arange(out_c) // (out_c // groups if groups > 1 else 1) % 2
        owner = np.broadcast_to(by_channel.reshape(-1, *([1] * (owner.ndim - 1))), out_shape).copy()
        if not dense:
            owner = owner * 2 + (np.arange(out_shape[1]) < out_shape[1] // 2)[None, :, None]
    cores = np.arange(4)

    x = torch.zeros((4, *in_shape), requires_grad=True)
    ind = torch.as_tensor(owner[None] == cores.reshape(-1, *([1] * owner.ndim)), dtype=torch.float32)
    (conv_core(x, torch.as_tensor(mask, dtype=torch.float32), None, op) * ind).sum().backward()
    expected = (x.grad > 0).reshape(4, -1).numpy()
    if seed >= 3:  # chunks of a core or two
        monkeypatch.setattr("dse.cost.placement._READ_FLOATS", 2 * int(np.prod(in_shape)) * int(np.prod(k)))
    geometry = _Geometry.of(op, in_shape, owner, 4)
    chunks = list(geometry.chunks())
    assert np.array_equal(np.concatenate(chunks), cores)
    got = np.zeros_like(expected)
    for chunk in chunks:
        reads, columns = geometry.reads(chunk)
        got[np.ix_(chunk, columns)] = reads
    np.testing.assert_array_equal(got, expected)
