"""The verification steps: "check" (the chip's constraints, `dse.hardware.legality.check`) and "evaluate" (the
compiled network simulated exactly as the chip runs it on the test data, against the original network)."""

from __future__ import annotations

from dse.hardware.legality import check as legality_check
from dse.passes.registry import register_step
from dse.passes.state import CompileState
from dse.sim.device_noise import check_fault_map, load_fault_map
from dse.sim.evaluate import compare, evaluate_chip, require_finite
from dse.sim.montecarlo import evaluate_instances


@register_step("check")
def check(state: CompileState) -> None:
    """`state.violations`: every constraint of the chip the compiled graph breaks (empty: legal)."""
    state.violations = legality_check(state.graph, state.hw)


@register_step("evaluate")
def evaluate(state: CompileState) -> None:
    """`state.evaluation` (the chip's logits, its simulators' agreement, each core's error against the
    teacher) and `state.metrics` (accuracies, top-1 agreement and logit error against the original network),
    in batches of `state.eval_batch` test samples. Compiled outputs holding NaN or Inf are a NonFiniteError,
    never metrics (the original's were checked by `prepare`)."""
    data = state.need_data("evaluate")
    teacher = data.teachers.test(state.exact, len(data.test_x))  # None: not kept, computed here
    state.evaluation = evaluate_chip(state.exact, state.graph, state.hw, data.test_x, seed=state.tuning.seed,
                                     batch_size=state.eval_batch, teacher=teacher)
    # the original's outputs were checked once, by `prepare`, which made them
    require_finite(state.evaluation.logits, "the compiled network's outputs")
    state.metrics = compare(data.original_logits, state.evaluation.logits, data.test_y)
    if not state.hw.device.is_ideal:  # the manufactured chips: the metrics above stay the exact chip's
        state.device = evaluate_instances(state.graph, state.hw, data.test_x, data.original_logits, data.test_y,
                                          state.montecarlo, fault_map(state), batch_size=state.eval_batch or 500)


def fault_map(state: CompileState):  # noqa: ANN201 - dict[str, np.ndarray] | None
    """The known chip's stuck cells (`hardware.device.fault_map`), checked against the compiled network. Read
    from the file once per compile and kept in `state.faults` (which `dse.compile.compile` fills with the map
    its caller read), which "fault_correct" and "evaluate" both use."""
    path = state.hw.device.fault_map
    if path is None:
        return None
    if state.faults is None:
        state.faults = load_fault_map(path)
    check_fault_map(state.graph, state.hw, state.faults, path)
    return state.faults
