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
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dse.timelimit import time_limit
from dse.tune.options import TuneOptions

REPO = Path(__file__).resolve().parent.parent


def _stage(name: str, step: dict[str, Any]) -> None:
    """Progress on stderr (stdout carries only the JSON), so a stalled run shows where it stalls."""
    print(f"[bench] {name} done in {step['wall_s']:.1f} s (CPU {step['cpu_s']:.1f} s), peak RSS "
          f"{step['peak_rss_gb']:.2f} GiB", file=sys.stderr, flush=True)


def _chip(name: str) -> Any:
    from dse.config import compose_config, hardware_from

    return hardware_from(compose_config("compile", [f"hardware={name}"]).hardware)


class TunerClock(logging.Handler):
    """Counts the tuner's training steps (every `Tensor.backward` call in the process: a compile makes one per
    training step and no other; counted from outside, whatever optimizer the tuner uses) and times each tuned
    block from the tuner's "tuned block" log line (`dse.tune.multiphase`): steps and seconds per block, also
    for a run cut short by the time limit."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.steps, self.blocks = 0, []
        self._last = (time.perf_counter(), time.process_time(), 0)


    def emit(self, record: logging.LogRecord) -> None:
        if not record.getMessage().startswith("tuned block"):
            return
        wall, cpu, steps = time.perf_counter(), time.process_time(), self.steps
        self.blocks.append({"block": str(record.args[0]) if record.args else "?", "steps": steps - self._last[2],
                            "wall_s": round(wall - self._last[0], 2), "cpu_s": round(cpu - self._last[1], 2)})
        self._last = (wall, cpu, steps)

    @contextmanager
    def counting(self) -> Iterator[TunerClock]:
        backward = torch.Tensor.backward

        def counted(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> None:
            self.steps += 1
            backward(tensor, *args, **kwargs)

        torch.Tensor.backward = counted  # type: ignore[method-assign]
        logger = logging.getLogger("dse.tune.multiphase")
        level = logger.level
        logger.addHandler(self)
        logger.setLevel(min(logging.INFO, level or logging.INFO))
        self._last = (time.perf_counter(), time.process_time(), 0)
        try:
            yield self
        finally:
            torch.Tensor.backward = backward  # type: ignore[method-assign]
            logger.removeHandler(self)
            logger.setLevel(level)

    def summary(self, tune_step: dict[str, float] | None) -> dict[str, Any]:
        """Steps, blocks tuned, and seconds per step (the tune step's time, its set-up and commits included,
        over its optimizer steps; for a run cut short, the time the blocks that finished took)."""
        wall = tune_step["wall_s"] if tune_step else sum(b["wall_s"] for b in self.blocks)
        cpu = tune_step["cpu_s"] if tune_step else sum(b["cpu_s"] for b in self.blocks)
        done = sum(b["steps"] for b in self.blocks) if tune_step is None else self.steps
        last_wall, last_cpu, last_steps = self._last
        return {"steps": self.steps, "blocks_tuned": len(self.blocks),
                "wall_s_per_step": round(wall / done, 4) if done else None,
                "cpu_s_per_step": round(cpu / done, 4) if done else None, "blocks": self.blocks,
                "unfinished_block": None if tune_step else {  # where the time limit stopped it
                    "steps": self.steps - last_steps, "wall_s": round(time.perf_counter() - last_wall, 2),
                    "cpu_s": round(time.process_time() - last_cpu, 2)}}


class TimeLimit(Exception):
    """The run reached --time-limit."""


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__


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
        workdir: Path | None = None, time_limit_s: float | None = None) -> dict[str, Any]:
    """Export, import, prepare and compile `model`; return the JSON-able record. A run that reaches
    `time_limit_s` (seconds from the start of the import) stops there and returns what it got so far
    (``finished: false``; how far the tuner came under ``tuner``)."""
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
        start, cpu_start = time.perf_counter(), time.process_time()
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

    clock = TunerClock()
    try:
        left = None if time_limit_s is None else time_limit_s - (time.perf_counter() - start)
        with clock.counting(), time_limit(max(left, 1.0), TimeLimit) if left is not None else nullcontext():
            result = compile_graph(prepared, hw, strategy=strategy, tuning=tuning, max_memory_gb=max_memory_gb)
    except Exception as exc:  # the pass registry wraps it (PassError from TimeLimit)
        if not any(isinstance(e, TimeLimit) for e in _chain(exc)):
            raise
        record.update(finished=False, steps=meter.steps, tuner=clock.summary(None))
        record.update(wall_s=round(time.perf_counter() - start, 1), cpu_s=round(time.process_time() - cpu_start, 1))
        print(f"[bench] stopped at the time limit ({time_limit_s} s) after {clock.steps} tuner steps, "
              f"{len(clock.blocks)} blocks tuned", file=sys.stderr, flush=True)
        return record
    record.update(finished=True, wall_s=round(time.perf_counter() - start, 1),
                  cpu_s=round(time.process_time() - cpu_start, 1))
    rep = result.report.to_dict()
    record["tuner"] = clock.summary(rep["steps"].get("tune"))
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
    parser.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                        help="stop the run this long after the import starts and print how far it got")
    parser.add_argument("-v", "--verbose", action="store_true", help="log the compiler's progress to stderr")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(message)s")
    fields = {k: float(v) if "." in v or "e" in v else int(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    load_before = os.getloadavg()
    record = run(args.model, tuning=TuneOptions(mode=args.tuning, **fields), chip=args.chip, strategy=args.strategy,
                 seed=args.seed, calib=args.calib, test=args.test, max_memory_gb=args.max_memory_gb,
                 workdir=args.workdir, time_limit_s=args.time_limit)
    record["load_average"] = {"before": [round(x, 2) for x in load_before],
                              "after": [round(x, 2) for x in os.getloadavg()]}
    print(json.dumps(record, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
