"""Compile time versus quantization-aware retraining (QAT) time, on the default network, in one run.

    .venv/bin/python bench/compile_vs_retrain.py [--max-epochs 30] [--eval-every 16] [--seed 0] [--qat-threads 1]

1. Compile lenet_mnist for chip_a at 4-bit weights and 4-bit I/O (`hardware.weights.bits=4
   hardware.io.input_bits=4 hardware.io.output_bits=4`, split, multi-phase tuning), through the same config
   path as the CLI; time it.
2. Retrain the whole network under the same constraints, starting from the trained weights
   (`dse.data.train_models.load_trained('lenet_mnist')`): 4-bit symmetric per-layer fake-quantized weights,
   4-bit clipped-ReLU fake-quantized activations with learned scales (LSQ, initialized by max calibration),
   4-bit input quantization, straight-through estimators; Adam on the 4,000 train images. Every `eval_every`
   steps the test accuracy is measured (that time is not counted); QAT stops when it reaches the compiled
   network's test accuracy, or after `max_epochs` epochs.

Prints one JSON object: both times (wall and CPU: this machine may be shared, and the CPU time does not
depend on the others' load), their ratios, both accuracies, whether QAT reached the target. The QAT
logits stay float (the compiled network also quantizes its output codes), which favours QAT. The QAT time
counts only training steps and calibration; the compile time counts loading and preparing the model and
compiling it, and its wall time leaves out the report's evaluation on the test set (its CPU time, summed over
threads, includes it: an upper bound).

QAT runs on one torch thread by default, like the compiler's tuning: its small matrix products gain nothing
from a second thread on an idle machine, and on a busy one the OpenMP workers spin against each other (we
measured the same epoch at 1.4 s on one thread and 4.6 to 42 s on two). `--qat-threads 0` uses torch's default.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dse.compile import compile, load_model, prepare  # noqa: E402
from dse.config import compose_config, hardware_from, tuning_from  # noqa: E402
from dse.data import load_dataset  # noqa: E402
from dse.data.train_models import LeNet5, load_trained  # noqa: E402

OVERRIDES = ["model=lenet_mnist", "hardware=chip_a", "hardware.weights.bits=4", "hardware.io.input_bits=4",
             "hardware.io.output_bits=4", "strategy=split", "tuning=multiphase"]
BITS = 4


def compile_default() -> dict:
    cfg = compose_config("compile", OVERRIDES)
    start, cpu_start = time.perf_counter(), time.process_time()
    graph, data = load_model(cfg.model.name, cfg.model.dataset)
    prepared = prepare(graph, data, name=cfg.model.name)
    result = compile(prepared, hardware_from(cfg.hardware), strategy=cfg.strategy.name,
                     tuning=tuning_from(cfg.tuning))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    r = result.report.to_dict()
    return {
        "seconds": wall - r["evaluate_seconds"],  # load + prepare + compile, without the test-set report
        "cpu_seconds": cpu,  # all threads, and the test-set report too: an upper bound
        "compile_seconds": r["compile_seconds"],
        "prepare_seconds": r["prepare_seconds"],
        "accuracy_original": r["accuracy_original"],
        "accuracy_compiled": r["accuracy_compiled"],
        "accuracy_delta_pp": r["accuracy_delta_pp"],
        "legal": r["legal"],
    }


# --- QAT ----------------------------------------------------------------------------------------------------


def round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


def quant_weight(w: torch.Tensor, bits: int) -> torch.Tensor:
    """Symmetric per-layer: codes in [-(2^(b-1) - 1), 2^(b-1) - 1] times max|w| / that."""
    qmax = 2 ** (bits - 1) - 1
    step = w.detach().abs().max().clamp_min(1e-12) / qmax
    return torch.clamp(round_ste(w / step), -qmax, qmax) * step


def quant_act(y: torch.Tensor, log_step: torch.Tensor, bits: int) -> torch.Tensor:
    """A clipped ReLU on 2^b - 1 levels with a learned step (LSQ gradient through the STE)."""
    step = log_step.exp()
    return round_ste(torch.clamp(torch.relu(y) / step, 0, 2**bits - 1)) * step


class QatLeNet(nn.Module):
    """LeNet5 under the chip's constraints: quantized input, weights and activations."""

    def __init__(self, base: LeNet5, bits: int) -> None:
        super().__init__()
        self.base, self.bits = base, bits
        self.log_steps = nn.Parameter(torch.zeros(4))  # conv1, conv2, fc1, fc2 activations

    def forward(self, x: torch.Tensor, record: list[torch.Tensor] | None = None) -> torch.Tensor:
        b, levels = self.base, 2**self.bits - 1
        x = round_ste(torch.clamp(x, 0, 1) * levels) / levels  # the host's input code: step 1 / (2^b - 1)
        x = b.norm(x)

        def act(y: torch.Tensor, i: int) -> torch.Tensor:
            if record is not None:
                record.append(torch.relu(y).detach())
                return torch.relu(y)
            return quant_act(y, self.log_steps[i], self.bits)

        q = self.bits
        x = b.pool(act(F.conv2d(x, quant_weight(b.conv1.weight, q), b.conv1.bias, padding=2), 0))
        x = b.pool(act(F.conv2d(x, quant_weight(b.conv2.weight, q), b.conv2.bias), 1))
        x = torch.flatten(x, 1)
        x = act(F.linear(x, quant_weight(b.fc1.weight, q), b.fc1.bias), 2)
        x = act(F.linear(x, quant_weight(b.fc2.weight, q), b.fc2.bias), 3)
        return F.linear(x, quant_weight(b.fc3.weight, q), b.fc3.bias)

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor) -> None:
        """Max calibration: each activation's step is its largest value on the batch over 2^b - 1."""
        record: list[torch.Tensor] = []
        self(x, record)
        for i, y in enumerate(record):
            self.log_steps[i] = torch.log(y.max().clamp_min(1e-6) / (2**self.bits - 1))


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return float((model(x).argmax(1) == y).double().mean())


def qat(target: float, *, max_epochs: int, eval_every: int, seed: int, batch_size: int = 64,
        lr: float = 5e-4) -> dict:
    data = load_dataset("mnist")
    x_train, y_train = torch.from_numpy(np.array(data.x_train)), torch.from_numpy(np.array(data.y_train))
    x_test, y_test = torch.from_numpy(np.array(data.x_test)), torch.from_numpy(np.array(data.y_test))
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)

    start, cpu_start = time.perf_counter(), time.process_time()
    model = QatLeNet(load_trained("lenet_mnist"), BITS)
    model.calibrate(x_train[:1000])
    opt = torch.optim.Adam([{"params": model.base.parameters(), "lr": lr},
                            {"params": [model.log_steps], "lr": lr * 10}])
    train_seconds, train_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    eval_seconds, steps, history = 0.0, 0, []

    def evaluate(epoch: float) -> float:
        nonlocal eval_seconds
        t0 = time.perf_counter()
        acc = accuracy(model, x_test, y_test)
        eval_seconds += time.perf_counter() - t0
        history.append({"epoch": round(epoch, 3), "seconds": round(train_seconds, 2), "accuracy": acc})
        return acc

    reached = evaluate(0.0) >= target  # after calibration alone (post-training quantization)
    steps_per_epoch = -(-len(y_train) // batch_size)
    while not reached and steps < max_epochs * steps_per_epoch:
        perm = torch.randperm(len(y_train), generator=gen)
        for i in range(0, len(perm), batch_size):
            t0, c0 = time.perf_counter(), time.process_time()
            model.train()
            idx = perm[i : i + batch_size]
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
            train_seconds += time.perf_counter() - t0
            train_cpu += time.process_time() - c0
            if steps % eval_every == 0 or steps % steps_per_epoch == 0:
                if evaluate(steps / steps_per_epoch) >= target:
                    reached = True
                    break
    best = max(h["accuracy"] for h in history)
    return {
        "reached_target": reached,
        "seconds": train_seconds,
        "cpu_seconds": train_cpu,
        "steps": steps,
        "epochs": steps / steps_per_epoch,
        "accuracy": history[-1]["accuracy"],
        "best_accuracy": best,
        "accuracy_after_calibration": history[0]["accuracy"],
        "eval_seconds_not_counted": eval_seconds,
        "history": history,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--eval-every", type=int, default=16, help="QAT steps between test evaluations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--qat-threads", type=int, default=1,
                        help="torch threads for QAT (default 1, as the compiler's tuning; 0: torch's default)")
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")

    load_before = os.getloadavg()[0]
    compiled = compile_default()
    if args.qat_threads > 0:
        torch.set_num_threads(args.qat_threads)
    retrained = qat(compiled["accuracy_compiled"], max_epochs=args.max_epochs, eval_every=args.eval_every,
                    seed=args.seed)
    out = {
        "model": "lenet_mnist",
        "constraints": "chip_a, 4-bit weights, 4-bit input, 4-bit activations",
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "compile": compiled,
        "qat": {k: v for k, v in retrained.items() if k != "history"},
        "qat_history": retrained["history"],
        "compile_seconds": round(compiled["seconds"], 2),
        "qat_seconds": round(retrained["seconds"], 2),
        "qat_over_compile": round(retrained["seconds"] / compiled["seconds"], 3),
        "compile_cpu_seconds": round(compiled["cpu_seconds"], 2),
        "qat_cpu_seconds": round(retrained["cpu_seconds"], 2),
        "qat_over_compile_cpu": round(retrained["cpu_seconds"] / compiled["cpu_seconds"], 3),
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "accuracy_compiled": compiled["accuracy_compiled"],
        "accuracy_qat": retrained["accuracy"],
        "qat_reached_compiled_accuracy": retrained["reached_target"],
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
