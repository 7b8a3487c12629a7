"""The verification steps: "check" (the chip's constraints, `dse.hardware.legality.check`) and "evaluate" (the
compiled network simulated exactly as the chip runs it on the test data, against the original network)."""

from __future__ import annotations

from dse.hardware.legality import check as legality_check
from dse.passes.registry import register_step
from dse.passes.state import CompileState
from dse.sim.evaluate import compare, evaluate_chip, require_finite


@register_step("check")
def check(state: CompileState) -> None:
    """`state.violations`: every constraint of the chip the compiled graph breaks (empty: legal)."""
    state.violations = legality_check(state.graph, state.hw)


@register_step("evaluate")
def evaluate(state: CompileState) -> None:
    """`state.evaluation` (the chip's logits, its simulators' agreement, each core's error against the
    teacher) and `state.metrics` (accuracies, top-1 agreement and logit error against the original network),
    in batches of `state.eval_batch` test samples. Outputs of either network holding NaN or Inf are a
    NonFiniteError, never metrics."""
    data = state.need_data("evaluate")
    state.evaluation = evaluate_chip(state.exact, state.graph, state.hw, data.test_x, seed=state.tuning.seed,
                                     batch_size=state.eval_batch)
    require_finite(data.original_logits, "the original network's outputs")
    require_finite(state.evaluation.logits, "the compiled network's outputs")
    state.metrics = compare(data.original_logits, state.evaluation.logits, data.test_y)
