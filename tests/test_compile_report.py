"""The compile pipeline and its typed report: one list of steps, all in the trace; `CompileReport.to_dict()` is
report.json with the keys and values the lower layers compute."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from dse.compile import compile, load_model, prepare
from dse.compile.report import cost_columns
from dse.cost.energy import network_cost
from dse.cost.model import PimCost, SpikingCost, chip_kind, cost_model, cost_to_dict
from dse.cost.resources import depth, layer_resources, total_resources
from dse.hardware.legality import check
from dse.hardware.spec import IO, Cost, Crossbar, HardwareSpec, Mapping, Neuron, Weights
from dse.passes import CompileState, PassError, register_step, run_steps
from dse.passes.registry import STEPS
from dse.sim.evaluate import compare, evaluate_chip
from dse.tune import TuneOptions

# report.json's keys in order, as `compile` wrote them before the report was typed (spiking: a spiking chip's)
KEYS = ["model", "dataset", "hardware", "strategy", "reencode_k", "readout_k", "tuning", "equalize",
        "bias_correction", "accuracy_original", "accuracy_compiled", "accuracy_delta_pp", "accuracy_delta_ci95",
        "agreement", "logits_rel_error", "test_samples", "resources", "legal", "violations", "verify", "spiking",
        "cost", "compile_seconds", "prepare_seconds", "evaluate_seconds", "steps", "memory", "blocks", "passes"]
CHIPS = {  # chip_a and chip_b (conf/hardware), a crossbar chip and a spiking one
    "chip_a": HardwareSpec(name="chip_a", crossbar=Crossbar(256, 256, 4, True), weights=Weights(8), io=IO(6, 8)),
    "chip_b": HardwareSpec(name="chip_b", crossbar=Crossbar(256, 256, 4, False), weights=Weights(4),
                           io=IO(None, None), neuron=Neuron("if", 16, 0.9, "subtract", "rate", ("if", "lif")),
                           mapping=Mapping("expanded")),
}
RESOURCE_KEYS = ["crossbars", "cells_used", "utilization", "grouped_crossbars", "grouped_utilization",
                 "weight_scales", "neurons", "synapses", "core_ops", "depth"]


@pytest.fixture(scope="module")
def prepared():
    graph, data = load_model("mlp_digits", "digits", calib_samples=200, test_samples=100)
    return prepare(graph, data, name="mlp_digits")


@pytest.mark.parametrize("chip", ["chip_a", "chip_b"])
def test_report_dict_is_report_json(prepared, chip: str) -> None:
    hw = CHIPS[chip]
    result = compile(prepared, hw, tuning=TuneOptions(mode="none", equalize=True))
    report = result.report.to_dict()
    assert list(report) == [k for k in KEYS if (hw.spiking or k != "spiking") and k != "cost"]
    assert list(report["resources"]) == RESOURCE_KEYS
    plain = {k: v for k, v in report.items() if k != "hardware"}  # (the spec's tuples are JSON lists)
    assert json.loads(json.dumps(plain)) == plain  # plain JSON values
    # each value is what the layer below computes on the compiled graph
    assert report["hardware"] == hw.to_dict()
    totals = total_resources(layer_resources(result.graph, hw), hw)
    assert report["resources"] == {**totals, "depth": depth(result.graph)}
    assert report["violations"] == check(result.graph, hw) and report["legal"] is (not report["violations"])
    ev = evaluate_chip(_teacher(prepared, hw),
                       result.graph, hw, prepared.test_x, batch_size=result.report.memory.eval_batch)
    metrics = compare(prepared.original_test_logits, ev.logits, prepared.test_y)
    assert {k: report[k] for k in metrics} == metrics
    assert report["verify"] == ev.verify
    assert (report["model"], report["dataset"], report["test_samples"]) == ("mlp_digits", "digits", 100)
    assert (report["tuning"], report["equalize"], report["bias_correction"]) == ("none", True, False)
    assert report["memory"] == result.report.memory.as_dict()
    assert report["blocks"] == [dataclasses.asdict(b) for b in result.blocks] and report["blocks"]
    if hw.spiking:
        steps = hw.neuron.timesteps
        assert report["spiking"]["timesteps"] == steps
        assert report["spiking"]["latency_steps"] == steps + depth(result.graph) - 1
        assert report["spiking"]["spikes_per_inference"] == sum(ev.stats.spikes.values()) / ev.stats.samples


def _teacher(prepared, hw: HardwareSpec):
    """The teacher `compile` evaluates against: the exact graph, equalized (as `TuneOptions(equalize=True)`)."""
    from dse.passes import run_pipeline

    return run_pipeline(prepared.exact, hw, ["equalize"])


def test_the_trace_shows_every_step(prepared) -> None:
    result = compile(prepared, CHIPS["chip_a"], tuning=TuneOptions(mode="none"))
    names = [r.name for r in result.report.passes]
    assert names == ["canonicalize", "reform", "reencode", "fit_crossbar", "tune", "check", "evaluate", "resources",
                     "cost"]
    assert all(r.seconds >= 0 for r in result.report.passes)
    assert list(result.report.steps) == ["prepare", "fit", "tune", "evaluate", "cost"]
    assert all(step["cpu_s"] >= 0 and step["wall_s"] >= 0 for step in result.report.steps.values())
    equalized = compile(prepared, CHIPS["chip_a"], tuning=TuneOptions(mode="none", equalize=True))
    assert [r.name for r in equalized.report.passes][2:4] == ["equalize", "reencode"]


def test_a_failing_step_is_named_with_what_ran_before(prepared) -> None:
    @register_step("test_broken_step")
    def broken(state: CompileState) -> None:
        raise RuntimeError("boom")

    try:
        state = CompileState(HardwareSpec(), prepared.exact, prepared.exact)
        with pytest.raises(PassError, match=r"pass 'test_broken_step' failed \(after: reencode\): RuntimeError: boom"):
            run_steps(state, ["reencode", "test_broken_step"])
    finally:
        del STEPS["test_broken_step"]


def test_importing_the_package_registers_every_step_and_tuning_imports_no_pass() -> None:
    code = ("import sys, dse.tune.multiphase; assert not any(m.startswith(('dse.passes', 'dse.compile')) "
            "for m in sys.modules), 'dse.tune imports upward'; import dse.passes as p; "
            "print(sorted(p.PASSES), sorted(p.STEPS))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["['canonicalize',", "'equalize',", "'fit_crossbar',", "'reencode',", "'reform']",
                           "['check',", "'cost',", "'evaluate',", "'fault_correct',", "'resources',", "'tune']"]


def test_layers_rows_carry_each_cores_error(prepared) -> None:
    result = compile(prepared, CHIPS["chip_a"], tuning=TuneOptions(mode="none"))
    names = [lr.name for lr in layer_resources(result.graph, result.report.hardware)]
    assert [row["name"] for row in result.layers] == names
    assert all(np.isfinite(row["error_vs_original"]) for row in result.layers)


@pytest.mark.parametrize(("chip", "defaults"), [("chip_a", PimCost()), ("chip_b", SpikingCost())])
def test_a_chip_with_a_cost_model_reports_its_cost(prepared, chip: str, defaults) -> None:
    """report.json's "cost" (after "spiking"), layers.csv's cost columns and a trial's cost columns are
    `network_cost` on the compiled graph (the spiking chip's from the evaluation's spike counts)."""
    hw = dataclasses.replace(CHIPS[chip], cost=Cost(**cost_to_dict(defaults)),
                             mapping=dataclasses.replace(CHIPS[chip].mapping, cores_per_chip=2))
    result = compile(prepared, hw, tuning=TuneOptions(mode="none"))
    report = result.report.to_dict()
    assert list(report) == [k for k in KEYS if hw.spiking or k != "spiking"]
    stats = evaluate_chip(prepared.exact, result.graph, hw, prepared.test_x,
                          batch_size=result.report.memory.eval_batch).stats if hw.spiking else None
    layers = layer_resources(result.graph, hw)
    expected = network_cost(result.graph, hw, cost_model(hw), layers, stats)
    assert report["cost"] == {k: v for k, v in expected.to_dict().items() if v is not None}
    assert report["cost"]["noc"]["in_order"]["chips"] == 2  # 3 cores, 2 a chip
    assert report["cost"]["energy_pj"]["total"] > 0 and report["cost"]["area_mm2"]["total"] > 0
    assert [{k: row[k] for k in expected.layer_rows()[0]} for row in result.layers] == expected.layer_rows()
    assert list(result.report.cost.columns()) == cost_columns(chip_kind(hw))


@pytest.mark.parametrize(("model", "dataset", "runs_calibration"),
                         [("mlp_digits", "digits", False), ("mlp_sigmoid_mnist", "mnist", True)])
def test_prepare_runs_the_calibration_set_only_for_a_function_the_chip_lacks(monkeypatch, model: str, dataset: str,
                                                                             runs_calibration: bool) -> None:
    """The approximator of a Sigmoid or Tanh needs the values reaching it; a network without one does not pay
    for a forward pass over the calibration set."""
    import dse.compile as front

    graph, data = load_model(model, dataset, calib_samples=50, test_samples=20)
    calls = []
    real = front.run_float
    monkeypatch.setattr(front, "run_float", lambda g, x, **kw: calls.append(len(x)) or real(g, x, **kw))
    prepare(graph, data, name=model)
    assert (50 in calls) is runs_calibration and 20 in calls


def test_an_output_softmax_is_compared_by_its_logits(prepared) -> None:
    """The compile drops an output Softmax: the original's values its outputs are compared with (logit error)
    are the logits under it, not the probabilities."""
    from dse.ir import ops as o
    from dse.ir.graph import GraphBuilder

    graph, data = load_model("mlp_digits", "digits", calib_samples=200, test_samples=100)
    b = GraphBuilder.from_graph(graph)
    with_softmax = b.build([b.add("probabilities", o.Softmax(0), graph.outputs[0])])
    np.testing.assert_array_equal(prepare(with_softmax, data, name="mlp_digits").original_test_logits,
                                  prepared.original_test_logits)


def test_the_report_names_the_functions_the_approximator_fits(prepared) -> None:
    """A function the chip lacks (here a Sigmoid) goes through the MLP approximator, which is not exact even on
    the ideal chip: report.json's `approximated` counts them by op, and a network without one has no such key."""
    from dse.ir import ops as o
    from dse.ir.graph import GraphBuilder

    graph, data = load_model("mlp_digits", "digits", calib_samples=50, test_samples=20)
    b = GraphBuilder.from_graph(graph)
    with_sigmoid = b.build([b.add("squashed", o.Sigmoid(), graph.outputs[0])])
    ideal = HardwareSpec(name="ideal", crossbar=Crossbar(None, None, 1, True), weights=Weights(None),
                         io=IO(None, None))
    report = compile(prepare(with_sigmoid, data, name="mlp_digits"), ideal, tuning=TuneOptions(mode="none"))
    assert report.report.to_dict()["approximated"] == {"Sigmoid": 1}
    assert "approximated" not in compile(prepared, ideal, tuning=TuneOptions(mode="none")).report.to_dict()
