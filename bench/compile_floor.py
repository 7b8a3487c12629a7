"""The compile's CPU time against its floor: the raw torch time of the work it cannot avoid.

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.compile_floor hardware=chip_a [OVERRIDE ...] [--runs 3]

The overrides are the compile's (`python -m dse.compile`'s). The bench

1. runs ``python -m dse.compile OVERRIDES progress=false`` `--runs` times as a child process and takes the
   median of its CPU seconds (user + sys of the whole process: imports, data, prepare, compile, report) and
   of each stage's (report.json's ``steps``: prepare, fit, tune, evaluate, cost);
2. times, in plain torch on one thread, the work no compile can avoid: one forward pass of the network over
   the calibration set (the teacher), and the training steps the tuner ran, each a forward product, a
   backward pass and an Adam update of every core of its block with the shapes the tuner uses (rows per
   step as `tuning.batch_size`, `patch_batch_factor` and `step_macs` set them; a spike-aware step the same
   over `hardware.neuron.timesteps` steps). The step counts are read from report.json's ``blocks`` (the
   tuner's ``steps`` per phase, so the floor follows its early stopping); a report without them counts the
   phases' caps (`tuning.*_steps`), which is what a tuner without early stopping runs;
3. times, `--runs` times as a child process, what any torch program pays before its work: starting the
   interpreter and ``import torch`` (``startup_cpu_s``, the median);
4. prints one JSON object: both, and their ratios. ``ratio`` (issue 16's): the whole process over the floor.
   ``ratio_work``: the stages prepare + fit + tune over the floor, without start-up and the test-set report.
   ``ratio_with_startup``: the whole process over the floor plus the start-up, both sides of the ratio being
   whole processes (a raw torch script doing the floor's work pays the start-up too).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dse.compile import load_model_config
from dse.config import compose_config, hardware_from, tuning_from
from dse.ir import ops as o
from dse.ir.serialize import load_graph
from dse.sim.float_exec import run_float

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("prepare", "fit", "tune", "evaluate", "cost")
TIMED_STEPS = 20  # steps timed per block shape; the block's count scales it


def run_compile(overrides: list[str], run_dir: Path) -> dict:
    """One compile as a child process: its CPU and wall seconds, and its report."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dse.compile", *overrides, "progress=false", f"hydra.run.dir={run_dir}"],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"cpu_s": cpu, "wall_s": wall, "report": json.loads((run_dir / "report.json").read_text())}


def teacher_seconds(overrides: list[str]) -> float:
    """CPU seconds of one float forward pass of the network over the calibration set."""
    cfg = compose_config("compile", overrides)
    graph, data = load_model_config(cfg.model)
    x = np.asarray(data.x_train[:])
    run_float(graph, x[:8])  # warm up
    start = time.process_time()
    run_float(graph, x, batch_size=len(x))
    return time.process_time() - start


def block_shapes(compiled_npz: Path) -> dict[str, list[tuple[int, int, int]]]:
    """Per block (named by its last core, as tuning names it): (fan-in, outputs, positions) of each core."""
    graph, _ = load_graph(compiled_npz)
    from dse.ir.shapes import infer_shapes

    shapes = infer_shapes(graph)
    groups: dict[str, list] = {}
    for n in graph.of_type(o.CoreOp):
        w = np.asarray(n.op.weight)
        positions = 1 if n.op.dense else int(np.prod(shapes[n.name][1:]))
        groups.setdefault(n.block_name, []).append((n.name, int(np.prod(w.shape[1:])), w.shape[0], positions,
                                                     w.shape[2:] not in ((), (1, 1))))
    return {cores[-1][0]: [c[1:] for c in cores] for cores in groups.values()}


def rows_per_step(cores: list, tuning, spiking: bool) -> int:
    """Rows of one step as the tuner chooses them (`BlockProblem.step_rows`)."""
    patches = any(c[3] for c in cores)
    nominal = tuning.batch_size * (tuning.patch_batch_factor if patches else 1)
    if spiking:
        nominal = max(tuning.batch_size * tuning.spike_batch_factor, tuning.spike_min_rows)
    per_row = sum(fan_in * out for fan_in, out, _, _ in cores)
    return int(min(max(tuning.step_macs // max(per_row, 1), min(tuning.min_batch, nominal)), nominal))


def step_seconds(cores: list, rows: int, timesteps: int = 1) -> float:
    """CPU seconds of one plain-torch training step of a block: forward, MSE, backward, Adam."""
    gen = torch.Generator().manual_seed(0)
    xs = [torch.rand(rows * timesteps, fan_in, generator=gen) for fan_in, _, _, _ in cores]
    ws = [torch.randn(out, fan_in, generator=gen, requires_grad=True) for fan_in, out, _, _ in cores]
    targets = [torch.randn(rows * timesteps, out, generator=gen) for _, out, _, _ in cores]
    opt = torch.optim.Adam(ws, lr=1e-3)

    def step() -> None:
        opt.zero_grad()
        loss = sum(torch.nn.functional.mse_loss(torch.relu(x @ w.T), t)
                   for x, w, t in zip(xs, ws, targets, strict=True))
        loss.backward()
        opt.step()

    step()  # warm up
    start = time.process_time()
    for _ in range(TIMED_STEPS):
        step()
    return (time.process_time() - start) / TIMED_STEPS


def block_steps(block: dict, tuning, is_output: bool, spiking: bool) -> tuple[int, int]:
    """(plain steps, spike-aware steps) the tuner ran on a block: its record, else the phases' caps."""
    if "steps" in block:
        spike = sum(v for k, v in block["steps"].items() if k.startswith("spike"))
        return sum(block["steps"].values()) - spike, spike
    if not block.get("losses"):  # not trained (max-pooling, tuning=none)
        return 0, 0
    plain = tuning.free_steps + tuning.range_steps + tuning.round_steps * len(tuning.round_fractions)
    spike = (tuning.output_spike_steps if is_output else tuning.spike_steps) if spiking else 0
    return plain, spike


def floor(overrides: list[str], report: dict, run_dir: Path) -> dict:
    cfg = compose_config("compile", overrides)
    tuning, hw = tuning_from(cfg.tuning), hardware_from(cfg.hardware)
    shapes = block_shapes(run_dir / "compiled.npz")
    blocks = report["blocks"]
    train = steps = 0.0
    for i, block in enumerate(blocks):
        plain, spike = block_steps(block, tuning, i == len(blocks) - 1, hw.spiking)
        cores = shapes.get(block["name"])
        if cores is None or plain + spike == 0:
            continue
        if plain:
            train += plain * step_seconds(cores, rows_per_step(cores, tuning, False))
        if spike:
            train += spike * step_seconds(cores, rows_per_step(cores, tuning, True), hw.neuron.timesteps)
        steps += plain + spike
    teacher = teacher_seconds(overrides)
    return {"teacher_forward_cpu_s": round(teacher, 3), "training_steps": int(steps),
            "training_cpu_s": round(train, 3), "cpu_s": round(teacher + train, 3),
            "steps_from": "report" if blocks and "steps" in blocks[0] else "tuning caps"}


def startup_seconds() -> float:
    """CPU seconds of a child process that starts the interpreter, imports torch and exits."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1, help="compiles to take the median of")
    args, overrides = parser.parse_known_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        runs = [run_compile(overrides, Path(tmp) / f"run{i}") for i in range(args.runs)]
        report = runs[-1]["report"]
        base = floor(overrides, report, Path(tmp) / f"run{args.runs - 1}")
    stages = {s: round(statistics.median(r["report"]["steps"][s]["cpu_s"] for r in runs), 3)
              for s in STAGES if s in report["steps"]}
    compile_cpu = statistics.median(r["cpu_s"] for r in runs)
    startup = statistics.median(startup_seconds() for _ in range(args.runs))
    work = sum(stages.get(s, 0.0) for s in ("prepare", "fit", "tune"))
    print(json.dumps({
        "overrides": overrides, "runs": args.runs,
        "compile": {"process_cpu_s": round(compile_cpu, 3),
                    "process_wall_s": round(statistics.median(r["wall_s"] for r in runs), 3),
                    "stages_cpu_s": stages, "accuracy_delta_pp": report.get("accuracy_delta_pp")},
        "floor": base, "startup_cpu_s": round(startup, 3),
        "ratio": round(compile_cpu / base["cpu_s"], 2),
        "ratio_work": round(work / base["cpu_s"], 2),
        "ratio_with_startup": round(compile_cpu / (base["cpu_s"] + startup), 2),
    }, indent=2))


if __name__ == "__main__":
    main()
