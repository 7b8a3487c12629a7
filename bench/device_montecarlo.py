"""Monte-Carlo chip instances (hardware.device, evaluate.instances): what N drawn chips cost against one
evaluation of the exact chip, and their accuracy delta. Compiles lenet_mnist for chip_a once (tuning as given),
then times, on the same compiled graph and test set, `evaluate_chip` (the compile's evaluation of one chip: the
teacher, the integer simulator and its check) and `evaluate_instances` for each N, each the least of 3 runs.
Prints one JSON line per N.

    OMP_NUM_THREADS=1 .venv/bin/python bench/device_montecarlo.py [hardware=chip_a] [tuning=none] \
        [hardware.device.programming_sigma=0.05] [instances=1,20]

`compare=noise_aware`: plain tuning against noise-aware tuning (`tuning.noise_aware`) on the same drawn chips
(the same seed: every chip's random streams are the same for both networks). Compiles twice and prints one
JSON line per tuning for the largest N (delta mean, std, 5th-percentile chip, per-chip deltas) and one with
their ratio. `tuning.seed=S` and `evaluate.seed=E` (the drawn chips) are the compile's overrides:

    OMP_NUM_THREADS=1 .venv/bin/python bench/device_montecarlo.py compare=noise_aware instances=20 \
        [hardware=chip_b hardware.device.threshold_mismatch=0.1] [tuning.seed=0] [evaluate.seed=0]
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time

from dse.compile import compile, load_model_config, prepare
from dse.config import compose_config, hardware_from, tuning_from
from dse.sim.evaluate import evaluate_chip
from dse.sim.montecarlo import MonteCarlo, evaluate_instances


def timed(fn, repeats: int = 1):  # noqa: ANN001, ANN201
    """fn's result, and its least wall and CPU seconds over `repeats` runs (a shared machine's noise only adds)."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return out, min(walls), min(cpus)


def compare_noise_aware(prepared, hw, tuning, n: int, seed: int) -> None:  # noqa: ANN001
    """Plain and noise-aware tuning measured on the same `n` drawn chips (`evaluate.seed` `seed`)."""
    x, y, original = prepared.test_x, prepared.test_y, prepared.original_test_logits
    means = {}
    for aware in (False, True):
        tuned = dataclasses.replace(tuning, noise_aware=aware)
        result, wall, cpu = timed(lambda t=tuned: compile(prepared, hw, tuning=t))
        r = evaluate_instances(result.graph, hw, x, original, y, MonteCarlo(n, seed))
        means[aware] = r.accuracy_delta_pp_mean
        print(json.dumps({"tuning": "noise_aware" if aware else "plain", "instances": n, "tuning_seed": tuning.seed,
                          "evaluate_seed": seed,
                          "delta_pp_mean": r.accuracy_delta_pp_mean, "delta_pp_std": r.accuracy_delta_pp_std,
                          "accuracy_p5": r.accuracy_p5, "delta_pp_p95": r.accuracy_delta_pp_p95,
                          "exact_chip_delta_pp": result.report.metrics.accuracy_delta_pp,
                          "compile_wall_s": round(wall, 1), "compile_cpu_s": round(cpu, 1),
                          "delta_pp": r.accuracy_delta_pp}), flush=True)
    print(json.dumps({"noise_aware_over_plain": round(means[True] / means[False], 3) if means[False] else None}))


def main(args: list[str]) -> None:
    counts, compare = [1, 20], None
    overrides = []
    for a in args:
        if a.startswith("instances="):
            counts = [int(v) for v in a.split("=", 1)[1].split(",")]
        elif a.startswith("compare="):
            compare = a.split("=", 1)[1]
            if compare != "noise_aware":
                raise SystemExit(f"compare={compare}: only compare=noise_aware is known")
        else:
            overrides.append(a)
    if not any(a.startswith("hardware.device.") for a in overrides):
        overrides.append("hardware.device.programming_sigma=0.05")
    cfg = compose_config("compile", overrides)
    hw, tuning = hardware_from(cfg.hardware), tuning_from(cfg.tuning)
    graph, data = load_model_config(cfg.model)
    prepared = prepare(graph, data, name=cfg.model.name)
    if compare:
        compare_noise_aware(prepared, hw, tuning, max(counts), cfg.evaluate.seed)
        return
    result = compile(prepared, hw, tuning=tuning)
    x, y, original = prepared.test_x, prepared.test_y, prepared.original_test_logits
    _, wall1, cpu1 = timed(lambda: evaluate_chip(prepared.exact, result.graph, hw, x), repeats=3)
    for n in counts:
        r, wall, cpu = timed(lambda n=n: evaluate_instances(result.graph, hw, x, original, y,
                                                            MonteCarlo(n, cfg.evaluate.seed)),
                             repeats=3)
        print(json.dumps({"instances": n, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
                          "one_evaluation_wall_s": round(wall1, 3), "one_evaluation_cpu_s": round(cpu1, 3),
                          "ratio_wall": round(wall / wall1, 2), "ratio_cpu": round(cpu / cpu1, 2),
                          "delta_pp_mean": r.accuracy_delta_pp_mean, "delta_pp_std": r.accuracy_delta_pp_std,
                          "accuracy_p5": r.accuracy_p5, "test_samples": len(x)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
