"""The "tune" step: the fitted float graph into integer form for the chip, against the teacher's activations
(`dse.tune.multiphase.tune_graph`)."""

from __future__ import annotations

from dse.ir import ops as o
from dse.passes.registry import register_step
from dse.passes.state import CompileState
from dse.tune import tune_graph


@register_step("tune")
def tune(state: CompileState) -> None:
    """Replace `state.graph` (fitted) by its integer form; `state.blocks` gets one report per block. The
    teacher's activations are computed block by block as tuning reaches them: all of them at once do not fit
    for an ImageNet-size network (those of a small one are kept for the next compile: `dse.sim.teachers`)."""
    check_fan_in(state)
    data = state.need_data("tune")
    state.graph = tune_graph(
        state.graph, state.hw, data.calib_x, data.teachers.calibration(state.exact), state.tuning,
        value_range=data.value_range, reports=state.blocks, progress=state.progress,
        chunk_floats=state.chunk_floats,
    )


def check_fan_in(state: CompileState) -> None:
    """Without crossbars (hardware.crossbar.rows=null) the network's fan-in bounds each core's accumulator, not
    the chip's rows (`HardwareSpec.validate` checks those): refused here, before any tuning, where it could pass
    what the simulators hold exactly."""
    if state.hw.crossbar.rows is not None:
        return
    for node in state.graph.of_type(o.CoreOp):
        fan_in = int(node.op.fan_in().max())
        state.hw.check_exact(fan_in, f"core {node.name} of fan-in {fan_in} (hardware.crossbar.rows=null)")
