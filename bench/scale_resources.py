"""Scale benchmark: compile an ImageNet-size ResNet-50-like graph for chip_a, resource counting only.

    python -m bench.scale_resources                      # ResNet-50-like, tuning=none (acceptance row)
    python -m bench.scale_resources --model vgg16 --tuning multiphase   # what bench/scale_tuned.py runs

Prints one JSON object: for each step (import, prepare, fit, tune, evaluate) its wall and CPU seconds and
its own peak resident memory (``steps``; `dse.compile.memory.StepMeter`), the largest of them
(``peak_rss_gb``), the memory bound and the compiler's estimate (``memory``), the pass trace, resource
totals, and the error of the compiled network against the original on held-out inputs (relative logits
error, top-1 agreement).

The network is built and exported to ONNX in a child process (`bench.imagenet_graphs`), so the peak memory
here counts only the compiler: import, prepare and compile. The data are synthetic (random images in
[0, 1], see `random_images`): 32 calibration and 16 held-out by default. The held-out labels are torch's
own top-1 on the original module, so ``accuracy_original`` checks the import (it must be 1.0) and
``accuracy_compiled`` equals the top-1 agreement with torch.

Acceptance (issue "Harsh constraints and real-world networks"): ResNet-50-size, chip_a, tuning=none:
resource report in <= 60 s and peak memory <= 8 GB; VGG-16-size tuned on 32 images: <= 15 min on 2 cores.
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
from typing import Any

import numpy as np
import torch

from dse.tune.options import TuneOptions

REPO = Path(__file__).resolve().parent.parent


def _stage(name: str, step: dict[str, Any]) -> None:
    """Progress on stderr (stdout carries only the JSON), so a stalled run shows where it stalls."""
    print(f"[bench] {name} done in {step['wall_s']:.1f} s (CPU {step['cpu_s']:.1f} s), peak RSS "
          f"{step['peak_rss_gb']:.2f} GiB", file=sys.stderr, flush=True)


def _chip(name: str) -> Any:
    from dse.config import compose_config, hardware_from

    return hardware_from(compose_config("compile", [f"hardware={name}"]).hardware)


def export_in_child(model: str, out_dir: Path, *, seed: int, calib: int, test: int) -> dict[str, Any]:
    """Build and export the network in its own process (its memory does not count here)."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "bench.imagenet_graphs", "--model", model, "--out", str(out_dir), "--seed",
         str(seed), "--calib", str(calib), "--test", str(test)],
        cwd=REPO, capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"exporting {model} failed:\n{proc.stderr[-4000:]}")
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    info["export_process_s"] = round(time.perf_counter() - start, 2)
    return info


def run(model: str, *, tuning: TuneOptions, chip: str = "chip_a", strategy: str = "split", seed: int = 0,
        calib: int = 32, test: int = 16, max_memory_gb: float | None = None,
        workdir: Path | None = None) -> dict[str, Any]:
    """Export, import, prepare and compile `model`; return the JSON-able record."""
    from dse.compile import compile as compile_graph
    from dse.compile import prepare
    from dse.compile.memory import StepMeter
    from dse.data.datasets import Dataset
    from dse.frontends.onnx import load_onnx

    record: dict[str, Any] = {"model": f"{model}_like", "chip": chip, "strategy": strategy, "tuning": tuning.mode,
                              "tuning_steps": {k: getattr(tuning, k) for k in ("free_steps", "range_steps",
                                                                              "round_steps", "max_rows")},
                              "calib_images": calib, "test_images": test, "cpus": os.cpu_count(),
                              "torch_threads": torch.get_num_threads()}
    hw = _chip(chip)  # first: a config mistake should not cost an export
    meter = StepMeter()
    with tempfile.TemporaryDirectory(prefix=f"dse_{model}_") as tmp:
        out = workdir or Path(tmp)
        record["export"] = export_in_child(model, out, seed=seed, calib=calib, test=test)
        with meter.step("import"):
            graph = load_onnx(out / f"{model}.onnx")
        _stage("import", meter.steps["import"])
        record["graph"] = {"nodes": len(graph), "ops": graph.op_counts()}
        arrays = np.load(out / "data.npz")
        x_calib, x_test, torch_logits = arrays["x_calib"], arrays["x_test"], arrays["torch_logits"]

    labels = torch_logits.argmax(1).astype(np.int64)
    data = Dataset(name="random224", x_train=x_calib, y_train=np.zeros(len(x_calib), dtype=np.int64),
                   x_test=x_test, y_test=labels, input_shape=tuple(x_test.shape[1:]), value_range=(0.0, 1.0),
                   num_classes=int(torch_logits.shape[1]))

    with meter.step("prepare"):
        prepared = prepare(graph, data, name=f"{model}_like", max_memory_gb=max_memory_gb)
    _stage("prepare", meter.steps["prepare"])
    original = prepared.original_test_logits
    record["import_vs_torch"] = {
        "logits_rel_error": float(np.linalg.norm(original - torch_logits) / np.linalg.norm(torch_logits)),
        "top1_agreement": float((original.argmax(1) == labels).mean()),
    }
    record["exact_graph"] = {"nodes": len(prepared.exact), "ops": prepared.exact.op_counts()}

    result = compile_graph(prepared, hw, strategy=strategy, tuning=tuning, max_memory_gb=max_memory_gb)
    rep = result.report.to_dict()
    for name, step in rep["steps"].items():
        _stage(name, step)
    steps = {**meter.steps, **rep["steps"]}
    record["steps"] = steps
    record["peak_rss_gb"] = max(s["peak_rss_gb"] for s in steps.values())
    record["memory"] = rep["memory"]
    record["passes"] = [{"name": p.name, "seconds": round(p.seconds, 2), "nodes_after": p.nodes_after}
                        for p in result.trace]
    record["resources"] = rep["resources"]
    record["legal"] = rep["legal"]
    record["violations"] = len(rep["violations"])
    record["violations_first"] = rep["violations"][:3]
    record["vs_original"] = {k: rep[k] for k in ("logits_rel_error", "agreement", "accuracy_original",
                                                 "accuracy_compiled") if k in rep}
    record["verify"] = rep.get("verify")
    return record


def main(argv: list[str] | None = None, *, default_model: str = "resnet50", default_tuning: str = "none",
         default_calib: int = 32) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("resnet50", "vgg16"), default=default_model)
    parser.add_argument("--tuning", choices=("none", "multiphase"), default=default_tuning)
    parser.add_argument("--chip", default="chip_a")
    parser.add_argument("--strategy", default="split")
    parser.add_argument("--calib", type=int, default=default_calib)
    parser.add_argument("--test", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-memory-gb", type=float, default=None,
                        help="the compile's memory bound (compile.max_memory_gb); default half the machine's")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="a tuning option, e.g. --set free_steps=50 (repeatable)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the ONNX file and data here")
    parser.add_argument("-v", "--verbose", action="store_true", help="log the compiler's progress to stderr")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(message)s")
    fields = {k: int(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    record = run(args.model, tuning=TuneOptions(mode=args.tuning, **fields), chip=args.chip, strategy=args.strategy,
                 seed=args.seed, calib=args.calib, test=args.test, max_memory_gb=args.max_memory_gb,
                 workdir=args.workdir)
    print(json.dumps(record, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
