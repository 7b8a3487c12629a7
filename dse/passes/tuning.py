"""The "tune" step: the fitted float graph into integer form for the chip, against the teacher's activations
(`dse.tune.multiphase.tune_graph`)."""

from __future__ import annotations

from dse.passes.registry import register_step
from dse.passes.state import CompileState
from dse.tune import tune_graph


@register_step("tune")
def tune(state: CompileState) -> None:
    """Replace `state.graph` (fitted) by its integer form; `state.blocks` gets one report per block. The
    teacher's activations are computed block by block as tuning reaches them: all of them at once do not fit
    for an ImageNet-size network (those of a small one are kept for the next compile: `dse.sim.teachers`)."""
    data = state.need_data("tune")
    state.graph = tune_graph(
        state.graph, state.hw, data.calib_x, data.teachers.calibration(state.exact), state.tuning,
        value_range=data.value_range, reports=state.blocks, progress=state.progress,
        chunk_floats=state.chunk_floats,
    )
