"""Print this study's README table from a run's trials.csv: python studies/crossbar_size_cost/table.py RUN_DIR.
Per crossbar size and strategy: the error, the crossbars and the cells they hold, the area with its periphery,
the energy and the latency, and whether the design is on the error-energy front (the study's objectives, the
run's pareto.csv) and on the error-area front."""

import sys
from pathlib import Path

import pandas as pd

from dse.explore.pareto import pareto_front

trials = pd.read_csv(Path(sys.argv[1]) / "trials.csv").sort_values(["strategy.name", "hardware.crossbar.rows"])
print("| strategy | crossbar | accuracy loss (pp) | crossbars | cells (k) | area (mm^2) | arrays | ADC | buffer "
      "| router | DAC + shift-add | energy (uJ) | crossbar + DAC (uJ) | ADC (uJ) | latency (us) | front: energy "
      "| front: area |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|:---:|")
fronts = {k: set(pareto_front(trials, ["accuracy_delta_pp", k])["trial"]) for k in ("energy_pj", "area_mm2")}
for _, r in trials.iterrows():
    n = r["hardware.crossbar.rows"]
    cells = r.crossbars * n * n
    print(f"| {r['strategy.name']} | {n}x{n} | {r.accuracy_delta_pp:.1f} | {r.crossbars} | {cells / 1e3:.0f} "
          f"| {r.area_mm2:.3f} | {r.area_crossbar_mm2:.4f} | {r.area_adc_mm2:.3f} | {r.area_buffer_mm2:.3f} "
          f"| {r.area_router_mm2:.3f} | {r.area_dac_mm2 + r.area_shift_add_mm2:.4f} | {r.energy_pj / 1e6:.2f} "
          f"| {(r.energy_crossbar_pj + r.energy_dac_pj) / 1e6:.2f} | {r.energy_adc_pj / 1e6:.3f} "
          f"| {r.latency_ns / 1e3:.0f} | {'yes' if r.trial in fronts['energy_pj'] else ''} "
          f"| {'yes' if r.trial in fronts['area_mm2'] else ''} |")
