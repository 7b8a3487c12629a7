"""One trial: compile the shared, prepared network for one point of the space and flatten what it measured.

This is the only code that runs on a worker. It sees no config objects: the driver turns a point into a
`TrialSpec` (plain typed objects), and the worker returns a `TrialOutcome` (plain values), so both travel
through Ray's object store as small pickles.
"""

from __future__ import annotations

import logging
import time
import traceback
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from dse.compile import Prepared, compile
from dse.compile.report import CompileReport
from dse.errors import ConfigError, DseError
from dse.hardware.spec import HardwareSpec
from dse.sim.montecarlo import MonteCarlo
from dse.timelimit import on_main_thread, time_limit
from dse.tune.options import TuneOptions

log = logging.getLogger(__name__)

# What every trial row holds besides its parameters and resources, in column order.
# The accuracies are None (null) where the test data has no labels.
# accuracy_delta_ci95 (a [low, high] pair in report.json) is two columns, accuracy_delta_ci95_low and _high
ACCURACY = ("accuracy_original", "accuracy_compiled", "accuracy_delta_pp", "accuracy_delta_ci95_low",
            "accuracy_delta_ci95_high")
METRICS = (*ACCURACY, "agreement", "logits_rel_error")
STATUS = ("legal", "violations", "state", "error_message", "compile_seconds", "evaluate_seconds", "cpu_seconds")


@dataclass(frozen=True)
class TrialSpec:
    number: int  # the Optuna trial number
    params: dict[str, Any]  # every path the point sets (tied ones included), by dotted name
    hardware: HardwareSpec
    strategy: str
    tuning: TuneOptions
    reencode_k: int = 1
    readout_k: int = 1
    max_memory_gb: float | None = None  # the compile's memory bound (compile.max_memory_gb)
    evaluate: MonteCarlo = MonteCarlo()  # the chip instances drawn from hardware.device (evaluate.*)


@dataclass
class TrialOutcome:
    number: int
    state: str  # "complete" or "fail"
    record: dict[str, Any] = field(default_factory=dict)  # metrics, flattened resources, status
    error_message: str = ""
    # failed for a reason outside the trial (its Ray worker or raylet died, it ran past runner.trial_timeout_s):
    # run it again on resume
    retry: bool = False


def run_trial(prepared: Prepared, spec: TrialSpec) -> TrialOutcome:
    """Compile and measure; a failure (no strategy meets the constraints, a bug) is an outcome, not a raise."""
    start = time.perf_counter()
    cpu = time.process_time()
    try:
        result = compile(prepared, spec.hardware, strategy=spec.strategy, tuning=spec.tuning,
                         reencode_k=spec.reencode_k, readout_k=spec.readout_k, max_memory_gb=spec.max_memory_gb,
                         evaluate=spec.evaluate)
    except DseError as exc:
        return _failed(spec, f"{type(exc).__name__}: {exc}", start)
    except Exception as exc:  # noqa: BLE001 - one broken point must not stop the sweep; the log keeps the trace
        log.error("trial %d (%s) crashed:\n%s", spec.number, spec.params, traceback.format_exc())
        return _failed(spec, f"{type(exc).__name__}: {exc}", start)
    record = flatten_report(result.report)
    # CPU time of the whole trial: unlike wall time, it does not grow when other work shares the cores
    record["cpu_seconds"] = time.process_time() - cpu
    return TrialOutcome(spec.number, "complete", record)


def flatten_report(report: CompileReport) -> dict[str, Any]:
    """One flat row: the metrics, every resource field, the spike activity (dotted names), the cost (energy,
    area and latency with their units in the names: `CostReport.columns`), the status."""
    metrics = report.metrics.to_dict()
    ci = metrics.pop("accuracy_delta_ci95") or (None, None)
    metrics.update(accuracy_delta_ci95_low=ci[0], accuracy_delta_ci95_high=ci[1])
    row: dict[str, Any] = {k: metrics[k] for k in METRICS}
    row.update(_flatten(report.resources.to_dict()))
    if report.spiking is not None:
        row.update(_flatten(report.spiking.to_dict(), "spiking."))
    if report.cost is not None:
        row.update(report.cost.columns())
    if report.device is not None:
        row.update(report.device.columns())
    row["legal"] = report.legal
    row["violations"] = len(report.violations)
    row["state"] = "complete"
    row["error_message"] = "; ".join(report.violations)[:500]
    row["compile_seconds"] = float(report.compile_seconds)
    row["evaluate_seconds"] = float(report.evaluate_seconds)
    return row


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def failed_without_result(spec: TrialSpec, message: str, retry: bool = True) -> TrialOutcome:
    """A failed trial that returned no result. `retry`: for a reason outside it (its worker died, it ran past the
    runner's timeout), so it runs again on resume."""
    return TrialOutcome(spec.number, "fail", {"legal": False, "state": "fail", "error_message": message}, message,
                        retry=retry)


def _failed(spec: TrialSpec, message: str, start: float) -> TrialOutcome:
    record = {"legal": False, "state": "fail", "error_message": message,
              "compile_seconds": time.perf_counter() - start}
    return TrialOutcome(spec.number, "fail", record, message)


class TrialTimeout(BaseException):
    """Raised in a trial past `runner.trial_timeout_s`. Not an Exception: the compile's handlers (`run_trial`'s
    own) must not take it for the trial's own failure."""


def run_trial_threads(prepared: Prepared, spec: TrialSpec, threads: int | None,
                      timeout_s: float | None = None) -> TrialOutcome:
    """`run_trial` on `threads` torch threads (None: as set) and, given `timeout_s`, stopped after that many
    wall seconds (`dse.timelimit`: the runners call this on their process's main thread). Two trials side by
    side on two cores must not oversubscribe them, and a fixed thread count keeps float reductions, and so the
    results, the same on every runner. A trial stopped by the limit is a failure of the infrastructure, as
    when its worker dies: it runs again on resume (`TrialOutcome.retry`)."""
    import torch

    if timeout_s is not None and not on_main_thread():  # no signal would reach it: a limit silently not kept
        raise ConfigError("runner.trial_timeout_s: this trial does not run on its process's main thread, where "
                          "the timer's signal is delivered")
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        with time_limit(timeout_s, TrialTimeout) if timeout_s is not None else nullcontext():
            return run_trial(prepared, spec)
    except TrialTimeout:
        message = f"timeout: the trial ran past runner.trial_timeout_s={timeout_s:g} s"
        log.warning("trial %d (%s): %s", spec.number, spec.params, message)
        return failed_without_result(spec, message)
    finally:
        torch.set_num_threads(before)
