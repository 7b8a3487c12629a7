"""Print this study's README table from a run's trials.csv: python studies/spiking_timesteps_energy/table.py RUN_DIR.
Per neuron model and time window: the error, the activity, the energy by component, the latency, and whether
the design is on the error-energy Pareto front of all six."""

import sys
from pathlib import Path

import pandas as pd

from dse.explore.pareto import pareto_front

MODEL, T = "hardware.neuron.model", "hardware.neuron.timesteps"

trials = pd.read_csv(Path(sys.argv[1]) / "trials.csv").sort_values([MODEL, T])
front = set(pareto_front(trials, ["accuracy_delta_pp", "energy_pj"])["trial"])
print("| neuron | T | accuracy loss (pp) | spikes / inference | synaptic events / inference | energy (uJ) "
      "| static | neurons | synapses | NoC | latency (us) | on the front |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|")
for _, r in trials.iterrows():
    e = r.energy_pj
    share = {k: 100 * r[f"energy_{k}_pj"] / e for k in ("static", "neurons", "synapses", "noc")}
    print(f"| {r[MODEL]} | {r[T]} | {r.accuracy_delta_pp:.1f} | {r['spiking.spikes_per_inference']:,.0f} "
          f"| {r['spiking.synaptic_events_per_inference']:,.0f} | {e / 1e6:.1f} | {share['static']:.0f} % "
          f"| {share['neurons']:.0f} % | {share['synapses']:.0f} % | {share['noc']:.1f} % | {r.latency_ns / 1e3:.0f} "
          f"| {'yes' if r.trial in front else ''} |")
