"""Depthwise-separable convolutions on the crossbars: crossbars, cells and utilization per layer.

    .venv/bin/python bench/depthwise_packing.py [--activation relu|relu6|hardswish] [--multiplier 1|2]

A small torch model written here (random weights: packing does not depend on them): conv 3x3 (1 -> 16),
depthwise 3x3 (groups 16, channel multiplier m), pointwise 1x1 (-> 32), depthwise 3x3 stride 2 (groups 32),
pointwise 1x1 (-> 32), fc (-> 10), each followed by the activation; exported by the TorchScript exporter,
imported, and compiled for chip_a (256 x 256, time multiplexed) and chip_b (256 x 256, expanded) with
`tuning=none` (resources do not depend on tuning). HardSwish is approximated (an MLP's hidden layer of 8 hinges and
an always-on unit per channel, calibrated on 64 images). Prints one JSON object: per chip, the report's resource
totals and, per core-op, kind, groups, fan-in, crossbars, cells used and utilization.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dse.compile import compile, prepare  # noqa: E402
from dse.config import compose_config, hardware_from  # noqa: E402
from dse.data import load_dataset  # noqa: E402
from dse.frontends.onnx import load_onnx  # noqa: E402
from dse.tune.options import TuneOptions  # noqa: E402

ACTIVATIONS = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hardswish": nn.Hardswish}


class Separable(nn.Module):
    def __init__(self, activation: type[nn.Module], multiplier: int) -> None:
        super().__init__()
        m = multiplier
        self.layers = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), activation(),
            nn.Conv2d(16, 16 * m, 3, padding=1, groups=16), activation(),
            nn.Conv2d(16 * m, 32, 1), activation(),
            nn.Conv2d(32, 32 * m, 3, stride=2, padding=1, groups=32), activation(),
            nn.Conv2d(32 * m, 32, 1), activation(),
            nn.Flatten(), nn.Linear(32 * 14 * 14, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--activation", choices=list(ACTIVATIONS), default="relu")
    p.add_argument("--multiplier", type=int, default=1)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    model = Separable(ACTIVATIONS[args.activation], args.multiplier).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "separable.onnx"
        torch.onnx.export(model, (torch.zeros(1, 1, 28, 28),), str(path), input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}}, dynamo=False)
        graph = load_onnx(path)
    data = load_dataset("mnist")
    data = dataclasses.replace(data, x_train=data.x_train[:64], y_train=data.y_train[:64],
                               x_test=data.x_test[:64], y_test=data.y_test[:64])
    prepared = prepare(graph, data, name="separable")
    out: dict = {"activation": args.activation, "multiplier": args.multiplier, "chips": {}}
    for chip in ("chip_a", "chip_b"):
        hw = hardware_from(compose_config("compile", [f"hardware={chip}"]).hardware)
        result = compile(prepared, hw, tuning=TuneOptions(mode="none"))
        keys = ("name", "kind", "groups", "fan_in", "fan_out", "positions", "crossbars", "cells_used", "utilization")
        out["chips"][chip] = {"legal": result.legal, "resources": result.report.resources.to_dict(),
                              "layers": [{k: lr[k] for k in keys} for lr in result.layers]}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
