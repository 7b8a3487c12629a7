"""Post-training-quantization ablation: each of cross-layer equalization, bias correction and per-column
weight scales on its own, against round-to-nearest and against the default tuning.

    OMP_NUM_THREADS=1 .venv/bin/python bench/ptq_ablation.py [--models lenet_mnist resnet_mnist]
        [--bits 4] [--hardware chip_a] [--tunings none multiphase] [--calib-samples N] [--settings ...]

Every compile goes through the same config path as the CLI (`hardware=chip_a hardware.weights.bits=4` plus
the setting's overrides). Prints one JSON object: per model, per setting, per tuning, the accuracy delta
(original minus compiled, percentage points), top-1 agreement with the original, the logits' relative error,
legality, the weight scales the periphery holds, and the compile's wall and CPU seconds. On the 1,000 test
images one image is 0.1 pp: differences of that size are noise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dse.compile import compile, load_model_config, prepare  # noqa: E402
from dse.config import compose_config, hardware_from, tuning_from  # noqa: E402

SETTINGS = {  # name -> overrides on top of the baseline (each technique on its own, then all of them)
    "baseline": [],
    "equalize": ["tuning.equalize=true"],
    "bias_correction": ["tuning.bias_correction=true"],
    "per_column": ["hardware.weights.scale=per_column"],
    "all": ["tuning.equalize=true", "tuning.bias_correction=true", "hardware.weights.scale=per_column"],
}
# the baseline turns every technique off explicitly, so that the table does not depend on the defaults
OFF = ["tuning.equalize=false", "tuning.bias_correction=false", "hardware.weights.scale=per_crossbar"]


def run_one(prepared, overrides: list[str]) -> dict:
    cfg = compose_config("compile", overrides)
    start, cpu = time.perf_counter(), time.process_time()
    result = compile(prepared, hardware_from(cfg.hardware), strategy=cfg.strategy.name,
                     tuning=tuning_from(cfg.tuning))
    r = result.report.to_dict()
    return {
        "accuracy_delta_pp": r["accuracy_delta_pp"],
        "agreement": r["agreement"],
        "logits_rel_error": r["logits_rel_error"],
        "legal": r["legal"],
        "weight_scales": r["resources"]["weight_scales"],
        "compile_seconds": r["compile_seconds"],
        "wall_seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - cpu,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=["lenet_mnist", "resnet_mnist"])
    p.add_argument("--hardware", default="chip_a")
    p.add_argument("--bits", type=int, default=4)
    p.add_argument("--tunings", nargs="+", default=["none", "multiphase"])
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--calib-samples", type=int, default=None)
    args = p.parse_args(argv)
    out: dict = {"hardware": args.hardware, "weight_bits": args.bits, "models": {}}
    for model in args.models:
        base = [f"model={model}", f"hardware={args.hardware}", f"hardware.weights.bits={args.bits}"]
        cfg = compose_config("compile", base)
        graph, data = load_model_config(cfg.model)
        prepared = prepare(graph, data, name=model, calib_samples=args.calib_samples)
        rows = out["models"][model] = {"accuracy_original": None, "settings": {}}
        for name in args.settings:
            for tuning in args.tunings:
                row = run_one(prepared, [*base, f"tuning={tuning}", *OFF, *SETTINGS[name]])
                rows["settings"].setdefault(name, {})[tuning] = row
                print(json.dumps({"model": model, "setting": name, "tuning": tuning, **row}), file=sys.stderr)
        rows["accuracy_original"] = float((prepared.original_test_logits.argmax(1) == prepared.test_y).mean())
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
