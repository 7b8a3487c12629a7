"""Scale benchmark: compile an ImageNet-size ResNet-50-like graph for chip_a, resource counting only.

    python -m bench.scale_resources                      # ResNet-50-like, tuning=none (acceptance row)
    python -m bench.scale_resources --model vgg16 --tuning multiphase   # what bench/scale_tuned.py runs

Prints one JSON object: wall seconds of each step (export, import, prepare, compile, evaluate), the pass
trace, resource totals, peak resident memory (``getrusage`` maxrss, this process only), and the error of
the compiled network against the original on held-out inputs (relative logits error, top-1 agreement).

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
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent


def _peak_rss_gb() -> float:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _stage(name: str, seconds: float) -> None:
    """Progress on stderr (stdout carries only the JSON), so a stalled run shows where it stalls."""
    print(f"[bench] {name} done in {seconds:.1f} s, peak RSS {_peak_rss_gb():.2f} GiB", file=sys.stderr, flush=True)


def _chip(name: str) -> Any:
    from dse.explore.config import compose_config, hardware_from

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


def run(model: str, *, tuning_mode: str, chip: str = "chip_a", strategy: str = "split", seed: int = 0,
        calib: int = 32, test: int = 16, workdir: Path | None = None) -> dict[str, Any]:
    """Export, import, prepare and compile `model`; return the JSON-able record."""
    from dse.compile import compile as compile_graph
    from dse.compile import prepare
    from dse.data.datasets import Dataset
    from dse.frontends.onnx import load_onnx
    from dse.tune.multiphase import TuneOptions

    record: dict[str, Any] = {"model": f"{model}_like", "chip": chip, "strategy": strategy, "tuning": tuning_mode,
                              "calib_images": calib, "test_images": test, "cpus": os.cpu_count(),
                              "torch_threads": torch.get_num_threads()}
    hw = _chip(chip)  # first: a config mistake should not cost an export
    with tempfile.TemporaryDirectory(prefix=f"dse_{model}_") as tmp:
        out = workdir or Path(tmp)
        record["export"] = export_in_child(model, out, seed=seed, calib=calib, test=test)
        _stage("export (child process)", record["export"]["export_process_s"])
        rss = {"after_start_gb": _peak_rss_gb()}

        t0 = time.perf_counter()
        graph = load_onnx(out / f"{model}.onnx")
        record["import_s"] = round(time.perf_counter() - t0, 2)
        _stage("import", record["import_s"])
        record["graph"] = {"nodes": len(graph), "ops": graph.op_counts()}
        rss["after_import_gb"] = _peak_rss_gb()

        arrays = np.load(out / "data.npz")
        x_calib, x_test, torch_logits = arrays["x_calib"], arrays["x_test"], arrays["torch_logits"]

    labels = torch_logits.argmax(1).astype(np.int64)
    data = Dataset(name="random224", x_train=x_calib, y_train=np.zeros(len(x_calib), dtype=np.int64),
                   x_test=x_test, y_test=labels, input_shape=tuple(x_test.shape[1:]), value_range=(0.0, 1.0),
                   num_classes=int(torch_logits.shape[1]))

    t0 = time.perf_counter()
    prepared = prepare(graph, data, name=f"{model}_like")
    record["prepare_s"] = round(time.perf_counter() - t0, 2)
    _stage("prepare", record["prepare_s"])
    rss["after_prepare_gb"] = _peak_rss_gb()
    original = prepared.original_test_logits
    record["import_vs_torch"] = {
        "logits_rel_error": float(np.linalg.norm(original - torch_logits) / np.linalg.norm(torch_logits)),
        "top1_agreement": float((original.argmax(1) == labels).mean()),
    }
    record["exact_graph"] = {"nodes": len(prepared.exact), "ops": prepared.exact.op_counts()}

    t0 = time.perf_counter()
    result = compile_graph(prepared, hw, strategy=strategy, tuning=TuneOptions(mode=tuning_mode))
    record["compile_call_s"] = round(time.perf_counter() - t0, 2)
    _stage("compile (fit, tune, check, evaluate, resources)", record["compile_call_s"])
    rss["after_compile_gb"] = _peak_rss_gb()
    rep = result.report
    record["compile_s"] = round(rep["compile_seconds"], 2)
    record["evaluate_s"] = round(rep["evaluate_seconds"], 2)
    record["report_s"] = round(record["import_s"] + record["prepare_s"] + record["compile_call_s"], 2)
    record["passes"] = [{"name": p.name, "seconds": round(p.seconds, 2), "nodes_after": p.nodes_after}
                        for p in result.trace]
    record["resources"] = rep["resources"]
    record["legal"] = rep["legal"]
    record["violations"] = len(rep["violations"])
    record["violations_first"] = rep["violations"][:3]
    record["vs_original"] = {k: rep[k] for k in ("logits_rel_error", "agreement", "accuracy_original",
                                                 "accuracy_compiled") if k in rep}
    record["verify"] = rep.get("verify")
    record["peak_rss_gb"] = round(_peak_rss_gb(), 3)
    record["rss_by_stage_gb"] = {k: round(v, 3) for k, v in rss.items()}
    return record


def main(argv: list[str] | None = None, *, default_model: str = "resnet50", default_tuning: str = "none") -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("resnet50", "vgg16"), default=default_model)
    parser.add_argument("--tuning", choices=("none", "multiphase"), default=default_tuning)
    parser.add_argument("--chip", default="chip_a")
    parser.add_argument("--strategy", default="split")
    parser.add_argument("--calib", type=int, default=32)
    parser.add_argument("--test", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="keep the ONNX file and data here")
    parser.add_argument("-v", "--verbose", action="store_true", help="log the compiler's progress to stderr")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(message)s")
    record = run(args.model, tuning_mode=args.tuning, chip=args.chip, strategy=args.strategy, seed=args.seed,
                 calib=args.calib, test=args.test, workdir=args.workdir)
    print(json.dumps(record, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
