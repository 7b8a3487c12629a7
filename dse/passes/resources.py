"""The "resources" step: what the compiled graph takes on the chip (`dse.cost.resources`)."""

from __future__ import annotations

from dse.cost.resources import depth, layer_resources, total_resources
from dse.passes.registry import register_step
from dse.passes.state import CompileState


@register_step("resources")
def resources(state: CompileState) -> None:
    """`state.layers` (each core-op's crossbars, cells, neurons, synapses), `state.totals` and `state.depth`."""
    state.layers = layer_resources(state.graph, state.hw)
    state.totals = total_resources(state.layers, state.hw)
    state.depth = depth(state.graph)
