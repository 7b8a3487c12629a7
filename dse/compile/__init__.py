"""`compile()`: the front door. A trained network and a chip in, a chip-legal network and its report out.

Two steps, so that a sweep pays for the shared part once:

- `prepare(graph, dataset)`: canonicalize and reform the network into exact float core-ops, and compute the
  original network's logits on the test data. Independent of the chip.
- `compile(prepared, hw, strategy=..., tuning=...)`: fit the crossbar, tune into integer form against the
  exact graph's activations (the teachers, computed block by block as tuning reaches them: all of them at once
  do not fit for an ImageNet-size network), check legality, simulate the chip exactly on the test data (in
  batches that bound memory), and count resources.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dse.compile.memory import MemoryPlan, StepMeter, plan_memory
from dse.cost.resources import depth, layer_resources, total_resources
from dse.data.datasets import Dataset
from dse.data.images import Preprocess, normalize_in_graph
from dse.data.loading import load_dataset
from dse.errors import ConfigError, DataError
from dse.hardware.legality import check
from dse.hardware.spec import HardwareSpec
from dse.ir import ops as o
from dse.ir.graph import Graph
from dse.ir.shapes import infer_shapes
from dse.passes import PassRecord, run_pipeline
from dse.passes.approximator import FUNCTIONS
from dse.passes.fit_crossbar import STRATEGIES
from dse.sim.evaluate import compare, evaluate_chip
from dse.sim.float_exec import LazyForward, run_float
from dse.tune.multiphase import BlockReport, TuneOptions, check_quantizable, tune_graph

# the passes register themselves on import
from dse.passes import canonicalize as _canonicalize  # noqa: F401  isort: skip
from dse.passes import reform as _reform  # noqa: F401  isort: skip
from dse.passes import fit_crossbar as _fit  # noqa: F401  isort: skip
from dse.passes import equalize as _equalize  # noqa: F401  isort: skip
from dse.passes import reencode as _reencode  # noqa: F401  isort: skip

log = logging.getLogger(__name__)
MODELS_DIR = Path(__file__).resolve().parent.parent / "data" / "models"

__all__ = ["CompileResult", "Prepared", "check_memory", "compile", "load_model", "prepare"]


def load_model(onnx: str | Path, dataset: str, *, preprocess: Preprocess | None = None,
               calib_samples: int | None = None, test_samples: int | None = None) -> tuple[Graph, Dataset]:
    """Import an ONNX model (a path, or the name of an embedded model) and the samples of `dataset` it is
    compiled with (`Dataset.select`), and check that they fit each other: the per-sample shape, and the labels
    within the network's outputs. An image folder's channels default to the network input's."""
    from dse.frontends.onnx import load_onnx

    path = Path(onnx)
    if not path.suffix and not path.exists() and (MODELS_DIR / f"{onnx}.onnx").exists():
        path = MODELS_DIR / f"{onnx}.onnx"
    graph = load_onnx(path)
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


def check_memory(graph: Graph, dataset: Dataset, *, calib_samples: int | None = None,
                 tuning: TuneOptions | None = None, max_memory_gb: float | None = None) -> MemoryPlan:
    """The memory plan of preparing `graph` on `dataset` and, given `tuning`, compiling it (see
    `dse.compile.memory`). The command lines call it before any work: a run that cannot fit is refused
    (ResourceError) before it starts."""
    n_calib = len(dataset.x_train) if calib_samples is None else min(calib_samples, len(dataset.x_train))
    return plan_memory(graph, calib_samples=n_calib, test_samples=len(dataset.x_test), tuning=tuning,
                       max_memory_gb=max_memory_gb)


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
    seconds: float


def prepare(graph: Graph, dataset: Dataset, *, name: str = "model", calib_samples: int | None = None,
            approximator_width: int = 8, max_memory_gb: float | None = None) -> Prepared:
    """`approximator_width`: hidden units of the MLP that replaces each element-wise function the chip lacks.

    The calibration samples (the first `calib_samples` of ``dataset.x_train``) are read into memory; the test
    samples are read batch by batch, here and when the chip is evaluated. The float runs go in batches that
    keep memory under `max_memory_gb` (see `dse.compile.memory`); a network whose calibration alone cannot fit
    is refused (ResourceError) before any work."""
    start = time.perf_counter()
    trace: list[PassRecord] = []
    if calib_samples is not None or dataset.value_range is None:  # not yet selected (load_model selects)
        dataset = dataset.select(calib_samples)
    batch = check_memory(graph, dataset, max_memory_gb=max_memory_gb).forward_batch
    calib = np.asarray(dataset.x_train[:])
    canonical = run_pipeline(graph, HardwareSpec(), ["canonicalize"], trace)
    # the approximator places its knots where the values reaching each such function really are
    feeds = [n.inputs[0] for n in canonical.of_type(*FUNCTIONS)]
    samples = {k: v.numpy() for k, v in run_float(canonical, calib, keep=feeds, batch_size=batch).items()
               if k in feeds} if feeds else {}
    exact = run_pipeline(canonical, HardwareSpec(),
                         [("reform", {"samples": samples, "approximator_width": approximator_width})], trace)
    x = dataset.x_test  # read a batch at a time: an image folder is decoded as it is read
    original = np.concatenate([run_float(graph, x[s : s + batch], batch_size=batch)[graph.outputs[0]].numpy()
                               for s in range(0, len(x), batch)])
    return Prepared(
        name=name, original=graph, exact=exact, dataset=dataset, calib_x=torch.tensor(calib),
        test_x=dataset.x_test, test_y=dataset.y_test, original_test_logits=original,
        trace=trace,
        seconds=time.perf_counter() - start,
    )


@dataclass
class CompileResult:
    graph: Graph
    report: dict[str, Any]
    layers: list[dict[str, Any]]
    violations: list[str]
    trace: list[PassRecord]
    timings: dict[str, float] = field(default_factory=dict)
    blocks: list[BlockReport] = field(default_factory=list)

    @property
    def legal(self) -> bool:
        return not self.violations


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
) -> CompileResult:
    """Compile the prepared network for chip `hw`. Raises a DseError when no strategy can meet the chip, and
    a ResourceError, before any work, when its memory estimate exceeds `max_memory_gb` (see
    `dse.compile.memory`; None: half the machine's memory)."""
    tuning = tuning or TuneOptions()
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy must be one of {', '.join(STRATEGIES)} (got {strategy!r})")
    hw.validate()
    check_quantizable(hw)
    plan = plan_memory(prepared.original, calib_samples=len(prepared.calib_x), test_samples=len(prepared.test_x),
                       tuning=tuning, max_memory_gb=max_memory_gb)
    meter = StepMeter()
    trace = list(prepared.trace)
    # equalized, the exact graph computes the same function with other per-channel ranges: it is the teacher
    exact = run_pipeline(prepared.exact, hw, ["equalize"], trace) if tuning.equalize else prepared.exact
    with meter.step("fit"):
        fitted = run_pipeline(exact, hw, [("reencode", {"k": reencode_k, "readout_k": readout_k}),
                                          ("fit_crossbar", {"strategy": strategy})], trace)

    blocks: list[BlockReport] = []
    bar = _progress(fitted, progress)
    # training runs many small products (one thread); the baseline a few large ones (every thread)
    with meter.step("tune"), torch_threads(1 if tuning.mode == "multiphase" else torch.get_num_threads()):
        compiled = tune_graph(
            fitted, hw, prepared.calib_x, LazyForward(exact, prepared.calib_x), tuning,
            value_range=prepared.dataset.value_range, reports=blocks, progress=bar, chunk_floats=plan.chunk_floats,
        )
    trace.append(PassRecord("tune", meter.steps["tune"]["wall_s"], len(fitted), len(compiled)))
    del fitted  # its float weights (a split's signed pairs: twice the network's) are not read again
    with meter.step("evaluate"):
        violations = check(compiled, hw)
        ev = evaluate_chip(exact, compiled, hw, prepared.test_x, seed=tuning.seed, batch_size=plan.eval_batch)
        metrics = compare(prepared.original_test_logits, ev.logits, prepared.test_y)
        spike_report = _spike_report(ev.stats, hw, depth(compiled)) if hw.spiking else None
        layers, totals = _resources(compiled, hw, ev.layer_errors(), spike_report)
    report = {
        "model": prepared.name,
        "dataset": prepared.dataset.name,
        "hardware": hw.to_dict(),
        "strategy": strategy,
        "reencode_k": reencode_k,
        "readout_k": readout_k,
        "tuning": tuning.mode,
        "equalize": tuning.equalize,
        "bias_correction": tuning.bias_correction,
        **metrics,
        "test_samples": len(prepared.test_x),
        "resources": totals,
        "legal": not violations,
        "violations": violations,
        "verify": ev.verify,
        **({"spiking": {k: v for k, v in spike_report.items() if k != "firing_rate"}} if spike_report else {}),
        "compile_seconds": meter.seconds("fit", "tune"),
        "prepare_seconds": prepared.seconds,
        "evaluate_seconds": meter.seconds("evaluate"),
        "steps": meter.steps,
        "memory": plan.as_dict(),
        "passes": [r.__dict__ for r in trace],
    }
    return CompileResult(compiled, report, layers, violations, trace,
                         {"compile": report["compile_seconds"], "evaluate": report["evaluate_seconds"]}, blocks)


def _resources(compiled: Graph, hw: HardwareSpec, block_err: dict[str, float],
               spike_report: dict[str, Any] | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Each layer's resources, error against the original and firing rate; the totals."""
    layer_res = layer_resources(compiled, hw)
    totals = total_resources(layer_res, hw)
    totals["depth"] = depth(compiled)
    layers = []
    for lr in layer_res:
        row = lr.as_dict()
        row["error_vs_original"] = block_err.get(lr.name, block_err.get(lr.block))
        if spike_report is not None:
            row["firing_rate"] = spike_report["firing_rate"].get(lr.name)
        layers.append(row)
    return layers, totals


def _spike_report(stats, hw: HardwareSpec, core_depth: int) -> dict[str, Any]:
    """Activity per inference. Latency: T steps of input, plus one step of synaptic delay per core layer."""
    per = max(stats.samples, 1)
    steps = hw.neuron.timesteps
    return {
        "timesteps": steps,
        "spikes_per_inference": sum(stats.spikes.values()) / per,
        "synaptic_events_per_inference": sum(stats.events.values()) / per,
        "latency_steps": steps + core_depth - 1,
        "firing_rate": {k: v / per / steps / stats.neurons[k] for k, v in stats.spikes.items()},
    }


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


def _progress(graph: Graph, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    n_blocks = len({n.block_name for n in graph.of_type(o.CoreOp)})
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
