"""Placement of compiled networks on chip_b with 16 cores a chip: the partitioned placement against the in-order one
(issue 12's acceptance: hop-weighted traffic at most 0.7 of in-order on resnet_mnist)."""

from __future__ import annotations

import numpy as np
import pytest
from cost_graphs import preset

from dse.compile import compile as compile_network
from dse.compile import load_model, prepare
from dse.cost.placement import build_mesh, core_traffic, place
from dse.cost.resources import layer_resources
from dse.sim.evaluate import evaluate_chip
from dse.tune import TuneOptions


def placements(model: str, test_samples: int) -> tuple[dict, int]:
    hw = preset("chip_b", cores_per_chip=16)
    graph, data = load_model(model, "mnist", calib_samples=64, test_samples=test_samples)
    prepared = prepare(graph, data, name=model)
    compiled = compile_network(prepared, hw, tuning=TuneOptions(mode="none")).graph
    stats = evaluate_chip(prepared.exact, compiled, hw, prepared.test_x).stats
    layers = layer_resources(compiled, hw)
    traffic = core_traffic(compiled, hw, layers, stats)
    mesh = build_mesh(traffic.cores, 16)
    routes = {p: place(traffic, mesh, p) for p in ("in_order", "partitioned")}
    for r in routes.values():  # every core on its own cell, on the same chips
        assert len({tuple(xy) for xy in r.xy}) == traffic.cores
    assert routes["partitioned"].chips == routes["in_order"].chips == int(np.ceil(traffic.cores / 16))
    return routes, traffic.cores


def test_lenet_partitioned_beats_in_order() -> None:
    routes, _ = placements("lenet_mnist", 20)
    assert routes["partitioned"].hops <= 0.7 * routes["in_order"].hops


@pytest.mark.slow
def test_resnet_partitioned_at_most_0_7_of_in_order() -> None:
    routes, cores = placements("resnet_mnist", 20)
    ratio = routes["partitioned"].hops / routes["in_order"].hops
    print(f"resnet_mnist chip_b, {cores} cores, 16 a chip: partitioned / in-order hops = {ratio:.3f}")
    assert ratio <= 0.7
