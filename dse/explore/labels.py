"""Human names with units for results columns and search parameters (figure axes, table headers)."""

from __future__ import annotations

LABELS = {
    "hardware.weights.bits": "weight precision (bits)",
    "hardware.io.input_bits": "I/O precision (bits)",
    "hardware.io.output_bits": "output (ADC) precision (bits)",
    "hardware.crossbar.rows": "crossbar size (rows)",
    "hardware.crossbar.cols": "crossbar size (columns)",
    "hardware.crossbar.cell_bits": "cell precision (bits)",
    "hardware.neuron.timesteps": "time window (steps)",
    "hardware.neuron.model": "neuron model",
    "strategy.name": "strategy",
    "tuning.mode": "tuning",
    "accuracy_delta_pp": "accuracy loss (pp)",
    "accuracy_compiled": "compiled accuracy (fraction)",
    "agreement": "top-1 agreement (fraction)",
    "logits_rel_error": "relative logit error (fraction)",
    "crossbars": "crossbars (count)",
    "cells_used": "cells used (count)",
    "utilization": "cell utilization (fraction)",
    "neurons": "neurons (count)",
    "synapses": "synapses (count)",
    "core_ops": "core-ops (count)",
    "depth": "depth (core-ops)",
    "chips": "chips (count)",
    "compile_seconds": "compile time (s)",
}
UNIT_SUFFIXES = {"_pj": "pJ", "_nj": "nJ", "_mm2": "mm²", "_ns": "ns", "_us": "µs", "_s": "s", "_seconds": "s",
                 "_bits": "bits", "_steps": "steps"}


def label(column: str, tied: dict[str, str] | None = None) -> str:
    if column == "hardware.crossbar.rows" and tied and tied.get("hardware.crossbar.cols") == column:
        return "crossbar size (rows = columns)"
    if column == "hardware.io.input_bits" and tied and tied.get("hardware.io.output_bits") == column:
        return "I/O precision (DAC = ADC bits)"
    if column in LABELS:
        return LABELS[column]
    name = column.rsplit(".", 1)[-1]
    for suffix, unit in UNIT_SUFFIXES.items():
        if name.endswith(suffix):
            return f"{name[: -len(suffix)].replace('_', ' ')} ({unit})"
    return name.replace("_", " ")
