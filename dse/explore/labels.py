"""Human names with units for results columns and search parameters (figure axes, table headers), the unit a
physical quantity reads best in, and a short name for one configuration (a point of a figure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

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
    "energy_pj": "energy per inference (pJ)",
    "area_mm2": "area (mm²)",
    "latency_ns": "latency per inference (ns)",
    "inferences_per_s": "throughput (inferences/s)",
    "tops_per_w": "efficiency (TOPS/W)",
    "spiking.spikes_per_inference": "spikes per inference (count)",
    "spiking.synaptic_events_per_inference": "synaptic events per inference (count)",
    "spiking.latency_steps": "latency (time steps)",
}
# a base unit and its larger units (factor from the base): a figure shows values of 1 to 1000 of one of them
SCALES = {"pJ": (("pJ", 1.0), ("nJ", 1e3), ("µJ", 1e6), ("mJ", 1e9)), "ns": (("ns", 1.0), ("µs", 1e3), ("ms", 1e6))}
# a searched parameter in a point's name: its format (value in {}), short enough for a figure
SHORT = {"hardware.weights.bits": "W{}", "hardware.io.input_bits": "IO{}", "hardware.io.output_bits": "ADC{}",
         "hardware.crossbar.rows": "{}r", "hardware.crossbar.cols": "{}c", "hardware.crossbar.cell_bits": "C{}",
         "hardware.neuron.timesteps": "T{}", "hardware.neuron.model": "{}", "strategy.name": "{}",
         "tuning.mode": "{}"}
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


def scaled(column: str, values: Sequence[float]) -> tuple[float, str]:
    """(divisor, axis label) that shows a physical column in the unit its values read best in (energy of
    2.8e6 pJ in µJ); (1, label(column)) for any other column."""
    text = label(column)
    for base, units in SCALES.items():
        if text.endswith(f"({base})"):
            top = max((abs(v) for v in values), default=0.0)
            name, factor = next(((n, f) for n, f in reversed(units) if top >= f), units[0])
            return factor, f"{text[: -len(base) - 2]}({name})"
    return 1.0, text


def configuration(point: Mapping[str, Any], params: Sequence[str], tied: Mapping[str, str] | None = None) -> str:
    """A point's searched values in a few characters ("W8 IO6 256x256"): a square crossbar as rows x rows."""
    tied = tied or {}
    parts = []
    for p in params:
        value = point[p]
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if p == "hardware.crossbar.rows" and tied.get("hardware.crossbar.cols") == p:
            parts.append(f"{value}x{value}")
        else:
            parts.append(SHORT.get(p, p.rsplit(".", 1)[-1] + "={}").format(value))
    return " ".join(parts)
