"""`compile()`: the front door. A trained network and a chip in, a chip-legal network and its report out.

Two steps, so that a sweep pays for the shared part once:

- `prepare(graph, dataset)`: canonicalize and reform the network into exact float core-ops, and compute the
  original network's logits on the test data. Independent of the chip.
- `compile(prepared, hw, strategy=..., tuning=...)`: run the steps of `compile_steps` on a `CompileState`
  (`dse.passes`): equalize (if asked), reencode and fit the crossbar, tune into integer form against the exact
  graph's activations (the teachers, computed block by block as tuning reaches them: all of them at once do
  not fit for an ImageNet-size network), check legality, simulate the chip exactly on the test data (in
  batches that bound memory), count resources and, on a chip with a cost model, cost energy, latency and
  area. Every step is a registered pass, in the trace (report.json's "passes") with its seconds; the result
  carries a typed `CompileReport` (`dse.compile.report`).
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
import types
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dse.bounds import check_int
from dse.choices import check_choice
from dse.compile.memory import ChipWork, MemoryPlan, StepMeter, plan_memory
from dse.compile.report import (
    CompileReport,
    CostReport,
    Metrics,
    Resources,
    SpikingReport,
    Verify,
    firing_rates,
    layer_rows,
)
from dse.cost.model import cost_model
from dse.data.datasets import Dataset
from dse.data.images import Preprocess, normalize_in_graph
from dse.data.loading import load_dataset
from dse.errors import ConfigError, DataError, ModelError
from dse.hardware.spec import HardwareSpec
from dse.ir import ops as o
from dse.ir.graph import Graph
from dse.ir.shapes import infer_shapes
from dse.passes import CompileData, CompileState, PassRecord, Step, run_pipeline, run_steps
from dse.passes.approximator import FUNCTIONS
from dse.passes.canonicalize import is_unit_scale_shift
from dse.passes.fit_crossbar import STRATEGIES
from dse.passes.reform import ApproximatorOutput
from dse.sim.evaluate import require_finite
from dse.sim.float_exec import run_float
from dse.sim.heap import keep_freed_memory
from dse.sim.montecarlo import MonteCarlo
from dse.sim.teachers import Teachers
from dse.sim.threads import compute_threads
from dse.tune import BlockReport, TuneOptions, check_quantizable, network

log = logging.getLogger(__name__)
MODELS_DIR = Path(__file__).resolve().parent.parent / "data" / "models"

__all__ = ["CompileReport", "CompileResult", "Prepared", "check_memory", "compile", "compile_steps", "load_model",
           "load_model_config", "prepare"]


def load_model(onnx: str | Path, dataset: str, *, preprocess: Preprocess | None = None,
               calib_samples: int | None = None, test_samples: int | None = None) -> tuple[Graph, Dataset]:
    """Import an ONNX model (a path, or the name of an embedded model) and the samples of `dataset` it is
    compiled with (`Dataset.select`), and check that they fit each other: the per-sample shape, and the labels
    within the network's outputs. An image folder's channels default to the network input's. A file imported
    before is read from the user's cache (`dse.frontends.onnx_cache`)."""
    from dse.frontends.onnx_cache import load_onnx_file

    path = Path(onnx)
    if not path.suffix and not path.exists() and (MODELS_DIR / f"{onnx}.onnx").exists():
        path = MODELS_DIR / f"{onnx}.onnx"
    graph = load_onnx_file(path)
    shape = tuple(graph.input.op.shape)
    if preprocess is not None and preprocess.channels is None and Path(dataset).is_dir() and shape[0] in (1, 3):
        preprocess = dataclasses.replace(preprocess, channels=shape[0])
    data = load_dataset(dataset, preprocess)
    if preprocess is not None:
        graph = normalize_in_graph(graph, preprocess)  # the chip reads the pixels unnormalized
    if shape != tuple(data.input_shape):
        raise DataError(
            f"model input shape {shape} (batch left out) does not fit dataset {dataset} samples "
            f"{tuple(data.input_shape)}"
        )
    outputs = int(np.prod(infer_shapes(graph)[graph.outputs[0]]))
    if data.num_classes is not None and data.num_classes > outputs:
        raise DataError(f"dataset {dataset} has labels up to {data.num_classes - 1} but model {path.name} has "
                        f"{outputs} outputs")
    return graph, data.select(calib_samples, test_samples)


def load_model_config(m: Any) -> tuple[Graph, Dataset]:
    """`load_model` as a config's `model` group says: its ONNX file (`model.onnx`) or embedded model
    (`model.name`), `model.dataset`, `model.preprocess` and the sample counts. The one way a command or a bench
    loads the model it was configured with."""
    from dse.config import preprocess_from

    return load_model(m.onnx if m.onnx is not None else m.name, m.dataset, preprocess=preprocess_from(m.preprocess),
                      calib_samples=m.calib_samples, test_samples=m.test_samples)


def check_memory(graph: Graph, dataset: Dataset, *, calib_samples: int | None = None,
                 tuning: TuneOptions | None = None, max_memory_gb: float | None = None,
                 work: ChipWork | None = None) -> MemoryPlan:
    """The memory plan of preparing `graph` on `dataset` and, given `tuning`, compiling it for what `work`
    multiplies (`ChipWork.of` the chip and the strategy; see `dse.compile.memory`). The command lines call it
    before any work: a run that cannot fit is refused (ResourceError) before it starts."""
    n_calib = len(dataset.x_train) if calib_samples is None else min(calib_samples, len(dataset.x_train))
    return plan_memory(graph, calib_samples=n_calib, test_samples=len(dataset.x_test), tuning=tuning,
                       max_memory_gb=max_memory_gb, work=work)


@dataclass
class Prepared:
    """Everything about a network that does not depend on the chip, computed once and shared."""

    name: str
    original: Graph
    exact: Graph  # canonical, reformed: float core-ops, equal to the original
    dataset: Dataset
    calib_x: torch.Tensor
    test_x: Any  # float32 (N, *input shape): an array or Samples, read in slices
    test_y: np.ndarray | None  # None: no test labels (agreement and logit error only)
    original_test_logits: np.ndarray
    trace: list[PassRecord]
    seconds: float  # wall seconds of `prepare`
    steps: dict[str, dict[str, float]] = field(default_factory=dict)  # "prepare": its StepMeter figures
    # the exact network's values on the calibration and test data, kept for the next compile (a sweep's trials)
    teachers: Teachers = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.teachers = Teachers(self.exact, self.calib_x)


def prepare(graph: Graph, dataset: Dataset, *, name: str = "model", calib_samples: int | None = None,
            approximator_width: int = 8, approximator_output: ApproximatorOutput = "merged",
            max_memory_gb: float | None = None) -> Prepared:
    """`approximator_width`: hidden units of the MLP that replaces each element-wise function the chip lacks;
    `approximator_output`: its output layer merged into the weights of what reads it, or a core of its own.

    The calibration samples (the first `calib_samples` of ``dataset.x_train``) are read into memory; the test
    samples are read batch by batch, here and when the chip is evaluated. The float runs go in batches that
    keep memory under `max_memory_gb` (see `dse.compile.memory`); a network whose calibration alone cannot fit
    is refused (ResourceError) before any work; one whose outputs on the test data hold NaN or Inf, by a
    NonFiniteError."""
    if len(graph.outputs) != 1:  # the compile measures and tunes one output: another would go unchecked
        raise ModelError(f"network {name!r} has {len(graph.outputs)} outputs ({', '.join(map(repr, graph.outputs))}); "
                         "dse compiles a network of one output: export the classifier's output alone")
    check_int("strategy.approximator_width", approximator_width, 2)
    check_choice("strategy.approximator_output", approximator_output, ApproximatorOutput)
    start, meter = time.perf_counter(), StepMeter()
    keep_freed_memory()  # freed activations are reused, not faulted in again (dse.sim.heap)
    with meter.step("prepare"), compute_threads():
        return _prepare(graph, dataset, name, calib_samples, approximator_width, approximator_output,
                        max_memory_gb, start, meter)


def _prepare(graph: Graph, dataset: Dataset, name: str, calib_samples: int | None, approximator_width: int,
             approximator_output: ApproximatorOutput, max_memory_gb: float | None, start: float,
             meter: StepMeter) -> Prepared:
    trace: list[PassRecord] = []
    if calib_samples is not None or dataset.value_range is None:  # not yet selected (load_model selects)
        dataset = dataset.select(calib_samples)
    batch = check_memory(graph, dataset, max_memory_gb=max_memory_gb).forward_batch
    calib = np.asarray(dataset.x_train[:])
    dataset.require_finite(calib, "calibration")
    canonical = run_pipeline(graph, HardwareSpec(), ["canonicalize"], trace)
    # the approximator places its knots where the values reaching each such function really are
    feeds = [n.inputs[0] for n in canonical.of_type(*FUNCTIONS)]
    samples = {k: v.numpy() for k, v in run_float(canonical, calib, keep=feeds, batch_size=batch).items()
               if k in feeds} if feeds else {}
    exact = run_pipeline(canonical, HardwareSpec(),
                         [("reform", {"samples": samples, "approximator_width": approximator_width,
                                      "approximator_output": approximator_output})], trace)
    if not exact.of_type(o.CoreOp):  # nothing to map, cost or tune: the cost model would divide by no cores
        raise ModelError(f"network {name!r} leaves nothing for the chip to compute (its output is its input, up "
                         "to ops that only move values)")
    x = dataset.x_test  # read a batch at a time: an image folder is decoded as it is read
    ref = _compared_output(graph)
    original = []
    for s in range(0, len(x), batch):
        xb = np.asarray(x[s : s + batch])
        dataset.require_finite(xb, "test", s)
        original.append(run_float(graph, xb, keep=[ref], batch_size=batch)[ref].numpy())
    original = np.concatenate(original)
    require_finite(original, "the original network's outputs")  # before any chip work: no metric would mean anything
    return Prepared(
        name=name, original=graph, exact=exact, dataset=dataset, calib_x=torch.tensor(calib),
        test_x=dataset.x_test, test_y=dataset.y_test, original_test_logits=original,
        trace=trace, seconds=time.perf_counter() - start, steps=meter.steps,  # filled in as `prepare` returns
    )


def _compared_output(graph: Graph) -> str:
    """The original's value the compiled network's outputs are compared with: its output, or the logits under
    the output's Softmax ops, which the compile drops (`drop_output_softmax`: the chip's outputs are those
    logits). Canonicalization drops every Identity (`drop_identity`) and every ScaleShift by 1 (an Add of 0,
    `drop_unit_scale_shift`), and then each Softmax that has become the output, so a chain of them (Softmax,
    Identity, an Add of 0, Softmax) goes whole, and so must the comparison's (its logits_rel_error compared the
    logits with a Softmax's 1.0 under an Add of 0)."""
    name, shapes = graph.outputs[0], None
    while True:
        node = graph[name]
        if isinstance(node.op, o.ScaleShift):  # the shapes only where one is met: a ScaleShift may broadcast
            shapes = shapes or infer_shapes(graph)
            if not is_unit_scale_shift(node.op, shapes[node.inputs[0]], shapes[name]):
                return name
        elif not isinstance(node.op, o.Identity | o.Softmax):
            return name
        name = node.inputs[0]


@dataclass
class CompileResult:
    graph: Graph
    report: CompileReport
    layers: list[dict[str, Any]]  # layers.csv: per core-op, its resources, error and firing rate
    violations: list[str]
    trace: list[PassRecord]
    timings: dict[str, float] = field(default_factory=dict)
    blocks: list[BlockReport] = field(default_factory=list)

    @property
    def legal(self) -> bool:
        return not self.violations


def compile_steps(strategy: str, tuning: TuneOptions, reencode_k: int, readout_k: int,
                  correct_faults: bool = False) -> list[tuple[str | None, Step]]:
    """The steps of `compile`, in order, each with the measured phase it belongs to (report.json's "steps";
    None: not measured on its own). Equalized, the exact graph computes the same function with other
    per-channel ranges: it is then the teacher. `correct_faults`: a known fault map (hardware.device)."""
    return [
        *([(None, "equalize")] if tuning.equalize else []),
        ("fit", ("reencode", {"k": reencode_k, "readout_k": readout_k})),
        ("fit", ("fit_crossbar", {"strategy": strategy})),
        ("tune", "tune"),
        *([("tune", "fault_correct")] if correct_faults else []),
        ("evaluate", "check"),
        ("evaluate", "evaluate"),
        ("evaluate", "resources"),
        ("cost", "cost"),
    ]


def compile(  # noqa: A001 - the front door is called compile, as in DESIGN.md
    prepared: Prepared,
    hw: HardwareSpec,
    *,
    strategy: str = "split",
    tuning: TuneOptions | None = None,
    reencode_k: int = 1,
    readout_k: int = 1,
    progress: bool = False,
    max_memory_gb: float | None = None,
    evaluate: MonteCarlo | None = None,
    fault_map: dict[str, np.ndarray] | None = None,
) -> CompileResult:
    """Compile the prepared network for chip `hw`: run `compile_steps` on it. Raises a DseError when no
    strategy can meet the chip, and a ResourceError, before any work, when its memory estimate exceeds
    `max_memory_gb` (see `dse.compile.memory`; None: half the machine's memory). `evaluate`: the chip instances
    drawn from `hw.device` the compiled network is also measured on (report.json's `device`). `fault_map`: the
    arrays of `hw.device.fault_map` where the caller has read them already (`load_fault_map`; None: read here,
    once)."""
    tuning = tuning or TuneOptions()
    evaluate = evaluate or MonteCarlo()
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy must be one of {', '.join(STRATEGIES)} (got {strategy!r})")
    if fault_map is not None and hw.device.fault_map is None:  # it would be ignored: the chip has no known map
        raise ConfigError("compile(fault_map=...) is given a fault map, but hw.device.fault_map is not set: set it "
                          "to the map's file (the compile reads the map given, and names the file in its report)")
    hw.validate()
    cost_model(hw)  # a bad cost coefficient is refused before any work
    check_quantizable(hw)
    evaluate.check(hw)
    plan = plan_memory(prepared.original, calib_samples=len(prepared.calib_x), test_samples=len(prepared.test_x),
                       tuning=tuning, max_memory_gb=max_memory_gb,
                       work=ChipWork.of(hw, reencode_k, readout_k, evaluate.instances))
    data = CompileData(prepared.calib_x, prepared.dataset.value_range, prepared.test_x, prepared.test_y,
                       prepared.original_test_logits, prepared.teachers)
    state = CompileState(hw, prepared.exact, prepared.exact, data, tuning, chunk_floats=plan.chunk_floats,
                         eval_batch=plan.eval_batch, progress=_progress(prepared.exact, progress,
                                                                         network.wanted(hw, tuning)),
                         montecarlo=evaluate, faults=fault_map)
    meter = StepMeter(dict(prepared.steps))
    trace = list(prepared.trace)
    correct = hw.device.fault_map is not None and hw.device.fault_map_known
    keep_freed_memory()  # freed activations are reused, not faulted in again (dse.sim.heap)
    with compute_threads():  # one thread, the caller's for the few big products (dse.sim.threads)
        for phase, steps in groupby(compile_steps(strategy, tuning, reencode_k, readout_k, correct),
                                    key=lambda s: s[0]):
            with meter.step(phase) if phase else nullcontext():
                run_steps(state, [step for _, step in steps], trace)
    report = _report(prepared, state, strategy, reencode_k, readout_k, meter, plan, trace)
    rates = firing_rates(state.evaluation.stats, hw) if hw.spiking else None
    layers = layer_rows(state.layers, state.evaluation.layer_errors(), rates, state.cost)
    return CompileResult(state.graph, report, layers, report.violations, trace,
                         {"compile": report.compile_seconds, "evaluate": report.evaluate_seconds}, state.blocks)


def _report(prepared: Prepared, state: CompileState, strategy: str, reencode_k: int, readout_k: int,
            meter: StepMeter, plan: MemoryPlan, trace: list[PassRecord]) -> CompileReport:
    hw, tuning = state.hw, state.tuning
    return CompileReport(
        model=prepared.name, dataset=prepared.dataset.name, hardware=hw, strategy=strategy,
        reencode_k=reencode_k, readout_k=readout_k, tuning=tuning.mode, equalize=tuning.equalize,
        bias_correction=tuning.bias_correction, metrics=Metrics(**state.metrics),
        test_samples=len(prepared.test_x), resources=Resources(**{**state.totals, "depth": state.depth}),
        violations=state.violations, verify=Verify(**state.evaluation.verify),
        spiking=SpikingReport.of(state.evaluation.stats, hw, state.depth) if hw.spiking else None,
        cost=CostReport.of(state.cost) if state.cost is not None else None,
        compile_seconds=meter.seconds("fit", "tune"), prepare_seconds=prepared.seconds,
        evaluate_seconds=meter.seconds("evaluate", "cost"), steps=meter.steps, memory=plan, blocks=list(state.blocks),
        passes=trace, device=state.device, approximated=_approximated(prepared.original),
    )


def _approximated(graph: Graph) -> dict[str, int]:
    """The element-wise functions of `graph` that the MLP approximator fits (`FUNCTIONS`), by IR op type."""
    return dict(Counter(type(n.op).__name__ for n in graph.of_type(*FUNCTIONS)))


def _progress(graph: Graph, enabled: bool, network_phase: bool):
    """A bar of the blocks tuning reaches (and its end-to-end phase, `dse.tune.network`, where it runs one)."""
    if not enabled:
        return None
    from tqdm import tqdm

    n_blocks = len({n.block_name for n in graph.of_type(o.CoreOp)}) + int(network_phase)
    bar = tqdm(total=n_blocks, desc="tuning", unit="block", leave=False)

    def step(name: str) -> None:
        bar.set_postfix_str(name)
        bar.update(1)

    return step


class _FrontDoor(types.ModuleType):
    """`dse.compile` names both this package and its front door (the import system binds the package to that
    name in `dse`): calling the package calls `compile`, so ``dse.compile(prepared, hw)`` works whichever was
    imported first."""

    def __call__(self, *args: Any, **kwargs: Any) -> CompileResult:
        return compile(*args, **kwargs)


sys.modules[__name__].__class__ = _FrontDoor
