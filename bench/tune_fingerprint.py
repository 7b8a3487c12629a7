"""A fingerprint of tuning: compile the embedded MNIST models with few steps per phase (every phase, bias
correction, equalization, a population code, the spiking phase, conv patches, depthwise and residual blocks,
the `tuning=none` baseline) and print accuracy_compiled, every block's losses (repr, so bit for bit) and a hash
of every compiled core's integer form. A change meant to keep the numbers (a refactor) keeps the output
identical; run it before and after and diff (about 11 minutes on one thread; case numbers as arguments pick
cases):

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.tune_fingerprint > before.txt
"""

from __future__ import annotations

import hashlib
import sys
import time

import numpy as np

from dse.compile import compile, load_model, prepare
from dse.config import compose_config, hardware_from
from dse.ir import ops as o
from dse.tune import TuneOptions

FAST = dict(free_steps=12, range_steps=6, round_fractions=(0.5, 0.9, 1.0), round_steps=4, spike_steps=4,
            output_spike_steps=8, max_rows=4000, spike_calib_samples=300)
# (model, chip overrides, tuning settings on top of FAST, reencode_k)
CASES = [
    ("lenet_mnist", [], dict(bias_correction=True, equalize=True), 1),
    ("lenet_mnist", ["hardware.weights.bits=4", "hardware.io.input_bits=4", "hardware.io.output_bits=4"], {}, 1),
    ("lenet_mnist", ["hardware.io.input_bits=2", "hardware.io.output_bits=2"], dict(bias_correction=True), 4),
    ("lenet_mnist", [], dict(mode="none", bias_correction=True), 1),
    ("lenet_mnist", ["hardware=chip_b"], dict(bias_correction=True), 1),
    ("lenet_mnist", ["hardware=chip_b"], dict(mode="none", bias_correction=True), 1),
    ("mobilenet_mnist", [], dict(bias_correction=True), 1),
    ("mobilenet_mnist", [], dict(mode="none", bias_correction=True), 1),
    ("resnet_mnist", [], dict(equalize=True), 1),
    ("resnet_mnist", ["hardware=chip_b"], {}, 1),
    ("mlp_sigmoid_mnist", [], {}, 1),
]


def digest(graph) -> str:
    """A hash of every core's integer form: weights, steps, biases."""
    h = hashlib.sha256()
    for n in graph:
        if isinstance(n.op, o.CoreOp) and n.op.quant is not None:
            q = n.op.quant
            for a in (q.weight_int, q.weight_scale, q.bias_int, q.in_scale, np.float64(q.out_scale)):
                h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def main(only: list[str]) -> None:
    prepared = {}  # 300 calibration and 300 test images per model
    for i, (model, over, opts, reencode_k) in enumerate(CASES):
        if only and str(i) not in only:
            continue
        cfg = compose_config("compile", [f"model={model}", *over])
        if model not in prepared:
            graph, data = load_model(model, "mnist", calib_samples=300, test_samples=300)
            prepared[model] = prepare(graph, data, name=model)
        start = time.time()
        options = TuneOptions(**{**FAST, **opts})
        r = compile(prepared[model], hardware_from(cfg.hardware), tuning=options, reencode_k=reencode_k)
        accuracy = r.report.metrics.accuracy_compiled
        print(f"CASE {i} {model} {over} {opts} k={reencode_k}: accuracy_compiled={accuracy!r} "
              f"digest={digest(r.graph)}", flush=True)
        print(f"  ({time.time() - start:.0f} s)", file=sys.stderr)
        for b in r.blocks:
            print(f"  {b.name} cores={b.cores} {b.losses!r}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
