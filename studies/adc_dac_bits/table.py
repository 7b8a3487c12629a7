"""Print this study's README table from a run's trials.csv: python studies/adc_dac_bits/table.py RUN_DIR.
Per DAC width and I/O precision: the error, the energy with its converter parts, the area with its converter
parts, the latency, and whether the design is on the error-energy and the error-area Pareto fronts."""

import sys
from pathlib import Path

import pandas as pd

from dse.explore.pareto import pareto_front

DAC, BITS = "hardware.cost.dac_bits", "hardware.io.input_bits"

trials = pd.read_csv(Path(sys.argv[1]) / "trials.csv").sort_values([DAC, BITS])
fronts = {k: set(pareto_front(trials, ["accuracy_delta_pp", k])["trial"]) for k in ("energy_pj", "area_mm2")}
print("| DAC bits | I/O bits | bit slices | accuracy loss (pp) | logit error | energy (uJ) | crossbar (uJ) | DAC (uJ) "
      "| ADC (uJ) | area (mm^2) | DAC (mm^2) | ADC (mm^2) | latency (us) | front: energy | front: area |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|:---:|")
for _, r in trials.iterrows():
    slices = -(-r[BITS] // r[DAC])
    print(f"| {r[DAC]} | {r[BITS]} | {slices} | {r.accuracy_delta_pp:.1f} | {r.logits_rel_error:.4f} "
          f"| {r.energy_pj / 1e6:.2f} | {r.energy_crossbar_pj / 1e6:.2f} | {r.energy_dac_pj / 1e6:.2f} "
          f"| {r.energy_adc_pj / 1e6:.3f} | {r.area_mm2:.4f} | {r.area_dac_mm2:.4f} | {r.area_adc_mm2:.4f} "
          f"| {r.latency_ns / 1e3:.0f} | {'yes' if r.trial in fronts['energy_pj'] else ''} "
          f"| {'yes' if r.trial in fronts['area_mm2'] else ''} |")
