"""The "cost" step: energy, latency and area of the compiled network on its chip (`dse.cost.energy`), from its
resources and, on a spiking chip, the activity the evaluation measured; cores placed on the chip's mesh both
ways (`dse.cost.placement`). Nothing on a chip without a cost model (`hardware.cost` unset: the ideal chip)."""

from __future__ import annotations

from dse.cost.energy import network_cost
from dse.cost.model import cost_model
from dse.passes.registry import register_step
from dse.passes.state import CompileState


@register_step("cost")
def cost(state: CompileState) -> None:
    """`state.cost`; runs after "evaluate" (the spike counts) and "resources" (each core-op's crossbars)."""
    coeffs = cost_model(state.hw)
    if coeffs is None:
        return
    stats = state.evaluation.stats if state.hw.spiking else None
    state.cost = network_cost(state.graph, state.hw, coeffs, state.layers, stats, mesh=state.hw.mapping.mesh,
                              seed=state.tuning.seed)
