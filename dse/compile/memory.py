"""Memory: the bound a compile runs under, the estimate that refuses a run that cannot fit before it starts,
the batch sizes that keep the peak under the bound, and the time and peak memory of each step.

What a compile holds at its peak, per part (bytes, float32 values):

- ``weights``: the network's weights in its four forms (original, exact, fitted, compiled);
- ``calibration``: the tuner's activations on the calibration images, its own and the teacher's, at the
  point of the graph where the most values are alive at once (a block's input and output, a skip
  connection), both graphs, plus the copy a block's output makes when its chunks are joined;
- ``tuning_rows``: the (image, position) rows a conv block trains on, ``tuning.max_rows`` x fan-in, twice
  while they are gathered;
- ``training``: a block's weights while it trains (weights, gradient, two Adam moments, two snapshots);
- ``chunk``: the values of one chunk of images run through a block, one batch of a float run (prepare) or
  of the chip evaluation (both graphs, every core). Batch sizes are chosen so that this part fits what the
  others leave; everything else is fixed by the network, the calibration images and `tuning.max_rows`.

The estimate is meant as an upper bound of the peak resident memory (the Python interpreter and torch add
about 0.4 GB on top, counted in ``runtime``); `docs/scale.md` compares it with measured peaks.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dse.errors import ResourceError
from dse.ir import ops as o
from dse.ir.graph import Graph
from dse.ir.shapes import infer_shapes
from dse.tune.multiphase import TuneOptions

GB = 2**30
FLOAT = 4  # bytes of a float32 value
DEFAULT_FRACTION = 0.5  # of the machine's memory, when no bound is set
RUNTIME_BYTES = int(0.4 * GB)  # the interpreter, torch and onnx, before any data
MAX_CHUNK_FLOATS = 2**25  # the largest chunk (128 MB of values): beyond it, larger chunks are no faster
CHUNK_COPIES = 4  # an op on a chunk makes temporaries of its output's size (codes, products, rounding)
WEIGHT_COPIES = 6  # original, exact, fitted (a split's signed pairs: twice), compiled (float32 + codes)
TRAINING_COPIES = 6  # a training block's weights: value, gradient, two Adam moments, two snapshots
CALIB_COPIES = 5  # tuner and teacher values at the widest point, and the copy joining a block's chunks


def machine_memory_bytes() -> int:
    """Physical memory of this machine."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def memory_bound(max_memory_gb: float | None) -> int:
    """The bound in bytes: `max_memory_gb`, or `DEFAULT_FRACTION` of the machine's memory."""
    if max_memory_gb is None:
        return int(DEFAULT_FRACTION * machine_memory_bytes())
    if not max_memory_gb > 0:
        raise ResourceError(f"compile.max_memory_gb must be > 0 (got {max_memory_gb})")
    return int(max_memory_gb * GB)


@dataclass(frozen=True)
class MemoryPlan:
    """The bound, the estimated peak by part, and the batch sizes chosen to stay under the bound."""

    bound: int  # bytes
    parts: dict[str, int]  # estimated bytes held at the peak, by part (see the module's docstring)
    chunk_floats: int  # values held per chunk of images when a block runs over the calibration data
    forward_batch: int  # images per batch of a float run of the original network (prepare)
    eval_batch: int  # test images per batch of the chip evaluation
    sample_floats: int  # values one sample holds in the evaluation: the smallest chunk

    @property
    def estimate(self) -> int:
        return sum(self.parts.values())

    def as_dict(self) -> dict[str, Any]:
        return {"bound_gb": round(self.bound / GB, 3), "estimate_gb": round(self.estimate / GB, 3),
                "parts_gb": {k: round(v / GB, 3) for k, v in self.parts.items()},
                "chunk_floats": self.chunk_floats, "forward_batch": self.forward_batch,
                "eval_batch": self.eval_batch}


def _live_floats(graph: Graph, shapes: dict[str, tuple[int, ...]]) -> int:
    """The most values per sample alive at once when the graph runs node by node (what a later node still
    reads, and the node being computed)."""
    last_use = {src: i for i, n in enumerate(graph) for src in n.inputs}
    size = {n.name: int(np.prod(shapes[n.name])) for n in graph}
    alive: dict[str, int] = {}
    top = 0
    for i, n in enumerate(graph):
        alive[n.name] = size[n.name]
        top = max(top, sum(alive.values()))
        for src in set(n.inputs):
            if last_use[src] == i and src != n.name:
                alive.pop(src, None)
    return top


def _weights(graph: Graph) -> tuple[int, int]:
    """Weights of the whole graph, and of its largest layer (values)."""
    sizes = [int(np.size(n.op.weight)) for n in graph if isinstance(n.op, (o.Conv, o.Linear, o.CoreOp))]
    return sum(sizes, 0), max(sizes, default=0)


def _tuning_rows(graph: Graph, shapes: dict[str, tuple[int, ...]], calib: int, max_rows: int) -> int:
    """Values of the largest set of training rows: (image, position) pairs x (fan-in + outputs)."""
    top = 0
    for n in graph:
        if isinstance(n.op, o.Conv):
            fan_in = int(np.prod(n.op.weight.shape[1:]))
            out = shapes[n.name]
            rows = min(max_rows, calib * int(np.prod(out[1:])))
            top = max(top, rows * (fan_in + out[0]))
    return top


def plan_memory(graph: Graph, *, calib_samples: int, test_samples: int, tuning: TuneOptions | None,
                max_memory_gb: float | None) -> MemoryPlan:
    """Estimate the peak of compiling `graph` (the network as imported) with `calib_samples` calibration and
    `test_samples` test samples and `tuning` (None: only what `prepare` holds), and choose batch sizes under
    the bound. Raises ResourceError, naming the estimate, the bound and the largest part, when even the
    smallest batches do not fit."""
    bound = memory_bound(max_memory_gb)
    tuned = tuning is not None and tuning.mode == "multiphase"
    max_rows = tuning.max_rows if tuned else 0
    shapes = infer_shapes(graph)
    live = _live_floats(graph, shapes)
    weights, largest = _weights(graph)
    parts = {
        "runtime": RUNTIME_BYTES,
        "weights": WEIGHT_COPIES * weights * FLOAT,
        "calibration": CALIB_COPIES * calib_samples * live * FLOAT,
        "tuning_rows": 2 * _tuning_rows(graph, shapes, calib_samples, max_rows) * FLOAT if tuned else 0,
        "training": TRAINING_COPIES * largest * FLOAT if tuned else 0,
    }
    # the smallest chunk: one sample through the evaluation (every core of both graphs, and the chip's integer
    # values: about three times the network's values per sample); a float run holds less, the live values
    per_sample = 3 * sum(int(np.prod(s)) for s in shapes.values())
    chunk_floats = int(min(MAX_CHUNK_FLOATS, (bound - sum(parts.values())) // (CHUNK_COPIES * FLOAT)))
    if chunk_floats < per_sample:
        parts["chunk"] = CHUNK_COPIES * per_sample * FLOAT
        top = max((k for k in parts if k != "runtime"), key=parts.get)
        raise ResourceError(
            f"estimated peak memory {sum(parts.values()) / GB:.2f} GB exceeds the bound compile.max_memory_gb="
            f"{bound / GB:.3g} GB (largest part: {top} {parts[top] / GB:.2f} GB, for {calib_samples} calibration "
            f"samples); raise the bound or use fewer calibration samples (model.calib_samples) or tuning rows "
            f"(tuning.max_rows)")
    parts["chunk"] = CHUNK_COPIES * chunk_floats * FLOAT
    return MemoryPlan(bound, parts, chunk_floats,
                      forward_batch=int(np.clip(chunk_floats // max(live, 1), 1, max(calib_samples, test_samples, 1))),
                      eval_batch=int(np.clip(chunk_floats // per_sample, 1, max(test_samples, 1))),
                      sample_floats=per_sample)


# --- what each step took ----------------------------------------------------------------------------------


def _reset_peak() -> bool:
    """Restart the kernel's count of this process's peak resident memory (Linux: VmHWM); False where the
    kernel does not offer it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_bytes() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # since the start of the process


@dataclass
class StepMeter:
    """Wall seconds, CPU seconds and peak resident memory of each step of a compile, in order."""

    steps: dict[str, dict[str, float]] = field(default_factory=dict)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Measure the enclosed step. Its peak is the process's, restarted at the step's start on Linux (so
        a step's figure is its own); elsewhere it is the peak since the process started."""
        own = _reset_peak()
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.steps[name] = {"wall_s": round(time.perf_counter() - wall, 3),
                                "cpu_s": round(time.process_time() - cpu, 3),
                                "peak_rss_gb": round(_peak_bytes() / GB, 3), "own_peak": own}

    def seconds(self, *names: str) -> float:
        return sum(self.steps[n]["wall_s"] for n in names if n in self.steps)
