"""Acceptance of the harsh-constraints issue on the embedded MNIST models, 1,000 held-out test images (slow).

Re-encoding at 2-bit I/O, the universal approximator for sigmoid units, and a residual CNN on chip_a and on the
spiking chip_b (about 6 minutes alone), each composed from `dse/conf/` with the overrides a user types. Each test
prints its figures:

    .venv/bin/python -m pytest -m slow tests/test_acceptance_harsh.py -s

(The ImageNet-size rows are benchmarks: `python -m bench.scale_resources`, `python -m bench.scale_tuned`.)
"""

from __future__ import annotations

import json
from functools import cache

import pytest

from dse.compile import CompileResult, compile, load_model, prepare
from dse.config import compose_config, hardware_from, tuning_from

pytestmark = pytest.mark.slow

IO2 = ["hardware.io.input_bits=2", "hardware.io.output_bits=2"]


@cache
def compiled(model: str, *overrides: str) -> CompileResult:
    cfg = compose_config("compile", [f"model={model}", *overrides])
    graph, data = load_model(cfg.model.name, cfg.model.dataset)
    prepared = prepare(graph, data, name=model, approximator_width=cfg.strategy.approximator_width)
    result = compile(prepared, hardware_from(cfg.hardware), strategy=cfg.strategy.name,
                     tuning=tuning_from(cfg.tuning), reencode_k=cfg.strategy.reencode_k,
                     readout_k=cfg.strategy.readout_k)
    r = result.report.to_dict()
    print("ACCEPTANCE " + json.dumps({
        "model": model, "overrides": overrides, "legal": r["legal"], "accuracy_original": r["accuracy_original"],
        "accuracy_compiled": r["accuracy_compiled"], "accuracy_delta_pp": r["accuracy_delta_pp"],
        "crossbars": r["resources"]["crossbars"], "compile_seconds": round(r["compile_seconds"], 1)}))
    return result


def test_reencoding_at_2_bit_io() -> None:
    k4 = compiled("lenet_mnist", *IO2, "strategy.reencode_k=4").report.to_dict()
    k1 = compiled("lenet_mnist", *IO2, "strategy.reencode_k=1").report.to_dict()
    assert k4["legal"] and k1["legal"]
    assert k4["accuracy_delta_pp"] <= 1.0
    assert k4["accuracy_delta_pp"] < k1["accuracy_delta_pp"]
    assert k4["resources"]["crossbars"] > k1["resources"]["crossbars"]  # the population's cost is counted


def test_sigmoid_units_on_chip_a() -> None:
    r = compiled("mlp_sigmoid_mnist").report.to_dict()
    assert r["legal"] and r["accuracy_delta_pp"] <= 1.0


def test_residual_cnn_on_chip_a() -> None:
    r = compiled("resnet_mnist").report.to_dict()
    assert r["legal"] and r["accuracy_delta_pp"] <= 0.5


def test_residual_cnn_on_chip_b() -> None:
    r = compiled("resnet_mnist", "hardware=chip_b").report.to_dict()
    assert r["legal"] and r["accuracy_delta_pp"] <= 1.0
