"""Print this study's README table from a run's trials.csv: python studies/adc_energy_range/table.py RUN_DIR.
Per ADC coefficient and I/O precision: the error, the energy, the ADC's share, and whether the design is on the
error-energy Pareto front of the trials with that coefficient (the coefficient is a modelling assumption, not a
design choice, so each one gets its own front)."""

import sys
from pathlib import Path

import pandas as pd

from dse.explore.pareto import pareto_front

COEFF, BITS = "hardware.cost.adc_8b_pj_per_conversion", "hardware.io.input_bits"

trials = pd.read_csv(Path(sys.argv[1]) / "trials.csv").sort_values([COEFF, BITS])
print("| ADC, 8 bits (pJ/conv.) | I/O bits | accuracy loss (pp) | logit error | energy (uJ) | ADC (uJ) "
      "| ADC share | crossbar + DAC share | on its front |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|:---:|")
for coeff, rows in trials.groupby(COEFF, sort=True):
    front = set(pareto_front(rows, ["accuracy_delta_pp", "energy_pj"])["trial"])
    for _, r in rows.iterrows():
        e = r.energy_pj
        print(f"| {coeff:g} | {r[BITS]} | {r.accuracy_delta_pp:.1f} | {r.logits_rel_error:.4f} | {e / 1e6:.2f} "
              f"| {r.energy_adc_pj / 1e6:.3f} | {100 * r.energy_adc_pj / e:.0f} % "
              f"| {100 * (r.energy_crossbar_pj + r.energy_dac_pj) / e:.0f} % | {'yes' if r.trial in front else ''} |")

print()
for coeff, rows in trials.groupby(COEFF, sort=True):
    e = rows.set_index(BITS).energy_pj
    print(f"- {coeff:g} pJ: 8-bit I/O costs {e[8] / e[4]:.2f}x the energy of 4-bit I/O "
          f"(+{(e[8] - e[4]) / 1e6:.2f} uJ per inference for {rows.set_index(BITS).accuracy_delta_pp[4]:.1f} pp)")
