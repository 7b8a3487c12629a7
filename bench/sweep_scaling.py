"""Throughput of the sweep on 1 and on 2 Ray workers, and the wall time of the default sweep; JSON on stdout.

    python bench/sweep_scaling.py                 # both parts (about 5 minutes on 2 idle cores)
    python bench/sweep_scaling.py --no-default    # the scaling part only

Scaling: the same 8-trial sweep (lenet_mnist on chip_a, weight and I/O bits) runs on a fresh local Ray
instance of 1 CPU, then of 2; throughput is trials per second from the first trial submitted to the last
result (so it counts the workers' start and their one fetch of the prepared network, not Ray's own start).
Default sweep: `python -m dse.sweep hardware=chip_a strategy=split` as a user runs it, timed from outside.
Other load on the machine slows both parts: the JSON records the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SCALING_SWEEP = ["hardware=chip_a", "strategy=split", "search=custom", "hardware.weights.bits=2,4,6,8",
                 "hardware.io.input_bits=4,8", "progress=false"]


def scaling(workers: int, folder: Path) -> dict:
    from dse.config import compose_config, split_sweeps
    from dse.explore.ray_executor import RayExecutor
    from dse.explore.runner import run_study

    cmd = split_sweeps(SCALING_SWEEP)
    cfg = compose_config("sweep", cmd.overrides)
    start = time.perf_counter()
    result = run_study(cfg, folder / f"workers_{workers}", cli_sweeps=cmd.sweeps, pinned=cmd.pinned,
                       executor=RayExecutor(num_cpus=workers))
    trials = result.trials
    return {
        "workers": workers,
        "trials": len(trials),
        "failed": int((trials.state == "fail").sum()),
        "trials_seconds": round(result.stats.seconds, 2),
        "throughput_trials_per_s": round(len(trials) / result.stats.seconds, 4),
        "total_seconds": round(time.perf_counter() - start, 2),
        "trial_cpu_seconds_mean": round(float(trials.cpu_seconds.mean()), 2),
        "accuracy_delta_pp": trials.sort_values("trial").accuracy_delta_pp.tolist(),
    }


def default_sweep(folder: Path) -> dict:
    run_dir = folder / "default"
    command = [sys.executable, "-m", "dse.sweep", "hardware=chip_a", "strategy=split", "progress=false",
               f"hydra.run.dir={run_dir}"]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"the default sweep failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    trials = pd.read_csv(run_dir / "trials.csv")
    return {
        "command": "python -m dse.sweep hardware=chip_a strategy=split",
        "wall_seconds": round(wall, 1),
        "trials": len(trials),
        "failed": int((trials.state == "fail").sum()),
        "trial_cpu_seconds_sum": round(float(trials.cpu_seconds.sum()), 1),
        "trial_wall_seconds_sum": round(float((trials.compile_seconds + trials.evaluate_seconds).sum()), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-default", action="store_true", help="skip the default sweep")
    parser.add_argument("--no-scaling", action="store_true", help="skip the 1- and 2-worker runs")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    logging.basicConfig(level=logging.WARNING)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out: dict = {"cpus": os.cpu_count(), "load_average_before": [round(x, 2) for x in os.getloadavg()]}
    with tempfile.TemporaryDirectory(prefix="sweep_scaling_") as tmp:
        folder = Path(tmp)
        if not args.no_scaling:
            one, two = scaling(1, folder), scaling(2, folder)
            out["scaling"] = {
                "sweep": " ".join(SCALING_SWEEP),
                "one_worker": one,
                "two_workers": two,
                "speedup": round(two["throughput_trials_per_s"] / one["throughput_trials_per_s"], 3),
                "same_results": one["accuracy_delta_pp"] == two["accuracy_delta_pp"],
            }
        if not args.no_default:
            out["default_sweep"] = default_sweep(folder)
    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
