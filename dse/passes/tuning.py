"""The "tune" step: the fitted float graph into integer form for the chip, against the teacher's activations
(`dse.tune.multiphase.tune_graph`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from dse.passes.registry import register_step
from dse.passes.state import CompileState
from dse.sim.float_exec import LazyForward
from dse.tune import tune_graph


@register_step("tune")
def tune(state: CompileState) -> None:
    """Replace `state.graph` (fitted) by its integer form; `state.blocks` gets one report per block. The
    teacher's activations are computed block by block as tuning reaches them: all of them at once do not fit
    for an ImageNet-size network."""
    data = state.need_data("tune")
    # training runs many small products (one thread); the baseline a few large ones (every thread)
    with torch_threads(1 if state.tuning.mode == "multiphase" else torch.get_num_threads()):
        state.graph = tune_graph(
            state.graph, state.hw, data.calib_x, LazyForward(state.exact, data.calib_x), state.tuning,
            value_range=data.value_range, reports=state.blocks, progress=state.progress,
            chunk_floats=state.chunk_floats,
        )


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Tuning runs many small matrix products: one thread is as fast as two on an idle machine and several
    times faster on a busy one (OpenMP workers spin against each other), and a sweep runs trials side by side."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
