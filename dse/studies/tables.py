"""Each study's measured table (markdown), from its sweep's trials: one function per study, keyed by name.

A loss is written with its 95 % interval when the trials carry one ("0.1 [-0.2, 0.4]": the paired bootstrap of
`dse.sim.evaluate.paired_delta_ci95`); "front" marks a design on the error-resource Pareto front."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from dse.explore.pareto import pareto_front
from dse.explore.repeats import per_configuration

ROWS, BITS, STRATEGY = "hardware.crossbar.rows", "hardware.io.input_bits", "strategy.name"


def loss(r: pd.Series) -> str:
    """The accuracy loss (pp) with its 95 % interval."""
    text = f"{r.accuracy_delta_pp:.1f}"
    if pd.notna(r.get("accuracy_delta_ci95_low")):
        text += f" [{r.accuracy_delta_ci95_low:.1f}, {r.accuracy_delta_ci95_high:.1f}]"
    return text


def _front(trials: pd.DataFrame, resource: str) -> set[int]:
    return set(pareto_front(trials, ["accuracy_delta_pp", resource])["trial"])


def _yes(flag: bool) -> str:
    return "yes" if flag else ""


def split_vs_prune(trials: pd.DataFrame) -> list[str]:
    front = _front(trials, "energy_pj")
    out = ["| crossbar | strategy | loss (pp) [95% interval] | crossbars | depth | energy (uJ) | on the front |",
           "|---:|---|---:|---:|---:|---:|:---:|"]
    for _, r in trials.sort_values([ROWS, STRATEGY], ascending=[True, False]).iterrows():
        n = r[ROWS]
        out.append(f"| {n}x{n} | {r[STRATEGY]} | {loss(r)} | {r.crossbars} | {r.depth} | {r.energy_pj / 1e6:.2f} "
                   f"| {_yes(r.trial in front)} |")
    return out


def weight_bits(trials: pd.DataFrame) -> list[str]:
    """One row per configuration over its tuning seeds (study.repeats, `repeats.per_configuration`): the loss's
    mean and standard deviation, its range, the mean of the seeds' 95 % intervals (the test set's noise), the
    logit error's mean and s.d.; the energy front of the configurations' means ("within noise": a win only
    within the noise, `pareto.noise`)."""
    w, cols = "hardware.weights.bits", "hardware.crossbar.cols"
    configs = per_configuration(trials, [w, ROWS, cols])
    front = pareto_front(configs, ["accuracy_delta_pp", "energy_pj"]).set_index([w, ROWS]).wins_within_noise
    seeds = int(configs.repeats.max()) if len(configs) else 0
    out = [f"| weight bits | crossbar | loss (pp): mean ± s.d. over {seeds} seeds | loss: min to max | mean 95% "
           "interval | logit error: mean ± s.d. | crossbars | energy (uJ) | on the front |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|:---:|"]
    for _, r in configs.sort_values([w, ROWS]).iterrows():
        n, key = r[ROWS], (r[w], r[ROWS])
        mark = ("within noise" if front[key] else "yes") if key in front.index else ""
        out.append(f"| {r[w]} | {n}x{n} | {r.accuracy_delta_pp:.2f} ± {r.accuracy_delta_pp_std:.2f} "
                   f"| {r.accuracy_delta_pp_min:.1f} to {r.accuracy_delta_pp_max:.1f} "
                   f"| [{r.accuracy_delta_ci95_low:.1f}, {r.accuracy_delta_ci95_high:.1f}] "
                   f"| {r.logits_rel_error:.4f} ± {r.logits_rel_error_std:.4f} | {r.crossbars:.0f} "
                   f"| {r.energy_pj / 1e6:.2f} | {mark} |")
    return out


def io_bits_tuning(trials: pd.DataFrame) -> list[str]:
    mode = "tuning.mode"
    out = ["| I/O bits | tuning | loss (pp) [95% interval] | agreement | logit error |", "|---:|---|---:|---:|---:|"]
    for _, r in trials.sort_values([BITS, mode]).iterrows():
        out.append(f"| {r[BITS]} | {r[mode]} | {loss(r)} | {r.agreement:.3f} | {r.logits_rel_error:.3f} |")
    return out


def adc_energy_range(trials: pd.DataFrame) -> list[str]:
    """Each ADC coefficient (a modelling assumption, not a design choice) gets its own front."""
    coeff = "hardware.cost.adc_8b_pj_per_conversion"
    out = ["| ADC, 8 bits (pJ/conv.) | I/O bits | loss (pp) [95% interval] | logit error | energy (uJ) | ADC (uJ) "
           "| ADC share | crossbar + DAC share | on its front |", "|---:|---:|---:|---:|---:|---:|---:|---:|:---:|"]
    for c, rows in trials.sort_values([coeff, BITS]).groupby(coeff, sort=True):
        front = _front(rows, "energy_pj")
        for _, r in rows.iterrows():
            e = r.energy_pj
            out.append(f"| {c:g} | {r[BITS]} | {loss(r)} | {r.logits_rel_error:.4f} | {e / 1e6:.2f} "
                       f"| {r.energy_adc_pj / 1e6:.3f} | {100 * r.energy_adc_pj / e:.0f} % "
                       f"| {100 * (r.energy_crossbar_pj + r.energy_dac_pj) / e:.0f} % | {_yes(r.trial in front)} |")
    out.append("")
    for c, rows in trials.groupby(coeff, sort=True):
        by_bits = rows.set_index(BITS)
        e = by_bits.energy_pj
        out.append(f"- {c:g} pJ: 8-bit I/O costs {e[8] / e[4]:.2f}x the energy of 4-bit I/O "
                   f"(+{(e[8] - e[4]) / 1e6:.2f} uJ per inference for {by_bits.accuracy_delta_pp[4]:.1f} pp)")
    return out


def crossbar_size_cost(trials: pd.DataFrame) -> list[str]:
    fronts = {k: _front(trials, k) for k in ("energy_pj", "area_mm2")}
    out = ["| strategy | crossbar | loss (pp) [95% interval] | crossbars | cells (k) | area (mm^2) | arrays | ADC "
           "| buffer | router | DAC + shift-add | energy (uJ) | crossbar + DAC (uJ) | ADC (uJ) | latency (us) "
           "| front: energy | front: area |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|:---:|"]
    for _, r in trials.sort_values([STRATEGY, ROWS]).iterrows():
        n = r[ROWS]
        out.append(f"| {r[STRATEGY]} | {n}x{n} | {loss(r)} | {r.crossbars} | {r.crossbars * n * n / 1e3:.0f} "
                   f"| {r.area_mm2:.3f} | {r.area_crossbar_mm2:.4f} | {r.area_adc_mm2:.3f} | {r.area_buffer_mm2:.3f} "
                   f"| {r.area_router_mm2:.3f} | {r.area_dac_mm2 + r.area_shift_add_mm2:.4f} "
                   f"| {r.energy_pj / 1e6:.2f} | {(r.energy_crossbar_pj + r.energy_dac_pj) / 1e6:.2f} "
                   f"| {r.energy_adc_pj / 1e6:.3f} | {r.latency_ns / 1e3:.0f} | {_yes(r.trial in fronts['energy_pj'])} "
                   f"| {_yes(r.trial in fronts['area_mm2'])} |")
    return out


def adc_dac_bits(trials: pd.DataFrame) -> list[str]:
    dac = "hardware.cost.dac_bits"
    fronts = {k: _front(trials, k) for k in ("energy_pj", "area_mm2")}
    out = ["| DAC bits | I/O bits | bit slices | loss (pp) [95% interval] | logit error | energy (uJ) | crossbar (uJ) "
           "| DAC (uJ) | ADC (uJ) | area (mm^2) | DAC (mm^2) | ADC (mm^2) | latency (us) | front: energy "
           "| front: area |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|:---:|"]
    for _, r in trials.sort_values([dac, BITS]).iterrows():
        out.append(f"| {r[dac]} | {r[BITS]} | {-(-r[BITS] // r[dac])} | {loss(r)} | {r.logits_rel_error:.4f} "
                   f"| {r.energy_pj / 1e6:.2f} | {r.energy_crossbar_pj / 1e6:.2f} | {r.energy_dac_pj / 1e6:.2f} "
                   f"| {r.energy_adc_pj / 1e6:.3f} | {r.area_mm2:.4f} | {r.area_dac_mm2:.4f} | {r.area_adc_mm2:.4f} "
                   f"| {r.latency_ns / 1e3:.0f} | {_yes(r.trial in fronts['energy_pj'])} "
                   f"| {_yes(r.trial in fronts['area_mm2'])} |")
    return out


def spiking_timesteps_energy(trials: pd.DataFrame) -> list[str]:
    model, t = "hardware.neuron.model", "hardware.neuron.timesteps"
    front = _front(trials, "energy_pj")
    out = ["| neuron | T | loss (pp) [95% interval] | spikes / inference | synaptic events / inference "
           "| energy (uJ) | static | neurons | synapses | NoC | latency (us) | on the front |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|"]
    for _, r in trials.sort_values([model, t]).iterrows():
        e = r.energy_pj
        share = {k: 100 * r[f"energy_{k}_pj"] / e for k in ("static", "neurons", "synapses", "noc")}
        out.append(f"| {r[model]} | {r[t]} | {loss(r)} | {r['spiking.spikes_per_inference']:,.0f} "
                   f"| {r['spiking.synaptic_events_per_inference']:,.0f} | {e / 1e6:.1f} | {share['static']:.0f} % "
                   f"| {share['neurons']:.0f} % | {share['synapses']:.0f} % | {share['noc']:.1f} % "
                   f"| {r.latency_ns / 1e3:.0f} | {_yes(r.trial in front)} |")
    return out


SIGMA, CELL, AWARE = "hardware.device.programming_sigma", "hardware.crossbar.cell_bits", "tuning.noise_aware"
BUDGET_PP = 1.0  # the loss a chip "affords" (device_variation): the drawn chips' mean within 1 pp


def _chips(r: pd.Series | None) -> str:
    """A design's drawn chips: mean ± s.d. of the loss (pp) | the 5th-percentile chip's accuracy."""
    if r is None:
        return "| |"
    return (f"{r['device.accuracy_delta_pp_mean']:.2f} ± {r['device.accuracy_delta_pp_std']:.2f} "
            f"| {r['device.accuracy_p5']:.3f}")


def _by_tuning(trials: pd.DataFrame, keys: list[str]) -> dict[tuple, pd.Series]:
    """The finished trials by (*their values of keys, noise-aware)."""
    done = trials[trials["device.accuracy_delta_pp_mean"].notna()]
    return {(*(r[k] for k in keys), bool(r[AWARE])): r for _, r in done.iterrows()}


def _plain_vs_aware(rows: dict[tuple, pd.Series], header: list[str], fmt: Callable[[tuple], list[str]]) -> list[str]:
    """One line per point (its values written by `fmt`), plain and noise-aware tuning side by side: the drawn
    chips' loss and 5th-percentile chip, the exact chip's loss, the energy."""
    out = ["| " + " | ".join(header) + " | plain: loss (pp), mean ± s.d. | plain: 5th-pct. chip accuracy "
           "| noise-aware: loss (pp), mean ± s.d. | noise-aware: 5th-pct. chip accuracy | exact chip loss (pp), "
           "plain / noise-aware | energy (uJ) |", "|" + "---:|" * (len(header) + 6)]
    for point in sorted({k[:-1] for k in rows}):
        plain, aware = rows.get((*point, False)), rows.get((*point, True))
        exact = " / ".join(f"{r.accuracy_delta_pp:.1f}" if r is not None else "" for r in (plain, aware))
        energy = next(r.energy_pj for r in (plain, aware) if r is not None)
        out.append(f"| {' | '.join(fmt(point))} | {_chips(plain)} | {_chips(aware)} | {exact} | {energy / 1e6:.2f} |")
    return out


def device_variation(trials: pd.DataFrame) -> list[str]:
    """Per programming variation and cell bits, plain and noise-aware tuning side by side: the drawn chips' loss
    (mean ± s.d.) and the 5th-percentile chip's accuracy; then, per variation, the most bits per cell whose
    chips keep their mean loss within `BUDGET_PP`."""
    rows = _by_tuning(trials, [SIGMA, CELL])
    out = _plain_vs_aware(rows, ["variation", "cell bits"], lambda p: [f"{p[0]:g}", str(p[1])])
    out.append("")
    for sigma in sorted({k[0] for k in rows}):
        best = {aware: max((c for s, c, a in rows if s == sigma and a == aware
                            and rows[s, c, a]["device.accuracy_delta_pp_mean"] <= BUDGET_PP), default=None)
                for aware in (False, True)}
        says = {a: f"{b} bit{'s' if b > 1 else ''} per cell" if b is not None else "none of the swept cells"
                for a, b in best.items()}
        out.append(f"- variation {sigma:g}: mean loss within {BUDGET_PP:g} pp with plain tuning: {says[False]}; "
                   f"noise-aware: {says[True]}")
    return out


def device_stuck_adc(trials: pd.DataFrame) -> list[str]:
    """Per stuck-cell rate (as many low as high) and ADC noise, plain and noise-aware tuning side by side."""
    stuck, adc = "hardware.device.stuck_high", "hardware.device.adc_noise_lsb"
    return _plain_vs_aware(_by_tuning(trials, [stuck, adc]), ["stuck cells, low + high (%)", "ADC noise (LSB)"],
                           lambda p: [f"{200 * p[0]:g}", f"{p[1]:g}"])


TABLES: dict[str, Callable[[pd.DataFrame], list[str]]] = {
    f.__name__: f for f in (split_vs_prune, weight_bits, io_bits_tuning, adc_energy_range, crossbar_size_cost,
                            adc_dac_bits, spiking_timesteps_energy, device_variation, device_stuck_adc)
}
