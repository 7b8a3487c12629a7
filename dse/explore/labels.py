"""Human names with units for results columns and search parameters (figure axes, table headers), the unit a
physical quantity reads best in, and a short name for one configuration (a point of a figure)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

LABELS = {
    "hardware.weights.bits": "weight precision (bits)",
    "hardware.io.input_bits": "I/O precision (bits)",
    "hardware.io.output_bits": "output (ADC) precision (bits)",
    "hardware.crossbar.rows": "crossbar size (rows)",
    "hardware.crossbar.cols": "crossbar size (columns)",
    "hardware.crossbar.cell_bits": "cell precision (bits)",
    "hardware.crossbar.spare_columns": "spare columns per crossbar (count)",
    "hardware.neuron.timesteps": "time window (steps)",
    "hardware.neuron.model": "neuron model",
    "strategy.name": "strategy",
    "tuning.mode": "tuning",
    "hardware.cost.dac_bits": "DAC width (bits)",
    "hardware.cost.adc_8b_pj_per_conversion": "8-bit ADC energy (pJ per conversion)",
    "accuracy_delta_pp": "accuracy loss (pp)",
    "hardware.device.programming_sigma": "programming σ (fraction of range)",
    "hardware.device.stuck_high": "stuck-high rate (= stuck-low)",
    "hardware.device.adc_noise_lsb": "ADC noise (s.d., LSB)",
    "tuning.noise_aware": "noise-aware tuning",
    "device.accuracy_delta_pp_mean": "accuracy loss, drawn chips' mean (pp)",
    "device.accuracy_delta_pp_p95": "accuracy loss of the 5th-percentile chip (pp)",
    "device.accuracy_delta_pp_std": "s.d. of the accuracy loss over drawn chips (pp)",
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
# a searched parameter in a point's name: its format (value in {}), short enough for a figure, and its meaning
SHORT = {"hardware.weights.bits": ("W{}", "W: weight bits"), "hardware.io.input_bits": ("IO{}", "IO: input bits"),
         "hardware.io.output_bits": ("ADC{}", "ADC: ADC bits"), "hardware.crossbar.rows": ("{}r", "r: crossbar rows"),
         "hardware.crossbar.cols": ("{}c", "c: crossbar columns"),
         "hardware.crossbar.cell_bits": ("C{}", "C: cell bits"),
         "hardware.crossbar.spare_columns": ("S{}", "S: spare columns"),
         "hardware.neuron.timesteps": ("T{}", "T: time steps"),
         "hardware.neuron.model": ("{}", ""), "strategy.name": ("{}", ""), "tuning.mode": ("{}", ""),
         "hardware.cost.dac_bits": ("D{}", "D: DAC width (bits)"), "tuning.seed": ("s{}", "s: tuning seed")}
# a tied pair in a point's name: the searched path, the one that copies it, the format and its meaning
TIED_SHORT = {"hardware.crossbar.rows": ("hardware.crossbar.cols", "{0}x{0}", "crossbar rows x columns"),
              "hardware.io.input_bits": ("hardware.io.output_bits", "IO{}", "IO: input = ADC bits")}
STATISTICS = {"std": "s.d.", "min": "min.", "max": "max."}  # a summary over seeds, as a header names it
PARTS = {"adc": "ADC", "dac": "DAC", "noc": "NoC", "shift_add": "shift-and-add"}  # cost components, as written
UNIT_SUFFIXES = {"_pj": "pJ", "_nj": "nJ", "_mm2": "mm²", "_ns": "ns", "_us": "µs", "_s": "s", "_seconds": "s",
                 "_bits": "bits", "_steps": "steps"}


def label(column: str, tied: dict[str, str] | None = None) -> str:
    if column == "hardware.crossbar.rows" and tied and tied.get("hardware.crossbar.cols") == column:
        return "crossbar size (rows = columns)"
    if column == "hardware.io.input_bits" and tied and tied.get("hardware.io.output_bits") == column:
        return "I/O precision (input = ADC bits)"  # the DACs are hardware.cost.dac_bits wide
    if column in LABELS:
        return LABELS[column]
    spread = re.fullmatch(r"(.+)_(std|min|max)", column)  # a summary over tuning seeds (dse.explore.repeats)
    if spread and spread.group(1) in LABELS:
        return f"{STATISTICS[spread.group(2)]} of {LABELS[spread.group(1)]}"
    component = re.fullmatch(r"(energy|area)_(\w+)_(pj|mm2)", column)  # a cost component's column
    if component:
        kind, part, _ = component.groups()
        part = PARTS.get(part, part.replace("_", " "))
        return f"{part} {LABELS[f'{kind}_{component.group(3)}']}"
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
    """A point's searched values in a few characters ("W8 IO6 256x256"; `naming_key` says what they are)."""
    parts = []
    for p in params:
        value = point[p]
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        parts.append(_short(p, tied)[0].format(value))
    return " ".join(parts)


def merge_names(names: Sequence[str]) -> str:
    """One name for designs that share a point: the parts they differ in joined by "/" ("W4 64x64/128x128");
    names of different shapes one per line."""
    unique = list(dict.fromkeys(names))
    parts = [n.split(" ") for n in unique]
    if len({len(p) for p in parts}) != 1:
        return "\n".join(unique)
    return " ".join("/".join(dict.fromkeys(column)) for column in zip(*parts, strict=True))


def naming_key(params: Sequence[str], tied: Mapping[str, str] | None = None, width: int = 1000) -> str:
    """What the parts of `configuration`'s names stand for ("W: weight bits, IO: input = ADC bits, ..."), in lines
    of at most `width` characters broken between the parts."""
    lines: list[str] = []
    for meaning in (m for m in (_short(p, tied)[1] for p in params) if m):
        if lines and len(lines[-1]) + 2 + len(meaning) <= width:
            lines[-1] += f", {meaning}"
        else:
            lines.append(meaning)
    return ",\n".join(lines)


def _short(path: str, tied: Mapping[str, str] | None) -> tuple[str, str]:
    pair = TIED_SHORT.get(path)
    if pair is not None and (tied or {}).get(pair[0]) == path:
        return pair[1], pair[2]
    name = path.rsplit(".", 1)[-1]
    return SHORT.get(path, (f"{name}={{}}", ""))


def fixed_settings(values: Mapping[str, Any], swept: Sequence[str]) -> str:
    """The main chip and compile settings a sweep does not vary, named as `configuration` names them, with
    their key ("W8 IO6 ADC8 256x256 relu split multiphase (W: weight bits, ...)"); a setting that does not
    apply (None: a float value) or a single time step is left out."""
    paths = [p for p in SHORT if p not in swept and values.get(p) is not None
             and not (p == "hardware.neuron.timesteps" and values[p] == 1)]
    tied = {}
    for source, (follower, _, _) in TIED_SHORT.items():
        if source in paths and follower in paths and values[source] == values[follower]:
            tied[follower] = source
            paths.remove(follower)
    key = naming_key(paths, tied)
    return configuration(values, paths, tied) + (f" ({key.replace(chr(10), ' ')})" if key else "")


def sensitivity_subtitle(context: str, held: Sequence[str], reference: Mapping[str, Any], others: str,
                         bars: str, tied: Mapping[str, str] | None = None) -> str:
    """What a sensitivity figure holds: the network, chip and fixed settings (`context`), how the other swept
    parameters `held` are treated (a slice through the preset, or the best over them), what the bars are."""
    lines = [context] if context else []
    if held and others == "reference":
        key = naming_key(held, tied).replace("\n", " ")
        lines.append(f"slice through the preset: other swept parameters at {configuration(reference, held, tied)}"
                     + (f" ({key})" if key else ""))
    elif held:
        lines.append(f"best over the other swept parameters ({', '.join(label(p, dict(tied or {})) for p in held)})")
    if bars:
        lines.append(bars)
    return "\n".join(lines)
