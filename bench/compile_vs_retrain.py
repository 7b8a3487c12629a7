"""A fair race: the compile (no labels) against quantization-aware retraining (QAT, with labels), same chip.

    OMP_NUM_THREADS=1 .venv/bin/python bench/compile_vs_retrain.py            # ~4-6 min on an idle core
    .venv/bin/python bench/compile_vs_retrain.py --seeds 0 --set hardware.weights.bits=8   # chip_a as is

Both sides start from the trained float lenet_mnist and the same N calibration/training samples (the first N
of the train split, `model.calib_samples=N`, default all 4,000), and are scored on the same 1,000 test images.

- **One-off costs before both clocks**: imports, MNIST parsing, the ONNX import (`load_model`), one warm-up
  compile of 8 samples (`tuning=none`: every lazy import) and one warm-up Adam step (`torch._dynamo`).
- **The compile's clock**: `prepare` + `compile` through the public API (`dse.compile`), less the report's
  `evaluate` step (the test-set simulation is scoring, not compiling), wall and CPU seconds.
- **QAT under the compile's constraints, where torch can express them** (read from the same `HardwareSpec`):
  the host's input codes (`io.input_bits` levels over [0, 1]); every layer's weights split into the chip's
  crossbar tiles (fan-in chunks of `crossbar.rows`, output chunks of `logical_cols`), each tile with its own
  symmetric `weights.bits` scale (a chip with `per_crossbar` scales); each fan-in chunk's partial sum
  quantized as a signed pair of output codes (what a split's merge core reads); ReLU outputs as unsigned
  codes that fit both ADC and DAC (`code_max(to_core=True)` levels) and the logits as signed codes of the
  host's ADC (`code_max(to_core=False)`); learned steps (LSQ, max-calibrated), straight-through rounding.
  Not expressed: the ADC saturation of intermediate sums inside a crossbar (the compile meets it).
- **QAT stops on a validation split of its own samples** (a seeded 20 %, at least 8; never the test set):
  Adam, batch 64, validation every 16 steps; it stops after `--patience` checks without a better validation
  accuracy (ties: lower validation loss) or at `--max-steps`, and keeps its best checkpoint. The
  validation passes count on its clock; the test accuracy along the way (measured off the clock) gives
  `qat_first_reaches_compile_s`: when QAT's checkpoint first matched the compile's test accuracy.
- Three seeds by default (the tuner's `tuning.seed`; QAT's torch seed and split), medians printed.

Prints one JSON object: per seed and as medians, for each side: wall and CPU seconds, test accuracy, delta
against the float model (pp, positive = lost); the `race`: which side reaches the other's accuracy first.
Default constraints: chip_a at 4-bit weights and 4-bit I/O (`--set` overrides; at chip_a's own 8-bit
weights both sides sit at the float accuracy and there is nothing to race).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dse.compile import compile, load_model, load_model_config, prepare  # noqa: E402
from dse.config import compose_config, hardware_from, tuning_from  # noqa: E402
from dse.data.train_models import LeNet5, load_trained  # noqa: E402

MODEL = "lenet_mnist"
DEFAULT_SET = ["hardware=chip_a", "hardware.weights.bits=4", "hardware.io.input_bits=4", "hardware.io.output_bits=4"]


def compose(overrides: Sequence[str], calib: int | None, seed: int) -> Any:
    extra = [f"model.calib_samples={calib}"] if calib else []
    return compose_config("compile", [f"model={MODEL}", *overrides, *extra, f"tuning.seed={seed}"])


# --- the compile ---------------------------------------------------------------------------------------------


def warm_up(overrides: Sequence[str]) -> None:
    """One-off costs of a process that compiles: lazy imports along the whole path, on 8 samples."""
    cfg = compose(overrides, 8, 0)
    graph, data = load_model(cfg.model.name, cfg.model.dataset, calib_samples=8, test_samples=8)
    compile(prepare(graph, data, name=cfg.model.name), hardware_from(cfg.hardware), tuning=tuning_from(
        compose([*overrides, "tuning=none"], 8, 0).tuning))
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p])
    p.sum().backward()
    opt.step()


def compile_once(overrides: Sequence[str], calib: int | None, seed: int) -> dict[str, Any]:
    """`prepare` + `compile` on the clock (the ONNX import and data loading before it), less the test-set
    evaluation."""
    cfg = compose(overrides, calib, seed)
    graph, data = load_model_config(cfg.model)
    hw, tuning = hardware_from(cfg.hardware), tuning_from(cfg.tuning)
    wall, cpu = time.perf_counter(), time.process_time()
    result = compile(prepare(graph, data, name=cfg.model.name), hw, strategy=cfg.strategy.name, tuning=tuning)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    r = result.report.to_dict()
    ev = r["steps"]["evaluate"]
    return {"wall_s": round(wall - ev["wall_s"], 2), "cpu_s": round(cpu - ev["cpu_s"], 2),
            "accuracy": r["accuracy_compiled"], "accuracy_float": r["accuracy_original"],
            "delta_pp": r["accuracy_delta_pp"], "legal": r["legal"], "calib_samples": len(data.x_train)}


# --- QAT -----------------------------------------------------------------------------------------------------


def round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


def lsq(x: torch.Tensor, log_step: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """Codes in [lo, hi] times a learned step (LSQ: the gradient reaches the step through the STE)."""
    step = log_step.exp()
    return round_ste(torch.clamp(x / step, lo, hi)) * step


@dataclass(frozen=True)
class Limits:
    """The chip's constraints as QAT sees them."""

    weight_max: int  # largest weight code
    rows: int  # fan-in of one crossbar
    cols: int  # output neurons of one crossbar
    input_max: int  # largest input code of the host
    act_max: int  # largest code passed core to core
    out_max: int  # largest code the host reads

    @classmethod
    def of(cls, hw: Any) -> Limits:
        return cls(hw.weight_max, hw.crossbar.rows, hw.logical_cols, hw.input_code_max,
                   hw.code_max(to_core=True), hw.code_max(to_core=False))


def tile_quant(w: torch.Tensor, lim: Limits) -> torch.Tensor:
    """`w` (outputs, fan-in) with one symmetric scale per crossbar tile (max-abs over the tile)."""
    out = torch.empty_like(w)
    for r in range(0, w.shape[1], lim.rows):
        for c in range(0, w.shape[0], lim.cols):
            t = w[c : c + lim.cols, r : r + lim.rows]
            step = t.detach().abs().max().clamp_min(1e-12) / lim.weight_max
            out[c : c + lim.cols, r : r + lim.rows] = torch.clamp(round_ste(t / step), -lim.weight_max,
                                                                   lim.weight_max) * step
    return out


class QatLeNet(nn.Module):
    """LeNet5 on the chip: each conv/FC a crossbar layer (`layer`), ReLU/logit outputs as codes."""

    LAYERS = ("conv1", "conv2", "fc1", "fc2", "fc3")

    def __init__(self, base: LeNet5, lim: Limits) -> None:
        super().__init__()
        self.base, self.lim = base, lim
        self.out_steps = nn.Parameter(torch.zeros(len(self.LAYERS)))
        self.psum_steps = nn.ParameterDict({n: nn.Parameter(torch.zeros(self.chunks(n))) for n in self.LAYERS})
        self.calibrating = False
        self.seen: dict[str, list[float]] = {}

    def chunks(self, name: str) -> int:
        return -(-getattr(self.base, name).weight[0].numel() // self.lim.rows)

    def observe(self, key: str, y: torch.Tensor) -> torch.Tensor:
        self.seen.setdefault(key, []).append(float(y.detach().abs().max()))
        return y

    def layer(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Patches (B, fan-in, positions) through tiled weights; partial sums per fan-in chunk as signed codes."""
        name, lim = self.LAYERS[i], self.lim
        mod = getattr(self.base, name)
        w = tile_quant(mod.weight.reshape(mod.weight.shape[0], -1), lim)
        conv = isinstance(mod, nn.Conv2d)
        cols = F.unfold(x, mod.kernel_size, padding=mod.padding) if conv else x.unsqueeze(2)
        chunks = range(0, w.shape[1], lim.rows)
        y = 0
        for j, r in enumerate(chunks):
            part = torch.einsum("of,bfp->bop", w[:, r : r + lim.rows], cols[:, r : r + lim.rows])
            if len(chunks) > 1:  # a split: the merge core reads each partial sum as a signed pair of codes
                part = self.observe(f"{name}.{j}", part) if self.calibrating else \
                    lsq(part, self.psum_steps[name][j], -lim.out_max, lim.out_max)
            y = y + part
        y = y + mod.bias[None, :, None]
        if conv:
            side = int(round(y.shape[2] ** 0.5))
            y = y.reshape(y.shape[0], y.shape[1], side, side)
        else:
            y = y.squeeze(2)
        last = i == len(self.LAYERS) - 1
        if self.calibrating:
            return self.observe(name, y if last else torch.relu(y))
        if last:
            return lsq(y, self.out_steps[i], -lim.out_max, lim.out_max)
        return lsq(torch.relu(y), self.out_steps[i], 0, lim.act_max)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.base
        x = round_ste(torch.clamp(x, 0, 1) * self.lim.input_max) / self.lim.input_max
        x = b.norm(x)
        x = b.pool(self.layer(0, x))
        x = b.pool(self.layer(1, x))
        x = torch.flatten(x, 1)
        for i in (2, 3, 4):
            x = self.layer(i, x)
        return x

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor) -> None:
        """Max calibration: every step is the largest value it quantizes on `x` over its largest code."""
        self.calibrating, self.seen = True, {}
        self(x)
        self.calibrating = False
        for i, name in enumerate(self.LAYERS):
            top = self.lim.out_max if i == len(self.LAYERS) - 1 else self.lim.act_max
            self.out_steps[i] = np.log(max(max(self.seen[name]), 1e-6) / top)
            for j in range(self.chunks(name) if self.chunks(name) > 1 else 0):
                self.psum_steps[name][j] = np.log(max(max(self.seen[f"{name}.{j}"]), 1e-6) / self.lim.out_max)


@torch.no_grad()
def scores(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(accuracy, mean cross-entropy)."""
    model.eval()
    logits = model(x)
    return float((logits.argmax(1) == y).double().mean()), float(F.cross_entropy(logits, y))


def split(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded 20 % validation split of n samples (at least 8), the rest for training."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = max(8, n // 5)
    return perm[n_val:], perm[:n_val]


def qat(lim: Limits, data: dict[str, torch.Tensor], target: float, *, seed: int, max_steps: int,
        patience: int, eval_every: int = 16, batch_size: int = 64, lr: float = 5e-4) -> dict[str, Any]:
    """Retrain from the float weights on data['x'], data['y'] (validation split inside); early stopping."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    tr, va = split(len(data["y"]), seed)
    x_tr, y_tr, x_va, y_va = data["x"][tr], data["y"][tr], data["x"][va], data["y"][va]
    wall, cpu = time.perf_counter(), time.process_time()
    off_clock, off_cpu = 0.0, 0.0  # the test-set checks (not part of QAT)
    model = QatLeNet(load_trained(MODEL), lim)
    model.calibrate(x_tr)
    opt = torch.optim.Adam([{"params": model.base.parameters(), "lr": lr},
                            {"params": [model.out_steps, *model.psum_steps.values()], "lr": lr * 10}])
    best, best_state, since, steps, first_reach = None, None, 0, 0, None

    def check() -> bool:
        """Validation check; True: stop."""
        nonlocal best, best_state, since, off_clock, off_cpu, first_reach
        acc, loss = scores(model, x_va, y_va)
        if best is None or (acc, -loss) > best:
            best, best_state, since = (acc, -loss), {k: v.clone() for k, v in model.state_dict().items()}, 0
            t0, c0 = time.perf_counter(), time.process_time()
            if first_reach is None and scores(model, data["x_test"], data["y_test"])[0] >= target:
                first_reach = t0 - wall - off_clock
            off_clock, off_cpu = off_clock + time.perf_counter() - t0, off_cpu + time.process_time() - c0
        else:
            since += 1
        return since >= patience

    stop = check()  # after calibration alone (post-training quantization)
    while not stop and steps < max_steps:
        perm = torch.randperm(len(y_tr), generator=gen)
        for i in range(0, len(perm), batch_size):
            model.train()
            idx = perm[i : i + batch_size]
            loss = F.cross_entropy(model(x_tr[idx]), y_tr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
            if steps % eval_every == 0 and (stop := check()) or steps >= max_steps:
                break
    model.load_state_dict(best_state)
    wall, cpu = time.perf_counter() - wall - off_clock, time.process_time() - cpu - off_cpu
    acc = scores(model, data["x_test"], data["y_test"])[0]
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "accuracy": acc, "steps": steps,
            "stopped_early": steps < max_steps, "validation_accuracy": best[0], "train_samples": len(tr),
            "validation_samples": len(va),
            "first_reaches_compile_s": None if first_reach is None else round(first_reach, 2)}


def qat_data(n: int | None) -> dict[str, torch.Tensor]:
    from dse.data import load_dataset

    d = load_dataset("mnist")
    t = lambda a: torch.from_numpy(np.array(a))  # noqa: E731
    return {"x": t(d.x_train[:n] if n else d.x_train[:]), "y": t(d.y_train[:n] if n else d.y_train[:]),
            "x_test": t(d.x_test[:]), "y_test": t(d.y_test[:])}


def race_one(overrides: Sequence[str], calib: int | None, seed: int, data: dict[str, torch.Tensor], *,
             max_steps: int, patience: int) -> dict[str, Any]:
    """Both sides on the same samples and seed."""
    comp = compile_once(overrides, calib, seed)
    lim = Limits.of(hardware_from(compose(overrides, calib, seed).hardware))
    ret = qat(lim, data, comp["accuracy"], seed=seed, max_steps=max_steps, patience=patience)
    ret["delta_pp"] = round(100 * (comp["accuracy_float"] - ret["accuracy"]), 2)
    return {"seed": seed, "compile": comp, "qat": ret}


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    med = lambda side, k: statistics.median(r[side][k] for r in runs)  # noqa: E731
    out = {side: {k: med(side, k) for k in keys} for side, keys in
           (("compile", ("wall_s", "cpu_s", "accuracy", "delta_pp")),
            ("qat", ("wall_s", "cpu_s", "accuracy", "delta_pp", "steps")))}
    c, q = out["compile"], out["qat"]
    reach = [r["qat"]["first_reaches_compile_s"] for r in runs]
    out["race"] = {
        # QAT has its final accuracy when it stops; the compile has it when it ends, if it gets there at all
        "first_to_retraining_accuracy": {clock: "qat (the compile does not reach its accuracy)"
                                         if c["accuracy"] < q["accuracy"] else
                                         "compile" if c[key] <= q[key] else "qat"
                                         for clock, key in (("wall", "wall_s"), ("cpu", "cpu_s"))},
        "accuracy_gap_pp": round(100 * (q["accuracy"] - c["accuracy"]), 2),  # > 0: QAT ends more accurate
        "qat_wall_over_compile_wall": round(q["wall_s"] / c["wall_s"], 3),
        "qat_cpu_over_compile_cpu": round(q["cpu_s"] / c["cpu_s"], 3),
        "qat_first_reaches_compile_accuracy_s": statistics.median(reach) if None not in reach else None,
        "seeds_where_qat_reaches_compile_accuracy": sum(x is not None for x in reach),
    }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--calib", type=int, default=None, help="samples for both sides (default: all 4,000)")
    parser.add_argument("--max-steps", type=int, default=2000, help="QAT's step cap")
    parser.add_argument("--patience", type=int, default=10, help="QAT validation checks without improvement")
    parser.add_argument("--set", action="append", default=None, metavar="OVERRIDE",
                        help=f"a compile override (repeatable; default {' '.join(DEFAULT_SET)})")
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    overrides = args.set or DEFAULT_SET
    load = [os.getloadavg()[0]]
    warm_up(overrides)
    data = qat_data(args.calib)
    runs = [race_one(overrides, args.calib, s, data, max_steps=args.max_steps, patience=args.patience)
            for s in args.seeds]
    load.append(os.getloadavg()[0])
    print(json.dumps({"model": MODEL, "overrides": overrides, "calib_samples": args.calib or len(data["y"]),
                      "seeds": args.seeds, "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                      "load_average_1min": [round(x, 2) for x in load], "median": medians(runs), "runs": runs},
                     indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
