"""The "cost" step: energy, latency and area of the compiled network on its chip (`dse.cost.energy`), from its
resources and, on a spiking chip, the activity the evaluation measured; cores placed on the chip's mesh both
ways (`dse.cost.placement`). Nothing on a chip without a cost model (`hardware.cost` unset: the ideal chip)."""

from __future__ import annotations

import math

from dse.cost.energy import NetworkCost, network_cost
from dse.cost.model import cost_model
from dse.errors import ConfigError
from dse.hardware.spec import HardwareSpec
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
    check_finite(state.cost, state.hw)


def check_finite(cost: NetworkCost, hw: HardwareSpec) -> None:
    """Refuse (ConfigError) totals past float64, naming the largest coefficient: each coefficient is checked
    finite and positive alone, but one of 1e308 pJ times the network's conversions is Inf, which report.json
    would hold as the JSON-less `Infinity` (and TOPS/W as 0)."""
    totals = {"energy per inference (pJ)": cost.energy_pj()["total"], "area (mm^2)": cost.area_mm2()["total"],
              "latency (ns)": cost.latency_ns}
    for what, value in totals.items():
        if not math.isfinite(value):
            name, largest = max(hw.cost.given().items(), key=lambda kv: kv[1])
            raise ConfigError(f"the chip's {what} is {value}, past float64, with hardware.cost.{name}={largest} "
                              "the largest coefficient: give each one in its unit")
