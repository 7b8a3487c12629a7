"""Memory: the bound a compile runs under, the estimate that refuses a run that cannot fit before it starts,
the batch sizes that keep the peak under the bound, and the time and peak memory of each step.

What a compile holds at its peak, by part (bytes; values are float32):

- ``runtime``: the interpreter, torch and onnx, before any data;
- ``weights``: the network's weights in its forms (original, exact, fitted, compiled);
- the tuner's data at the node of the graph where they are largest (`_working_set`): ``calibration``, the
  values of the calibration images alive there, the tuner's own and the teacher's; ``tuning_rows``, the
  (image, position) rows a convolution trains on (`tuning.max_rows` x (fan-in + outputs)); ``training``, the
  layer's weights while they train (value, gradient, two Adam moments, two snapshots); at a residual Add,
  the merge core's input (each term a signed pair, concatenated and routed: `MERGE_COPIES` x 4 x the Add's
  values for two terms) and its training rows;
- ``chunk``: a chunk of images run through a block, with the temporaries its ops make;
- ``teacher``: a chunk of the teacher's values at the largest node, with its temporaries (`LazyForward` computes a
  node's output at most `LAZY_CHUNK_FLOATS` values at a time, whatever the bound, so that the teacher is the same
  in every run).

The evaluation and the cost come after tuning, when the calibration data are gone. Both start from what the
process holds then (``held``: the runtime and `HELD_WEIGHT_COPIES` x the weights); the evaluation adds a batch
of test samples (every core's values of both graphs, `EVAL_COPIES` per network value), the cost step the
crossbar labels of the compiled graph's wires and a core-op's senders and reads (`COST_COPIES` per network
value of one sample). The chunk and the batches are what the bound chooses; everything else is fixed by the
network, the calibration images and `tuning.max_rows`, and a run whose estimate exceeds the bound even one
sample at a time is refused before it starts. `docs/scale.md` compares the estimate with measured peaks.

What the chip and the strategy multiply (`ChipWork`) is counted too: a population code (`strategy.reencode_k`: k
neurons a value, each reading every copy: k times the fitted network's values, k**2 its weights), copies of the
outputs (`strategy.readout_k`: the output layer's values and weights that many times), spike trains
(`hardware.neuron.timesteps` on a spiking chip: the tuner's bool trains of the calibration images, ``spike_trains``,
and the spiking simulator's float32 trains of every node per test sample) and the cells of the mesh the cost
step places cores on (one chip's at least: `hardware.mapping.cores_per_chip`, or the whole
`hardware.mapping.mesh` where no chip size is set). Each was once a traceback, an out-of-memory kill or a run
of hours at a hostile value; a refusal names the settings that multiply the estimate.
"""

from __future__ import annotations

import logging
import math
import os
import resource
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dse.bounds import check_int
from dse.errors import ResourceError
from dse.hardware.spec import HardwareSpec
from dse.ir import ops as o
from dse.ir.graph import Graph
from dse.ir.shapes import infer_shapes
from dse.sim.float_exec import LAZY_CHUNK_FLOATS
from dse.sim.heap import give_back_freed_memory
from dse.sim.spiking import SPIKE_BATCH
from dse.tune.options import TuneOptions

log = logging.getLogger(__name__)

GB = 2**30
FLOAT = 4  # bytes of a float32 value
DEFAULT_FRACTION = 0.5  # of the machine's memory, when no bound is set
RUNTIME_BYTES = int(0.4 * GB)  # the interpreter, torch and onnx, before any data
MAX_CHUNK_FLOATS = 2**25  # the largest chunk (128 MB of values): beyond it, larger chunks are no faster
CHUNK_COPIES = 4  # an op on a chunk makes temporaries of its output's size (codes, products, rounding)
# original, exact, fitted (a split's signed pairs: twice), compiled (float32; its int8 codes are a quarter
# more, but a layer is compiled only once tuned, after the full-resolution blocks where the peak is): 5,
# calibrated on VGG-16 (docs/scale.md: measured peaks against the estimate)
WEIGHT_COPIES = 5
EXACT_WEIGHT_COPIES = 2  # of those, the original and the exact graph's: a population code does not widen them
# a residual Add's terms as the merge core reads them (signed pairs, concatenated, then routed by a Gather): the
# walk's routed input, and the teacher's concatenation and routing (the exact graph's nodes, both alive while its
# Gather runs). ResNet-50-like tuned on 64 images peaked at 5.81 GB in its first merge block, 0.42 GB over an
# estimate that counted two copies (the walk's concatenation and routing, not the teacher's)
MERGE_COPIES = 3
TRAINING_COPIES = 6  # a training block's weights: value, gradient, two Adam moments, two snapshots
# after tuning: original, exact and compiled weights (a split's signed pairs twice, and its integer codes) and what
# tuning leaves on the heap; VGG-16-like measured 3.77 GB at the evaluate and cost steps' start, 6.5 x its weights
# above the runtime
HELD_WEIGHT_COPIES = 7
# a test sample's values in the evaluation, in network values: VGG-16-like measured 0.60 GB per sample in batches
# of 1 to 8, 0.72 over ten batches of 4 (the heap's fragments), against 0.108 GB of network values
EVAL_COPIES = 7
# the cost step, per network value of one sample (VGG-16-like: 29 M values): its peak under a 6 GB bound, 5.40 GB,
# was 1.40 GB (12.9 x its values) above the held memory's estimate, as the heap is left by the evaluation
COST_COPIES = 14
MAX_EVAL_BYTES = 2**31  # the evaluation's batches hold at most this much (beyond it, larger is no faster)
# the spiking simulator, per network value of a test sample and time step: every node's float32 trains, and a
# core's current over the steps while it integrates
SPIKE_EVAL_COPIES = 2
# the placement, per cell of the chips it places cores on: the cells' coordinates (int64 x, y) and the
# in-order placement's index arithmetic over them (dse.cost.placement)
MESH_CELL_BYTES = 64
# drawn chips (evaluate.instances on a non-ideal device): a core's cell levels of every instance while they are
# drawn (the levels, a normal draw, the clipped and drifted copies: float32), and every core's drawn weights
# (the compiled network's, a split's signed pairs twice) held for the simulation
DRAW_COPIES = 4
COMPILED_WEIGHT_COPIES = 2


@dataclass(frozen=True)
class ChipWork:
    """What the chip and the strategy multiply a compile's memory by (the neutral values: nothing); see the
    module's docstring. `mesh_setting`: the setting that sizes `mesh_cells`, as a refusal names it."""

    population: int = 1  # strategy.reencode_k
    readout: int = 1  # strategy.readout_k
    spike_steps: int = 0  # hardware.neuron.timesteps on a spiking chip, else 0 (no trains)
    mesh_cells: int = 0  # the cells of one chip, which the placement covers at least
    mesh_setting: str = ""
    instances: int = 0  # evaluate.instances: chips drawn from a non-ideal hardware.device (0: none drawn)
    cells_per_weight: int = 1  # the cells one weight takes (bit slices, differential columns)

    @classmethod
    def of(cls, hw: HardwareSpec, reencode_k: int = 1, readout_k: int = 1, instances: int = 1) -> ChipWork:
        check_int("strategy.reencode_k", reencode_k, 1)
        check_int("strategy.readout_k", readout_k, 1)
        check_int("evaluate.instances", instances, 1)
        drawn = 0 if hw.device.is_ideal else instances
        m = hw.mapping
        if m.cores_per_chip is not None:
            cells, setting = m.cores_per_chip, f"hardware.mapping.cores_per_chip={m.cores_per_chip}"
        elif m.mesh is not None:  # no chip size: the whole mesh is one chip
            cells, setting = math.prod(m.mesh), f"hardware.mapping.mesh={list(m.mesh)}"
        else:  # a mesh as large as the network's cores, which its values bound
            cells, setting = 0, ""
        return cls(reencode_k, readout_k, hw.neuron.timesteps if hw.spiking else 0, cells, setting, drawn,
                   hw.columns_per_weight)

    def named(self, cost: int) -> list[str]:
        """The settings that multiply an estimate whose cost step holds `cost` bytes: the mesh's where it is most
        of that step."""
        named = [f"strategy.reencode_k={self.population}"] * (self.population > 1)
        named += [f"strategy.readout_k={self.readout}"] * (self.readout > 1)
        named += [f"hardware.neuron.timesteps={self.spike_steps}"] * (self.spike_steps > 1)
        named += [f"evaluate.instances={self.instances}"] * (self.instances > 1)
        return named + [self.mesh_setting] * (2 * MESH_CELL_BYTES * self.mesh_cells > cost)


def machine_memory_bytes() -> int:
    """Physical memory of this machine."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def memory_bound(max_memory_gb: float | None) -> int:
    """The bound in bytes: `max_memory_gb`, or `DEFAULT_FRACTION` of the machine's memory."""
    if max_memory_gb is None:
        return int(DEFAULT_FRACTION * machine_memory_bytes())
    if not 0 < max_memory_gb < float("inf"):  # inf was an OverflowError (a traceback) in the int below
        raise ResourceError(f"compile.max_memory_gb must be > 0 and finite (got {max_memory_gb})")
    return int(max_memory_gb * GB)


def share_memory(runner: str, workers: int, max_memory_gb: float | None,
                 fits: Callable[[float], bool]) -> tuple[int, float | None]:
    """The trials a runner runs side by side on this machine, and the memory bound of each: with `max_memory_gb`
    set, it is each trial's, and the workers are at most the machine's memory over it; with None (the default,
    `DEFAULT_FRACTION` of the machine for one compile), that share is split, each of n workers getting 1/n of it,
    n lowered while `fits` (whether a trial's plan fits a bound in GB) says a trial cannot fit in its part; the
    bound None where one worker keeps the whole default. Says so (a warning) where the workers are lowered."""
    machine = machine_memory_bytes() / GB
    n = workers
    if max_memory_gb is not None:
        n = min(n, max(1, int(machine // max_memory_gb)))
        bound = max_memory_gb
    else:
        total = DEFAULT_FRACTION * machine
        while n > 1 and not fits(total / n):
            n -= 1
        bound = total / n if n > 1 else None
    if n < workers:
        why = (f"{n} trials under compile.max_memory_gb={max_memory_gb:g} fill this machine's {machine:.1f} GB"
               if max_memory_gb is not None else f"a trial needs more than 1/{n + 1} of half this machine's "
               f"{machine:.1f} GB (the default memory bound, shared by the trials side by side)")
        log.warning("%s: %d trials at once, not %d: %s", runner, n, workers, why)
    return n, bound


@dataclass(frozen=True)
class MemoryPlan:
    """The bound, the estimated peak by part, and the batch sizes chosen to stay under the bound."""

    bound: int  # bytes
    parts: dict[str, int]  # estimated bytes held at the peak, by part (see the module's docstring)
    chunk_floats: int  # values held per chunk of images when a block runs over the calibration data
    forward_batch: int  # images per batch of a float run of the original network (prepare)
    eval_batch: int  # test images per batch of the chip evaluation
    sample_floats: int  # values one test sample holds in the evaluation
    evaluation: int  # bytes held during the evaluation (after tuning: the calibration data are gone)
    cost: int  # bytes held during the cost step (after the evaluation)

    @property
    def estimate(self) -> int:
        """The estimated peak: tuning's (the parts together), or the evaluation's or the cost step's where larger."""
        return max(sum(self.parts.values()), self.evaluation, self.cost)

    def as_dict(self) -> dict[str, Any]:
        return {"bound_gb": round(self.bound / GB, 3), "estimate_gb": round(self.estimate / GB, 3),
                "parts_gb": {k: round(v / GB, 3) for k, v in self.parts.items()},
                "evaluation_gb": round(self.evaluation / GB, 3), "cost_gb": round(self.cost / GB, 3),
                "chunk_floats": self.chunk_floats, "forward_batch": self.forward_batch,
                "eval_batch": self.eval_batch}


def _working_set(graph: Graph, shapes: dict[str, tuple[int, ...]], calib: int, tuning: TuneOptions | None,
                 work: ChipWork) -> tuple[dict[str, int], str]:
    """The tuner's data at the node where they are largest (bytes by part), and that node.

    At a node, the calibration images' values alive (what a later node still reads, and the node's output)
    plus its output once more (the tuner holds its own values and the teacher's); at a convolution, the
    training rows (`tuning.max_rows` (image, position) pairs x (fan-in + outputs)); at a layer with weights,
    `TRAINING_COPIES` of them. A population code widens the tuner's values (not the teacher's) and rows k times
    and its weights k**2 times; on a spiking chip the walk holds the bool trains of the values alive
    (`spike_trains`)."""
    k = work.population
    tuned = tuning is not None and tuning.mode == "multiphase"
    last_use = {src: i for i, n in enumerate(graph) for src in n.inputs}
    size = {n.name: int(np.prod(shapes[n.name])) for n in graph}
    alive: dict[str, int] = {}
    best: tuple[dict[str, int], str] = ({"calibration": 0, "tuning_rows": 0, "training": 0}, "")
    if work.spike_steps:
        best[0]["spike_trains"] = 0
    for i, n in enumerate(graph):
        alive[n.name] = size[n.name]
        rows = weights = 0
        if tuned and isinstance(n.op, o.Conv):
            pairs = min(tuning.max_rows, calib * int(np.prod(shapes[n.name][1:])))
            rows = pairs * (int(np.prod(n.op.weight.shape[1:])) + shapes[n.name][0])
        if tuned and isinstance(n.op, (o.Conv, o.Linear)):
            weights = TRAINING_COPIES * int(np.size(n.op.weight))
        merge = 0
        if isinstance(n.op, o.Add):  # on the chip each term arrives as a signed pair: 2 x terms x its channels
            merge = MERGE_COPIES * 2 * len(n.inputs) * size[n.name]
            if tuned and len(shapes[n.name]) == 3:  # the merge trains on (image, position) rows of that input
                pairs = min(tuning.max_rows, calib * int(np.prod(shapes[n.name][1:])))
                rows = pairs * (2 * len(n.inputs) + 1) * shapes[n.name][0]
        # the walk's values are the compiled network's (k copies), the teacher's the exact one's: of the merge's
        # copies, one is the walk's
        walk = k * (sum(alive.values()) + merge // MERGE_COPIES)
        here = {"calibration": calib * (walk + size[n.name] + merge - merge // MERGE_COPIES) * FLOAT,
                "tuning_rows": k * rows * FLOAT, "training": k * k * weights * FLOAT}
        if work.spike_steps:
            here["spike_trains"] = k * calib * work.spike_steps * sum(alive.values())  # bool: a byte a value
        if sum(here.values()) > sum(best[0].values()):
            best = here, n.name
        for src in set(n.inputs):
            if last_use[src] == i and src != n.name:
                alive.pop(src, None)
    return best


def _readout(graph: Graph, shapes: dict[str, tuple[int, ...]], calib: int, work: ChipWork) -> tuple[int, int]:
    """The values per sample and the bytes in tuning that `strategy.readout_k` copies of the outputs add: the
    output layer's signed pair of outputs and its weights, `readout - 1` times more."""
    if work.readout == 1:
        return 0, 0
    layers = [n for n in graph if isinstance(n.op, (o.Conv, o.Linear, o.CoreOp))]
    out_weights = int(np.size(layers[-1].op.weight)) if layers else 0
    values = 2 * int(np.prod(shapes[graph.outputs[0]])) * (work.readout - 1)
    return values, (CHUNK_COPIES * calib * values + TRAINING_COPIES * 2 * out_weights * (work.readout - 1)) * FLOAT


def _drawn_chips(graph: Graph, work: ChipWork, sample_floats: int) -> int:
    """Bytes the evaluation of `work.instances` drawn chips adds to what the process holds (`dse.sim.montecarlo`):
    every instance's weights, the largest core's cells of every instance while they are drawn, and one test
    sample of every instance at least (its batch is shared among them)."""
    if not work.instances:
        return 0
    layers = [int(np.size(n.op.weight)) for n in graph if isinstance(n.op, (o.Conv, o.Linear, o.CoreOp))]
    compiled = COMPILED_WEIGHT_COPIES * work.population**2  # the compiled weights of a network weight
    drawing = DRAW_COPIES * work.cells_per_weight * compiled * max(layers, default=0)
    return work.instances * (compiled * sum(layers) + drawing + sample_floats) * FLOAT


def _eval_batch(room: int, sample_floats: int, spike_floats: int, test_samples: int) -> int:
    """Test samples per batch of the evaluation: as many as fit `room` bytes (at most `MAX_EVAL_BYTES`, one at
    least), each holding `sample_floats` values, and on a spiking chip `spike_floats` more for each of the
    `SPIKE_BATCH` samples at most that the spiking simulator runs at once."""
    batch = int(np.clip(min(room, MAX_EVAL_BYTES) // (sample_floats * FLOAT), 1, max(test_samples, 1)))
    if batch * sample_floats + min(batch, SPIKE_BATCH) * spike_floats <= room // FLOAT:
        return batch
    wide = (room // FLOAT - SPIKE_BATCH * spike_floats) // sample_floats  # the spiking batch whole
    return int(wide if wide >= SPIKE_BATCH else max(1, room // ((sample_floats + spike_floats) * FLOAT)))


def plan_memory(graph: Graph, *, calib_samples: int, test_samples: int, tuning: TuneOptions | None,
                max_memory_gb: float | None, work: ChipWork | None = None) -> MemoryPlan:
    """Estimate the peak of compiling `graph` (the network as imported) with `calib_samples` calibration and
    `test_samples` test samples and `tuning` (None: only what `prepare` holds) for what `work` multiplies (None:
    nothing), and choose batch sizes under the bound. Raises ResourceError, naming the estimate, the bound, the
    largest part and the settings of `work` that multiply it, when even one sample at a time does not fit."""
    work = work or ChipWork()
    bound = memory_bound(max_memory_gb)
    shapes = infer_shapes(graph)
    sizes = [int(np.prod(s)) for s in shapes.values()]
    weights = sum(int(np.size(n.op.weight)) for n in graph if isinstance(n.op, (o.Conv, o.Linear, o.CoreOp)))
    working, node = _working_set(graph, shapes, calib_samples, tuning, work)
    widened = work.population**2 - 1  # the fitted and compiled weights' growth under a population code
    parts = {"runtime": RUNTIME_BYTES,
             "weights": (WEIGHT_COPIES + (WEIGHT_COPIES - EXACT_WEIGHT_COPIES) * widened) * weights * FLOAT,
             **working}
    readout_values, readout_bytes = _readout(graph, shapes, calib_samples, work)
    if readout_bytes:
        parts["readout"] = readout_bytes
    # the teacher's chunk does not shrink with the bound: VGG-16-like tuned on 64 images peaked while its teacher
    # computed the 224x224 block's output, 0.43 GB above an estimate without this part. The teacher runs the exact
    # graph, whose nodes can be larger than these (the original graph's: a signed pair has twice the channels), a
    # node at most `LAZY_CHUNK_FLOATS` values at a time: that, not this graph's sizes, bounds its chunk
    if tuning is not None:
        parts["teacher"] = CHUNK_COPIES * min(calib_samples * max(sizes), max(LAZY_CHUNK_FLOATS, max(sizes))) * FLOAT
    # a block runs over the calibration data a chunk of images at a time: one image at least (a block's nodes:
    # a few times its largest)
    chunk_floats = int(min(MAX_CHUNK_FLOATS, (bound - sum(parts.values())) // (CHUNK_COPIES * FLOAT)))
    chunk_floats = max(chunk_floats, 4 * max(sizes))
    parts["chunk"] = CHUNK_COPIES * chunk_floats * FLOAT
    # after tuning the calibration data are gone: the evaluation holds, per test sample, every core's values of
    # both graphs and the chip's integer values, and a split's partial sums while a layer runs; the cost step the
    # labels of the compiled graph's wires
    held = parts["runtime"] + (HELD_WEIGHT_COPIES + (HELD_WEIGHT_COPIES - EXACT_WEIGHT_COPIES) * widened
                               ) * weights * FLOAT
    chip_values = work.population * sum(sizes) + readout_values  # the compiled network's values of one sample
    sample_floats = EVAL_COPIES * chip_values
    spike_floats = SPIKE_EVAL_COPIES * work.spike_steps * chip_values  # the spiking simulator's, per sample
    eval_batch = _eval_batch(bound - held, sample_floats, spike_floats, test_samples)
    evaluation = held + (eval_batch * sample_floats + min(eval_batch, SPIKE_BATCH) * spike_floats) * FLOAT
    plan = MemoryPlan(bound, parts, chunk_floats, eval_batch=eval_batch, sample_floats=sample_floats,
                      evaluation=max(evaluation, held + _drawn_chips(graph, work, sample_floats + spike_floats)),
                      cost=held + COST_COPIES * chip_values * FLOAT + MESH_CELL_BYTES * work.mesh_cells,
                      forward_batch=int(np.clip(chunk_floats // max(sizes), 1, max(calib_samples, test_samples, 1))))
    if plan.estimate > bound:
        raise ResourceError(_refusal(plan, node, working, calib_samples, work))
    return plan


def _refusal(plan: MemoryPlan, node: str, working: dict[str, int], calib_samples: int, work: ChipWork) -> str:
    """The line that refuses a plan over its bound, naming its largest part (or the step after tuning that holds
    the most, where that is the peak) and the settings that multiply the estimate."""
    bound, parts = plan.bound, plan.parts
    if parts["runtime"] >= bound:  # no setting of the network's makes it fit: its parts would read "0.00 GB"
        return (f"compile.max_memory_gb={bound / GB:.3g} GB is below what the runtime holds before any network "
                f"({parts['runtime'] / GB:.2f} GB: the interpreter, torch and onnx); raise the bound")
    top = max((k for k in parts if k != "runtime"), key=parts.get)
    where = f" at node {node!r}" if top in working else ""
    if top == "teacher":
        where = " (the teacher's values at the largest node, a chunk of images at a time)"
    largest = f"{top} {parts[top] / GB:.2f} GB{where}"
    if max(plan.evaluation, plan.cost) > sum(parts.values()):
        step = "evaluation" if plan.evaluation >= plan.cost else "cost step"
        largest = f"the {step} after tuning, {max(plan.evaluation, plan.cost) / GB:.2f} GB with the weights"
    named = work.named(plan.cost)
    settings = "".join(f", {s}" for s in named)
    lower = f", or lower {', '.join(s.split('=')[0] for s in named)}" if named else ""
    return (f"estimated peak memory {plan.estimate / GB:.2f} GB exceeds the bound compile.max_memory_gb="
            f"{bound / GB:.3g} GB (largest part: {largest}, with {calib_samples} calibration samples{settings}); "
            f"raise the bound or use fewer calibration samples (model.calib_samples) or tuning rows "
            f"(tuning.max_rows){lower}")


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
        a step's figure is its own: the free memory earlier steps left in the heap is handed back first,
        `dse.sim.heap`); elsewhere it is the peak since the process started."""
        give_back_freed_memory()
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
