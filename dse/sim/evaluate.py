"""Error against the original network, on held-out data, and the chip's run on it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from dse.errors import NonFiniteError
from dse.hardware.spec import HardwareSpec
from dse.ir import ops as o
from dse.ir.graph import Graph
from dse.ir.shapes import infer_shapes
from dse.sim.float_exec import decode_population, run_float
from dse.sim.integer import run_integer
from dse.sim.spiking import SpikeStats, run_spiking

EVAL_BATCH_FLOATS = 2**27  # values kept per batch of each graph (512 MB of float32)


def require_finite(logits: np.ndarray, what: str) -> None:
    """Refuse (NonFiniteError) outputs holding NaN or Inf: accuracy, agreement and error computed from them
    would look like results (a NaN row's argmax is 0) while meaning nothing."""
    finite = np.isfinite(logits)
    if not finite.all():
        rows = np.flatnonzero(~finite.reshape(len(logits), -1).all(axis=1))
        raise NonFiniteError(f"{what} hold NaN or Inf on {len(rows)} of {len(logits)} test samples (first: sample "
                             f"{int(rows[0])}); the network overflows or its weights are not finite")


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(axis=1) == labels).mean())


def compare(original: np.ndarray, compiled: np.ndarray, labels: np.ndarray | None) -> dict[str, float | str | None]:
    """Top-1 accuracy of both, their difference (percentage points), agreement of top-1, logit error.

    Without labels the accuracies are None (JSON null: not measured, not 0) and ``accuracy_note`` says why. An
    output of more than one axis per sample is read flattened (its values are the classes, as `load_model`
    counts them)."""
    original, compiled = original.reshape(len(original), -1), compiled.reshape(len(compiled), -1)
    # in float64: finite float32 logits near 3e38 overflow a float32 norm (a NaN error for a finite network)
    difference = compiled.astype(np.float64) - original.astype(np.float64)
    denom = float(np.linalg.norm(original.astype(np.float64))) or 1.0
    out: dict[str, float | str | None] = {
        "accuracy_original": None,
        "accuracy_compiled": None,
        "accuracy_delta_pp": None,
        "accuracy_delta_ci95": None,
        "agreement": _agree(original, compiled),
        "logits_rel_error": float(np.linalg.norm(difference) / denom),
    }
    if labels is None:
        out["accuracy_note"] = "no test labels"
        return out
    acc_o, acc_c = accuracy(original, labels), accuracy(compiled, labels)
    out.update(accuracy_original=acc_o, accuracy_compiled=acc_c, accuracy_delta_pp=round((acc_o - acc_c) * 100.0, 6),
               accuracy_delta_ci95=paired_delta_ci95(original.argmax(axis=1) == labels,
                                                     compiled.argmax(axis=1) == labels))
    return out


BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0


def paired_delta_ci95(original_right: np.ndarray, compiled_right: np.ndarray) -> list[float]:
    """95 % interval of the accuracy loss (pp), by a paired bootstrap: the test samples are resampled with
    replacement, each keeping its pair of outcomes (original right?, compiled right?), 10,000 times with a fixed
    seed; the 2.5th and 97.5th percentiles of the loss. Only the discordant samples move the loss, so a resample
    is drawn as its counts of "only the original right" and "only the compiled right" (a multinomial over the
    four outcome pairs: the same distribution as resampling the samples one by one, at no cost per sample).
    No discordant sample gives [0, 0]: the two networks answered alike on every sample."""
    n = len(original_right)
    lost = float(np.sum(original_right & ~compiled_right)) / n  # the compiled network got it wrong, not the original
    won = float(np.sum(~original_right & compiled_right)) / n
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    counts = rng.multinomial(n, [lost, won, max(0.0, 1.0 - lost - won)], size=BOOTSTRAP_RESAMPLES)
    deltas = (counts[:, 0] - counts[:, 1]) * (100.0 / n)
    low, high = np.percentile(deltas, [2.5, 97.5])
    return [round(float(low), 6), round(float(high), 6)]


def _agree(a: np.ndarray, b: np.ndarray) -> float:
    return float((a.argmax(axis=1) == b.argmax(axis=1)).mean())


@dataclass
class ChipEvaluation:
    """The chip's outputs on held-out data, how its simulators agree, and each core's error against the
    exact graph (accumulated over batches as squared norms)."""

    logits: np.ndarray
    verify: dict[str, float]
    stats: SpikeStats = field(default_factory=SpikeStats)
    sq_err: dict[str, float] = field(default_factory=dict)
    sq_ref: dict[str, float] = field(default_factory=dict)

    def layer_errors(self) -> dict[str, float]:
        """Per core of the exact graph: ||chip - exact|| / ||exact|| (||chip|| where the exact value is 0)."""
        return {k: float(np.sqrt(e / self.sq_ref[k])) if self.sq_ref[k] else float(np.sqrt(e))
                for k, e in self.sq_err.items()}


def evaluate_chip(exact: Graph, compiled: Graph, hw: HardwareSpec, x: np.ndarray, *, seed: int = 0,
                  batch_size: int | None = None,
                  teacher: Callable[[np.ndarray, int, list[str]], dict[str, torch.Tensor]] | None = None
                  ) -> ChipEvaluation:
    """Run the compiled network as the chip does (integer simulator; spiking simulator on a spiking chip) on
    `x`, and compare every core with the exact graph's.

    The integer simulator is checked against the quantized float path on the first batch. Batches hold every
    core's values of both graphs for `batch_size` samples (default: as many as fit `EVAL_BATCH_FLOATS`: the
    whole test set of a small network, a few images of an ImageNet-size one). `teacher(xb, start, names)`: the
    exact graph's values of cores `names` on the batch `xb` starting at sample `start` (default: computed here;
    `dse.sim.teachers` keeps them between compiles).
    """
    names = [n.name for n in exact.of_type(o.CoreOp) if n.name in compiled]
    shapes = infer_shapes(exact)
    per_sample = max(sum(int(np.prod(shapes[k])) for k in names), 1)
    batch = batch_size or int(np.clip(EVAL_BATCH_FLOATS // per_sample, 1, max(len(x), 1)))
    out = compiled.outputs[0]
    pop = {k: compiled[k].op.population for k in names}

    def decoded(counts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Codes (or spike counts) of each core as real values, a population's copies summed."""
        return {k: decode_population(torch.from_numpy(counts[k]), pop[k]).numpy() * compiled[k].op.quant.out_scale
                for k in names}

    chip, integer = [], []
    ev = ChipEvaluation(np.zeros(0), {}, sq_err=dict.fromkeys(names, 0.0), sq_ref=dict.fromkeys(names, 0.0))
    for start in range(0, len(x), batch):
        xb = x[start : start + batch]
        reference = teacher(xb, start, names) if teacher is not None else run_float(exact, xb, keep=names)
        if not hw.quantized:  # an unconstrained chip computes the float graph
            values = run_float(compiled, xb, keep=names)
            integer.append(values[out].numpy())
            chip_values = {k: decode_population(values[k], pop[k]).numpy() for k in names}
        else:
            logits, codes = run_integer(compiled, xb, keep=names)
            integer.append(logits)
            chip_values = decoded(codes)
            if start == 0:
                tuned = run_float(compiled, xb)[out].numpy()
                ev.verify = {"integer_vs_quantized_agreement": _agree(logits, tuned),
                             "integer_vs_quantized_max_abs": float(np.abs(logits - tuned).max()),
                             "verified_samples": len(xb)}
        if hw.spiking:  # the chip is the spiking simulator; the integer one is its constant-current model
            logits, stats, counts = run_spiking(compiled, hw.neuron, xb, seed=seed + start, keep=tuple(names))
            chip_values = decoded(counts)
            ev.stats.add(stats)
            chip.append(logits)
        else:
            chip.append(integer[-1])
        for k, v in chip_values.items():
            ref = reference[k].numpy().astype(np.float64)  # squares of values near float32's limit overflow it
            ev.sq_err[k] += float(np.sum((v - ref) ** 2))
            ev.sq_ref[k] += float(np.sum(ref**2))
        del reference, chip_values
    ev.logits = np.concatenate(chip)
    if hw.spiking:
        ev.verify["spiking_vs_integer_agreement"] = _agree(ev.logits, np.concatenate(integer))
    return ev
