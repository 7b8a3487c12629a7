"""The report of a compile, typed: `CompileReport` and its parts. `CompileReport.to_dict()` is report.json
(the keys in this order; the metrics at the top level; a part that does not apply, such as `spiking` on a
chip that does not spike, left out), and what a sweep's trial row flattens (`dse.explore.trial`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from dse.compile.memory import MemoryPlan
from dse.cost.energy import AREA, ENERGY, NetworkCost
from dse.cost.placement import PLACEMENTS
from dse.cost.resources import LayerResources
from dse.hardware.spec import HardwareSpec
from dse.passes.registry import PassRecord
from dse.sim.montecarlo import DeviceReport
from dse.sim.spiking import SpikeStats
from dse.tune.losses import BlockReport


def _present(obj: Any) -> dict[str, Any]:
    """A flat dataclass's fields, in order, those that are None left out (they do not apply)."""
    return {f.name: getattr(obj, f.name) for f in fields(obj) if getattr(obj, f.name) is not None}


@dataclass(frozen=True)
class Metrics:
    """The chip's answers on the test samples against the original network's (`dse.sim.evaluate.compare`)."""

    accuracy_original: float | None  # top-1 accuracy of the original network (fraction; None: no labels)
    accuracy_compiled: float | None  # top-1 accuracy of the chip (fraction; None: no labels)
    accuracy_delta_pp: float | None  # original - compiled, in percentage points (None: no labels)
    # [low, high] 95 % interval of accuracy_delta_pp, paired bootstrap over the test samples
    # (dse.sim.evaluate.paired_delta_ci95); None: no labels
    accuracy_delta_ci95: list[float] | None
    agreement: float  # fraction of test samples whose top-1 class is the original's
    logits_rel_error: float  # ||chip logits - original logits|| / ||original logits|| over the test set
    accuracy_note: str | None = None  # why the accuracies are None ("no test labels")

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.accuracy_note is None:
            del out["accuracy_note"]
        return out


@dataclass(frozen=True)
class Resources:
    """What the compiled network takes on the chip, in total (`dse.cost.resources.total_resources`)."""

    crossbars: int  # crossbars (cores) used
    cells_used: int  # crossbar cells holding a weight
    utilization: float  # cells used / cells of the crossbars used (1.0 on a chip without a crossbar size)
    grouped_crossbars: int  # crossbars of grouped layers (depthwise convolutions, pooling)
    grouped_utilization: float  # their cells used / their cells (0.0 when there are none)
    weight_scales: int  # scale registers the periphery holds: per crossbar, or per neuron column
    neurons: int  # output neurons (logical columns) of every core-op
    synapses: int  # synapses (weights) wired
    core_ops: int  # core-ops of the compiled graph
    depth: int  # core-ops on the longest path from input to output (latency in crossbar steps)
    chips: int | None = None  # chips, when the chip has `mapping.cores_per_chip` (else left out)

    def to_dict(self) -> dict[str, Any]:
        return _present(self)


@dataclass(frozen=True)
class Verify:
    """How the chip's simulators agree with each other (`dse.sim.evaluate.evaluate_chip`); a figure that does
    not apply to the chip is None and left out (all of them on a float chip)."""

    integer_vs_quantized_agreement: float | None = None  # top-1 agreement, integer simulator vs quantized float
    integer_vs_quantized_max_abs: float | None = None  # largest |logit difference| between the two
    verified_samples: int | None = None  # test samples that check ran on (the first batch)
    spiking_vs_integer_agreement: float | None = None  # spiking chip: top-1 agreement, spiking vs integer

    def to_dict(self) -> dict[str, Any]:
        return _present(self)


@dataclass(frozen=True)
class SpikingReport:
    """Activity per inference on a spiking chip."""

    timesteps: int  # T: time steps a value is carried over
    spikes_per_inference: float  # spikes every neuron together emits, per test sample
    synaptic_events_per_inference: float  # synaptic events every core together receives, per test sample
    latency_steps: int  # T steps of input, plus one step of synaptic delay per core layer

    @classmethod
    def of(cls, stats: SpikeStats, hw: HardwareSpec, core_depth: int) -> SpikingReport:
        per = max(stats.samples, 1)
        steps = hw.neuron.timesteps
        return cls(steps, sum(stats.spikes.values()) / per, sum(stats.events.values()) / per,
                   steps + core_depth - 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CostReport:
    """Energy, latency and area per inference (`dse.cost.energy.network_cost`; docs/cost.md), on a chip with a
    cost model."""

    energy_pj: dict[str, float]  # per inference, by component, and "total"
    latency_ns: float  # one inference, input to output
    area_mm2: dict[str, float]  # by component, and "total"
    inferences_per_s: float  # throughput (PIM: layer-pipelined; spiking: one inference at a time)
    tops_per_w: float | None  # 2 x MACs per pJ; None (left out): a spiking chip, whose work is events
    placement: str  # the placement whose NoC energy the totals charge (fewer hops)
    noc: dict[str, dict[str, float]]  # per placement (in_order, partitioned): hops, chip crossings, chips, energy
    latency_steps: int | None = None  # spiking: time steps of an inference
    step_ns_max: float | None = None  # spiking: the longest time step (ns)

    @classmethod
    def of(cls, cost: NetworkCost) -> CostReport:
        return cls(**cost.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return _present(self)

    def columns(self) -> dict[str, float]:
        """The numeric columns of a sweep's trial row, named as `cost_columns` names them."""
        out = {"energy_pj": self.energy_pj["total"]}
        out.update({f"energy_{k}_pj": v for k, v in self.energy_pj.items() if k != "total"})
        out["area_mm2"] = self.area_mm2["total"]
        out.update({f"area_{k}_mm2": v for k, v in self.area_mm2.items() if k != "total"})
        out.update({"latency_ns": self.latency_ns, "inferences_per_s": self.inferences_per_s})
        if self.tops_per_w is not None:
            out["tops_per_w"] = self.tops_per_w
        out.update({f"noc_hops_{p}": self.noc[p]["hops"] for p in PLACEMENTS})
        return {k: float(v) for k, v in out.items()}


def cost_columns(kind: str) -> list[str]:
    """The cost columns of a trial row on a chip of `kind` (pim or spiking), in order: known before any trial
    runs (what `study.objectives` and a figure may name)."""
    return ["energy_pj", *(f"energy_{k}_pj" for k in ENERGY[kind]), "area_mm2", *(f"area_{k}_mm2" for k in AREA[kind]),
            "latency_ns", "inferences_per_s", *(["tops_per_w"] if kind == "pim" else []),
            *(f"noc_hops_{p}" for p in PLACEMENTS)]


def firing_rates(stats: SpikeStats, hw: HardwareSpec) -> dict[str, float]:
    """Per core: spikes per neuron per time step, averaged over the test samples."""
    per = max(stats.samples, 1)
    return {k: v / per / hw.neuron.timesteps / stats.neurons[k] for k, v in stats.spikes.items()}


@dataclass
class CompileReport:
    """What a compile did and measured; `to_dict()` is report.json."""

    model: str  # the network's name
    dataset: str  # the data set's name
    hardware: HardwareSpec  # the chip compiled for
    strategy: str  # how an oversized core-op is fitted: split or prune
    reencode_k: int  # neurons carrying each value across a core boundary
    readout_k: int  # neurons carrying each value the host reads
    tuning: str  # the tuning mode (TuneOptions.mode)
    equalize: bool  # cross-layer equalization before fitting
    bias_correction: bool  # empirical bias correction of rounded weights
    metrics: Metrics  # at the top level of the dict
    test_samples: int  # test samples evaluated
    resources: Resources
    violations: list[str]  # the chip's constraints the compiled graph breaks (`dse.hardware.legality`)
    verify: Verify
    spiking: SpikingReport | None  # None (left out): the chip does not spike
    cost: CostReport | None  # None (left out): the chip has no cost model
    compile_seconds: float  # wall seconds of fitting and tuning
    prepare_seconds: float  # wall seconds of `prepare` (shared by every compile of a sweep)
    evaluate_seconds: float  # wall seconds of checking, the chip simulation, resource counting and cost
    # per measured phase, in order (prepare, fit, tune, evaluate, cost; `prepare` is shared by a sweep's
    # compiles): wall_s and cpu_s (seconds; CPU of every thread), peak_rss_gb, own_peak
    steps: dict[str, dict[str, float]]
    memory: MemoryPlan  # the bound, the estimated peak by part, and the batch sizes chosen
    # per tuned block, in order (`dse.tune.BlockReport`): name, cores, its losses after each phase and, where
    # tuning records them, the training steps each phase ran (what `bench/compile_floor.py` times)
    blocks: list[BlockReport]
    passes: list[PassRecord]  # the trace: every pass and step run, in order, with its seconds and node counts
    device: DeviceReport | None = None  # None (left out): an ideal device; else the drawn chips' accuracy
    # element-wise functions the chip lacks, fitted by the MLP approximator (`dse.passes.approximator`): IR op
    # type -> count; they make the compile inexact even on the ideal chip. Empty (left out): none
    approximated: dict[str, int] | None = None

    @property
    def legal(self) -> bool:
        return not self.violations

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "dataset": self.dataset, "hardware": self.hardware.to_dict(),
            "strategy": self.strategy, "reencode_k": self.reencode_k, "readout_k": self.readout_k,
            "tuning": self.tuning, "equalize": self.equalize, "bias_correction": self.bias_correction,
            **self.metrics.to_dict(),
            "test_samples": self.test_samples,
            "resources": self.resources.to_dict(),
            "legal": self.legal,
            "violations": list(self.violations),
            **({"approximated": dict(self.approximated)} if self.approximated else {}),
            "verify": self.verify.to_dict(),
            **({"device": self.device.to_dict()} if self.device is not None else {}),
            **({"spiking": self.spiking.to_dict()} if self.spiking is not None else {}),
            **({"cost": self.cost.to_dict()} if self.cost is not None else {}),
            "compile_seconds": self.compile_seconds,
            "prepare_seconds": self.prepare_seconds,
            "evaluate_seconds": self.evaluate_seconds,
            "steps": self.steps,
            "memory": self.memory.as_dict(),
            "blocks": [asdict(b) for b in self.blocks],
            "passes": [asdict(r) for r in self.passes],
        }


def layer_rows(layers: list[LayerResources], errors: dict[str, float], rates: dict[str, float] | None,
               cost: NetworkCost | None = None) -> list[dict[str, Any]]:
    """layers.csv: each core-op's resources, its error against the exact graph (its block's, for a core of
    a split), on a spiking chip its firing rate and, with a cost model, its energy (pJ per inference, in total
    and by component), latency (ns) and area (mm^2, in total and by component)."""
    costs = cost.layer_rows() if cost is not None else [{} for _ in layers]
    rows = []
    for lr, layer_cost in zip(layers, costs, strict=True):
        row = lr.as_dict()
        row["error_vs_original"] = errors.get(lr.name, errors.get(lr.block))
        if rates is not None:
            row["firing_rate"] = rates.get(lr.name)
        rows.append({**row, **layer_cost})
    return rows
